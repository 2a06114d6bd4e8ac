import { data, Form, Link } from 'react-router';
import { z } from 'zod';
import type { Route } from './+types/_desk.windows.$windowId';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { ErrorList } from '../components/forms';
import { InvoiceLinesTable } from '../components/invoice-lines';
import { NotFoundError, StateError } from '../billing/errors';
import { windowActions } from '../billing/windows/actions';
import { reauthorWindow } from '../billing/windows/invoices';
import { settleAgain } from '../billing/windows/settlement';
import type { WindowState } from '../billing/windows/types';
import { getServices } from '../server/desk-context';
import { redirectWithToast } from '../utils/flash.server';
import { formatMoney, formatUnitPrice } from '../utils/money';
import { formatTimestamp, invariantResponse } from '../utils/misc';
import { actorOf, requireUserWithPermission, userHasPermission } from '../utils/permissions.server';
import { loadWindowDetail } from '../presenters/windows';
import { StateBadge } from '../components/state-badge';
import { onceForSubmission } from '../utils/submissions.server';
import { SubmissionKey } from '../components/submission-key';

export const meta: Route.MetaFunction = () => [{ title: 'Window · Meterdesk' }];

const reason = z.string().trim().max(500, 'Keep the reason under 500 characters');
const WindowActionSchema = z.discriminatedUnion('intent', [
  z.object({ intent: z.literal('reauthor'), reason: reason.min(1, 'Say why the invoice is re-authored') }),
  z.object({ intent: z.literal('settle-again'), reason: reason.optional(), overrideHardDecline: z.literal('on').optional() }),
]);

export async function loader({ request, params, context }: Route.LoaderArgs) {
  const user = await requireUserWithPermission(request, context, 'read:meter-event:any');
  const window = await loadWindowDetail(getServices(context).pool, params.windowId);
  invariantResponse(window, 'No window with this id.', { status: 404 });
  return {
    window,
    canRepair: userHasPermission(user, 'repair:window:any'),
    canWriteOff: userHasPermission(user, 'write-off:charge:any'),
    canReadInvoices: userHasPermission(user, 'read:invoice:any'),
    // The same verdicts the actions refuse with (app/billing/windows/actions.ts): a button is offered only where its
    // action can succeed, otherwise the reason is shown. From the loader: the domain stays out of the browser bundle.
    actions: windowActions({
      state: window.state as WindowState,
      saleTries: window.chargeAttempt?.tries ?? 0,
      chargeStatus: window.chargeAttempt?.status ?? null,
      lastFailureCode: window.chargeAttempt?.lastFailure?.code ?? null,
    }),
  };
}

// A double click or a resent form runs this once (app/utils/submissions.server.ts).
export async function action(args: Route.ActionArgs) {
  return onceForSubmission(args.request, args.context, () => act(args));
}

async function act({ request, params, context }: Route.ActionArgs) {
  const user = await requireUserWithPermission(request, context, 'repair:window:any');
  // Not a window id at all: the same 404 as an unknown one (the domain's queries would fail on it).
  invariantResponse(z.uuid().safeParse(params.windowId).success, 'No window with this id.', { status: 404 });
  const form = Object.fromEntries(await request.formData());
  const intent = typeof form.intent === 'string' ? form.intent : '';
  const parsed = WindowActionSchema.safeParse(form);
  if (!parsed.success) {
    return data({ intent, error: parsed.error.issues.map((i) => i.message).join('; ') }, { status: 400 });
  }
  const { pool } = getServices(context);
  const input = parsed.data;
  const to = `/windows/${params.windowId}`;
  try {
    if (input.intent === 'reauthor') {
      const r = await reauthorWindow(pool, { windowId: params.windowId, actor: actorOf(user), reason: input.reason });
      return redirectWithToast(to, context, {
        title: `Invoice re-authored (revision ${r.invoice.revision})`,
        description: `Total ${formatMoney(r.invoice.totalMinor, r.invoice.currency)}, was ${formatMoney(r.before.totalMinor, r.invoice.currency)}.${
          r.addedPrices.length ? ` Prices added: ${r.addedPrices.join(', ')}.` : ''
        }`,
      });
    }
    const r = await settleAgain(pool, {
      windowId: params.windowId,
      actor: actorOf(user),
      reason: input.reason || null,
      overrideHardDecline: input.overrideHardDecline === 'on',
    });
    return redirectWithToast(to, context, { title: 'Settlement queued', description: `The window is ${r.state} with a fresh retry budget.` });
  } catch (error) {
    if (error instanceof StateError) return data({ intent, error: error.message }, { status: 400 });
    if (error instanceof NotFoundError) throw data('No window with this id.', { status: 404 });
    throw error;
  }
}

export default function WindowPage({ loaderData, actionData }: Route.ComponentProps) {
  const { window: w, canRepair, canWriteOff, canReadInvoices, actions } = loaderData;
  const a = w.chargeAttempt;
  const errorFor = (intent: string) => (actionData && actionData.intent === intent ? [actionData.error] : null);
  const hardDeclined = actions.settleAgain.needsOverride;
  return (
    <>
      <p>
        <Link to="/windows">← Windows</Link>
      </p>
      <h1>
        Window of {w.customerLabel}
        <span className="muted block">
          {formatTimestamp(w.periodStart)} → {formatTimestamp(w.periodEnd)}
        </span>
      </h1>
      <section aria-labelledby="summary-heading" className="panel">
        <h2 id="summary-heading">Summary</h2>
        <dl className="stack">
          <dt>State</dt>
          <dd>
            <StateBadge kind="window" state={w.state} />
            {w.staleRepaired ? <span className="badge badge-off">repaired stale</span> : null}
          </dd>
          <dt>Subscription</dt>
          <dd>
            <code>{w.processorSubscriptionId}</code>
          </dd>
          <dt>Closed</dt>
          <dd>{formatTimestamp(w.closedAt)}</dd>
          <dt>Paid</dt>
          <dd>{formatTimestamp(w.paidAt)}</dd>
          <dt>Events not billed</dt>
          <dd>
            {w.unmatchedEvents} unmatched (no definition), {w.unusableEvents} unusable
          </dd>
        </dl>
      </section>

      <section aria-labelledby="invoice-heading" className="panel">
        <h2 id="invoice-heading">Invoice</h2>
        {w.invoice ? (
          <>
            <p>
              Revision {w.invoice.revision}, authored {formatTimestamp(w.invoice.authoredAt)}
              {canReadInvoices ? (
                <>
                  {' · '}
                  <Link to={`/invoices/${w.invoice.id}`}>Open the invoice</Link>
                </>
              ) : null}
            </p>
            <InvoiceLinesTable lines={w.invoice.lines} currency={w.currency} totalMinor={w.invoice.totalMinor} label="Invoice lines" />
          </>
        ) : (
          <p className="empty">{w.state === 'open' ? 'The invoice is authored when the period ends.' : 'No invoice.'}</p>
        )}
      </section>

      <section aria-labelledby="charge-heading" className="panel">
        <h2 id="charge-heading">Charge attempt</h2>
        {a ? (
          <dl className="stack">
            <dt>Status</dt>
            <dd>
              <StateBadge kind="charge" state={a.status} />
            </dd>
            <dt>Amount</dt>
            <dd>{formatMoney(a.amountMinor, w.currency)}</dd>
            <dt>Tries</dt>
            <dd>{a.tries}</dd>
            <dt>Order id</dt>
            <dd>
              <code>{a.orderId}</code>
            </dd>
            <dt>Transaction id</dt>
            <dd>{a.transactionId ? <code>{a.transactionId}</code> : '—'}</dd>
            <dt>Original failure</dt>
            <dd>{a.firstFailure ? `${a.firstFailure.code ?? ''} ${a.firstFailure.message ?? ''} (${formatTimestamp(a.firstFailure.at)})` : '—'}</dd>
            <dt>Latest failure</dt>
            <dd>{a.lastFailure ? `${a.lastFailure.code ?? ''} ${a.lastFailure.message ?? ''} (${formatTimestamp(a.lastFailure.at)})` : '—'}</dd>
            <dt>Next retry</dt>
            <dd>{formatTimestamp(a.nextRetryAt)}</dd>
            <dt>Last sent</dt>
            <dd>{formatTimestamp(a.lastSentAt)}</dd>
          </dl>
        ) : (
          <p className="empty">No charge attempted yet.</p>
        )}
      </section>

      <section aria-labelledby="snapshot-heading" className="panel">
        <h2 id="snapshot-heading">Price snapshot</h2>
        {w.snapshot.length === 0 ? (
          <p className="empty">No prices were in force for this plan.</p>
        ) : (
          <div className="table-scroll" role="region" aria-label="Snapshot prices" tabIndex={0}>
            <table className="data-table">
              <thead>
                <tr>
                  <th scope="col">Meter</th>
                  <th scope="col">Aggregation</th>
                  <th scope="col">Unit price</th>
                  <th scope="col">Per units</th>
                  <th scope="col">Rounding</th>
                </tr>
              </thead>
              <tbody>
                {w.snapshot.map((p) => (
                  <tr key={p.eventName}>
                    <th scope="row">
                      <code>{p.eventName}</code>
                      {p.displayName !== p.eventName ? <span className="muted block">{p.displayName}</span> : null}
                    </th>
                    <td>{p.aggregation}</td>
                    <td className="numeric">{formatUnitPrice(p.unitAmountDecimal, p.currency, p.perUnits)}</td>
                    <td className="numeric">{p.perUnits}</td>
                    <td>{p.rounding}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      {canRepair || canWriteOff ? (
        <section aria-labelledby="actions-heading" className="panel">
          <h2 id="actions-heading">Actions</h2>
          {canRepair ? (
            <>
              {actions.reauthor.allowed ? (
                <Form method="post" className="manage-form" aria-labelledby="reauthor-heading">
                  <SubmissionKey />
                  <h3 id="reauthor-heading">Re-author the invoice</h3>
                  <p className="field-help">Classifies the window's events again and adds prices for event names the snapshot lacked.</p>
                  <input type="hidden" name="intent" value="reauthor" />
                  <ErrorList id="reauthor-errors" errors={errorFor('reauthor')} />
                  <div className="field">
                    <label htmlFor="reauthor-reason">Reason</label>
                    <input id="reauthor-reason" name="reason" type="text" required maxLength={500} aria-describedby="reauthor-errors" />
                  </div>
                  <button type="submit" className="button button-secondary">
                    Re-author invoice
                  </button>
                </Form>
              ) : (
                <section aria-labelledby="reauthor-heading" className="manage-form">
                  <h3 id="reauthor-heading">Re-author the invoice</h3>
                  <p className="muted">{actions.reauthor.reason}</p>
                </section>
              )}
              {actions.settleAgain.allowed ? (
                <Form method="post" className="manage-form" aria-labelledby="settle-heading">
                  <SubmissionKey />
                  <h3 id="settle-heading">Settle again</h3>
                  <p className="field-help">Starts a fresh retry budget and queues the charge now.</p>
                  <input type="hidden" name="intent" value="settle-again" />
                  <ErrorList id="settle-errors" errors={errorFor('settle-again')} />
                  <div className="field">
                    <label htmlFor="settle-reason">Reason (optional)</label>
                    <input id="settle-reason" name="reason" type="text" maxLength={500} aria-describedby="settle-errors" />
                  </div>
                  {hardDeclined ? (
                    <div className="field">
                      <label>
                        <input type="checkbox" name="overrideHardDecline" /> Charge again despite the hard decline ({a?.lastFailure?.code ?? 'no code'})
                      </label>
                    </div>
                  ) : null}
                  <button type="submit" className="button button-secondary">
                    Settle again
                  </button>
                </Form>
              ) : (
                <section aria-labelledby="settle-heading" className="manage-form">
                  <h3 id="settle-heading">Settle again</h3>
                  <p className="muted">{actions.settleAgain.reason}</p>
                </section>
              )}
            </>
          ) : null}
          {canWriteOff ? (
            <p>
              {actions.writeOff.allowed ? (
                <Link to={`/windows/${w.id}/write-off`} className="button button-danger">
                  Write off this charge
                </Link>
              ) : (
                <span className="muted">{actions.writeOff.reason}</span>
              )}
            </p>
          ) : null}
        </section>
      ) : null}
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
