import { getFormProps, getInputProps, getSelectProps, useForm, type SubmissionResult } from '@conform-to/react';
import { getZodConstraint, parseWithZod } from '@conform-to/zod/v4';
import { Form } from 'react-router';
import { z } from 'zod';
import type { Route } from './+types/_desk.admin.users';
import { CreatePanel, useCreateForm } from '../components/admin-create-form';
import { AdminTabs } from '../components/admin-tabs';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { ErrorList, Field, ReasonField, SelectField } from '../components/forms';
import { ROLES } from '../billing/access/permissions';
import { getServices } from '../server/desk-context';
import { redirectWithToast } from '../utils/flash.server';
import { formatTimestamp } from '../utils/misc';
import { requireUserWithPermission } from '../utils/permissions.server';
import { changeUserRole, createDeskUser, setUserDisabled } from '../billing/access/desk-users';
import { listUsers } from '../presenters/admin';
import { DeskTable } from '../components/desk-table';
import { SubmissionKey } from '../components/submission-key';
import { adminAction, type AdminActionData } from './_desk.admin.server';

const reason = z.string().trim().max(500, 'Keep the reason under 500 characters').optional();
const userId = z.uuid('Unknown user');

const CreateUserSchema = z.object({
  intent: z.literal('create'),
  email: z.string({ error: 'Enter an email address' }).trim().toLowerCase().max(254).email('Enter a valid email address'),
  name: z.string().trim().max(200).optional(),
  role: z.enum(ROLES, { error: 'Choose a role' }),
  password: z.string().min(12, 'Use at least 12 characters, or leave it empty to generate one').max(200).optional(),
  reason,
});
const ChangeRoleSchema = z.object({ intent: z.literal('change-role'), userId, role: z.enum(ROLES, { error: 'Choose a role' }), reason });
const DisableSchema = z.object({ intent: z.literal('disable'), userId, reason });
const EnableSchema = z.object({ intent: z.literal('enable'), userId, reason });
const UserActionSchema = z.discriminatedUnion('intent', [CreateUserSchema, ChangeRoleSchema, DisableSchema, EnableSchema]);

const ROLE_OPTIONS = ROLES.map((r) => ({ value: r, label: r }));

export const meta: Route.MetaFunction = () => [{ title: 'Users · Meterdesk' }];

export async function loader({ request, context }: Route.LoaderArgs) {
  const user = await requireUserWithPermission(request, context, 'manage:user:any');
  return { users: await listUsers(getServices(context).pool), currentUserId: user.id };
}

export async function action({ request, context }: Route.ActionArgs) {
  return adminAction(request, context, 'manage:user:any', { schema: UserActionSchema, targetField: 'userId' }, async (input, { actor, pool, refuse }) => {
    switch (input.intent) {
      case 'create': {
        const outcome = await createDeskUser(pool, actor, input);
        if (!outcome.ok) return refuse(outcome);
        const { email, password } = outcome.value;
        return redirectWithToast(
          '/admin/users',
          context,
          { title: `User ${email} created`, description: `Role: ${input.role}.` },
          password
            ? {
                reveal: {
                  label: `Generated password for ${email}`,
                  value: password,
                  note: 'Give it to them over a safe channel now: it is not stored and will not be shown again.',
                },
              }
            : {},
        );
      }
      case 'change-role': {
        const outcome = await changeUserRole(pool, actor, input);
        if (!outcome.ok) return refuse(outcome);
        return redirectWithToast('/admin/users', context, {
          title: `${outcome.value.email} is now ${outcome.value.role}`,
          description: 'The new permissions apply from their next request.',
        });
      }
      case 'disable':
      case 'enable': {
        const outcome = await setUserDisabled(pool, actor, { ...input, disabled: input.intent === 'disable' });
        if (!outcome.ok) return refuse(outcome);
        const { email, sessionsEnded } = outcome.value;
        return redirectWithToast(
          '/admin/users',
          context,
          input.intent === 'disable'
            ? { title: `${email} disabled`, description: `${sessionsEnded} active session${sessionsEnded === 1 ? '' : 's'} ended.` }
            : { title: `${email} enabled` },
        );
      }
    }
  });
}

export default function UsersPage({ loaderData, actionData }: Route.ComponentProps) {
  const last = actionData as AdminActionData;
  return (
    <>
      <h1>Users and API keys</h1>
      <AdminTabs />
      {/* Keyed by the user count: after a successful create the form remounts empty. */}
      <CreateUserForm key={loaderData.users.length} lastResult={last?.intent === 'create' ? last.result : undefined} />
      <section aria-labelledby="users-heading" className="panel">
        <h2 id="users-heading">Users</h2>
        <DeskTable
          label="Users"
          rows={loaderData.users}
          rowKey={(u) => u.id}
          columns={[
            {
              header: 'Email',
              rowHeader: true,
              cell: (u) => (
                <>
                  {u.email}
                  {u.name ? <span className="muted block">{u.name}</span> : null}
                </>
              ),
            },
            { header: 'Role', cell: (u) => <span className={`badge badge-role-${u.role}`}>{u.role}</span> },
            { header: 'Status', cell: (u) => (u.disabledAt ? <span className="badge badge-off">disabled</span> : <span className="badge badge-on">active</span>) },
            { header: 'Active sessions', numeric: true, cell: (u) => u.activeSessions },
            { header: 'Last sign-in', cell: (u) => formatTimestamp(u.lastSignInAt) },
            { header: 'Created', cell: (u) => formatTimestamp(u.createdAt) },
            {
              header: 'Manage',
              cell: (u) => (u.id === loaderData.currentUserId ? <span className="muted">You</span> : <ManageUser user={u} lastResult={last && last.target === u.id ? last : undefined} />),
            },
          ]}
        />
      </section>
    </>
  );
}

function CreateUserForm({ lastResult }: { lastResult?: SubmissionResult<string[]> }) {
  const [form, fields] = useCreateForm('create-user', CreateUserSchema, lastResult, { role: 'support' });
  return (
    <CreatePanel headingId="create-user-heading" heading="Create a user" form={form} submitText="Create user">
      <Field label="Email" inputProps={{ ...getInputProps(fields.email, { type: 'email' }), autoComplete: 'off' }} errors={fields.email.errors} errorId={fields.email.errorId} />
      <Field label="Name (optional)" inputProps={{ ...getInputProps(fields.name, { type: 'text' }), autoComplete: 'off' }} errors={fields.name.errors} errorId={fields.name.errorId} />
      <SelectField label="Role" selectProps={getSelectProps(fields.role)} options={ROLE_OPTIONS} errors={fields.role.errors} errorId={fields.role.errorId} />
      <Field
        label="Password (optional)"
        inputProps={{ ...getInputProps(fields.password, { type: 'password' }), autoComplete: 'new-password' }}
        errors={fields.password.errors}
        errorId={fields.password.errorId}
        help="Leave empty to generate one; it is shown once."
      />
      <ReasonField field={fields.reason} />
    </CreatePanel>
  );
}

function ManageUser({
  user,
  lastResult,
}: {
  user: { id: string; email: string; role: string; disabledAt: string | null };
  lastResult?: { intent: string; result: SubmissionResult<string[]> };
}) {
  const [roleForm, roleFields] = useForm({
    id: `role-${user.id}`,
    lastResult: lastResult?.intent === 'change-role' ? lastResult.result : undefined,
    constraint: getZodConstraint(ChangeRoleSchema),
    defaultValue: { role: user.role },
    onValidate: ({ formData }) => parseWithZod(formData, { schema: ChangeRoleSchema }),
  });
  const statusIntent = user.disabledAt ? 'enable' : 'disable';
  const [statusForm, statusFields] = useForm({
    id: `status-${user.id}`,
    lastResult: lastResult?.intent === statusIntent ? lastResult.result : undefined,
    onValidate: ({ formData }) => parseWithZod(formData, { schema: user.disabledAt ? EnableSchema : DisableSchema }),
  });
  return (
    <details className="manage" open={lastResult ? true : undefined}>
      <summary>
        Manage<span className="visually-hidden"> {user.email}</span>
      </summary>
      <div className="manage-body">
        <Form method="post" {...getFormProps(roleForm)} className="manage-form">
          <SubmissionKey />
          <input type="hidden" name="intent" value="change-role" />
          <input type="hidden" name="userId" value={user.id} />
          <ErrorList id={roleForm.errorId} errors={roleForm.errors} />
          <SelectField label="Role" selectProps={getSelectProps(roleFields.role)} options={ROLE_OPTIONS} errors={roleFields.role.errors} errorId={roleFields.role.errorId} />
          <ReasonField field={roleFields.reason} />
          <button type="submit" className="button button-secondary">
            Change role
          </button>
        </Form>
        <Form method="post" {...getFormProps(statusForm)} className="manage-form">
          <SubmissionKey />
          <input type="hidden" name="intent" value={statusIntent} />
          <input type="hidden" name="userId" value={user.id} />
          <ErrorList id={statusForm.errorId} errors={statusForm.errors} />
          <ReasonField field={statusFields.reason} />
          <button type="submit" className={user.disabledAt ? 'button button-secondary' : 'button button-danger'}>
            {user.disabledAt ? 'Enable user' : 'Disable user'}
          </button>
        </Form>
      </div>
    </details>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
