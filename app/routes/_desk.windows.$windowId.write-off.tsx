// Writing off is finance's action (write-off:charge:any), not an operator's, so it has its own route: its guard is
// one permission for the whole page, and the confirmation shows what is given up before anything changes.
import { data, Form, Link } from 'react-router';
import { z } from 'zod';
import type { Route } from './+types/_desk.windows.$windowId.write-off';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { ErrorList } from '../components/forms';
import { NotFoundError, StateError } from '../billing/errors';
import { writeOffWindow } from '../billing/windows/settlement';
import { getServices } from '../server/desk-context';
import { redirectWithToast } from '../utils/flash.server';
import { formatMoney } from '../utils/money';
import { formatTimestamp, invariantResponse } from '../utils/misc';
import { actorOf, requireUserWithPermission } from '../utils/permissions.server';
import { loadWindowDetail } from '../presenters/windows';
import { StateBadge } from '../components/state-badge';
import { onceForSubmission } from '../utils/submissions.server';
import { SubmissionKey } from '../components/submission-key';

export const meta: Route.MetaFunction = () => [{ title: 'Write off · Meterdesk' }];

const WriteOffSchema = z.object({
  intent: z.literal('write-off', { error: 'Use the write-off form' }),
  reason: z.string({ error: 'Say why the charge is written off' }).trim().min(1, 'Say why the charge is written off').max(500, 'Keep the reason under 500 characters'),
});

export async function loader({ request, params, context }: Route.LoaderArgs) {
  await requireUserWithPermission(request, context, 'write-off:charge:any');
  const window = await loadWindowDetail(getServices(context).pool, params.windowId);
  invariantResponse(window, 'No window with this id.', { status: 404 });
  return { window };
}

// A double click or a resent form runs this once (app/utils/submissions.server.ts).
export async function action(args: Route.ActionArgs) {
  return onceForSubmission(args.request, args.context, () => act(args));
}

async function act({ request, params, context }: Route.ActionArgs) {
  const user = await requireUserWithPermission(request, context, 'write-off:charge:any');
  // Not a window id at all: the same 404 as an unknown one (the domain's queries would fail on it).
  invariantResponse(z.uuid().safeParse(params.windowId).success, 'No window with this id.', { status: 404 });
  const parsed = WriteOffSchema.safeParse(Object.fromEntries(await request.formData()));
  if (!parsed.success) return data({ error: parsed.error.issues.map((i) => i.message).join('; ') }, { status: 400 });
  try {
    await writeOffWindow(getServices(context).pool, { windowId: params.windowId, actor: actorOf(user), reason: parsed.data.reason });
  } catch (error) {
    if (error instanceof StateError) return data({ error: error.message }, { status: 400 });
    if (error instanceof NotFoundError) throw data('No window with this id.', { status: 404 });
    throw error;
  }
  return redirectWithToast(`/windows/${params.windowId}`, context, { title: 'Charge written off', description: 'The window will not be charged again.' });
}

export default function WriteOffPage({ loaderData, actionData }: Route.ComponentProps) {
  const w = loaderData.window;
  const amount = w.chargeAttempt?.amountMinor ?? w.invoice?.totalMinor ?? null;
  return (
    <>
      <p>
        <Link to={`/windows/${w.id}`}>← Back to the window</Link>
      </p>
      <h1>Write off the charge of {w.customerLabel}</h1>
      <section aria-labelledby="write-off-heading" className="panel">
        <h2 id="write-off-heading">Confirm the write-off</h2>
        <dl className="stack">
          <dt>Period</dt>
          <dd>
            {formatTimestamp(w.periodStart)} → {formatTimestamp(w.periodEnd)}
          </dd>
          <dt>State</dt>
          <dd>
            <StateBadge kind="window" state={w.state} />
          </dd>
          <dt>Amount given up</dt>
          <dd>{formatMoney(amount, w.currency)}</dd>
          <dt>Tries</dt>
          <dd>{w.chargeAttempt?.tries ?? 0}</dd>
          <dt>Latest failure</dt>
          <dd>{w.chargeAttempt?.lastFailure ? `${w.chargeAttempt.lastFailure.code ?? ''} ${w.chargeAttempt.lastFailure.message ?? ''}` : '—'}</dd>
        </dl>
        <Form method="post" className="manage-form">
          <SubmissionKey />
          <input type="hidden" name="intent" value="write-off" />
          <ErrorList id="write-off-errors" errors={actionData ? [actionData.error] : null} />
          <div className="field">
            <label htmlFor="write-off-reason">Reason</label>
            <input id="write-off-reason" name="reason" type="text" required maxLength={500} aria-describedby="write-off-errors" />
          </div>
          <button type="submit" className="button button-danger">
            Write off
          </button>
        </Form>
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
