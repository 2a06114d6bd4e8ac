import { Link, useNavigation } from 'react-router';
import type { Route } from './+types/_desk.telemetry';
import { SeriesTable, TimeSeriesChart, type ChartSeries } from '../components/desk-charts';
import { DeskTable } from '../components/desk-table';
import { GeneralErrorBoundary } from '../components/error-boundary';
import { OpsEventGroups } from '../components/ops-event-groups';
import { opsSeriesRows, TELEMETRY_RANGES, TelemetryPresenter, type TelemetryRange } from '../billing/overview';
import { RUNBOOKS } from '../billing/runbooks';
import { getServices } from '../server/desk-context';
import { formatTimestamp } from '../utils/misc';
import { requireUserWithPermission } from '../utils/permissions.server';
import { parseTelemetryRange } from './_desk.telemetry.server';
import { DeskCount } from '../components/desk-count';
import { readDeskCountFor } from '../billing/overview';

export const meta: Route.MetaFunction = () => [{ title: 'Telemetry · Meterdesk' }];

export async function loader({ request, context }: Route.LoaderArgs) {
  await requireUserWithPermission(request, context, 'read:meter-event:any');
  const url = new URL(request.url);
  const range = parseTelemetryRange(url);
  const { pool } = getServices(context);
  const [telemetry, deskCount] = await Promise.all([TelemetryPresenter.call(pool, { range }), readDeskCountFor(pool, url)]);
  return { ...telemetry, deskCount, ops: opsSeriesRows(telemetry.series) };
}

export default function TelemetryPage({ loaderData }: Route.ComponentProps) {
  const { range, from, to, bucketHours, ops, types, groups, deskCount } = loaderData;
  const navigation = useNavigation();
  const loading = navigation.state === 'loading' && navigation.location.pathname === '/telemetry';
  const series: ChartSeries[] = ops.types.map((t) => ({ key: t, label: RUNBOOKS[t].title }));
  const rangeLabel = TELEMETRY_RANGES[range].label;
  return (
    <>
      <h1>Telemetry</h1>
      <p className="lede">
        Ops events: what went wrong between usage and money, by type and time, each with its runbook. {rangeLabel.toLowerCase()}:{' '}
        {formatTimestamp(from)} → {formatTimestamp(to)}.
      </p>
      <DeskCount line={deskCount} />

      <nav aria-label="Time range" className="tabs">
        {(Object.keys(TELEMETRY_RANGES) as TelemetryRange[]).map((r) => (
          <Link key={r} to={`/telemetry?range=${r}`} aria-current={r === range ? 'page' : undefined}>
            {TELEMETRY_RANGES[r].label}
          </Link>
        ))}
      </nav>

      <section aria-labelledby="series-heading" className="panel" aria-busy={loading}>
        <h2 id="series-heading">Ops events over time</h2>
        {ops.types.length === 0 ? (
          <p className="empty">No ops events in this range.</p>
        ) : (
          <>
            <p className="muted">Per {bucketHours === 1 ? 'hour' : `${bucketHours} hours`} (UTC), stacked by type.</p>
            <TimeSeriesChart kind="bar" stacked label={`Ops events by type, ${rangeLabel.toLowerCase()}`} data={ops.rows} series={series} bucketHours={bucketHours} />
            <SeriesTable caption="Ops events by type" data={ops.rows} series={series} bucketHours={bucketHours} />
          </>
        )}
      </section>

      <section aria-labelledby="types-heading" className="panel">
        <h2 id="types-heading">Open and resolved, by type</h2>
        <DeskTable
          label="Ops events by type"
          cards
          rows={types}
          rowKey={(t) => t.type}
          columns={[
            { header: 'Type', rowHeader: true, cell: (t) => <code>{t.type}</code> },
            { header: 'Open', numeric: true, cell: (t) => t.open.toLocaleString('en-US') },
            { header: 'Resolved', numeric: true, cell: (t) => t.resolved.toLocaleString('en-US') },
            { header: 'Last seen', cell: (t) => (t.lastAt ? formatTimestamp(t.lastAt) : <span className="muted">not in this range</span>) },
            { header: 'Runbook', cell: (t) => <a href={`#runbook-${t.type}`}>{RUNBOOKS[t.type].title}</a> },
          ]}
        />
      </section>

      <section aria-labelledby="groups-heading" className="panel">
        <h2 id="groups-heading">Ops events by type, processor and source</h2>
        {groups.length === 0 ? (
          <p className="empty">No ops events in this range.</p>
        ) : (
          <>
            <p className="muted">The group seen last first. Open a group for its latest events, their subjects and the runbook.</p>
            <OpsEventGroups groups={groups} label="Ops event groups" />
          </>
        )}
      </section>

      <section aria-labelledby="runbooks-heading">
        <h2 id="runbooks-heading">Runbooks</h2>
        {types.map((t) => {
          const rb = RUNBOOKS[t.type];
          return (
            <article key={t.type} id={`runbook-${t.type}`} className="panel" aria-labelledby={`runbook-${t.type}-heading`}>
              <h3 id={`runbook-${t.type}-heading`}>
                {rb.title} <code className="muted">{t.type}</code>
              </h3>
              <p>
                {t.open > 0 ? <span className="badge badge-off">{t.open.toLocaleString('en-US')} open</span> : <span className="badge badge-on">none open</span>}{' '}
                <span className="muted">in this range</span>
              </p>
              <h4>What happened</h4>
              <p>{rb.what}</p>
              <h4>What to check</h4>
              <ul>
                {rb.check.map((c) => (
                  <li key={c}>{c}</li>
                ))}
              </ul>
              <h4>What fixes it</h4>
              <p>{rb.fix}</p>
              <p>
                <Link to={rb.action.href} className="button button-primary">
                  {rb.action.label}
                  <span className="visually-hidden"> ({rb.title})</span>
                </Link>
              </p>
            </article>
          );
        })}
      </section>
    </>
  );
}

export function ErrorBoundary({ error }: Route.ErrorBoundaryProps) {
  return <GeneralErrorBoundary error={error} />;
}
