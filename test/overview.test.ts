// The overview and telemetry reads on a real PostgreSQL: bounded live counts (capped at 10,000 and shown as
// "10,000+"), charts from the rollups and ops events per bucket, open vs resolved per type, and that the reads use
// their indexes rather than scanning the ledger.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  COUNT_CAP,
  formatBoundedCount,
  hourRange,
  opsSeriesRows,
  MEMBERS_PER_GROUP,
  OverviewPresenter,
  readDeskCounts,
  readLiveCounts,
  readOpsEventGroups,
  TelemetryPresenter,
} from '../app/billing/overview';
import { OPS_EVENT_TYPES } from '../app/billing/ops-events';
import { RUNBOOKS } from '../app/billing/runbooks';
import { seedBase } from '../app/seed/base';
import type { Services } from '../app/server/services';
import type { TestDatabase } from './support/database';
import { closeTestServices, openTestServices } from './support/services';

const HOUR = 3_600_000;
let db: TestDatabase;
let services: Services;
const now = new Date();

beforeAll(async () => {
  ({ db, services } = await openTestServices());
  await seedBase(services.prisma);
});
afterAll(async () => {
  await closeTestServices(db, services);
});

/** `n` meter events in `status` with UUIDv7-shaped ids, written in one statement. */
async function insertEvents(n: number, status: string) {
  await services.pool.query(
    `INSERT INTO meter_events (id, identifier, customer_id, event_name, value, occurred_at, processor, status)
     SELECT u.id, 'ov-' || u.id, gen_random_uuid(), 'ai_tokens', 1, now(), 'stripe', $2::meter_event_status
       FROM (SELECT (lpad(to_hex((extract(epoch FROM now()) * 1000)::bigint), 12, '0') || '7' || substr(md5(random()::text), 1, 19))::uuid AS id
               FROM generate_series(1, $1)) u`,
    [n, status],
  );
}

describe('live counts', () => {
  it('counts exactly below the cap and says "10,000+" above it', async () => {
    await insertEvents(7, 'failed');
    await insertEvents(COUNT_CAP + 5, 'pending');
    const counts = await readDeskCounts(services.pool, ['events:failed', 'events:pending', 'windows:failed_exhausted']);
    expect(counts['events:failed']).toEqual({ count: 7, capped: false });
    expect(counts['events:pending']).toEqual({ count: COUNT_CAP, capped: true });
    expect(formatBoundedCount(counts['events:pending'])).toBe('10,000+');
    expect(counts['windows:failed_exhausted']).toEqual({ count: 0, capped: false });
    const live = await readLiveCounts(services.pool);
    expect(live.attention.map((a) => [a.key, a.to])).toEqual([
      ['events:pending', '/events?status=pending'],
      ['events:failed', '/events?status=failed'],
      ['events:without-meter', '/definitions'],
      ['ops:open', '/telemetry'],
    ]);
    // These events carry no meter: the inbox's predicate counts every one of them, pending and failed alike.
    expect(live.attention.find((a) => a.key === 'events:without-meter')!.count).toEqual({ count: COUNT_CAP, capped: true });
    expect(live.windows.map((w) => w.state)).toContain('failed_exhausted');
    expect(live.windows.every((w) => w.count.count === 0)).toBe(true);
  });

  it('reads a rare status through the (status, id) index, not a scan of the ledger', async () => {
    // A common status may be read by a sequential scan, which the LIMIT stops after COUNT_CAP + 1 rows anyway;
    // a rare one must come from the index, or the count would read the whole ledger to find 7 rows.
    await services.pool.query('VACUUM ANALYZE meter_events');
    const { rows } = await services.pool.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN SELECT count(*) FROM (SELECT 1 FROM meter_events e WHERE e.status = 'failed' LIMIT 10001) x`,
    );
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    // Each partition's own (status, id) index (ADR 032); the planner may scan an empty partition (a month ahead)
    // sequentially, which reads nothing, but never one that holds rows.
    expect(plan).toMatch(/Index Only Scan using meter_events_\w*status_id_idx on meter_events_before_\w+/);
    const scanned = [...plan.matchAll(/Seq Scan on (\w+)/g)].map((m) => m[1]!);
    const { rows: held } = await services.pool.query<{ name: string }>(
      `SELECT relname AS name FROM pg_class WHERE relname = ANY($1::text[]) AND reltuples > 0`,
      [scanned],
    );
    expect(held).toEqual([]);
  });
});

describe('charts and telemetry', () => {
  beforeAll(async () => {
    // The rollups' `failed` counts the meter_reporting_failed ops events (rollups.ts), so the two agree here too.
    const twoHoursAgo = new Date(Math.floor(now.getTime() / HOUR) * HOUR - 2 * HOUR + 5 * 60_000);
    await services.pool.query(
      `INSERT INTO event_rollups (bucket_start, processor, outcome, count) VALUES
         ($1, 'stripe', 'accepted', 10), ($1 + interval '1 minute', 'stripe', 'accepted', 5), ($1, 'braintree', 'accepted', 2),
         ($1, 'stripe', 'reported', 9), ($1, 'stripe', 'failed', 2),
         ($1 - interval '2 days', 'stripe', 'accepted', 1000)`,
      [twoHoursAgo],
    );
    await services.pool.query(
      `INSERT INTO ops_events (id, type, occurred_at, processor, resolved_at) VALUES
         (gen_random_uuid(), 'meter_reporting_failed', $1, 'stripe', NULL),
         (gen_random_uuid(), 'meter_reporting_failed', $1, 'stripe', $1),
         (gen_random_uuid(), 'webhook_rejected', $1, 'braintree', NULL),
         (gen_random_uuid(), 'metered_late_usage', $1 - interval '3 days', 'braintree', NULL)`,
      [twoHoursAgo],
    );
  });

  it('the overview sums rollups per hour over the last 24 h and counts ops events per hour', async () => {
    const o = await OverviewPresenter.call(services.pool, { now });
    expect(o.events).toHaveLength(24);
    const hour = new Date(Math.floor(now.getTime() / HOUR) * HOUR - 2 * HOUR).toISOString();
    expect(o.events.find((p) => p.bucketStart === hour)).toEqual({ bucketStart: hour, accepted: 17, reported: 9, failed: 2 });
    expect(o.events.reduce((n, p) => n + p.accepted, 0)).toBe(17); // the bucket two days back is outside
    expect(o.opsEvents.find((p) => p.bucketStart === hour)).toMatchObject({ total: 3, byType: { meter_reporting_failed: 2, webhook_rejected: 1 } });
    expect(o.counts.attention.find((a) => a.key === 'ops:open')!.count).toEqual({ count: 3, capped: false });
    expect(o.openGroups.map((g) => g.type)).toEqual(expect.arrayContaining(['meter_reporting_failed', 'webhook_rejected', 'metered_late_usage']));
    expect(o.openGroups.find((g) => g.type === 'meter_reporting_failed')).toMatchObject({ processor: 'stripe', source: null, open: 1, resolved: 1 });
    const { types, rows } = opsSeriesRows(o.opsEvents);
    expect(types).toEqual(['meter_reporting_failed', 'webhook_rejected']);
    expect(rows.find((r) => r.bucketStart === hour)).toMatchObject({ total: 3, meter_reporting_failed: 2, webhook_rejected: 1 });
  });

  it('telemetry gives open vs resolved per type for 24 h and 7 d', async () => {
    const day = await TelemetryPresenter.call(services.pool, { range: '24h', now });
    expect(day.series).toHaveLength(24);
    expect(day.types.map((t) => t.type)).toEqual([...OPS_EVENT_TYPES]);
    expect(day.types.find((t) => t.type === 'meter_reporting_failed')).toMatchObject({ open: 1, resolved: 1 });
    expect(day.types.find((t) => t.type === 'metered_late_usage')).toMatchObject({ open: 0, resolved: 0, lastAt: null });

    const week = await TelemetryPresenter.call(services.pool, { range: '7d', now });
    expect(week.series).toHaveLength(28);
    expect(week.types.find((t) => t.type === 'metered_late_usage')).toMatchObject({ open: 1, resolved: 0 });
    expect(week.series.reduce((n, p) => n + p.total, 0)).toBe(4);
  });

  it('groups ops events by type, processor and source: open/resolved, first/last seen, the latest members', async () => {
    // A day of its own in January, so the other tests' ops events are outside the range.
    const from = new Date('2026-01-10T00:00:00Z');
    const to = new Date('2026-01-11T00:00:00Z');
    const at = (minute: number) => new Date(from.getTime() + minute * 60_000);
    const rows: Array<[string, string | null, string | null, number, boolean, string | null, string | null]> = [];
    // 8 Stripe sync failures (3 resolved), 2 reconciler failures, 2 Braintree webhooks, 1 with neither processor
    // nor source, and one event the day after (outside).
    for (let i = 0; i < 8; i++) rows.push(['meter_reporting_failed', 'stripe', 'sync', 60 + i, i < 3, 'meter_event', `00000000-0000-4000-8000-00000000000${i}`]);
    rows.push(['meter_reporting_failed', 'stripe', 'reconciler', 30, false, 'meter_event', '00000000-0000-4000-8000-0000000000a1']);
    rows.push(['meter_reporting_failed', 'stripe', 'reconciler', 500, true, 'meter_event', '00000000-0000-4000-8000-0000000000a2']);
    rows.push(['webhook_rejected', 'braintree', 'webhook', 10, false, 'webhook', 'wh-1']);
    rows.push(['webhook_rejected', 'braintree', 'webhook', 20, true, 'webhook', 'wh-2']);
    rows.push(['metered_missing_definition', null, null, 900, false, 'window', '00000000-0000-4000-8000-0000000000b1']);
    rows.push(['webhook_rejected', 'braintree', 'webhook', 24 * 60 + 5, false, 'webhook', 'wh-later']);
    await services.pool.query(
      `INSERT INTO ops_events (id, type, processor, source, occurred_at, resolved_at, subject_type, subject_id)
       SELECT gen_random_uuid(), t, p::processor, s, o, CASE WHEN r THEN o + interval '1 minute' END, st, sid
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::boolean[], $6::text[], $7::text[]) AS x(t, p, s, o, r, st, sid)`,
      [0, 1, 2, 3, 4, 5, 6].map((c) => rows.map((r) => (c === 3 ? at(r[3] as number) : r[c]))),
    );

    const groups = await readOpsEventGroups(services.pool, { from, to });
    expect(groups.map((g) => [g.type, g.processor, g.source, g.open, g.resolved])).toEqual([
      ['metered_missing_definition', null, null, 1, 0],
      ['meter_reporting_failed', 'stripe', 'reconciler', 1, 1],
      ['meter_reporting_failed', 'stripe', 'sync', 5, 3],
      ['webhook_rejected', 'braintree', 'webhook', 1, 1],
    ]);
    const sync = groups.find((g) => g.source === 'sync')!;
    expect(sync.firstAt).toBe(at(60).toISOString());
    expect(sync.lastAt).toBe(at(67).toISOString());
    // The latest members, newest first, bounded; resolved ones marked.
    expect(sync.latest).toHaveLength(MEMBERS_PER_GROUP);
    expect(sync.latest.map((m) => m.occurredAt)).toEqual([67, 66, 65, 64, 63].map((m) => at(m).toISOString()));
    expect(sync.latest[0]).toMatchObject({ subjectType: 'meter_event', subjectId: '00000000-0000-4000-8000-000000000007', resolved: false });
    expect(groups.find((g) => g.source === 'reconciler')!.latest.map((m) => m.resolved)).toEqual([true, false]);
    expect(groups[0]!.latest).toEqual([expect.objectContaining({ subjectType: 'window', subjectId: '00000000-0000-4000-8000-0000000000b1' })]);

    // Open only: groups with an open event, listing only their open members.
    const open = await readOpsEventGroups(services.pool, { from, to }, { openOnly: true, members: 10 });
    expect(open.find((g) => g.source === 'sync')!.latest.map((m) => m.occurredAt)).toEqual([67, 66, 65, 64, 63].map((m) => at(m).toISOString()));
    expect(open.find((g) => g.type === 'webhook_rejected')!.latest.map((m) => m.subjectId)).toEqual(['wh-1']);
    // A group whose events are all resolved is left out.
    await services.pool.query(`UPDATE ops_events SET resolved_at = occurred_at WHERE type = 'webhook_rejected' AND subject_id = 'wh-1'`);
    expect((await readOpsEventGroups(services.pool, { from, to }, { openOnly: true })).map((g) => g.type)).not.toContain('webhook_rejected');
    expect((await readOpsEventGroups(services.pool, { from, to })).find((g) => g.type === 'webhook_rejected')).toMatchObject({ open: 0, resolved: 2 });
  });

  it('counts the groups from the (occurred_at, type, processor, source, resolved_at) index alone', async () => {
    const client = await services.pool.connect();
    try {
      // A few rows make any plan cheap: without sequential scans the planner shows the index it would pick at scale.
      // The visibility map set, as autovacuum keeps it on an append-mostly table: index-only scans need no heap reads.
      await client.query('VACUUM ops_events');
      await client.query('BEGIN');
      await client.query('SET LOCAL enable_seqscan = off');
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN SELECT type, processor, source, count(*) FILTER (WHERE resolved_at IS NULL), count(*) FILTER (WHERE resolved_at IS NOT NULL),
                min(occurred_at), max(occurred_at)
           FROM ops_events WHERE occurred_at >= '2026-01-10' AND occurred_at < '2026-01-11'
          GROUP BY type, processor, source`,
      );
      expect(rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/Index Only Scan using ops_events_occurred_at_type_processor_source_resolved_at_idx/);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  it('has a runbook with a desk action for every ops event type', () => {
    for (const type of OPS_EVENT_TYPES) {
      const rb = RUNBOOKS[type];
      expect(rb.type).toBe(type);
      expect(rb.what.length && rb.check.length && rb.fix.length).toBeTruthy();
      expect(rb.action.href).toMatch(/^\/(events|windows|definitions|reconciliation)(\?[a-z]+=[a-z_]+)?$/);
    }
  });

  it('ranges end with the current hour', () => {
    const r = hourRange(new Date('2026-11-22T06:33:00Z'), 24);
    expect(r.to.toISOString()).toBe('2026-11-22T07:00:00.000Z');
    expect(r.from.toISOString()).toBe('2026-11-21T07:00:00.000Z');
  });
});
