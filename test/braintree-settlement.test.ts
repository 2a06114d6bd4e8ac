// Settlement of Braintree windows against the simulator with the real SDK: every state transition, including the
// ones that must not happen (re-charge after a hard decline, a second sale after an ambiguous one, re-author after a
// sale), retries with backoff through run_at within the budget, operator actions, and the sweep.
import { describe, expect, it } from 'vitest';
import type { Actor } from '../app/billing/audit';
import { StateError } from '../app/billing/errors';
import { closeWindowNow, reauthorWindow } from '../app/billing/windows/invoices';
import { orderIdFor, settleAgain, settleWindow, sweepSettlements, writeOffWindow } from '../app/billing/windows/settlement';
import { openWindowNow } from '../app/billing/windows/windows';
import { DAY, useBraintreeHarness } from './support/braintree';

const operator: Actor = { userId: null, label: 'ops@example.test', role: 'operator' };
const finance: Actor = { userId: null, label: 'finance@example.test', role: 'finance' };

const h = useBraintreeHarness();
let n = 0;

/** A closed window of a new subscriber whose invoice is `value / 1000` rounded up × 5 cents (essential). */
async function closedWindow(opts: { value?: number; token?: string | null } = {}) {
  const ext = `settle-${++n}`;
  const s = await h.addSubscriber({ externalId: ext, start: new Date(Date.now() - 5 * DAY), end: new Date(Date.now() - DAY), token: opts.token === undefined ? `tok_${ext}` : opts.token });
  const w = await openWindowNow(h.services.pool, s.subscriptionId, new Date(Date.now() - 5 * DAY), new Date(Date.now() - DAY));
  if (w.status !== 'opened') throw new Error(w.status);
  if ((opts.value ?? 20_000) > 0) await h.ingest(ext, [{ value: opts.value ?? 20_000, at: new Date(Date.now() - 3 * DAY) }]);
  await closeWindowNow(h.services.pool, w.window.id);
  return { windowId: w.window.id, orderId: orderIdFor(w.window.id), ext, ...s };
}

async function attempt(windowId: string) {
  const [a] = await h.rows<{
    status: string; tries: number; amount_minor: string; transaction_id: string | null; processor_status: string | null; response_code: string | null;
    first_failure_code: string | null; last_failure_code: string | null; first_failure_at: Date | null; last_failure_at: Date | null; next_retry_at: Date | null; order_id: string;
  }>(
    `SELECT status::text AS status, tries, amount_minor::text AS amount_minor, transaction_id, processor_status, response_code, first_failure_code,
            last_failure_code, first_failure_at, last_failure_at, next_retry_at, order_id
     FROM charge_attempts WHERE window_id = $1`,
    [windowId],
  );
  return a;
}

const sales = (orderId: string) => h.sim.sales({ orderId }).length;
const approved = (orderId: string) => h.sim.approvedSalesByOrderId().get(orderId) ?? 0;
const ops = (type: string, windowId: string) => h.count(`SELECT count(*) FROM ops_events WHERE type = $1 AND subject_id = $2`, [type, windowId]);
const settleJobs = (windowId: string) => h.rows<{ run_at: Date }>(`SELECT run_at FROM graphile_worker.jobs WHERE key = $1`, [`braintree_settle:${windowId}`]);
const settled = (windowId: string, state: string) => async () => (await h.windowState(windowId)) === state;

describe('happy paths', () => {
  it('closed -> paid with one sale whose order id derives from the window; a second run does nothing', async () => {
    const w = await closedWindow();
    await h.drain(settled(w.windowId, 'paid'));
    expect(sales(w.orderId)).toBe(1);
    expect(approved(w.orderId)).toBe(1);
    const [sale] = h.sim.sales({ orderId: w.orderId });
    expect(sale).toMatchObject({ amount: '1.00', paymentMethodToken: `tok_${w.ext}`, customerId: `bt_${w.ext}`, status: 'submitted_for_settlement' });
    expect(await attempt(w.windowId)).toMatchObject({ status: 'succeeded', tries: 1, amount_minor: '100', transaction_id: sale!.id, processor_status: 'submitted_for_settlement', first_failure_code: null });
    const [row] = await h.rows<{ paid_at: Date | null }>(`SELECT paid_at FROM windows WHERE id = $1`, [w.windowId]);
    expect(row!.paid_at).toBeInstanceOf(Date);

    expect(await settleWindow(h.services.pool, w.windowId, h.settlement)).toMatchObject({ outcome: 'nothing_to_do', state: 'paid', salesSent: 0 });
    expect(sales(w.orderId)).toBe(1);
    expect(await h.count(`SELECT count(*) FROM charge_attempts WHERE window_id = $1`, [w.windowId])).toBe(1);
  });

  it('a zero total is paid without a sale', async () => {
    const w = await closedWindow({ value: 0 });
    const r = await settleWindow(h.services.pool, w.windowId, h.settlement);
    expect(r).toMatchObject({ outcome: 'paid', salesSent: 0 });
    expect(await h.windowState(w.windowId)).toBe('paid');
    expect(sales(w.orderId)).toBe(0);
    expect(await attempt(w.windowId)).toMatchObject({ status: 'succeeded', tries: 0, amount_minor: '0' });
  });

  it('runs concurrently without a second sale (the other run is busy and looks again later)', async () => {
    const w = await closedWindow();
    h.sim.addFault({ kind: 'slow', delayMs: 300, match: { operation: 'transaction.sale', orderId: w.orderId }, count: 1 });
    const results = await Promise.all([settleWindow(h.services.pool, w.windowId, h.settlement), settleWindow(h.services.pool, w.windowId, h.settlement)]);
    expect(results.map((r) => r.outcome).sort()).toEqual(['busy', 'paid']);
    await h.drain(async () => (await settleJobs(w.windowId)).length === 0);
    expect(sales(w.orderId)).toBe(1);
  });
});

describe('payment method', () => {
  it('no default payment method -> awaiting_payment_method (ops event once); settle again after it is fixed -> paid; audited', async () => {
    const w = await closedWindow({ token: null });
    await settleWindow(h.services.pool, w.windowId, h.settlement);
    expect(await h.windowState(w.windowId)).toBe('awaiting_payment_method');
    expect(await settleWindow(h.services.pool, w.windowId, h.settlement)).toMatchObject({ outcome: 'nothing_to_do' });
    expect(await ops('metered_charge_awaiting_payment_method', w.windowId)).toBe(1);
    expect(sales(w.orderId)).toBe(0);
    expect(await attempt(w.windowId)).toMatchObject({ tries: 0, first_failure_code: 'no_payment_method' });

    h.sim.addPaymentMethod(`bt_${w.ext}`, `tok_new_${w.ext}`);
    await h.services.pool.query(`UPDATE customers SET default_payment_method_token = $2 WHERE id = $1`, [w.customerId, `tok_new_${w.ext}`]);
    expect(await settleAgain(h.services.pool, { windowId: w.windowId, actor: operator, reason: 'card added' })).toEqual({ state: 'closed' });
    await h.drain(settled(w.windowId, 'paid'));
    expect(sales(w.orderId)).toBe(1);
    const [audit] = await h.rows<{ action: string; actor_label: string; before: Record<string, unknown>; after: Record<string, unknown> }>(
      `SELECT action, actor_label, before, after FROM audit_log WHERE subject_id = $1`,
      [w.windowId],
    );
    expect(audit).toMatchObject({ action: 'window.settle_again', actor_label: 'ops@example.test', before: { state: 'awaiting_payment_method' }, after: { state: 'closed' } });
  });

  it('a token Braintree does not know (91518) -> awaiting_payment_method', async () => {
    const w = await closedWindow();
    h.sim.removePaymentMethod(`tok_${w.ext}`);
    await settleWindow(h.services.pool, w.windowId, h.settlement);
    expect(await h.windowState(w.windowId)).toBe('awaiting_payment_method');
    expect(await attempt(w.windowId)).toMatchObject({ tries: 1, last_failure_code: '91518' });
    expect(await ops('metered_charge_awaiting_payment_method', w.windowId)).toBe(1);
  });
});

describe('declines and errors', () => {
  it('soft declines -> retry_scheduled through run_at, keeping the first and latest failures, then paid', async () => {
    const w = await closedWindow();
    h.sim.addFault({ kind: 'processor_declined', responseCode: '2001', match: { orderId: w.orderId }, count: 1 });
    h.sim.addFault({ kind: 'processor_declined', responseCode: '2000', match: { orderId: w.orderId }, count: 1 });
    const patient = { ...h.settlement, retry: { ...h.settlement.retry, softDecline: { baseMs: 600, maxMs: 600 } } };
    const first = await settleWindow(h.services.pool, w.windowId, patient);
    expect(first).toMatchObject({ outcome: 'retry_scheduled', state: 'retry_scheduled', salesSent: 1 });
    const a = await attempt(w.windowId);
    expect(a).toMatchObject({ status: 'soft_declined', tries: 1, first_failure_code: '2001', last_failure_code: '2001' });
    const jobs = await settleJobs(w.windowId);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.run_at.getTime()).toBe(a!.next_retry_at!.getTime());
    expect(a!.next_retry_at!.getTime()).toBeGreaterThan(a!.last_failure_at!.getTime());
    // Not due yet: a run now changes nothing.
    expect(await settleWindow(h.services.pool, w.windowId, patient)).toMatchObject({ outcome: 'not_due', salesSent: 0 });
    expect(sales(w.orderId)).toBe(1);

    await h.drain(settled(w.windowId, 'paid'));
    expect(await attempt(w.windowId)).toMatchObject({ status: 'succeeded', tries: 3, first_failure_code: '2001', last_failure_code: '2000' });
    expect(sales(w.orderId)).toBe(3);
    expect(approved(w.orderId)).toBe(1);
  });

  it('spends the budget on soft declines -> failed_exhausted (ops event once); finance writes it off (audited), once', async () => {
    const w = await closedWindow({ token: `insufficient_${n + 1}` });
    await h.drain(settled(w.windowId, 'failed_exhausted'));
    expect(sales(w.orderId)).toBe(3); // maxTries
    expect(await attempt(w.windowId)).toMatchObject({ status: 'soft_declined', tries: 3, first_failure_code: '2001', next_retry_at: null });
    expect(await ops('metered_charge_failed_exhausted', w.windowId)).toBe(1);
    expect(await settleWindow(h.services.pool, w.windowId, h.settlement)).toMatchObject({ outcome: 'nothing_to_do', salesSent: 0 });

    await expect(writeOffWindow(h.services.pool, { windowId: w.windowId, actor: finance, reason: 'uncollectible' })).resolves.toEqual({ state: 'written_off' });
    expect(await h.windowState(w.windowId)).toBe('written_off');
    expect(await attempt(w.windowId)).toMatchObject({ status: 'written_off' });
    await expect(writeOffWindow(h.services.pool, { windowId: w.windowId, actor: finance })).rejects.toThrow(StateError);
    await expect(settleAgain(h.services.pool, { windowId: w.windowId, actor: operator })).rejects.toThrow(StateError);
    const audits = await h.rows<{ action: string; before: Record<string, unknown> }>(`SELECT action, before FROM audit_log WHERE subject_id = $1`, [w.windowId]);
    expect(audits).toEqual([{ action: 'window.write_off', before: expect.objectContaining({ state: 'failed_exhausted', charge_status: 'soft_declined' }) }]);
    expect(await ops('metered_charge_failed_exhausted', w.windowId)).toBe(1);
  });

  it('a hard decline -> failed_exhausted at once and is never charged again automatically; only an explicit override charges again', async () => {
    const w = await closedWindow({ token: `hard_decline_${n + 1}` });
    await settleWindow(h.services.pool, w.windowId, h.settlement);
    expect(await h.windowState(w.windowId)).toBe('failed_exhausted');
    expect(await attempt(w.windowId)).toMatchObject({ status: 'hard_declined', tries: 1, response_code: '2004', first_failure_code: '2004' });
    expect(await ops('metered_charge_failed_exhausted', w.windowId)).toBe(1);

    // Nothing the machine does charges it again: the task, the sweep, a forced job.
    await settleWindow(h.services.pool, w.windowId, h.settlement);
    await sweepSettlements(h.services.pool, { closedAfterMs: 0, settlingAfterMs: 0, retryGraceMs: 0 });
    await h.services.pool.query(`UPDATE windows SET state = 'retry_scheduled' WHERE id = $1`, [w.windowId]);
    expect(await settleWindow(h.services.pool, w.windowId, h.settlement)).toMatchObject({ salesSent: 0 });
    await h.services.pool.query(`UPDATE windows SET state = 'failed_exhausted' WHERE id = $1`, [w.windowId]);
    await h.runJobsOnce();
    expect(sales(w.orderId)).toBe(1);

    await expect(settleAgain(h.services.pool, { windowId: w.windowId, actor: operator })).rejects.toThrow(/hard declined/);
    // The customer's card was replaced; the operator charges again explicitly.
    h.sim.addPaymentMethod(`bt_${w.ext}`, `tok_fixed_${w.ext}`);
    await h.services.pool.query(`UPDATE customers SET default_payment_method_token = $2 WHERE id = $1`, [w.customerId, `tok_fixed_${w.ext}`]);
    expect(await settleAgain(h.services.pool, { windowId: w.windowId, actor: operator, overrideHardDecline: true, reason: 'new card' })).toEqual({ state: 'retry_scheduled' });
    await h.drain(settled(w.windowId, 'paid'));
    expect(sales(w.orderId)).toBe(2);
    expect(approved(w.orderId)).toBe(1);
    expect(await attempt(w.windowId)).toMatchObject({ status: 'succeeded', tries: 2, first_failure_code: '2004' });
    const [audit] = await h.rows<{ after: Record<string, unknown> }>(`SELECT after FROM audit_log WHERE subject_id = $1 AND action = 'window.settle_again'`, [w.windowId]);
    expect(audit!.after).toMatchObject({ override_hard_decline: true });
  });

  it('gateway_rejected -> failed_exhausted at once', async () => {
    const w = await closedWindow({ token: `gateway_rejected_${n + 1}` });
    await settleWindow(h.services.pool, w.windowId, h.settlement);
    expect(await h.windowState(w.windowId)).toBe('failed_exhausted');
    expect(await attempt(w.windowId)).toMatchObject({ status: 'gateway_rejected', last_failure_code: 'gateway_rejected_fraud' });
    expect(sales(w.orderId)).toBe(1);
  });

  it('an API error that was not applied (429) -> retry_scheduled -> paid', async () => {
    const w = await closedWindow();
    h.sim.addFault({ kind: 'rate_limit', match: { operation: 'transaction.sale', orderId: w.orderId }, count: 1 });
    expect(await settleWindow(h.services.pool, w.windowId, h.settlement)).toMatchObject({ outcome: 'retry_scheduled' });
    expect(await attempt(w.windowId)).toMatchObject({ status: 'error', first_failure_code: 'tooManyRequestsError' });
    await h.drain(settled(w.windowId, 'paid'));
    expect(approved(w.orderId)).toBe(1);
  });

  it('cannot re-author once a sale was sent', async () => {
    const w = await closedWindow();
    h.sim.addFault({ kind: 'processor_declined', responseCode: '2000', match: { orderId: w.orderId }, count: 1 });
    await settleWindow(h.services.pool, w.windowId, h.settlement);
    expect(await h.windowState(w.windowId)).toBe('retry_scheduled');
    await expect(reauthorWindow(h.services.pool, { windowId: w.windowId, actor: operator })).rejects.toThrow(StateError);
  });
});

describe('ambiguous outcomes: search by order id before any new sale', () => {
  it('timeout after the sale was applied -> search finds it -> paid with exactly one sale', async () => {
    const w = await closedWindow();
    h.sim.addFault({ kind: 'timeout_applied', match: { operation: 'transaction.sale', orderId: w.orderId }, count: 1 });
    const first = await settleWindow(h.services.pool, w.windowId, h.settlement);
    expect(first).toMatchObject({ outcome: 'retry_scheduled', salesSent: 1 });
    expect(await attempt(w.windowId)).toMatchObject({ status: 'ambiguous', last_failure_code: 'timeout' });
    await h.drain(settled(w.windowId, 'paid'));
    expect(sales(w.orderId)).toBe(1);
    expect(await attempt(w.windowId)).toMatchObject({ status: 'succeeded', tries: 1, transaction_id: h.sim.sales({ orderId: w.orderId })[0]!.id });
  });

  for (const kind of ['timeout_not_applied', 'reset_not_applied', 'server_error'] as const) {
    it(`${kind}: the search finds nothing, then one new sale -> paid`, async () => {
      const w = await closedWindow();
      h.sim.addFault({ kind, match: { operation: 'transaction.sale', orderId: w.orderId }, count: 1 });
      await settleWindow(h.services.pool, w.windowId, h.settlement);
      expect(await attempt(w.windowId)).toMatchObject({ status: 'ambiguous' });
      expect(sales(w.orderId)).toBe(0);
      await h.drain(settled(w.windowId, 'paid'));
      expect(sales(w.orderId)).toBe(1);
      expect(await attempt(w.windowId)).toMatchObject({ status: 'succeeded', tries: 2 });
    });
  }

  it('never sells while the search itself fails', async () => {
    const w = await closedWindow();
    h.sim.addFault({ kind: 'reset_applied', match: { operation: 'transaction.sale', orderId: w.orderId }, count: 1 });
    h.sim.addFault({ kind: 'server_error', match: { operation: 'transaction.search_ids' }, count: 3 });
    await settleWindow(h.services.pool, w.windowId, h.settlement);
    await h.drain(settled(w.windowId, 'paid'));
    expect(sales(w.orderId)).toBe(1);
    expect(await attempt(w.windowId)).toMatchObject({ status: 'succeeded', tries: 1 });
  });

  it('a sale left unrecorded (the settler lost its database session mid-sale), run again before the search delay: searched for once it has passed, never sold again', async () => {
    const w = await closedWindow();
    const slow = { ...h.settlement, ambiguousSearchDelayMs: 60_000, retry: { ...h.settlement.retry, maxElapsedMs: 3_600_000 } };
    // The gateway takes a while over the sale; meanwhile the settler's session ends (a restart, a failover).
    h.sim.addFault({ kind: 'slow', delayMs: 400, match: { operation: 'transaction.sale', orderId: w.orderId }, count: 1 });
    const salesSeen = h.sim.stats().byOperation['transaction.sale'] ?? 0;
    const first = settleWindow(h.services.pool, w.windowId, slow);
    while ((h.sim.stats().byOperation['transaction.sale'] ?? 0) === salesSeen) await new Promise((r) => setTimeout(r, 5));
    const [holder] = await h.rows<{ pid: number }>(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted`);
    await h.services.pool.query(`SELECT pg_terminate_backend($1)`, [holder!.pid]);
    await expect(first).rejects.toThrow();
    expect(sales(w.orderId)).toBe(1);
    const [sent] = await h.rows<{ last_sent_at: Date }>(`SELECT last_sent_at FROM charge_attempts WHERE window_id = $1`, [w.windowId]);
    expect(await h.windowState(w.windowId)).toBe('settling');

    // The job is retried (or the sweep finds the window) before the gateway timeout has passed: not yet.
    const early = { ...slow, now: () => new Date(sent!.last_sent_at.getTime() + 1000) };
    expect(await settleWindow(h.services.pool, w.windowId, early)).toMatchObject({ outcome: 'search_later', salesSent: 0 });
    expect(await h.windowState(w.windowId)).toBe('retry_scheduled');
    // Once it has: the search finds the sale and adopts it; no second sale.
    const late = { ...slow, now: () => new Date(sent!.last_sent_at.getTime() + 61_000) };
    expect(await settleWindow(h.services.pool, w.windowId, late)).toMatchObject({ outcome: 'paid', salesSent: 0, adopted: true });
    expect(sales(w.orderId)).toBe(1);
    expect(await attempt(w.windowId)).toMatchObject({ status: 'succeeded', tries: 1, transaction_id: h.sim.sales({ orderId: w.orderId })[0]!.id });
  });

  it('does not search before the gateway timeout has passed since the sale was sent', async () => {
    const w = await closedWindow();
    h.sim.addFault({ kind: 'timeout_applied', match: { operation: 'transaction.sale', orderId: w.orderId }, count: 1 });
    const slow = { ...h.settlement, ambiguousSearchDelayMs: 60_000 };
    await settleWindow(h.services.pool, w.windowId, slow);
    const searches = h.sim.stats().searches;
    expect(await settleWindow(h.services.pool, w.windowId, slow)).toMatchObject({ outcome: 'not_due', salesSent: 0 });
    expect(h.sim.stats().searches).toBe(searches);
    const a = await attempt(w.windowId);
    expect(a!.next_retry_at!.getTime()).toBeGreaterThan(Date.now() + 50_000);
  });
});

describe('the sweep', () => {
  it('re-enqueues a closed window whose settle job was lost, and a settling window whose worker died', async () => {
    const lost = await closedWindow();
    await h.services.pool.query(`DELETE FROM graphile_worker._private_jobs`);
    // A worker that died after marking its sale sent (the sale reached Braintree).
    const died = await closedWindow();
    await h.services.pool.query(`DELETE FROM graphile_worker._private_jobs`);
    h.sim.addFault({ kind: 'timeout_applied', match: { operation: 'transaction.sale', orderId: died.orderId }, count: 1 });
    await settleWindow(h.services.pool, died.windowId, { ...h.settlement, ambiguousSearchDelayMs: 0 });
    await h.services.pool.query(`DELETE FROM graphile_worker._private_jobs`);
    await h.services.pool.query(`UPDATE windows SET state = 'settling', updated_at = now() - interval '1 hour' WHERE id = $1`, [died.windowId]);
    await h.services.pool.query(`UPDATE charge_attempts SET status = 'pending' WHERE window_id = $1`, [died.windowId]);

    const { enqueued } = await sweepSettlements(h.services.pool, { closedAfterMs: 0 });
    expect(enqueued).toBe(2);
    await h.drain(async () => (await h.windowState(lost.windowId)) === 'paid' && (await h.windowState(died.windowId)) === 'paid');
    expect(sales(lost.orderId)).toBe(1);
    expect(sales(died.orderId)).toBe(1);
  });
});
