// The desk's event rollups against the real stack: events ingested, reported to the Stripe simulator (some
// rejected) by the real worker tasks, then desk__rollup_events; every minute bucket must equal the truth counted
// independently from the rows, and running it again changes nothing.
import { Logger, runOnce } from 'graphile-worker';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUCKET_MS, floorToBucket, readRollups, rollupEvents, uuidv7Floor, uuidv7Time, type RollupOptions } from '../app/billing/rollups';
import { taskList } from '../jobs/tasks';
import { startReportingHarness, type ReportingHarness } from './support/reporting';

type Key = string; // `${bucketIso}|${processor}|${outcome}`
const key = (ms: number, processor: string, outcome: string): Key => `${new Date(floorToBucket(ms)).toISOString()}|${processor}|${outcome}`;

describe('event rollups', () => {
  let h: ReportingHarness;
  const now = Date.now();

  beforeAll(async () => {
    h = await startReportingHarness({ api: 'v1' });
  });
  afterAll(() => h?.close());

  async function stored(): Promise<Map<Key, number>> {
    const rows = await h.rows<{ bucket_start: Date; processor: string; outcome: string; count: string }>(
      `SELECT bucket_start, processor::text AS processor, outcome, count::text AS count FROM event_rollups`,
    );
    return new Map(rows.map((r) => [key(r.bucket_start.getTime(), r.processor, r.outcome), Number(r.count)]));
  }

  /** The truth, counted in TypeScript from the source rows (not with the rollup's SQL). */
  async function truth(): Promise<Map<Key, number>> {
    const counts = new Map<Key, number>();
    const add = (k: Key) => counts.set(k, (counts.get(k) ?? 0) + 1);
    for (const e of await h.rows<{ id: string; processor: string }>(`SELECT id, processor::text AS processor FROM meter_events`)) {
      add(key(uuidv7Time(e.id), e.processor, 'accepted'));
    }
    for (const a of await h.rows<{ started_at: Date }>(`SELECT started_at FROM event_attempts WHERE outcome IN ('reported', 'duplicate')`)) {
      add(key(a.started_at.getTime(), 'stripe', 'reported'));
    }
    for (const o of await h.rows<{ occurred_at: Date; processor: string }>(
      `SELECT occurred_at, processor::text AS processor FROM ops_events WHERE type = 'meter_reporting_failed'`,
    )) {
      add(key(o.occurred_at.getTime(), o.processor, 'failed'));
    }
    return counts;
  }

  async function run(options: RollupOptions = {}) {
    const client = await h.services.pool.connect();
    try {
      return await rollupEvents(client, { now: new Date(Date.now() + 2 * BUCKET_MS), ...options });
    } finally {
      client.release();
    }
  }

  /** A copy of an ingested event received at `ms` (its id says so), for buckets other than this minute's. */
  async function eventAt(ms: number, status: string): Promise<string> {
    const id = uuidv7({ msecs: ms });
    await h.services.pool.query(
      `INSERT INTO meter_events (id, identifier, customer_id, event_name, value, occurred_at, processor, status)
       SELECT $1::uuid, $2, customer_id, event_name, 1, occurred_at, processor, $3::meter_event_status FROM meter_events LIMIT 1`,
      [id, `crafted-${id}`, status],
    );
    return id;
  }

  it('fills every minute with the counts of accepted, reported and failed events', async () => {
    for (let c = 0; c < 3; c++) await h.addCustomer(`roll-${c}`, `cus_roll_${c}`);
    await h.addCustomer('roll-ghost', 'cus_roll_ghost', { inSimulator: false });
    await h.ingest([
      ...Array.from({ length: 30 }, (_, i) => ({ customer: `roll-${i % 3}`, identifier: `roll-${i}` })),
      ...Array.from({ length: 4 }, (_, i) => ({ customer: 'roll-ghost', identifier: `roll-ghost-${i}` })),
    ]);
    await h.drain();
    expect(await h.count(`SELECT count(*) FROM meter_events WHERE status = 'reported'`)).toBe(30);
    expect(await h.count(`SELECT count(*) FROM meter_events WHERE status = 'failed'`)).toBe(4);

    // Earlier minutes: events received then, a report and a failure recorded then.
    // Bucket starts, so every crafted time below (up to +500 ms) stays in the bucket the assertions name.
    const tenAgo = floorToBucket(now) - 10 * BUCKET_MS;
    const sevenAgo = floorToBucket(now) - 7 * BUCKET_MS;
    const crafted = [await eventAt(tenAgo, 'reported'), await eventAt(tenAgo + 1, 'reported'), await eventAt(sevenAgo, 'failed')];
    await h.services.pool.query(
      `INSERT INTO event_attempts (id, meter_event_id, started_at, source, outcome) VALUES
         (gen_random_uuid(), $1, $3, 'sync', 'reported'), (gen_random_uuid(), $2, $3, 'sync', 'duplicate')`,
      [crafted[0], crafted[1], new Date(tenAgo + 500)],
    );
    await h.services.pool.query(
      `INSERT INTO ops_events (id, type, occurred_at, processor, source, subject_type, subject_id)
       VALUES (gen_random_uuid(), 'meter_reporting_failed', $1, 'stripe', 'sync', 'meter_event', $2)`,
      [new Date(sevenAgo), crafted[2]],
    );

    const first = await run();
    expect(first.written).toBeGreaterThan(0);
    const expected = await truth();
    expect(await stored()).toEqual(expected);
    // Sanity of the truth itself: the crafted minutes are separate buckets.
    expect(expected.get(key(tenAgo, 'stripe', 'accepted'))).toBeGreaterThanOrEqual(2);
    expect(expected.get(key(tenAgo, 'stripe', 'reported'))).toBe(2);
    expect(expected.get(key(sevenAgo, 'stripe', 'failed'))).toBe(1);
    const sum = (outcome: string) => [...expected].filter(([k]) => k.endsWith(`|${outcome}`)).reduce((a, [, n]) => a + n, 0);
    expect(sum('accepted')).toBe(34 + 3);
    expect(sum('reported')).toBe(30 + 2);
    expect(sum('failed')).toBe(4 + 1);
  });

  it('is idempotent: a second run writes nothing and leaves the same counts', async () => {
    const before = await stored();
    const again = await run({ from: new Date(now - 60 * BUCKET_MS) });
    expect(again).toMatchObject({ written: 0, deleted: 0 });
    expect(await stored()).toEqual(before);
  });

  it('repairs wrong or stale rows in its range and picks up late commits within the slack', async () => {
    const want = await truth();
    await h.services.pool.query(`UPDATE event_rollups SET count = 999 WHERE outcome = 'accepted'`);
    await h.services.pool.query(`INSERT INTO event_rollups (bucket_start, processor, outcome, count) VALUES ($1, 'braintree', 'failed', 7)`, [
      new Date(floorToBucket(now - 20 * BUCKET_MS)),
    ]);
    const repaired = await run({ from: new Date(now - 60 * BUCKET_MS) });
    expect(repaired.deleted).toBe(1);
    expect(await stored()).toEqual(want);

    // An event received two minutes ago but committed only now: the watermark run re-covers recent minutes.
    const late = Date.now() - 2 * BUCKET_MS;
    await eventAt(late, 'pending');
    const watermarkRun = await run();
    expect(watermarkRun.from.getTime()).toBeLessThanOrEqual(floorToBucket(late));
    expect(await stored()).toEqual(await truth());
  });

  it('runs as the desk__rollup_events task and reads back as chart buckets', async () => {
    await h.services.pool.query(`DELETE FROM event_rollups`);
    const silent = new Logger(() => () => {});
    await h.services.pool.query(`SELECT graphile_worker.add_job('desk__rollup_events', '{}'::json)`);
    await runOnce({ pgPool: h.services.pool, taskList: { desk__rollup_events: taskList.desk__rollup_events! }, noHandleSignals: true, logger: silent });
    // Completions are batched: the finished job's row may go a moment after runOnce returns; a failure would keep it
    // with last_error set.
    await expect
      .poll(() => h.rows(`SELECT attempts, last_error FROM graphile_worker.jobs WHERE task_identifier = 'desk__rollup_events'`), { timeout: 5000 })
      .toEqual([]);
    // The task's own "now": the current minute is not complete, so only earlier minutes are compared.
    const done = floorToBucket(Date.now());
    const wanted = new Map([...(await truth())].filter(([k]) => Date.parse(k.split('|')[0]!) < done));
    const got = new Map([...(await stored())].filter(([k]) => Date.parse(k.split('|')[0]!) < done));
    expect(got).toEqual(wanted);

    const hourFrom = new Date(floorToBucket(now - 30 * BUCKET_MS));
    const points = await readRollups(h.services.pool, { from: hourFrom, to: new Date(hourFrom.getTime() + 60 * BUCKET_MS), bucketMs: 15 * BUCKET_MS });
    expect(points).toHaveLength(4);
    const total = (o: 'accepted' | 'reported' | 'failed') => points.reduce((a, p) => a + p[o], 0);
    const inRange = (outcome: string) =>
      [...got].filter(([k]) => k.endsWith(`|${outcome}`) && Date.parse(k.split('|')[0]!) >= hourFrom.getTime()).reduce((a, [, n]) => a + n, 0);
    expect(total('reported')).toBe(inRange('reported'));
    expect(total('failed')).toBe(inRange('failed'));
    expect(total('accepted')).toBe(inRange('accepted'));
  });

  it('bounds a minute by UUIDv7 ids', () => {
    const t = Date.UTC(2026, 10, 22, 6, 0, 0);
    expect(uuidv7Floor(t)).toBe(`${t.toString(16).padStart(12, '0').slice(0, 8)}-${t.toString(16).padStart(12, '0').slice(8)}-0000-0000-000000000000`);
    const inside = uuidv7({ msecs: t + 59_999 });
    expect(inside > uuidv7Floor(t) && inside < uuidv7Floor(t + BUCKET_MS)).toBe(true);
    expect(uuidv7({ msecs: t - 1 }) < uuidv7Floor(t)).toBe(true);
    expect(uuidv7Time(inside)).toBe(t + 59_999);
  });
});
