import { data, Form, Link, useNavigation } from 'react-router';
import { z } from 'zod';
import type { Route } from './+types/_desk.windows';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { ErrorList } from '../components/forms';
import { StateError } from '../billing/errors';
import { WINDOW_STATES } from '../billing/windows/types';
import { getServices } from '../server/desk-context';
import { redirectWithToast } from '../utils/flash.server';
import { formatMoney } from '../utils/money';
import { formatTimestamp } from '../utils/misc';
import { actorOf, requireUserWithPermission, userHasPermission } from '../utils/permissions.server';
import { repairStaleWindow } from '../billing/windows/stale-repair';
import { listStaleRenewals, listWindows, parseWindowFilters } from '../presenters/windows';
import { StateBadge } from '../components/state-badge';
import { stateWords } from '../billing/states';
import { DeskCount } from '../components/desk-count';
import { readDeskCountFor } from '../billing/overview';

export const meta: Route.MetaFunction = () => [{ title: 'Windows · Meterdesk' }];

const RepairSchema = z.object({
  intent: z.literal('repair-stale'),
  subscriptionId: z.uuid('Unknown subscription'),
  reason: z.string().trim().max(500, 'Keep the reason under 500 characters').optional(),
});

export async function loader({ request, context }: Route.LoaderArgs) {
  const user = await requireUserWithPermission(request, context, 'read:meter-event:any');
  const url = new URL(request.url);
  const filters = parseWindowFilters(url);
  const { pool } = getServices(context);
  const [page, stale, deskCount] = await Promise.all([listWindows(pool, filters), listStaleRenewals(pool), readDeskCountFor(pool, url)]);
  return { page, stale, deskCount, state: filters.state ?? '', canRepair: userHasPermission(user, 'repair:window:any') };
}

export async function action({ request, context }: Route.ActionArgs) {
  const user = await requireUserWithPermission(request, context, 'repair:window:any');
  const form = Object.fromEntries(await request.formData());
  const parsed = RepairSchema.safeParse(form);
  const target = typeof form.subscriptionId === 'string' ? form.subscriptionId : '';
  if (!parsed.success) {
    return data({ target, error: parsed.error.issues.map((i) => i.message).join('; ') }, { status: 400 });
  }
  const result = await repairStaleWindow(getServices(context).pool, actorOf(user), parsed.data).catch((error: unknown) => {
    if (error instanceof StateError) return { status: 'refused' as const, message: error.message };
    throw error;
  });
  if (result.status === 'refused') return data({ target, error: result.message }, { status: 400 });
  if (result.status === 'not_stale') {
    return data({ target, error: 'This subscription is no longer stale: its window exists or its period has not ended. Reload to see it.' }, { status: 400 });
  }
  return redirectWithToast(`/windows/${result.window.id}`, context, {
    title: 'Stale window repaired',
    description: 'The window was opened, its invoice authored and its settlement queued.',
  });
}

export default function WindowsPage({ loaderData, actionData }: Route.ComponentProps) {
  const { page, stale, state, canRepair, deskCount } = loaderData;
  const navigation = useNavigation();
  const loading = navigation.state === 'loading' && navigation.location.pathname === '/windows';
  const pageLink = (cursor: string, direction: 'older' | 'newer') => {
    const params = new URLSearchParams(state ? { state } : {});
    params.set('cursor', cursor);
    params.set('direction', direction);
    return `/windows?${params}`;
  };
  return (
    <>
      <h1>Renewal windows</h1>
      <p className="lede">Braintree renewal windows: one per subscription period, one invoice and at most one sale each.</p>
      <DeskCount line={deskCount} />

      <section aria-labelledby="stale-heading" className="panel">
        <h2 id="stale-heading">Stale renewals</h2>
        {stale.length === 0 ? (
          <p className="empty">No stale renewals: every ended period has its window.</p>
        ) : (
          <>
            <p>These subscriptions' periods ended without a window. The reconciler repairs them on its schedule; repair one now to bill it at once.</p>
            <div className="table-scroll" role="region" aria-label="Stale subscriptions" tabIndex={0}>
              <table className="data-table card-table">
                <thead>
                  <tr>
                    <th scope="col">Customer</th>
                    <th scope="col">Subscription</th>
                    <th scope="col">Period</th>
                    <th scope="col">Flag</th>
                    <th scope="col">Action</th>
                  </tr>
                </thead>
                <tbody>
                  {stale.map((s) => (
                    <tr key={s.subscriptionId}>
                      <th scope="row">{s.customerLabel}</th>
                      <td data-label="Subscription">
                        <code>{s.processorSubscriptionId}</code> <span className="muted">({s.status})</span>
                      </td>
                      <td data-label="Period">
                        {formatTimestamp(s.periodStart)} → {formatTimestamp(s.periodEnd)}
                      </td>
                      <td data-label="Flag">
                        <span className="badge badge-off">stale</span>
                      </td>
                      <td data-label="Action">
                        {canRepair ? (
                          <Form method="post" className="manage-form">
                            <input type="hidden" name="intent" value="repair-stale" />
                            <input type="hidden" name="subscriptionId" value={s.subscriptionId} />
                            {actionData && actionData.target === s.subscriptionId ? (
                              <ErrorList id={`repair-${s.subscriptionId}-error`} errors={[actionData.error]} />
                            ) : null}
                            <div className="field">
                              <label htmlFor={`repair-reason-${s.subscriptionId}`}>Reason (optional)</label>
                              <input id={`repair-reason-${s.subscriptionId}`} name="reason" type="text" maxLength={500} />
                            </div>
                            <button type="submit" className="button button-primary">
                              Repair<span className="visually-hidden"> the stale window of {s.customerLabel}</span>
                            </button>
                          </Form>
                        ) : (
                          <span className="muted">An operator can repair it</span>
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </>
        )}
      </section>

      <section aria-labelledby="windows-heading" aria-busy={loading}>
        <h2 id="windows-heading">Windows by state</h2>
        <Form method="get" className="filters" key={state}>
          <div className="field">
            <label htmlFor="windows-state">State</label>
            <select id="windows-state" name="state" defaultValue={state}>
              <option value="">Any state</option>
              {WINDOW_STATES.map((s) => (
                <option key={s} value={s}>
                  {stateWords('window', s).label}
                </option>
              ))}
            </select>
          </div>
          <div className="form-actions">
            <button type="submit" className="button button-primary">
              Apply filter
            </button>
            {state ? (
              <Link to="/windows" className="button button-quiet">
                Clear
              </Link>
            ) : null}
          </div>
        </Form>
        {page.windows.length === 0 ? (
          <p className="empty">{state ? 'No windows in this state.' : 'No windows yet.'}</p>
        ) : (
          <div className="table-scroll" role="region" aria-label="Windows" tabIndex={0}>
            <table className="data-table card-table">
              <thead>
                <tr>
                  <th scope="col">Customer</th>
                  <th scope="col">Period</th>
                  <th scope="col">State</th>
                  <th scope="col">Invoice total</th>
                  <th scope="col">Charge</th>
                  <th scope="col">Window</th>
                </tr>
              </thead>
              <tbody>
                {page.windows.map((w) => (
                  <tr key={w.id}>
                    <th scope="row">{w.customerLabel}</th>
                    <td data-label="Period">
                      {formatTimestamp(w.periodStart)} → {formatTimestamp(w.periodEnd)}
                    </td>
                    <td data-label="State">
                      <StateBadge kind="window" state={w.state} />
                      {w.staleRepaired ? <span className="badge badge-off" title="Opened by the stale-renewal repair">repaired stale</span> : null}
                    </td>
                    <td data-label="Total" className="numeric">{w.totalMinor === null ? <span className="muted">—</span> : formatMoney(w.totalMinor, w.currency)}</td>
                    <td data-label="Charge">
                      {w.chargeStatus ? <StateBadge kind="charge" state={w.chargeStatus} /> : <span className="muted">none</span>}
                      {w.nextRetryAt ? <span className="muted block">retry {formatTimestamp(w.nextRetryAt)}</span> : null}
                    </td>
                    <td data-label="Window">
                      <Link to={`/windows/${w.id}`}>
                        Details<span className="visually-hidden"> of the window of {w.customerLabel} ending {formatTimestamp(w.periodEnd)}</span>
                      </Link>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <nav aria-label="Window pages" className="pagination">
          {page.newer ? (
            <Link to={pageLink(page.newer, 'newer')} rel="prev">
              ← Later periods
            </Link>
          ) : null}
          {page.older ? (
            <Link to={pageLink(page.older, 'older')} rel="next">
              Earlier periods →
            </Link>
          ) : null}
        </nav>
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
