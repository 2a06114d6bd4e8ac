import { getFormProps, getInputProps, useForm } from '@conform-to/react';
import { getZodConstraint, parseWithZod } from '@conform-to/zod/v4';
import { data, Form, redirect, useNavigation, useSearchParams } from 'react-router';
import { z } from 'zod';
import type { Route } from './+types/login';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { ErrorList, Field } from '../components/forms';
import { ToastMessage } from '../components/toast';
import { getDesk, getServices } from '../server/desk-context';
import { attemptLogin } from '../utils/login.server';
import { safeRedirectPath } from '../utils/misc';
import { requireAnonymous } from '../utils/permissions.server';
import { useFlash } from '../utils/root-data';
import { startSessionForRequest } from '../utils/session.server';

const LoginSchema = z.object({
  email: z.string({ error: 'Enter your email address' }).trim().toLowerCase().max(254).email('Enter a valid email address'),
  password: z.string({ error: 'Enter your password' }).max(200),
  redirectTo: z.string().optional(),
});

// The one message for every wrong email/password combination: it must not tell whether the account exists.
const INVALID = 'The email or password is incorrect.';

export const meta: Route.MetaFunction = () => [{ title: 'Sign in · Meterdesk' }];

// Only cookies pass from an action to the document by default; a throttled login also says when to come back.
export const headers: Route.HeadersFunction = ({ actionHeaders }) => {
  const retryAfter = actionHeaders.get('retry-after');
  return retryAfter ? { 'retry-after': retryAfter } : new Headers();
};

export async function loader({ request, context }: Route.LoaderArgs) {
  await requireAnonymous(request, context);
  return null;
}

export async function action({ request, context }: Route.ActionArgs) {
  const submission = parseWithZod(await request.formData(), { schema: LoginSchema });
  if (submission.status !== 'success') {
    return data({ result: submission.reply({ hideFields: ['password'] }) }, { status: 400 });
  }
  const { email, password, redirectTo } = submission.value;
  const outcome = await attemptLogin(getServices(context).pool, { email, password, ip: getDesk(context).clientAddress });
  switch (outcome.status) {
    case 'ok': {
      const cookie = await startSessionForRequest(request, context, outcome.userId);
      return redirect(safeRedirectPath(redirectTo), { headers: { 'set-cookie': cookie } });
    }
    case 'throttled': {
      const minutes = Math.ceil(outcome.retryAfterSeconds / 60);
      return data(
        {
          result: submission.reply({
            formErrors: [`Too many failed sign-in attempts. Try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`],
            hideFields: ['password'],
          }),
        },
        { status: 429, headers: { 'retry-after': String(outcome.retryAfterSeconds) } },
      );
    }
    case 'disabled':
      return data(
        { result: submission.reply({ formErrors: ['This account is disabled. Ask an admin to enable it.'], hideFields: ['password'] }) },
        { status: 403 },
      );
    case 'invalid':
      return data({ result: submission.reply({ formErrors: [INVALID], hideFields: ['password'] }) }, { status: 400 });
  }
}

export default function LoginPage({ actionData }: Route.ComponentProps) {
  const [searchParams] = useSearchParams();
  const navigation = useNavigation();
  const { toast } = useFlash();
  const [form, fields] = useForm({
    id: 'login',
    lastResult: actionData?.result,
    constraint: getZodConstraint(LoginSchema),
    shouldValidate: 'onBlur',
    shouldRevalidate: 'onInput',
    onValidate: ({ formData }) => parseWithZod(formData, { schema: LoginSchema }),
  });
  const submitting = navigation.state === 'submitting' && navigation.formAction?.startsWith('/login');

  return (
    <main id="main" className="login-page">
      <section className="login-card" aria-labelledby="login-heading">
        <h1 id="login-heading">Sign in to Meterdesk</h1>
        <ToastMessage toast={toast} />
        <Form method="post" {...getFormProps(form)}>
          <div role="alert" className="form-errors">
            <ErrorList id={form.errorId} errors={form.errors} />
          </div>
          <Field
            label="Email"
            inputProps={{ ...getInputProps(fields.email, { type: 'email' }), autoComplete: 'username', autoFocus: true }}
            errors={fields.email.errors}
            errorId={fields.email.errorId}
          />
          <Field
            label="Password"
            inputProps={{ ...getInputProps(fields.password, { type: 'password' }), autoComplete: 'current-password' }}
            errors={fields.password.errors}
            errorId={fields.password.errorId}
          />
          <input type="hidden" name="redirectTo" value={searchParams.get('redirectTo') ?? ''} />
          <button type="submit" className="button button-primary button-wide" disabled={submitting}>
            {submitting ? 'Signing in…' : 'Sign in'}
          </button>
        </Form>
      </section>
    </main>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return (
    <main id="main" className="login-page">
      <div className="login-card">
        <GeneralErrorBoundary error={error} />
      </div>
    </main>
  );
}
