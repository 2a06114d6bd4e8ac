import { useEffect } from 'react';
import { SubmissionKey } from '../components/submission-key';
import { onceForSubmission } from '../utils/submissions.server';
import { data, Form, Link, useNavigation, useRevalidator } from 'react-router';
import type { Route } from './+types/_desk.reconciliation';
import { DeskTable, Missing, type Column } from '../components/desk-table';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { ErrorList } from '../components/forms';
import { ReconciliationPresenter, requestReconciliation, type ProcessorCheck } from '../billing/reconciliation';
import { getServices } from '../server/desk-context';
import { redirectWithToast } from '../utils/flash.server';
import { formatTimestamp } from '../utils/misc';
import { actorOf, requireUserWithPermission, userHasPermission } from '../utils/permissions.server';
import { findingView, RunSchema } from './_desk.reconciliation.server';

export const meta: Route.MetaFunction = () => [{ title: 'Reconciliation · Meterdesk' }];

export async function loader({ request, context }: Route.LoaderArgs) {
  const user = await requireUserWithPermission(request, context, 'read:invoice:any');
  const page = await ReconciliationPresenter.call(getServices(context).pool);
  return { ...page, findings: page.findings.map(findingView), canRun: userHasPermission(user, 'run:reconciliation:any') };
}

// A double click or a resent form queues one run (app/utils/submissions.server.ts).
export async function action(args: Route.ActionArgs) {
  return onceForSubmission(args.request, args.context, () => act(args));
}

async function act({ request, context }: Route.ActionArgs) {
  const user = await requireUserWithPermission(request, context, 'run:reconciliation:any');
  const parsed = RunSchema.safeParse(Object.fromEntries(await request.formData()));
  if (!parsed.success) return data({ errors: parsed.error.issues.map((i) => i.message) }, { status: 400 });
  await requestReconciliation(getServices(context).pool, { actor: actorOf(user), reason: parsed.data.reason || null });
  return redirectWithToast('/reconciliation', context, {
    title: 'Reconciliation queued',
    description: 'The worker runs it now; this page shows the result when it finishes.',
  });
}

const TRIGGERS: Record<string, string> = { schedule: 'the schedule', desk: 'the desk', cli: 'the command line' };
const plural = (n: number, one: string, many = `${one}s`) => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

function checkText(check: ProcessorCheck | null, unit: string, units: string) {
  if (!check) return <span className="muted">not checked (the processor is not configured where the run happened)</span>;
  return (
    <>
      {`${plural(check.checked, unit, units)} compared`}
      {check.skipped ? <span className="muted">{`, ${check.skipped.toLocaleString('en-US')} left for a later run (work in flight)`}</span> : null}
      {check.errors ? <span className="muted">{`, ${check.errors.toLocaleString('en-US')} not compared (processor error)`}</span> : null}
    </>
  );
}

type Finding = Route.ComponentProps['loaderData']['findings'][number];
type Run = Route.ComponentProps['loaderData']['recent'][number];

const FINDING_COLUMNS: Column<Finding>[] = [
  {
    header: 'Customer',
    rowHeader: true,
    cell: (f) => (
      <>
        <Link to={`/customers/${f.customerId}`}>{f.customerLabel}</Link>
        <span className="muted block">{f.processor === 'stripe' ? 'Stripe' : 'Braintree'}</span>
      </>
    ),
  },
  {
    header: 'Meter or window',
    cell: (f) =>
      f.windowId ? (
        <Link to={`/windows/${f.windowId}`}>
          Window<span className="visually-hidden"> of {f.customerLabel}</span>
        </Link>
      ) : (
        <code>{f.eventName}</code>
      ),
  },
  {
    header: 'Period',
    cell: (f) => (f.windowId ? `${formatTimestamp(f.periodStart)} → ${formatTimestamp(f.periodEnd)}` : `${f.periodStart.slice(0, 10)} (UTC day)`),
  },
  {
    header: 'Ledger',
    numeric: true,
    cell: (f) => (
      <>
        {f.ledgerText}
        <span className="muted block">{plural(f.ledgerCount, f.windowId ? 'charge' : 'event')}</span>
      </>
    ),
  },
  {
    header: 'Processor',
    numeric: true,
    cell: (f) => (
      <>
        {f.processorText}
        {f.processorCount !== null ? <span className="muted block">{plural(f.processorCount, f.windowId ? 'sale' : 'event')}</span> : null}
      </>
    ),
  },
  { header: 'Difference', numeric: true, cell: (f) => f.differenceText },
  {
    header: 'Kind and what to do',
    cardLabel: 'Kind',
    cell: (f) => (
      <>
        {f.kindLabel}
        <span className="muted block">
          <code>{f.kind}</code>
        </span>
        <span className="block">{f.hint.meaning}</span>
        <span className="block">{f.hint.todo}</span>
        <Link to={f.hint.action.href} className="block">
          {f.hint.action.label}
          <span className="visually-hidden">{` (${f.customerLabel})`}</span>
        </Link>
      </>
    ),
  },
  {
    header: 'Ops event',
    cell: (f) =>
      f.opsEventId ? f.opsEventOpen ? <span className="badge badge-off">open</span> : <span className="badge badge-on">resolved</span> : <Missing />,
  },
];

const RUN_COLUMNS: Column<Run>[] = [
  { header: 'Started', rowHeader: true, cell: (r) => formatTimestamp(r.startedAt) },
  { header: 'By', cell: (r) => TRIGGERS[r.trigger] ?? r.trigger },
  {
    header: 'Outcome',
    cell: (r) => (r.status === 'running' ? 'running' : r.status === 'failed' ? `failed: ${r.error ?? 'unknown error'}` : r.driftCount === 0 ? 'zero drift' : 'drift found'),
  },
  { header: 'Differences', numeric: true, cell: (r) => r.driftCount.toLocaleString('en-US') },
  { header: 'Resolved', numeric: true, cell: (r) => r.resolvedCount.toLocaleString('en-US') },
];

export default function ReconciliationPage({ loaderData, actionData }: Route.ComponentProps) {
  const { last, running, queuedAt, findings, recent, canRun, openDrift } = loaderData;
  const navigation = useNavigation();
  const submitting = navigation.state === 'submitting' && navigation.formData?.get('intent') === 'run';
  const revalidator = useRevalidator();
  const busy = running !== null || queuedAt !== null;
  // A queued or running run: look again every 3 s until it has finished.
  useEffect(() => {
    if (!busy) return;
    const timer = setInterval(() => {
      if (revalidator.state === 'idle') void revalidator.revalidate();
    }, 3000);
    return () => clearInterval(timer);
  }, [busy, revalidator]);

  return (
    <>
      <h1>Reconciliation</h1>
      <p className="lede">
        Does each processor hold what the ledger says? Stripe: every customer’s reported usage per meter and UTC day against Stripe’s meter event
        summaries. Braintree: every window’s charge against the sales found by its order id. It runs every 15 minutes; each difference raises a{' '}
        <Link to="/telemetry#runbook-ledger_drift">
          <code>ledger_drift</code>
        </Link>{' '}
        ops event, resolved when a later run finds it gone.
      </p>

      <section aria-labelledby="last-run-heading" className="panel" aria-busy={busy}>
        <h2 id="last-run-heading">Last run</h2>
        <p role="status" aria-live="polite">
          {running ? (
            <>
              A run is in progress (started {formatTimestamp(running.startedAt)} by {TRIGGERS[running.trigger] ?? running.trigger}).{' '}
              <Link to="/reconciliation">Refresh</Link>
            </>
          ) : queuedAt ? (
            <>
              A run is queued and starts as soon as a worker takes it. <Link to="/reconciliation">Refresh</Link>
            </>
          ) : null}
        </p>
        {last ? (
          <>
            <p className="recon-verdict">
              {last.status === 'failed' ? (
                <span className="badge badge-off">run failed</span>
              ) : last.driftCount === 0 ? (
                <span className="badge badge-on">zero drift</span>
              ) : (
                <span className="badge badge-off">{plural(last.driftCount, 'difference')}</span>
              )}{' '}
              {last.status === 'failed'
                ? `The run stopped before comparing everything: ${last.error ?? 'unknown error'}.`
                : last.driftCount === 0
                  ? 'Zero drift: the ledger and the processors agree on everything compared.'
                  : `The ledger and the processors disagree on ${plural(last.driftCount, 'subject')} (${last.newDriftCount} new since the run before). Each finding below says what it means, what to do and where.`}
            </p>
            <dl className="stack">
              <dt>When</dt>
              <dd>
                {formatTimestamp(last.finishedAt ?? last.startedAt)}, started by {TRIGGERS[last.trigger] ?? last.trigger}
              </dd>
              <dt>Usage period compared</dt>
              <dd>
                {last.periodFrom.slice(0, 10)} to {new Date(Date.parse(last.periodTo) - 86_400_000).toISOString().slice(0, 10)} (UTC days)
              </dd>
              <dt>Stripe</dt>
              <dd>{checkText(last.stripe, 'customer-meter-day', 'customer-meter-days')}</dd>
              <dt>Braintree</dt>
              <dd>{checkText(last.braintree, 'window', 'windows')}</dd>
              <dt>Resolved</dt>
              <dd>{last.resolvedCount ? `${plural(last.resolvedCount, 'earlier difference')} found gone` : 'none'}</dd>
              <dt>Open drift</dt>
              <dd>
                {plural(openDrift, 'open ledger_drift ops event')}
                {openDrift > last.driftCount ? (
                  <span className="muted"> (some from earlier runs, about work this run left for later or days outside its period)</span>
                ) : null}
              </dd>
              {last.error && last.status !== 'failed' ? (
                <>
                  <dt>Processor error</dt>
                  <dd>{last.error}</dd>
                </>
              ) : null}
            </dl>
          </>
        ) : (
          <p className="empty">No reconciliation has finished yet.</p>
        )}
        {canRun ? (
          <Form method="post" className="manage-form">
            <SubmissionKey />
            <input type="hidden" name="intent" value="run" />
            <ErrorList id="run-errors" errors={actionData?.errors} />
            <div className="field">
              <label htmlFor="run-reason">Reason (optional)</label>
              <input id="run-reason" name="reason" type="text" maxLength={500} aria-describedby="run-errors" />
            </div>
            <button type="submit" className="button button-primary" disabled={submitting}>
              {submitting ? 'Queuing…' : 'Run reconciliation now'}
            </button>
          </Form>
        ) : (
          <p className="muted">An operator or an admin can run it now; it also runs on its schedule.</p>
        )}
      </section>

      <section aria-labelledby="findings-heading" className="panel">
        <h2 id="findings-heading">Findings of the last run</h2>
        <DeskTable
          label="Reconciliation findings"
          cards
          caption="Differences between the ledger and the processors, last run"
          hiddenCaption
          rows={findings}
          rowKey={(f) => f.id}
          empty={last ? 'No differences: nothing to act on.' : 'Nothing yet.'}
          columns={FINDING_COLUMNS}
        />
      </section>

      <section aria-labelledby="recent-heading" className="panel">
        <h2 id="recent-heading">Recent runs</h2>
        <DeskTable label="Recent reconciliation runs" cards rows={recent} rowKey={(r) => r.id} empty="No runs yet." columns={RUN_COLUMNS} />
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
