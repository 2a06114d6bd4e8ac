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
const ROLLUP_SQL = `
WITH computed AS (
  SELECT to_timestamp(floor((('x' || substr(e.id::text, 1, 8) || substr(e.id::text, 10, 4))::bit(48)::bigint) / 60000.0) * 60) AS bucket_start,
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
export async function rollupRange(db: Queryable, options: RollupOptions = {}): Promise<{ from: Date; to: Date }> {
  const now = (options.now ?? new Date()).getTime();
  const to = floorToBucket(options.to?.getTime() ?? now);
  if (options.from) return { from: new Date(Math.min(floorToBucket(options.from.getTime()), to)), to: new Date(to) };
  const earliest = to - (options.maxLookbackMs ?? DEFAULT_MAX_LOOKBACK_MS);
  // The primary key leads with bucket_start: max() is one index probe.
  const { rows } = await db.query<{ watermark: Date | null }>(`SELECT max(bucket_start) AS watermark FROM event_rollups`);
  const watermark = rows[0]?.watermark?.getTime();
  const from = watermark === undefined ? earliest : Math.max(earliest, Math.min(to, watermark - (options.slackMs ?? DEFAULT_SLACK_MS)));
  return { from: new Date(floorToBucket(from)), to: new Date(to) };
}

/**
 * Recomputes the event rollups of recent minutes from the ledger, in one transaction on `client` (a dedicated
 * connection, not a pool: the statements must share it). Safe to run twice and concurrently: runs serialize on a
 * transaction-scoped advisory lock, and each writes the counts the source holds.
 */
export async function rollupEvents(client: Queryable, options: RollupOptions = {}): Promise<RollupResult> {
  return inSpan(tracer, 'Rollups.rollupEvents', {}, async (span) => {
    await client.query('BEGIN');
    try {
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('meterdesk.event_rollups'))`);
      const { from, to } = await rollupRange(client, options);
      let written = 0;
      let deleted = 0;
      if (from < to) {
        const { rows } = await client.query<{ written: number; deleted: number }>(ROLLUP_SQL, [
          from,
          to,
          uuidv7Floor(from.getTime()),
          uuidv7Floor(to.getTime()),
        ]);
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
