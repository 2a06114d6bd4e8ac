// Per-minute event rollups (event_rollups) for the desk's charts, recomputed from the source by a crontab task
// (desk__rollup_events) rather than counted in the ingest/reporting hot paths: a shared counter row there would
// serialize every commit. Each run recomputes the minutes from the last filled bucket (minus slack for
// transactions that committed late) up to the last completed minute, with index-backed range scans only:
//   accepted  meter_events by primary-key range: ids are UUIDv7 minted at receipt, so the rows received in
//             [t, t+60s) are exactly the ids in [uuidv7Floor(t), uuidv7Floor(t+60s)).
//   reported  event_attempts with outcome reported|duplicate by started_at (only Stripe reports one by one),
//             through event_attempts_started_at_brin (started_at follows insertion order).
//   failed    ops_events of type meter_reporting_failed by (type, occurred_at): every move to `failed` (sync
//             rejection, error webhook, dedupe-guard expiry) records exactly one, in the same transaction.
// Writing is `count = EXCLUDED.count` plus deleting rows the source no longer has, so a run is idempotent.
import { trace } from '@opentelemetry/api';
import type { Queryable } from './db';
import { uuidv7Floor, uuidv7Time } from './ids';
import { inSpan } from './spans';

export { uuidv7Floor, uuidv7Time };

const tracer = trace.getTracer('meterdesk.rollups');

export const ROLLUP_OUTCOMES = ['accepted', 'reported', 'failed'] as const;
export type RollupOutcome = (typeof ROLLUP_OUTCOMES)[number];

export const BUCKET_MS = 60_000;
/** Re-covered on every run: an event received at t may commit seconds later (and a report call takes up to 30 s). */
export const DEFAULT_SLACK_MS = 5 * 60_000;
/** How far back a first run (or one after a long outage) fills; older minutes stay as they were. */
export const DEFAULT_MAX_LOOKBACK_MS = 24 * 60 * 60_000;

export interface RollupOptions {
  now?: Date;
  slackMs?: number;
  maxLookbackMs?: number;
  /** Explicit range (rounded to whole minutes), for backfills and tests; overrides the watermark. */
  from?: Date;
  to?: Date;
}

export interface RollupResult {
  from: Date;
  to: Date;
  /** Rows inserted or changed. */
  written: number;
  /** Rows removed because the source no longer has them. */
  deleted: number;
}

export function floorToBucket(ms: number): number {
  return Math.floor(ms / BUCKET_MS) * BUCKET_MS;
}

// One statement: compute every (minute, processor, outcome) in [from, to) from the source, upsert what changed,
// delete what vanished. The two writes touch disjoint rows, so they can share the statement.
/** The receipt time (ms since epoch) a UUIDv7 `id` carries in its first 48 bits. */
const RECEIPT_MS_SQL = `(('x' || substr(e.id::text, 1, 8) || substr(e.id::text, 10, 4))::bit(48)::bigint)`;

const ROLLUP_SQL = `
WITH computed AS (
  SELECT to_timestamp(floor(${RECEIPT_MS_SQL} / 60000.0) * 60) AS bucket_start,
         e.processor, 'accepted'::text AS outcome, count(*) AS count
    FROM meter_events e
   WHERE e.id >= $3::uuid AND e.id < $4::uuid
   GROUP BY 1, 2
  UNION ALL
  -- event_attempts rows exist only for Stripe's one-by-one reporting (Braintree bills whole windows).
  SELECT date_bin('1 minute', a.started_at, timestamptz 'epoch'), 'stripe'::processor, 'reported', count(*)
    FROM event_attempts a
   WHERE a.started_at >= $1 AND a.started_at < $2 AND a.outcome IN ('reported', 'duplicate')
   GROUP BY 1
  UNION ALL
  SELECT date_bin('1 minute', o.occurred_at, timestamptz 'epoch'), COALESCE(o.processor, 'stripe'::processor), 'failed', count(*)
    FROM ops_events o
   WHERE o.type = 'meter_reporting_failed' AND o.occurred_at >= $1 AND o.occurred_at < $2
   GROUP BY 1, 2
), deleted AS (
  DELETE FROM event_rollups r
   WHERE r.bucket_start >= $1 AND r.bucket_start < $2
     AND NOT EXISTS (SELECT 1 FROM computed c WHERE c.bucket_start = r.bucket_start AND c.processor = r.processor AND c.outcome = r.outcome)
  RETURNING 1
), written AS (
  INSERT INTO event_rollups (bucket_start, processor, outcome, count)
  SELECT bucket_start, processor, outcome, count FROM computed
  ON CONFLICT (bucket_start, processor, outcome) DO UPDATE SET count = EXCLUDED.count
   WHERE event_rollups.count IS DISTINCT FROM EXCLUDED.count
  RETURNING 1
)
SELECT (SELECT count(*) FROM written)::int AS written, (SELECT count(*) FROM deleted)::int AS deleted`;

/** The minutes a run recomputes: [last filled bucket - slack, last completed minute), at most maxLookback long. */
export function rollupRange(db: Queryable, options: RollupOptions = {}): Promise<{ from: Date; to: Date }> {
  return rangeOf(db, 'event_rollups', BUCKET_MS, DEFAULT_MAX_LOOKBACK_MS, options);
}

/** [last filled bucket - slack, start of the current bucket) of `table`, whose primary key leads with bucket_start. */
async function rangeOf(db: Queryable, table: 'event_rollups' | 'usage_rollups', bucketMs: number, maxLookbackMs: number, options: RollupOptions) {
  const floor = (ms: number) => Math.floor(ms / bucketMs) * bucketMs;
  const now = (options.now ?? new Date()).getTime();
  const to = floor(options.to?.getTime() ?? now);
  if (options.from) return { from: new Date(Math.min(floor(options.from.getTime()), to)), to: new Date(to) };
  const earliest = to - (options.maxLookbackMs ?? maxLookbackMs);
  // The primary key leads with bucket_start: max() is one index probe.
  const { rows } = await db.query<{ watermark: Date | null }>(`SELECT max(bucket_start) AS watermark FROM ${table}`);
  const watermark = rows[0]?.watermark?.getTime();
  const from = watermark === undefined ? earliest : Math.max(earliest, Math.min(to, watermark - (options.slackMs ?? DEFAULT_SLACK_MS)));
  return { from: new Date(floor(from)), to: new Date(to) };
}

/**
 * Recomputes the event rollups of recent minutes from the ledger, in one transaction on `client` (a dedicated
 * connection, not a pool: the statements must share it). Safe to run twice and concurrently: runs serialize on a
 * transaction-scoped advisory lock, and each writes the counts the source holds.
 */
export function rollupEvents(client: Queryable, options: RollupOptions = {}): Promise<RollupResult> {
  return recompute(client, 'Rollups.rollupEvents', 'meterdesk.event_rollups', ROLLUP_SQL, () => rollupRange(client, options));
}

/** One recomputation of [from, to) by `sql` ($1, $2: the range; $3, $4: its UUIDv7 bounds) under its advisory lock. */
async function recompute(client: Queryable, spanName: string, lock: string, sql: string, range: () => Promise<{ from: Date; to: Date }>): Promise<RollupResult> {
  return inSpan(tracer, spanName, {}, async (span) => {
    await client.query('BEGIN');
    try {
      await client.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [lock]);
      const { from, to } = await range();
      let written = 0;
      let deleted = 0;
      if (from < to) {
        const { rows } = await client.query<{ written: number; deleted: number }>(sql, [from, to, uuidv7Floor(from.getTime()), uuidv7Floor(to.getTime())]);
        written = rows[0]?.written ?? 0;
        deleted = rows[0]?.deleted ?? 0;
      }
      await client.query('COMMIT');
      span.setAttributes({ 'meterdesk.rollup.minutes': (to.getTime() - from.getTime()) / BUCKET_MS, 'meterdesk.rollup.written': written });
      return { from, to, written, deleted };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  });
}

// ───────────── usage rollups (ADR 037): per 10 minutes of receipt, customer and event name ─────────────
// What usage-anomaly and usual-hours alert rules read. Buckets are by receipt (the id), like event_rollups: a
// primary-key range finds a bucket's rows, and a backfill of old usage shows when it arrived, which is when an
// operator needs to hear of it. Only completed buckets are written; a run recomputes from the last filled one
// minus the slack, so an event that committed late is counted in its bucket.

export const USAGE_BUCKET_MS = 10 * 60_000;
/** A first run fills 8 days: a day-over-day anomaly compares the last day with the 7 before. */
export const USAGE_MAX_LOOKBACK_MS = 8 * 24 * 60 * 60_000;

const USAGE_ROLLUP_SQL = `
WITH computed AS (
  SELECT to_timestamp(floor(${RECEIPT_MS_SQL} / ${USAGE_BUCKET_MS}.0) * ${USAGE_BUCKET_MS / 1000}) AS bucket_start,
         e.customer_id, e.event_name, count(*) AS count, sum(e.value) AS value_sum
    FROM meter_events e
   WHERE e.id >= $3::uuid AND e.id < $4::uuid
   GROUP BY 1, 2, 3
), deleted AS (
  DELETE FROM usage_rollups r
   WHERE r.bucket_start >= $1 AND r.bucket_start < $2
     AND NOT EXISTS (SELECT 1 FROM computed c WHERE c.bucket_start = r.bucket_start AND c.customer_id = r.customer_id AND c.event_name = r.event_name)
  RETURNING 1
), written AS (
  INSERT INTO usage_rollups (bucket_start, customer_id, event_name, count, value_sum)
  SELECT bucket_start, customer_id, event_name, count, value_sum FROM computed
  ON CONFLICT (bucket_start, customer_id, event_name) DO UPDATE SET count = EXCLUDED.count, value_sum = EXCLUDED.value_sum
   WHERE (usage_rollups.count, usage_rollups.value_sum) IS DISTINCT FROM (EXCLUDED.count, EXCLUDED.value_sum)
  RETURNING 1
)
SELECT (SELECT count(*) FROM written)::int AS written, (SELECT count(*) FROM deleted)::int AS deleted`;

/**
 * Recomputes the usage rollups of recent completed 10-minute buckets from the ledger, in one transaction on `client`
 * (a dedicated connection). Idempotent, and concurrent runs serialize on an advisory lock, as rollupEvents.
 */
export function rollupUsage(client: Queryable, options: RollupOptions = {}): Promise<RollupResult> {
  return recompute(client, 'Rollups.rollupUsage', 'meterdesk.usage_rollups', USAGE_ROLLUP_SQL, () =>
    rangeOf(client, 'usage_rollups', USAGE_BUCKET_MS, USAGE_MAX_LOOKBACK_MS, options),
  );
}

export interface RollupPoint {
  bucketStart: string;
  accepted: number;
  reported: number;
  failed: number;
}

/**
 * The rollups over [from, to) summed into buckets of `bucketMs` (every bucket present, zeros included), for charts.
 * Reads the primary key's bucket_start range only.
 */
export async function readRollups(db: Queryable, range: { from: Date; to: Date; bucketMs: number }): Promise<RollupPoint[]> {
  const { rows } = await db.query<{ bucket: Date; outcome: string; count: string }>(
    `SELECT date_bin($3::bigint * interval '1 millisecond', bucket_start, $1::timestamptz) AS bucket, outcome, sum(count)::text AS count
       FROM event_rollups
      WHERE bucket_start >= $1 AND bucket_start < $2
      GROUP BY 1, 2`,
    [range.from, range.to, range.bucketMs],
  );
  const points = new Map<number, RollupPoint>();
  for (let t = range.from.getTime(); t < range.to.getTime(); t += range.bucketMs) {
    points.set(t, { bucketStart: new Date(t).toISOString(), accepted: 0, reported: 0, failed: 0 });
  }
  for (const r of rows) {
    const p = points.get(r.bucket.getTime());
    if (p && (ROLLUP_OUTCOMES as readonly string[]).includes(r.outcome)) p[r.outcome as RollupOutcome] += Number(r.count);
  }
  return [...points.values()];
}
