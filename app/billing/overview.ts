// The desk's overview and telemetry reads. Built to stay fast on a large ledger: live counts are bounded index
// scans (a count stops at COUNT_CAP and shows as "10,000+"), event charts read the pre-aggregated event_rollups
// (app/billing/rollups.ts), and ops-event charts read ops_events over a bounded time range through its
// (type, occurred_at) index. Nothing here scans meter_events.
import { trace } from '@opentelemetry/api';
import type { Queryable } from './db';
import { OPS_EVENT_TYPES, type OpsEventType } from './ops-events';
import { readRollups, type RollupPoint } from './rollups';
import { stateWords } from './states';
import { WINDOW_STATES, type WindowState } from './windows/types';

const tracer = trace.getTracer('meterdesk.overview');

export const COUNT_CAP = 10_000;
const HOUR_MS = 3_600_000;

export interface BoundedCount {
  count: number;
  /** More than COUNT_CAP rows matched; `count` is COUNT_CAP. */
  capped: boolean;
}

function bounded(raw: string | number): BoundedCount {
  const n = Number(raw);
  return n > COUNT_CAP ? { count: COUNT_CAP, capped: true } : { count: n, capped: false };
}

export function formatBoundedCount(c: BoundedCount): string {
  return `${c.count.toLocaleString('en-US')}${c.capped ? '+' : ''}`;
}

/**
 * The desk's attention counts. Each is one predicate on one table, read by the overview and by the page it links to
 * (the same key, the same function: readDeskCounts), so the two never disagree; test/desk/overview-counts.test.ts
 * follows every overview link and compares. The predicates are our own constants, never input.
 */
const EVENT_COUNTS = {
  'events:pending': { label: 'Events pending', table: 'meter_events', where: `status = 'pending'`, to: '/events?status=pending' },
  'events:failed': { label: 'Events failed', table: 'meter_events', where: `status = 'failed'`, to: '/events?status=failed' },
  // Every event stored with no meter, whatever its processor: what the definitions inbox lists (its partial index).
  'events:without-meter': { label: 'Events without a meter', table: 'meter_events', where: 'meter_id IS NULL', to: '/definitions' },
  // `order` only where it helps the plan: for open ops events (nearly all of them, as nothing resolves most types
  // yet) it turns a filtered sequential scan into an index-only scan; on meter_events it made the planner sort.
  'ops:open': { label: 'Open ops events', table: 'ops_events', where: 'resolved_at IS NULL', order: 'resolved_at, occurred_at', to: '/telemetry' },
} as const;

export type WindowCountKey = `windows:${WindowState}`;
export type DeskCountKey = keyof typeof EVENT_COUNTS | WindowCountKey;

interface DeskCount {
  label: string;
  table: string;
  where: string;
  order?: string;
  to: string;
}

export const windowCountKey = (state: WindowState): WindowCountKey => `windows:${state}`;

export const DESK_COUNTS: Record<DeskCountKey, DeskCount> = {
  ...EVENT_COUNTS,
  ...(Object.fromEntries(
    WINDOW_STATES.map((s) => [
      windowCountKey(s),
      { label: `Windows in state “${stateWords('window', s).label}”`, table: 'windows', where: `state = '${s}'`, to: `/windows?state=${s}` },
    ]),
  ) as Record<WindowCountKey, DeskCount>),
};

/** The overview's "needs attention" list, in order. */
export const ATTENTION_KEYS = Object.keys(EVENT_COUNTS) as Array<keyof typeof EVENT_COUNTS>;

/**
 * Each count is `count(*)` over at most COUNT_CAP + 1 index entries: meter_events (status, id) and its partial
 * (event_name) WHERE meter_id IS NULL, windows (state, period_end), ops_events (resolved_at, occurred_at). The values
 * are literals in the SQL: with a parameter the planner cannot see that `unmatched` is rare and may choose a
 * sequential scan that reads the whole ledger to find none.
 */
export async function readDeskCounts<K extends DeskCountKey>(db: Queryable, keys: readonly K[]): Promise<Record<K, BoundedCount>> {
  if (keys.length === 0) return {} as Record<K, BoundedCount>;
  const limit = COUNT_CAP + 1;
  const { rows } = await db.query<Record<string, string>>(
    `SELECT ${keys
      .map((k, i) => {
        const c = DESK_COUNTS[k];
        return `(SELECT count(*) FROM (SELECT 1 FROM ${c.table} WHERE ${c.where}${c.order ? ` ORDER BY ${c.order}` : ''} LIMIT ${limit}) x)::text AS c${i}`;
      })
      .join(',\n       ')}`,
  );
  const row = rows[0] ?? {};
  return Object.fromEntries(keys.map((k, i) => [k, bounded(row[`c${i}`] ?? 0)])) as Record<K, BoundedCount>;
}

/** Parameters that page a list or change the view without changing what is counted. */
const VIEW_PARAMS = new Set(['cursor', 'direction', 'index', 'range']);

const sortedParams = (params: URLSearchParams) =>
  [...params]
    .filter(([k, v]) => v !== '' && !VIEW_PARAMS.has(k))
    .map(([k, v]) => `${k}=${v}`)
    .sort()
    .join('&');

/** The desk count whose overview link is exactly this page (same path and filters), if any. */
export function deskCountKeyFor(url: URL): DeskCountKey | undefined {
  const here = sortedParams(url.searchParams);
  return (Object.keys(DESK_COUNTS) as DeskCountKey[]).find((k) => {
    const to = new URL(DESK_COUNTS[k].to, url);
    return to.pathname === url.pathname && sortedParams(to.searchParams) === here;
  });
}

export interface DeskCountLine {
  key: DeskCountKey;
  label: string;
  value: string;
}

/** What a page the overview links to says about the number the overview showed: the same count, read the same way. */
export async function readDeskCountFor(db: Queryable, url: URL): Promise<DeskCountLine | null> {
  const key = deskCountKeyFor(url);
  if (!key) return null;
  const counts = await readDeskCounts(db, [key]);
  return { key, label: DESK_COUNTS[key].label, value: formatBoundedCount(counts[key]) };
}

export interface LiveCounts {
  attention: Array<{ key: DeskCountKey; label: string; to: string; count: BoundedCount }>;
  windows: Array<{ key: WindowCountKey; state: WindowState; to: string; count: BoundedCount }>;
}

export async function readLiveCounts(db: Queryable): Promise<LiveCounts> {
  const windowKeys = WINDOW_STATES.map(windowCountKey);
  const counts = await readDeskCounts(db, [...ATTENTION_KEYS, ...windowKeys]);
  return {
    attention: ATTENTION_KEYS.map((key) => ({ key, label: DESK_COUNTS[key].label, to: DESK_COUNTS[key].to, count: counts[key] })),
    windows: WINDOW_STATES.map((state, i) => ({ key: windowKeys[i]!, state, to: DESK_COUNTS[windowKeys[i]!].to, count: counts[windowKeys[i]!] })),
  };
}

export interface OpsEventPoint {
  bucketStart: string;
  total: number;
  byType: Partial<Record<OpsEventType, number>>;
}

/**
 * Ops events per bucket of `bucketMs` over [from, to) (every bucket present). `meter_reporting_failed`, the one type
 * that grows with the ledger (one per failed event), comes from the rollups' `failed` outcome, which counts exactly
 * those ops events per minute (rollups.ts), so a failure storm does not make the chart read every one of them; the
 * other types (one per window, webhook or backoff episode) are counted from ops_events (type, occurred_at).
 */
export async function readOpsEventSeries(
  db: Queryable,
  range: { from: Date; to: Date; bucketMs: number; types?: readonly OpsEventType[] },
): Promise<OpsEventPoint[]> {
  const types = range.types ?? OPS_EVENT_TYPES;
  const direct = types.filter((t) => t !== 'meter_reporting_failed');
  const [counted, rolled] = await Promise.all([
    db.query<{ bucket: Date; type: OpsEventType; count: string }>(
      `SELECT date_bin($3::bigint * interval '1 millisecond', occurred_at, $1::timestamptz) AS bucket, type, count(*)::text AS count
         FROM ops_events
        WHERE type = ANY($4::text[]) AND occurred_at >= $1 AND occurred_at < $2
        GROUP BY 1, 2`,
      [range.from, range.to, range.bucketMs, direct],
    ),
    types.includes('meter_reporting_failed')
      ? readRollups(db, { from: range.from, to: range.to, bucketMs: range.bucketMs })
      : Promise.resolve([]),
  ]);
  const points = new Map<number, OpsEventPoint>();
  for (let t = range.from.getTime(); t < range.to.getTime(); t += range.bucketMs) {
    points.set(t, { bucketStart: new Date(t).toISOString(), total: 0, byType: {} });
  }
  const add = (at: number, type: OpsEventType, n: number) => {
    const p = points.get(at);
    if (!p || n === 0) return;
    p.byType[type] = (p.byType[type] ?? 0) + n;
    p.total += n;
  };
  for (const r of counted.rows) add(r.bucket.getTime(), r.type, Number(r.count));
  for (const r of rolled) add(Date.parse(r.bucketStart), 'meter_reporting_failed', r.failed);
  return [...points.values()];
}

export interface OpsEventTypeSummary {
  type: OpsEventType;
  open: number;
  resolved: number;
  lastAt: string | null;
}

/** Open and resolved ops events per type among those that occurred in [from, to). */
export async function readOpsEventTypeSummary(db: Queryable, range: { from: Date; to: Date }): Promise<OpsEventTypeSummary[]> {
  const { rows } = await db.query<{ type: OpsEventType; open: string; resolved: string; last_at: Date | null }>(
    `SELECT type, count(*) FILTER (WHERE resolved_at IS NULL)::text AS open, count(*) FILTER (WHERE resolved_at IS NOT NULL)::text AS resolved,
            max(occurred_at) AS last_at
       FROM ops_events
      WHERE type = ANY($3::text[]) AND occurred_at >= $1 AND occurred_at < $2
      GROUP BY type`,
    [range.from, range.to, OPS_EVENT_TYPES],
  );
  const byType = new Map(rows.map((r) => [r.type, r]));
  return OPS_EVENT_TYPES.map((type) => {
    const r = byType.get(type);
    return { type, open: Number(r?.open ?? 0), resolved: Number(r?.resolved ?? 0), lastAt: r?.last_at?.toISOString() ?? null };
  });
}

export interface OpsEventMember {
  id: string;
  occurredAt: string;
  resolved: boolean;
  subjectType: string | null;
  subjectId: string | null;
}

/** Ops events of one type, processor and source: how many are open and resolved, when first and last seen, the latest few. */
export interface OpsEventGroup {
  type: OpsEventType;
  processor: string | null;
  source: string | null;
  open: number;
  resolved: number;
  firstAt: string;
  lastAt: string;
  /** The newest MEMBERS_PER_GROUP (open ones only when the read asked for open groups), newest first. */
  latest: OpsEventMember[];
}

export const MEMBERS_PER_GROUP = 5;
/** Types × processors × sources is a few dozen at most; the cap keeps a bad source value from growing the page. */
export const MAX_GROUPS = 50;

/**
 * Ops events that occurred in [from, to), grouped by type, processor and source, the group seen last first. The
 * counts are an index-only scan of the range on ops_events (occurred_at, type, processor, source, resolved_at), so
 * a failure storm costs an index range and no heap reads; each group's latest members are one backward walk of
 * (type, occurred_at) that stops after MEMBERS_PER_GROUP rows. `openOnly` keeps groups with an open event and
 * lists their open members.
 */
export async function readOpsEventGroups(
  db: Queryable,
  range: { from: Date; to: Date },
  options: { openOnly?: boolean; members?: number } = {},
): Promise<OpsEventGroup[]> {
  const openOnly = options.openOnly ?? false;
  const { rows } = await db.query<{
    type: OpsEventType;
    processor: string | null;
    source: string | null;
    open: string;
    resolved: string;
    first_at: Date;
    last_at: Date;
    latest: Array<{ id: string; occurred_at: string; resolved: boolean; subject_type: string | null; subject_id: string | null }> | null;
  }>(
    `WITH groups AS (
       SELECT type, processor, source, count(*) FILTER (WHERE resolved_at IS NULL)::text AS open,
              count(*) FILTER (WHERE resolved_at IS NOT NULL)::text AS resolved, min(occurred_at) AS first_at, max(occurred_at) AS last_at
         FROM ops_events
        -- No type condition here: with one, the planner walks (type, occurred_at) and reads the heap for the rest.
        WHERE occurred_at >= $1 AND occurred_at < $2
        GROUP BY type, processor, source
       HAVING NOT $4::boolean OR count(*) FILTER (WHERE resolved_at IS NULL) > 0
        ORDER BY last_at DESC
        LIMIT ${MAX_GROUPS})
     SELECT g.type, g.processor::text AS processor, g.source, g.open, g.resolved, g.first_at, g.last_at, m.latest
       FROM groups g
       CROSS JOIN LATERAL (
         SELECT json_agg(json_build_object('id', o.id, 'occurred_at', o.occurred_at, 'resolved', o.resolved_at IS NOT NULL,
                                           'subject_type', o.subject_type, 'subject_id', o.subject_id) ORDER BY o.occurred_at DESC) AS latest
           FROM (SELECT id, occurred_at, resolved_at, subject_type, subject_id
                   FROM ops_events o
                  WHERE o.type = g.type AND o.occurred_at >= $1 AND o.occurred_at < $2
                    AND o.processor IS NOT DISTINCT FROM g.processor AND o.source IS NOT DISTINCT FROM g.source
                    AND (NOT $4::boolean OR o.resolved_at IS NULL)
                  ORDER BY o.occurred_at DESC
                  LIMIT $5) o) m
      WHERE g.type = ANY($3::text[])
      ORDER BY g.last_at DESC, g.type, g.processor NULLS FIRST, g.source NULLS FIRST`,
    [range.from, range.to, OPS_EVENT_TYPES, openOnly, options.members ?? MEMBERS_PER_GROUP],
  );
  return rows.map((r) => ({
    type: r.type,
    processor: r.processor,
    source: r.source,
    open: Number(r.open),
    resolved: Number(r.resolved),
    firstAt: r.first_at.toISOString(),
    lastAt: r.last_at.toISOString(),
    latest: (r.latest ?? []).map((m) => ({
      id: m.id,
      occurredAt: new Date(m.occurred_at).toISOString(),
      resolved: m.resolved,
      subjectType: m.subject_type,
      subjectId: m.subject_id,
    })),
  }));
}

/** The chart range ending with the current hour: `hours` whole hours, the last one still filling. */
export function hourRange(now: Date, hours: number, bucketHours = 1): { from: Date; to: Date; bucketMs: number } {
  const to = Math.floor(now.getTime() / HOUR_MS) * HOUR_MS + HOUR_MS;
  return { from: new Date(to - hours * HOUR_MS), to: new Date(to), bucketMs: bucketHours * HOUR_MS };
}

export interface Overview {
  generatedAt: string;
  counts: LiveCounts;
  /** Events accepted, reported and failed per hour over the last 24 h (from event_rollups). */
  events: RollupPoint[];
  /** Ops events per hour over the last 24 h. */
  opsEvents: OpsEventPoint[];
  /** Ops events of the last 7 days with at least one open, grouped by type, processor and source. */
  openGroups: OpsEventGroup[];
}

/** How far back the overview looks for open ops events (telemetry's longest range). */
const OVERVIEW_OPEN_HOURS = 7 * 24;

export const OverviewPresenter = {
  async call(db: Queryable, options: { now?: Date } = {}): Promise<Overview> {
    return tracer.startActiveSpan('OverviewPresenter.call', async (span) => {
      try {
        const now = options.now ?? new Date();
        const range = hourRange(now, 24);
        const [counts, events, opsEvents, openGroups] = await Promise.all([
          readLiveCounts(db),
          readRollups(db, range),
          readOpsEventSeries(db, range),
          readOpsEventGroups(db, hourRange(now, OVERVIEW_OPEN_HOURS), { openOnly: true }),
        ]);
        return { generatedAt: now.toISOString(), counts, events, opsEvents, openGroups };
      } finally {
        span.end();
      }
    });
  },
};

export const TELEMETRY_RANGES = {
  '24h': { hours: 24, bucketHours: 1, label: 'Last 24 hours' },
  '7d': { hours: 7 * 24, bucketHours: 6, label: 'Last 7 days' },
} as const;
export type TelemetryRange = keyof typeof TELEMETRY_RANGES;

export interface Telemetry {
  range: TelemetryRange;
  from: string;
  to: string;
  bucketHours: number;
  series: OpsEventPoint[];
  types: OpsEventTypeSummary[];
  groups: OpsEventGroup[];
}

export const TelemetryPresenter = {
  async call(db: Queryable, options: { range: TelemetryRange; now?: Date }): Promise<Telemetry> {
    return tracer.startActiveSpan('TelemetryPresenter.call', async (span) => {
      try {
        const spec = TELEMETRY_RANGES[options.range];
        const range = hourRange(options.now ?? new Date(), spec.hours, spec.bucketHours);
        const [series, types, groups] = await Promise.all([readOpsEventSeries(db, range), readOpsEventTypeSummary(db, range), readOpsEventGroups(db, range)]);
        return { range: options.range, from: range.from.toISOString(), to: range.to.toISOString(), bucketHours: spec.bucketHours, series, types, groups };
      } finally {
        span.end();
      }
    });
  },
};

/** Chart rows (`{bucketStart, total, <type>: n}`) and the types that occur at all, in OPS_EVENT_TYPES order. */
export function opsSeriesRows(points: OpsEventPoint[]): { rows: Array<Record<string, string | number>>; types: OpsEventType[] } {
  const present = new Set<OpsEventType>();
  for (const p of points) for (const t of Object.keys(p.byType) as OpsEventType[]) present.add(t);
  const types = OPS_EVENT_TYPES.filter((t) => present.has(t));
  const rows = points.map((p) => {
    const row: Record<string, string | number> = { bucketStart: p.bucketStart, total: p.total };
    for (const t of types) row[t] = p.byType[t] ?? 0;
    return row;
  });
  return { rows, types };
}
