import { Link } from 'react-router';
import type { Route } from './+types/_index';
import { SeriesTable, TimeSeriesChart, type ChartSeries } from '../components/desk-charts';
import { DeskTable } from '../components/desk-table';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { OpsEventGroups } from '../components/ops-event-groups';
import { formatBoundedCount, opsSeriesRows, OverviewPresenter } from '../billing/overview';
import { runbookFor } from '../billing/runbooks';
import { StateBadge } from '../components/state-badge';
import { getServices } from '../server/desk-context';
import { formatTimestamp } from '../utils/misc';
import { requireUserWithPermission } from '../utils/permissions.server';
import { readOpenFirings } from '../presenters/alerts';

export const meta: Route.MetaFunction = () => [
  { title: 'Overview · Meterdesk' },
  { name: 'description', content: 'Live counts and the last 24 hours of usage events and ops events.' },
];

export async function loader({ request, context }: Route.LoaderArgs) {
  await requireUserWithPermission(request, context, 'read:meter-event:any');
  const pool = getServices(context).pool;
  const [overview, firing] = await Promise.all([OverviewPresenter.call(pool), readOpenFirings(pool)]);
  return { ...overview, ops: opsSeriesRows(overview.opsEvents), firing };
}

const EVENT_SERIES: ChartSeries[] = [
  { key: 'accepted', label: 'Accepted' },
  { key: 'reported', label: 'Reported' },
  { key: 'failed', label: 'Failed' },
];

export default function OverviewPage({ loaderData }: Route.ComponentProps) {
  const { counts, events, ops, openGroups, generatedAt, firing } = loaderData;
  const eventRows = events.map((p) => ({ ...p }));
  const opsSeries: ChartSeries[] = ops.types.map((t) => ({ key: t, label: runbookFor(t)?.title ?? t }));
  return (
    <>
      <h1>Overview</h1>
      <p className="lede">Live counts as of {formatTimestamp(generatedAt)}, and the last 24 hours by the hour.</p>

      {firing.length > 0 ? (
        <section aria-labelledby="alerts-heading" className="panel">
          <h2 id="alerts-heading">Alerts firing</h2>
          <DeskTable
            label="Alerts firing"
            rows={firing}
            rowKey={(f) => f.id}
            columns={[
              { header: 'Rule', rowHeader: true, cell: (f) => <Link to="/alerts">{f.ruleName}</Link> },
              { header: 'What fired it', cell: (f) => f.summary },
              { header: 'Since', cell: (f) => formatTimestamp(f.firedAt) },
            ]}
          />
        </section>
      ) : null}

      <section aria-labelledby="counts-heading" className="panel">
        <h2 id="counts-heading">Needs attention</h2>
        <div style={{ display: 'grid', gap: '1rem', gridTemplateColumns: 'repeat(auto-fit, minmax(14rem, 1fr))' }}>
          <dl style={{ margin: 0 }}>
            {counts.attention.map((c) => (
              <CountItem key={c.key} countKey={c.key} label={c.label} value={formatBoundedCount(c.count)} to={c.to} />
            ))}
          </dl>
          <DeskTable
            label="Windows by state"
            caption="Windows by state"
            rows={counts.windows}
            rowKey={(w) => w.state}
            columns={[
              {
                header: 'State',
                rowHeader: true,
                cell: (w) => (
                  <Link to={w.to}>
                    <StateBadge kind="window" state={w.state} />
                  </Link>
                ),
              },
              { header: 'Windows', numeric: true, cellData: (w) => ({ 'data-count': w.key }), cell: (w) => formatBoundedCount(w.count) },
            ]}
          />
        </div>
      </section>

      <section aria-labelledby="events-chart-heading" className="panel">
        <h2 id="events-chart-heading">Usage events, last 24 hours</h2>
        <p className="muted">Per hour (UTC): accepted into the ledger, reported to Stripe, and moved to failed. Counted once a minute from the ledger.</p>
        <TimeSeriesChart kind="line" label="Usage events accepted, reported and failed per hour over the last 24 hours" data={eventRows} series={EVENT_SERIES} bucketHours={1} />
        <SeriesTable caption="Usage events per hour" data={eventRows} series={EVENT_SERIES} bucketHours={1} />
      </section>

      <section aria-labelledby="ops-chart-heading" className="panel">
        <h2 id="ops-chart-heading">Ops events, last 24 hours</h2>
        {ops.types.length === 0 ? (
          <p className="empty">No ops events in the last 24 hours.</p>
        ) : (
          <>
            <TimeSeriesChart kind="bar" stacked label="Ops events per hour over the last 24 hours, by type" data={ops.rows} series={opsSeries} bucketHours={1} />
            <SeriesTable caption="Ops events per hour" data={ops.rows} series={opsSeries} bucketHours={1} />
          </>
        )}
        <p>
          <Link to="/telemetry">Telemetry: every type, its runbook and the action that fixes it</Link>
        </p>
      </section>

      <section aria-labelledby="open-heading" className="panel">
        <h2 id="open-heading">Latest open ops events</h2>
        {openGroups.length === 0 ? (
          <p className="empty">No open ops events in the last 7 days.</p>
        ) : (
          <>
            <p className="muted">The last 7 days, grouped by type, processor and source, the group seen last first. Open a group for its latest open events.</p>
            <OpsEventGroups groups={openGroups} label="Latest open ops events" openOnly />
          </>
        )}
      </section>
    </>
  );
}

function CountItem({ countKey, label, value, to }: { countKey: string; label: string; value: string; to: string }) {
  return (
    <div style={{ display: 'flex', justifyContent: 'space-between', gap: '1rem', padding: '0.35rem 0', borderBottom: '1px solid var(--rule)' }}>
      <dt>
        <Link to={to}>{label}</Link>
      </dt>
      <dd style={{ margin: 0, fontWeight: 600, fontVariantNumeric: 'tabular-nums' }} data-count={countKey}>
        {value}
      </dd>
    </div>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
