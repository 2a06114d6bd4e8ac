// Closing and settling windows in batches (ADR 014) against real PostgreSQL and the Braintree simulator with the real
// SDK: a batch gives exactly what one window at a time gives (invoices, lines, event states, attempts, one sale per
// order id), windows of one subscription in one batch are authored in period order, the crontab never queues a
// waiting window twice, and every settlement outcome of a mixed batch is the one-window path's.
import { describe, expect, it } from 'vitest';
import { CLOSE_BATCH_SIZE, closeWindowNow, closeWindowsNow } from '../app/billing/windows/invoices';
import { orderIdFor, settleWindow, settleWindows } from '../app/billing/windows/settlement';
import { enqueueDueWindowCloses, openWindowNow } from '../app/billing/windows/windows';
import { DAY, useBraintreeHarness } from './support/braintree';

const h = useBraintreeHarness();
let n = 0;
const uniq = (p: string) => `${p}-${++n}`;
const at = (msFromNow: number) => new Date(Date.now() + msFromNow);

async function open(subscriptionId: string, start: Date, end: Date) {
  const w = await openWindowNow(h.services.pool, subscriptionId, start, end);
  if (w.status !== 'opened') throw new Error(w.status);
  return w.window.id;
}

/**
 * One subscriber with three consecutive windows: usage in each (a priced meter and a name with no definition), and
 * usage in the first period that arrives after the first window closed (late).
 */
async function subscriberWithThreeWindows(tag: string) {
  const ext = uniq(tag);
  const t = [-40 * DAY, -30 * DAY, -20 * DAY, -10 * DAY].map(at);
  const s = await h.addSubscriber({ externalId: ext, start: t[0]!, end: t[3]! });
  const w = [await open(s.subscriptionId, t[0]!, t[1]!), await open(s.subscriptionId, t[1]!, t[2]!), await open(s.subscriptionId, t[2]!, t[3]!)];
  for (let i = 0; i < 3; i++) {
    await h.ingest(ext, [
      { value: 1_500 * (i + 1), at: new Date(t[i]!.getTime() + DAY) },
      { value: 700, at: new Date(t[i]!.getTime() + 2 * DAY) },
      { eventName: 'no_such_meter', value: 3, at: new Date(t[i]!.getTime() + 3 * DAY) },
    ]);
  }
  return { ext, subscriptionId: s.subscriptionId, windows: w, t };
}

/** What a window billed, without ids that differ between two equal histories. */
async function billed(windowId: string) {
  const [inv] = await h.rows<{ id: string; total_minor: string; revision: number }>(`SELECT id, total_minor::text AS total_minor, revision FROM invoices WHERE window_id = $1`, [windowId]);
  const lines = await h.rows(
    `SELECT kind::text AS kind, event_name, event_count, quantity::text AS quantity, billed_units::text AS billed_units, amount_minor::text AS amount_minor,
            carried_from_window_id IS NOT NULL AS carried
     FROM invoice_lines WHERE invoice_id = $1 ORDER BY kind, event_name, quantity`,
    [inv!.id],
  );
  const events = await h.rows(
    `SELECT status::text AS status, late, value::text AS value, last_error_code, (invoice_line_id IS NOT NULL) AS on_line
     FROM meter_events WHERE window_id = $1 ORDER BY occurred_at`,
    [windowId],
  );
  const [w] = await h.rows<{ state: string }>(`SELECT state::text AS state FROM windows WHERE id = $1`, [windowId]);
  return { state: w!.state, total: inv!.total_minor, revision: inv!.revision, lines, events };
}

async function settleJobPayloads() {
  return h.rows<{ payload: { windowId?: string; windowIds?: string[] }; key: string | null }>(
    `SELECT j.payload, j.key FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id
     WHERE t.identifier = 'braintree__settle_window' ORDER BY j.id`,
  );
}

async function closeJobPayloads() {
  return h.rows<{ payload: { windowId?: string; windowIds?: string[] } }>(
    `SELECT j.payload FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id
     WHERE t.identifier = 'braintree__close_window' ORDER BY j.id`,
  );
}

describe('closing in batches', () => {
  it('bills exactly what closing one window at a time bills, windows of one subscription in period order', async () => {
    const one = await subscriberWithThreeWindows('one-by-one');
    const batch = await subscriberWithThreeWindows('batch');
    const other = await subscriberWithThreeWindows('batch-other');

    // One at a time: the first window, then late usage into its period, then the others.
    await closeWindowNow(h.services.pool, one.windows[0]!);
    await h.ingest(one.ext, [{ value: 9_000, at: new Date(one.t[0]!.getTime() + 4 * DAY) }]);
    for (const id of one.windows.slice(1)) await closeWindowNow(h.services.pool, id);

    // The same history with the last two windows closed in one batch (given out of order, with windows of another
    // subscription, a window already closed and an id that names nothing).
    await closeWindowNow(h.services.pool, batch.windows[0]!);
    await closeWindowNow(h.services.pool, other.windows[0]!);
    await h.ingest(batch.ext, [{ value: 9_000, at: new Date(batch.t[0]!.getTime() + 4 * DAY) }]);
    const missing = '00000000-0000-4000-8000-000000000000';
    const results = await closeWindowsNow(h.services.pool, [batch.windows[2]!, other.windows[1]!, batch.windows[1]!, batch.windows[0]!, missing, other.windows[2]!]);
    expect(results.map((r) => r.status)).toEqual(['closed', 'closed', 'closed', 'not_open', 'not_found', 'closed']);

    for (let i = 0; i < 3; i++) expect(await billed(batch.windows[i]!)).toEqual(await billed(one.windows[i]!));
    // The late event went to the second window, as one by one.
    const second = await billed(batch.windows[1]!);
    expect(second.lines).toContainEqual(expect.objectContaining({ kind: 'late_usage', quantity: '9000', carried: true }));
    expect(second.events.filter((e) => e.late)).toHaveLength(1);
    // Each window's missing definition is reported once, for the batch as for one by one.
    const missingOps = await h.count(`SELECT count(*) FROM ops_events WHERE type = 'metered_missing_definition' AND subject_id = ANY($1::text[])`, [batch.windows]);
    expect(missingOps).toBe(3);
    // Nothing is left recorded, and nothing is on two lines.
    expect(await h.count(`SELECT count(*) FROM meter_events WHERE subscription_id = $1 AND status = 'recorded'`, [batch.subscriptionId])).toBe(0);

    // One settlement job covers the batch's four closed windows (and a single close keeps its own keyed job).
    const jobs = await settleJobPayloads();
    const batched = jobs.filter((j) => j.payload.windowIds);
    expect(batched).toHaveLength(1);
    expect(batched[0]!.key).toBeNull();
    expect([...batched[0]!.payload.windowIds!].sort()).toEqual([batch.windows[1]!, batch.windows[2]!, other.windows[1]!, other.windows[2]!].sort());
    expect(jobs.filter((j) => j.payload.windowId === one.windows[0]).map((j) => j.key)).toEqual([`braintree_settle:${one.windows[0]}`]);
  });

  it('rolls back the whole batch when one window cannot be authored, and the task then closes the others alone', async () => {
    const a = await subscriberWithThreeWindows('rollback-a');
    const b = await subscriberWithThreeWindows('rollback-b');
    // A window whose snapshot cannot be read makes its authoring throw.
    await h.services.pool.query(`UPDATE windows SET price_snapshot = '"not a snapshot"'::jsonb WHERE id = $1`, [b.windows[0]]);
    await expect(closeWindowsNow(h.services.pool, [a.windows[0]!, b.windows[0]!])).rejects.toThrow();
    expect(await h.windowState(a.windows[0]!)).toBe('open');
    expect(await h.count(`SELECT count(*) FROM invoices WHERE window_id = $1`, [a.windows[0]])).toBe(0);

    await h.services.pool.query(`SELECT graphile_worker.add_job('braintree__close_window', json_build_object('windowIds', $1::uuid[]), max_attempts => 1)`, [[a.windows[0], b.windows[0]]]);
    await h.runJobsOnce();
    expect(await h.count(`SELECT count(*) FROM invoices WHERE window_id = $1`, [a.windows[0]])).toBe(1);
    expect(await h.windowState(a.windows[0]!)).not.toBe('open');
    expect(await h.windowState(b.windows[0]!)).toBe('open');
    const [failed] = await h.rows<{ last_error: string }>(
      `SELECT j.last_error FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE t.identifier = 'braintree__close_window'`,
    );
    expect(failed!.last_error).toContain(b.windows[0]);
    expect(failed!.last_error).not.toContain(a.windows[0]);
  });

  it('the crontab queues due windows in batches and never queues a window whose close job still waits', async () => {
    // Windows of other tests are due too; only this test's are looked at.
    const start = at(-3 * DAY);
    const ids: string[] = [];
    for (let i = 0; i < CLOSE_BATCH_SIZE + 5; i++) {
      const ext = uniq('cron');
      const s = await h.addSubscriber({ externalId: ext, start, end: at(-DAY) });
      ids.push(await open(s.subscriptionId, start, at(-DAY)));
      await h.ingest(ext, [{ value: 1_000 + i, at: at(-2 * DAY) }]);
    }
    const named = async () => (await closeJobPayloads()).flatMap((j) => j.payload.windowIds ?? (j.payload.windowId ? [j.payload.windowId] : []));
    const first = await enqueueDueWindowCloses(h.services.pool, { graceMs: 0 });
    expect(first.enqueued).toBeGreaterThanOrEqual(ids.length);
    const jobs = await closeJobPayloads();
    expect(jobs.every((j) => (j.payload.windowIds?.length ?? 0) <= CLOSE_BATCH_SIZE)).toBe(true);
    const once = await named();
    for (const id of ids) expect(once.filter((x) => x === id)).toHaveLength(1);

    // A second run while those jobs wait adds nothing.
    expect(await enqueueDueWindowCloses(h.services.pool, { graceMs: 0 })).toEqual({ enqueued: 0 });
    expect((await named()).length).toBe(once.length);

    // A job taken by a worker that then died (still locked) does not hide its windows: they are queued again.
    await h.services.pool.query(`UPDATE graphile_worker._private_jobs SET locked_at = now(), locked_by = 'dead-worker'`);
    const again = await enqueueDueWindowCloses(h.services.pool, { graceMs: 0 });
    expect(again.enqueued).toBe(first.enqueued);
    await h.services.pool.query(`DELETE FROM graphile_worker._private_jobs WHERE locked_by = 'dead-worker'`);

    await h.drain(async () => (await h.count(`SELECT count(*) FROM windows WHERE id = ANY($1::uuid[]) AND state = 'paid'`, [ids])) === ids.length, 30_000);
    for (const id of ids) expect(h.sim.sales({ orderId: orderIdFor(id) })).toHaveLength(1);
  });
});

describe('settling in batches', () => {
  /** A closed window whose invoice is `value / 1000` rounded up × 5 cents (essential), no settle job left queued. */
  async function closed(opts: { value?: number; token?: string | null } = {}) {
    const ext = uniq('settle-batch');
    const s = await h.addSubscriber({ externalId: ext, start: at(-5 * DAY), end: at(-DAY), token: opts.token === undefined ? `tok_${ext}` : opts.token });
    const id = await open(s.subscriptionId, at(-5 * DAY), at(-DAY));
    if ((opts.value ?? 20_000) > 0) await h.ingest(ext, [{ value: opts.value ?? 20_000, at: at(-3 * DAY) }]);
    await closeWindowNow(h.services.pool, id);
    return id;
  }

  async function attempt(windowId: string) {
    const [a] = await h.rows(
      `SELECT status::text AS status, tries, budget_tries, amount_minor::text AS amount_minor, processor_status, response_code,
              first_failure_code, last_failure_code, next_retry_at IS NOT NULL AS retry_set, transaction_id IS NOT NULL AS has_transaction,
              budget_started_at = created_at AS budget_from_start, last_sent_at IS NOT NULL AS sent
       FROM charge_attempts WHERE window_id = $1`,
      [windowId],
    );
    return a ?? null;
  }

  it('gives every window of a mixed batch the outcome and the attempt the one-window path gives it, with one sale per order id', async () => {
    const kinds = ['approved', 'approved', 'soft', 'hard', 'timeout', 'zero', 'no_token', 'paid'] as const;
    const make = async (kind: (typeof kinds)[number]) => {
      const id = await closed({
        value: kind === 'zero' ? 0 : 20_000,
        token: kind === 'no_token' ? null : kind === 'soft' ? `soft_decline_${n + 1}` : kind === 'hard' ? `hard_decline_${n + 1}` : undefined,
      });
      if (kind === 'timeout') h.sim.addFault({ kind: 'timeout_applied', match: { operation: 'transaction.sale', orderId: orderIdFor(id) }, count: 1 });
      if (kind === 'paid') await settleWindow(h.services.pool, id, h.settlement);
      return id;
    };
    const single: string[] = [];
    const batch: string[] = [];
    for (const k of kinds) single.push(await make(k));
    for (const k of kinds) batch.push(await make(k));

    const singleResults = [];
    for (const id of single) singleResults.push(await settleWindow(h.services.pool, id, h.settlement));
    const missing = '00000000-0000-4000-8000-000000000001';
    const batchResults = await settleWindows(h.services.pool, [...batch, missing, batch[0]!], { ...h.settlement, salesInFlight: 3 });

    const shape = (r: { outcome: string; state: string | null; salesSent: number; adopted: boolean }) => ({ outcome: r.outcome, state: r.state, salesSent: r.salesSent, adopted: r.adopted });
    expect(batch.map((id) => shape(batchResults.get(id)!))).toEqual(singleResults.map(shape));
    expect(batchResults.get(missing)).toMatchObject({ outcome: 'not_found' });
    for (let i = 0; i < kinds.length; i++) {
      expect({ kind: kinds[i], state: await h.windowState(batch[i]!), attempt: await attempt(batch[i]!) }).toEqual({
        kind: kinds[i],
        state: await h.windowState(single[i]!),
        attempt: await attempt(single[i]!),
      });
    }
    expect(batch.map((id) => batchResults.get(id)!.outcome)).toEqual(['paid', 'paid', 'retry_scheduled', 'failed_exhausted', 'retry_scheduled', 'paid', 'awaiting_payment_method', 'nothing_to_do']);
    // At most one sale per window; the timed-out sale was applied once and will be found by its order id.
    for (const id of batch) expect(h.sim.sales({ orderId: orderIdFor(id) }).length).toBeLessThanOrEqual(1);
    expect(h.sim.sales({ orderId: orderIdFor(batch[4]!) })).toHaveLength(1);
    expect(h.sim.sales({ orderId: orderIdFor(batch[5]!) })).toHaveLength(0);

    // Run again: nothing new is sold; the lost answer is searched for and adopted instead of selling again.
    await h.drain(async () => (await h.windowState(batch[4]!)) === 'paid');
    expect(h.sim.sales({ orderId: orderIdFor(batch[4]!) })).toHaveLength(1);
    expect(h.sim.approvedSalesByOrderId().get(orderIdFor(batch[0]!))).toBe(1);
  });

  it('leaves a window another live settler holds to it, and looks again later', async () => {
    const [a, b] = [await closed(), await closed()];
    const holder = await h.services.pool.connect();
    try {
      await holder.query(`SELECT pg_advisory_lock(('x' || substr(replace($1::text, '-', ''), 1, 16))::bit(64)::bigint)`, [b]);
      const results = await settleWindows(h.services.pool, [a, b], h.settlement);
      expect(results.get(a)).toMatchObject({ outcome: 'paid', salesSent: 1 });
      expect(results.get(b)).toMatchObject({ outcome: 'busy', salesSent: 0 });
      expect(h.sim.sales({ orderId: orderIdFor(b) })).toHaveLength(0);
      expect((await settleJobPayloads()).map((j) => j.key)).toContain(`braintree_settle:${b}`);
    } finally {
      await holder.query(`SELECT pg_advisory_unlock_all()`);
      holder.release();
    }
    await h.drain(async () => (await h.windowState(b)) === 'paid');
    expect(h.sim.sales({ orderId: orderIdFor(b) })).toHaveLength(1);
  });

  it('a batch job settles what its close job closed: every window paid, one approved sale each', async () => {
    const ids = [await closed(), await closed(), await closed()];
    await h.services.pool.query(`DELETE FROM graphile_worker._private_jobs`);
    await h.services.pool.query(`SELECT graphile_worker.add_job('braintree__settle_window', json_build_object('windowIds', $1::uuid[]))`, [ids]);
    await h.drain(async () => (await h.count(`SELECT count(*) FROM windows WHERE id = ANY($1::uuid[]) AND state = 'paid'`, [ids])) === ids.length);
    for (const id of ids) expect(h.sim.approvedSalesByOrderId().get(orderIdFor(id))).toBe(1);
  });
});
