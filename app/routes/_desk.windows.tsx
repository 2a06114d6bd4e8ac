import { data, Form, Link, useNavigation } from 'react-router';
import { z } from 'zod';
import type { Route } from './+types/_desk.windows';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { ErrorList } from '../components/forms';
import { StateError } from '../billing/errors';
import { getServices } from '../server/desk-context';
import { redirectWithToast } from '../utils/flash.server';
import { formatMoney } from '../utils/money';
import { formatTimestamp } from '../utils/misc';
import { actorOf, requireUserWithPermission, userHasPermission } from '../utils/permissions.server';
import { repairStaleWindow } from '../billing/windows/stale-repair';
import { listStaleRenewals, listWindows, parseWindowFilters } from '../presenters/windows';
import { StateBadge } from '../components/state-badge';
import { stateOptions } from '../billing/states';
import { DeskTable, FilterBar, FilterSelect, KeysetPager, Missing } from '../components/desk-table';
import { DeskCount } from '../components/desk-count';
import { readDeskCountFor } from '../billing/overview';
import { onceForSubmission } from '../utils/submissions.server';
import { SubmissionKey } from '../components/submission-key';

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

// A double click or a resent form runs this once (app/utils/submissions.server.ts).
export async function action(args: Route.ActionArgs) {
  return onceForSubmission(args.request, args.context, () => act(args));
}

async function act({ request, context }: Route.ActionArgs) {
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
            <DeskTable
              label="Stale subscriptions"
              cards
              rows={stale}
              rowKey={(s) => s.subscriptionId}
              columns={[
                { header: 'Customer', rowHeader: true, cell: (s) => s.customerLabel },
                {
                  header: 'Subscription',
                  cell: (s) => (
                    <>
                      <code>{s.processorSubscriptionId}</code> <StateBadge kind="subscription" state={s.status} />
                    </>
                  ),
                },
                { header: 'Period', cell: (s) => `${formatTimestamp(s.periodStart)} → ${formatTimestamp(s.periodEnd)}` },
                { header: 'Flag', cell: () => <span className="badge badge-off">stale</span> },
                {
                  header: 'Action',
                  cell: (s) =>
                    canRepair ? (
                      <Form method="post" className="manage-form">
                        <SubmissionKey />
                        <input type="hidden" name="intent" value="repair-stale" />
                        <input type="hidden" name="subscriptionId" value={s.subscriptionId} />
                        {actionData && actionData.target === s.subscriptionId ? <ErrorList id={`repair-${s.subscriptionId}-error`} errors={[actionData.error]} /> : null}
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
                    ),
                },
              ]}
            />
          </>
        )}
      </section>

      <section aria-labelledby="windows-heading" aria-busy={loading}>
        <h2 id="windows-heading">Windows by state</h2>
        <FilterBar filtered={state !== ''} clearTo="/windows" formKey={state} applyText="Apply filter">
          <FilterSelect id="windows-state" name="state" label="State" value={state} anyLabel="Any state" options={stateOptions('window')} />
        </FilterBar>
        <DeskTable
          label="Windows"
          cards
          rows={page.windows}
          rowKey={(w) => w.id}
          empty={state ? 'No windows in this state.' : 'No windows yet.'}
          columns={[
            { header: 'Customer', rowHeader: true, cell: (w) => w.customerLabel },
            { header: 'Period', cell: (w) => `${formatTimestamp(w.periodStart)} → ${formatTimestamp(w.periodEnd)}` },
            {
              header: 'State',
              cell: (w) => (
                <>
                  <StateBadge kind="window" state={w.state} />
                  {w.staleRepaired ? (
                    <span className="badge badge-off" title="Opened by the stale-renewal repair">
                      repaired stale
                    </span>
                  ) : null}
                </>
              ),
            },
            { header: 'Invoice total', numeric: true, cell: (w) => (w.totalMinor === null ? <Missing /> : formatMoney(w.totalMinor, w.currency)) },
            {
              header: 'Charge',
              cell: (w) => (
                <>
                  {w.chargeStatus ? <StateBadge kind="charge" state={w.chargeStatus} /> : <span className="muted">none</span>}
                  {w.nextRetryAt ? <span className="muted block">retry {formatTimestamp(w.nextRetryAt)}</span> : null}
                </>
              ),
            },
            {
              header: 'Window',
              cell: (w) => (
                <Link to={`/windows/${w.id}`}>
                  Details<span className="visually-hidden"> of the window of {w.customerLabel} ending {formatTimestamp(w.periodEnd)}</span>
                </Link>
              ),
            },
          ]}
        />
        <KeysetPager label="Window pages" path="/windows" filters={{ state }} newer={page.newer} older={page.older} newerText="Later periods" olderText="Earlier periods" />
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
