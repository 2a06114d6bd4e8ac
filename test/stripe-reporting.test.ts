// Stripe reporting end to end: ledger ingest -> graphile-worker tasks -> StripeProcessor (the real stripe SDK) ->
// the Stripe simulator on loopback, on a real PostgreSQL. Every path of issue 3's reporting side.
import Stripe from 'stripe';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SIMULATOR_SECRET_KEY } from '../simulators/stripe/simulator';
import { METER, startReportingHarness, type ReportingHarness } from './support/reporting';

interface EventRow {
  id: string;
  identifier: string;
  status: string;
  attempts: number;
  claimed_at: Date | null;
  first_attempt_at: Date | null;
  reported_at: Date | null;
  last_error_code: string | null;
  last_error_message: string | null;
  last_error_source: string | null;
  attention_reason: string | null;
}

async function events(h: ReportingHarness, ids: string[]): Promise<EventRow[]> {
  return h.rows<EventRow>(`SELECT * FROM meter_events WHERE id = ANY($1::uuid[]) ORDER BY id`, [ids]);
}

async function attemptsOf(h: ReportingHarness, id: string) {
  return h.rows<{ outcome: string; http_status: number | null; error_code: string | null; response: unknown; source: string }>(
    `SELECT outcome::text, http_status, error_code, response, source::text FROM event_attempts WHERE meter_event_id = $1 ORDER BY started_at, id`,
    [id],
  );
}

function expectCountedOnce(h: ReportingHarness, identifiers: string[]) {
  const counts = h.sim.countsByIdentifier();
  const wrong = identifiers.filter((i) => counts.get(i) !== 1);
  expect(wrong, `identifiers not counted exactly once: ${wrong.slice(0, 5).join(', ')}`).toEqual([]);
}

describe('v1 meter events', () => {
  let h: ReportingHarness;
  beforeAll(async () => {
    h = await startReportingHarness({ api: 'v1' });
  });
  afterAll(() => h?.close());
  afterEach(() => h.sim.clearFaults());

  it('reports every pending event once, with an attempt row, latency and cleared claim', async () => {
    for (let c = 0; c < 5; c++) await h.addCustomer(`ok-${c}`, `cus_ok_${c}`);
    const ids = await h.ingest(Array.from({ length: 60 }, (_, i) => ({ customer: `ok-${i % 5}`, value: i + 1, identifier: `ok-${i}` })));
    await h.drain();
    const rows = await events(h, ids);
    expect(rows.every((r) => r.status === 'reported' && r.reported_at && r.claimed_at === null && r.attempts === 1 && r.first_attempt_at)).toBe(true);
    expectCountedOnce(h, rows.map((r) => r.identifier));
    expect(h.sim.usageTotal('cus_ok_0', METER)).toBe([1, 6, 11, 16, 21, 26, 31, 36, 41, 46, 51, 56].reduce((a, b) => a + b, 0));
    const attempts = await attemptsOf(h, ids[0]!);
    expect(attempts).toMatchObject([{ outcome: 'reported', http_status: 200, source: 'sync' }]);
    // The Idempotency-Key is derived from the identifier, so a replay is recognisable in the simulator's log.
    expect(h.sim.stats().rateLimited).toBe(0);
  });

  it('rides out a 429 storm: every event ends reported, counted once, one ops event per backoff episode', async () => {
    for (let c = 0; c < 10; c++) await h.addCustomer(`storm-${c}`, `cus_storm_${c}`);
    h.sim.addFault({ kind: 'rate_limit', probability: 0.5, match: { path: '/v1/billing/meter_events' } });
    const ids = await h.ingest(Array.from({ length: 120 }, (_, i) => ({ customer: `storm-${i % 10}`, identifier: `storm-${i}` })));
    await h.drain({ timeoutMs: 25_000 });
    const rows = await events(h, ids);
    expect(rows.filter((r) => r.status !== 'reported')).toEqual([]);
    expectCountedOnce(h, rows.map((r) => r.identifier));
    const limited = await h.count(`SELECT count(*) FROM event_attempts WHERE outcome = 'rate_limited' AND meter_event_id = ANY($1::uuid[])`, [ids]);
    expect(limited).toBeGreaterThan(0);
    const episodes = await h.count(`SELECT count(*) FROM ops_events WHERE type = 'processor_rate_limited'`);
    expect(episodes).toBeGreaterThan(0);
    expect(episodes).toBeLessThan(limited);
    expect(await h.count(`SELECT count(*) FROM ops_events WHERE type = 'meter_reporting_failed'`)).toBe(0);
  });

  it('retries 5xx with backoff and the same identifier, then reports', async () => {
    await h.addCustomer('five', 'cus_five');
    h.sim.addFault({ kind: 'server_error', status: 503, count: 2, match: { identifier: 'five-1' } });
    const [id] = await h.ingest([{ customer: 'five', identifier: 'five-1', value: 9 }]);
    await h.drain();
    const [row] = await events(h, [id!]);
    expect(row).toMatchObject({ status: 'reported', attempts: 3, last_error_code: null });
    expect((await attemptsOf(h, id!)).map((a) => [a.outcome, a.http_status])).toEqual([
      ['transient', 503],
      ['transient', 503],
      ['reported', 200],
    ]);
    expectCountedOnce(h, ['five-1']);
  });

  it('a timeout after Stripe applied the event is ambiguous; the retry replays it and it is counted once', async () => {
    await h.addCustomer('slowpoke', 'cus_slowpoke');
    await h.rebuild({ timeoutMs: 300 });
    try {
      h.sim.addFault({ kind: 'timeout_applied', count: 1, match: { identifier: 'to-1' } });
      const [id] = await h.ingest([{ customer: 'slowpoke', identifier: 'to-1', value: 4 }]);
      await h.drain();
      const [row] = await events(h, [id!]);
      expect(row!.status).toBe('reported');
      const attempts = await attemptsOf(h, id!);
      expect(attempts[0]).toMatchObject({ outcome: 'ambiguous', error_code: 'timeout' });
      expect(attempts.at(-1)!.outcome).toBe('reported');
      expectCountedOnce(h, ['to-1']);
      expect(h.sim.usageTotal('cus_slowpoke', METER)).toBe(4);
    } finally {
      await h.rebuild({ timeoutMs: 2000 });
    }
  });

  it("fails an unknown customer's event with Stripe's code and message, once, with one ops event", async () => {
    await h.addCustomer('ghost', 'cus_ghost', { inSimulator: false });
    const [id] = await h.ingest([{ customer: 'ghost', identifier: 'ghost-1' }]);
    await h.drain();
    const [row] = await events(h, [id!]);
    expect(row).toMatchObject({ status: 'failed', last_error_code: 'resource_missing', last_error_source: 'sync', last_error_message: "No such customer: 'cus_ghost'" });
    const attempts = await attemptsOf(h, id!);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]).toMatchObject({ outcome: 'rejected', http_status: 400, error_code: 'resource_missing' });
    expect((attempts[0]!.response as { error: { message: string } }).error.message).toBe("No such customer: 'cus_ghost'");
    const ops = await h.rows<{ source: string; processor: string }>(`SELECT source, processor::text FROM ops_events WHERE type = 'meter_reporting_failed' AND subject_id = $1`, [id]);
    expect(ops).toEqual([{ source: 'sync', processor: 'stripe' }]);

    // The same job again (graphile retry, a duplicate enqueue): nothing moves, no second ops event.
    await h.reporting.reportEvents([id!]);
    expect(await h.count(`SELECT count(*) FROM ops_events WHERE type = 'meter_reporting_failed' AND subject_id = $1`, [id])).toBe(1);
  });

  it('counts "An event already exists with identifier" as reported', async () => {
    await h.addCustomer('dupe', 'cus_dupe');
    const stripe = new Stripe(SIMULATOR_SECRET_KEY, { ...h.sim.clientConfig, maxNetworkRetries: 0 });
    await stripe.billing.meterEvents.create({ event_name: METER, identifier: 'dupe-1', payload: { stripe_customer_id: 'cus_dupe', value: '3' } });
    const [id] = await h.ingest([{ customer: 'dupe', identifier: 'dupe-1', value: 3 }]);
    await h.drain();
    const [row] = await events(h, [id!]);
    expect(row!.status).toBe('reported');
    expect(await attemptsOf(h, id!)).toMatchObject([{ outcome: 'duplicate', http_status: 400 }]);
    expectCountedOnce(h, ['dupe-1']);
  });

  it('the reconciler re-reports an event a killed worker left claimed, and one whose job was lost', async () => {
    await h.addCustomer('stuck', 'cus_stuck');
    const [claimed, lost] = await h.ingest([{ customer: 'stuck', identifier: 'stuck-1' }, { customer: 'stuck', identifier: 'stuck-2' }]);
    // A worker claimed stuck-1, sent it (Stripe counted it) and was SIGKILLed; stuck-2's job vanished.
    const stripe = new Stripe(SIMULATOR_SECRET_KEY, { ...h.sim.clientConfig, maxNetworkRetries: 0 });
    await stripe.billing.meterEvents.create({ event_name: METER, identifier: 'stuck-1', payload: { stripe_customer_id: 'cus_stuck', value: '1' } });
    await h.services.pool.query(`DELETE FROM graphile_worker._private_jobs`);
    await h.services.pool.query(
      `UPDATE meter_events SET claimed_at = now() - interval '10 minutes', attempts = 1, first_attempt_at = now() - interval '10 minutes' WHERE id = $1`,
      [claimed],
    );
    await h.services.pool.query(`UPDATE meter_events SET received_at = now() - interval '20 minutes' WHERE id = $1`, [lost]);

    const result = await h.reporting.reconcile();
    expect(result).toEqual({ expired: 0, requeued: 2 });
    await h.drain();
    const rows = await events(h, [claimed!, lost!]);
    expect(rows.map((r) => r.status)).toEqual(['reported', 'reported']);
    expect(await attemptsOf(h, claimed!)).toMatchObject([{ outcome: 'duplicate' }]);
    expectCountedOnce(h, ['stuck-1', 'stuck-2']);
    // Nothing left to do: a second run finds nothing.
    expect(await h.reporting.reconcile()).toEqual({ expired: 0, requeued: 0 });
  });

  it('does not re-send an event pending past 23 h after its first attempt: failed, flagged, ops event', async () => {
    await h.addCustomer('old', 'cus_old');
    const [viaReconciler, viaJob] = await h.ingest([{ customer: 'old', identifier: 'old-1' }, { customer: 'old', identifier: 'old-2' }]);
    await h.services.pool.query(`DELETE FROM graphile_worker._private_jobs`);
    await h.services.pool.query(
      `UPDATE meter_events SET first_attempt_at = now() - interval '23 hours 5 minutes', claimed_at = now() - interval '1 hour', attempts = 7 WHERE id = $1`,
      [viaReconciler],
    );
    await h.services.pool.query(`UPDATE meter_events SET first_attempt_at = now() - interval '24 hours', attempts = 3 WHERE id = $1`, [viaJob]);

    expect((await h.reporting.reconcile()).expired).toBe(2);
    const rows = await events(h, [viaReconciler!, viaJob!]);
    for (const r of rows) {
      expect(r).toMatchObject({ status: 'failed', last_error_code: 'dedupe_window_expired', last_error_source: 'reconciler' });
      expect(r.attention_reason).toMatch(/23 h/);
    }
    expect(await h.count(`SELECT count(*) FROM ops_events WHERE type = 'meter_reporting_failed' AND source = 'reconciler' AND subject_id = ANY($1::text[])`, [[viaReconciler, viaJob]])).toBe(2);
    expect(h.sim.countsByIdentifier().has('old-1')).toBe(false);
    expect(h.sim.countsByIdentifier().has('old-2')).toBe(false);
  });

  it('the report task itself refuses to send an event past the guard', async () => {
    await h.addCustomer('older', 'cus_older');
    const [id] = await h.ingest([{ customer: 'older', identifier: 'older-1' }]);
    await h.services.pool.query(`DELETE FROM graphile_worker._private_jobs`);
    await h.services.pool.query(`UPDATE meter_events SET first_attempt_at = now() - interval '23 hours 30 minutes' WHERE id = $1`, [id]);
    const summary = await h.reporting.reportEvents([id!]);
    expect(summary).toMatchObject({ claimed: 0, expired: 1 });
    const [row] = await events(h, [id!]);
    expect(row).toMatchObject({ status: 'failed', last_error_code: 'dedupe_window_expired', last_error_source: 'sync' });
    expect(h.sim.countsByIdentifier().has('older-1')).toBe(false);
    expect(await h.count(`SELECT count(*) FROM ops_events WHERE type = 'meter_reporting_failed' AND subject_id = $1`, [id])).toBe(1);
  });
});

describe('v2 meter event stream', () => {
  let h: ReportingHarness;
  beforeAll(async () => {
    h = await startReportingHarness({ api: 'v2' });
  });
  afterAll(() => h?.close());
  afterEach(() => h.sim.clearFaults());

  it('reports through one session in stream requests of at most 100 events', async () => {
    for (let c = 0; c < 20; c++) await h.addCustomer(`v2-${c}`, `cus_v2_${c}`);
    const ids = await h.ingest(Array.from({ length: 2500 }, (_, i) => ({ customer: `v2-${i % 20}`, identifier: `v2-${i}`, value: 2 })));
    await h.drain();
    const rows = await events(h, ids);
    expect(rows.filter((r) => r.status !== 'reported')).toEqual([]);
    expectCountedOnce(h, rows.map((r) => r.identifier));
    expect(h.processor.sessionCount).toBe(1);
    const recorded = h.sim.meterEvents();
    expect(recorded.every((e) => e.api === 'v2_stream')).toBe(true);
    // 2,500 events in stream requests of <= 100: at least 25 requests, plus the session.
    expect(h.sim.stats().requests).toBeGreaterThanOrEqual(26);
    expect(await attemptsOf(h, ids[0]!)).toMatchObject([{ outcome: 'reported', http_status: 202 }]);
  });

  it('renews the session before its 15 minutes end, and once more if Stripe ends it early', async () => {
    await h.addCustomer('renew', 'cus_renew');
    let offset = 0;
    await h.rebuild({ now: () => h.sim.now() + offset });
    try {
      await h.ingest([{ customer: 'renew', identifier: 'renew-1' }]);
      await h.drain();
      expect(h.processor.sessionCount).toBe(1);
      // 14 min 30 s later the session has 30 s left, less than the renewal margin: a new one is opened first.
      h.sim.advanceClock(14.5 * 60_000);
      await h.ingest([{ customer: 'renew', identifier: 'renew-2' }]);
      await h.drain();
      expect(h.processor.sessionCount).toBe(2);
      // Our clock says the session is fresh but Stripe has expired it: the 400 temporary_session_expired renews it and the batch is resent.
      offset = -15.5 * 60_000;
      h.sim.advanceClock(15.5 * 60_000);
      await h.ingest([{ customer: 'renew', identifier: 'renew-3' }]);
      await h.drain();
      expect(h.processor.sessionCount).toBe(3);
    } finally {
      h.sim.advanceClock(-30 * 60_000);
      await h.rebuild({ now: Date.now });
    }
    expectCountedOnce(h, ['renew-1', 'renew-2', 'renew-3']);
  });

  it('rides out 429s on the stream and counts every identifier once', async () => {
    for (let c = 0; c < 4; c++) await h.addCustomer(`v2storm-${c}`, `cus_v2storm_${c}`);
    h.sim.addFault({ kind: 'rate_limit', probability: 0.5, match: { path: '/v2/billing/meter_event_stream' } });
    const ids = await h.ingest(Array.from({ length: 1000 }, (_, i) => ({ customer: `v2storm-${i % 4}`, identifier: `v2storm-${i}` })));
    await h.drain({ timeoutMs: 25_000 });
    const rows = await events(h, ids);
    expect(rows.filter((r) => r.status !== 'reported')).toEqual([]);
    expectCountedOnce(h, rows.map((r) => r.identifier));
    expect(await h.count(`SELECT count(*) FROM event_attempts WHERE outcome = 'rate_limited' AND meter_event_id = ANY($1::uuid[])`, [ids])).toBeGreaterThan(0);
  });

  it('a stream request that timed out after being applied is re-sent with the same identifiers and counted once', async () => {
    await h.addCustomer('v2slow', 'cus_v2slow');
    await h.rebuild({ timeoutMs: 300 });
    try {
      h.sim.addFault({ kind: 'timeout_applied', count: 1, match: { path: '/v2/billing/meter_event_stream', identifier: 'v2slow-0' } });
      const ids = await h.ingest(Array.from({ length: 30 }, (_, i) => ({ customer: 'v2slow', identifier: `v2slow-${i}`, value: 5 })));
      await h.drain();
      const rows = await events(h, ids);
      expect(rows.filter((r) => r.status !== 'reported')).toEqual([]);
      expect((await attemptsOf(h, ids[0]!))[0]).toMatchObject({ outcome: 'ambiguous', error_code: 'timeout' });
      expectCountedOnce(h, rows.map((r) => r.identifier));
      expect(h.sim.usageTotal('cus_v2slow', METER)).toBe(150);
    } finally {
      await h.rebuild({ timeoutMs: 2000 });
    }
  });

  it('5xx on the stream: the batch is retried and reported', async () => {
    await h.addCustomer('v2five', 'cus_v2five');
    h.sim.addFault({ kind: 'server_error', count: 1, match: { path: '/v2/billing/meter_event_stream', customer: 'cus_v2five' } });
    const ids = await h.ingest(Array.from({ length: 10 }, (_, i) => ({ customer: 'v2five', identifier: `v2five-${i}` })));
    await h.drain();
    expect((await events(h, ids)).every((r) => r.status === 'reported' && r.attempts === 2)).toBe(true);
    expectCountedOnce(h, ids.map((_, i) => `v2five-${i}`));
  });
});
