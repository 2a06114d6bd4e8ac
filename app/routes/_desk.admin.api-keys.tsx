import { getFormProps, getInputProps, useForm, type SubmissionResult } from '@conform-to/react';
import { parseWithZod } from '@conform-to/zod/v4';
import { Form } from 'react-router';
import { z } from 'zod';
import type { Route } from './+types/_desk.admin.api-keys';
import { CreatePanel, useCreateForm } from '../components/admin-create-form';
import { AdminTabs } from '../components/admin-tabs';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { ErrorList, Field, ReasonField } from '../components/forms';
import { getServices } from '../server/desk-context';
import { redirectWithToast } from '../utils/flash.server';
import { formatTimestamp } from '../utils/misc';
import { requireUserWithPermission } from '../utils/permissions.server';
import { createDeskApiKey, revokeApiKey } from '../billing/access/desk-api-keys';
import { listApiKeys } from '../presenters/admin';
import { DeskTable } from '../components/desk-table';
import { SubmissionKey } from '../components/submission-key';
import { adminAction, type AdminActionData } from './_desk.admin.server';

const reason = z.string().trim().max(500, 'Keep the reason under 500 characters').optional();
const CreateKeySchema = z.object({
  intent: z.literal('create'),
  name: z.string({ error: 'Name the key after what uses it' }).trim().min(1).max(100, 'Use at most 100 characters'),
  reason,
});
const RevokeKeySchema = z.object({ intent: z.literal('revoke'), apiKeyId: z.uuid('Unknown key'), reason });
const KeyActionSchema = z.discriminatedUnion('intent', [CreateKeySchema, RevokeKeySchema]);

export const meta: Route.MetaFunction = () => [{ title: 'API keys · Meterdesk' }];

export async function loader({ request, context }: Route.LoaderArgs) {
  await requireUserWithPermission(request, context, 'manage:api-key:any');
  return { keys: await listApiKeys(getServices(context).pool) };
}

export async function action({ request, context }: Route.ActionArgs) {
  return adminAction(request, context, 'manage:api-key:any', { schema: KeyActionSchema, targetField: 'apiKeyId' }, async (input, { actor, pool, refuse }) => {
    if (input.intent === 'create') {
      const outcome = await createDeskApiKey(pool, actor, input);
      if (!outcome.ok) return refuse(outcome);
      return redirectWithToast(
        '/admin/api-keys',
        context,
        { title: `API key "${input.name}" created` },
        {
          reveal: {
            label: `API key "${input.name}"`,
            value: outcome.value.key,
            note: 'Copy it into the host application now: only its hash is stored, and it will not be shown again.',
          },
        },
      );
    }
    const outcome = await revokeApiKey(pool, actor, input);
    if (!outcome.ok) return refuse(outcome);
    return redirectWithToast('/admin/api-keys', context, {
      title: `API key "${outcome.value.name}" revoked`,
      description: 'Requests with it are refused within a few seconds.',
    });
  });
}

export default function ApiKeysPage({ loaderData, actionData }: Route.ComponentProps) {
  const last = actionData as AdminActionData;
  return (
    <>
      <h1>Users and API keys</h1>
      <AdminTabs />
      {/* Keyed by the key count: after a successful create the form remounts empty. */}
      <CreateKeyForm key={loaderData.keys.length} lastResult={last?.intent === 'create' ? last.result : undefined} />
      <section aria-labelledby="keys-heading" className="panel">
        <h2 id="keys-heading">API keys</h2>
        <DeskTable
          label="API keys"
          rows={loaderData.keys}
          rowKey={(k) => k.id}
          empty="No API keys yet. Host applications need one to send usage events."
          columns={[
            { header: 'Name', rowHeader: true, cell: (k) => k.name },
            { header: 'Starts with', cell: (k) => <code>{k.prefix}…</code> },
            { header: 'Created by', cell: (k) => k.createdBy ?? <span className="muted">system</span> },
            { header: 'Created', cell: (k) => formatTimestamp(k.createdAt) },
            { header: 'Last used', cell: (k) => formatTimestamp(k.lastUsedAt) },
            {
              header: 'Status',
              cell: (k) => (k.revokedAt ? <span className="badge badge-off">revoked {formatTimestamp(k.revokedAt)}</span> : <span className="badge badge-on">active</span>),
            },
            {
              header: 'Revoke',
              cell: (k) => (k.revokedAt ? null : <RevokeKeyForm apiKey={k} lastResult={last?.intent === 'revoke' && last.target === k.id ? last.result : undefined} />),
            },
          ]}
        />
      </section>
    </>
  );
}

function CreateKeyForm({ lastResult }: { lastResult?: SubmissionResult<string[]> }) {
  const [form, fields] = useCreateForm('create-api-key', CreateKeySchema, lastResult);
  return (
    <CreatePanel headingId="create-key-heading" heading="Create an API key" form={form} submitText="Create API key">
      <Field
        label="Name"
        inputProps={{ ...getInputProps(fields.name, { type: 'text' }), autoComplete: 'off' }}
        errors={fields.name.errors}
        errorId={fields.name.errorId}
        help="What uses it, e.g. “billing-service production”."
      />
      <ReasonField field={fields.reason} />
    </CreatePanel>
  );
}

function RevokeKeyForm({ apiKey, lastResult }: { apiKey: { id: string; name: string }; lastResult?: SubmissionResult<string[]> }) {
  const [form, fields] = useForm({
    id: `revoke-${apiKey.id}`,
    lastResult,
    onValidate: ({ formData }) => parseWithZod(formData, { schema: RevokeKeySchema }),
  });
  return (
    <details className="manage" open={lastResult ? true : undefined}>
      <summary>
        Revoke…<span className="visually-hidden"> {apiKey.name}</span>
      </summary>
      <Form method="post" {...getFormProps(form)} className="manage-form">
        <SubmissionKey />
        <input type="hidden" name="intent" value="revoke" />
        <input type="hidden" name="apiKeyId" value={apiKey.id} />
        <ErrorList id={form.errorId} errors={form.errors} />
        <ReasonField field={fields.reason} />
        <button type="submit" className="button button-danger">
          Revoke key
        </button>
      </Form>
    </details>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
