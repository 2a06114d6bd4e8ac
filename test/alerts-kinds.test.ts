// The alert kinds that read Braintree windows, sales, upcoming charges and the usage rollups (ADR 037), each driven
// from real data to a firing and a resolution: windows closed and settled against the Braintree simulator through the
// real SDK (a soft decline, then paid), events ingested through the ledger, upcoming charges previewed as the invoices
// page does, and usage_rollups recomputed from meter_events by rollupUsage. History older than "now" cannot be sent
// through the API (ids are minted at receipt), so past events are copies of an ingested row under ids minted for the
// past, written to meter_events itself: the rollup and the rules read them as they read any event.
import { v7 as uuidv7 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { evaluateAlerts, median } from '../app/billing/alerts/evaluate';
import { createRule } from '../app/billing/alerts/rules';
import type { Actor } from '../app/billing/audit';
import { rollupUsage, USAGE_BUCKET_MS, uuidv7Floor } from '../app/billing/rollups';
import { closeWindowNow } from '../app/billing/windows/invoices';
import { settleWindow } from '../app/billing/windows/settlement';
import { openWindowNow } from '../app/billing/windows/windows';
import { DAY, useBraintreeHarness } from './support/braintree';

const actor: Actor = { userId: null, label: 'test:alert-kinds', role: 'operator' };
const MIN = 60_000;
const HOUR = 60 * MIN;

const h = useBraintreeHarness();

const evaluate = (atMs: number) => evaluateAlerts(h.services.pool, { now: new Date(atMs) });

async function rule(name: string, kind: string, params: Record<string, unknown>): Promise<string> {
  const outcome = await createRule(h.services.pool, actor, { name, kind, params });
  if (!outcome.ok) throw new Error(`${name}: ${outcome.field} ${outcome.message}`);
  return outcome.value.id;
}

const ids = (list: { ruleId: string }[]) => list.map((f) => f.ruleId);
const openFiring = async (ruleId: string) =>
  (await h.rows<{ values: Record<string, unknown>; summary: string }>(`SELECT values, summary FROM alert_firings WHERE rule_id = $1 AND resolved_at IS NULL`, [ruleId]))[0];

/** Copies of the ingested event `id` received at each of `times` (ms), with `value`: history the API cannot send. */
async function receivedEarlier(id: string, times: number[], value?: number) {
  for (const [i, t] of times.entries()) {
    await h.services.pool.query(
      `INSERT INTO meter_events (id, identifier, customer_id, subscription_id, event_name, meter_id, value, occurred_at, received_at, processor, status)
       SELECT $2::uuid, identifier || ':history-' || $4, customer_id, subscription_id, event_name, meter_id, COALESCE($5, value), $3, $3, processor, status
         FROM meter_events WHERE id = $1`,
      [id, uuidv7({ msecs: t }), new Date(t), `${t}-${i}`, value ?? null],
    );
  }
}

/** Recomputes the usage rollups over [from, to) (whole 10-minute buckets), as desk__rollup_events does for recent ones. */
const rollup = (from: number, to: number) =>
  h.services.pool.connect().then(async (client) => {
    try {
      return await rollupUsage(client, { from: new Date(from), to: new Date(to) });
    } finally {
      client.release();
    }
  });

describe('alert kinds over windows, sales, upcoming charges and usage rollups', () => {
  it('refuses a scope that does not exist, a half-given budget and a scope of both kinds, writing nothing', async () => {
    await h.addMeter('alert_meter');
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['silence', { minutes: 30, customer: 'nobody-at-all' }, 'customer'],
      ['silence', { minutes: 30, meter: 'no_such_meter' }, 'meter'],
      ['silence', { minutes: 30, customer: 'x', meter: 'alert_meter' }, 'meter'],
      ['usage_anomaly', { period: 'hour', factor: 3 }, 'meter'],
      ['usage_anomaly', { meter: 'alert_meter', period: 'week', factor: 3 }, 'period'],
      ['usage_anomaly', { meter: 'alert_meter', period: 'hour', factor: 1 }, 'factor'],
      ['budget', { amount: '10', currency: 'usd', percent: 80 }, 'customer'],
      ['budget', { customer: 'x', amount: '-5', currency: 'usd', percent: 80 }, 'amount'],
      ['budget', { customer: 'x', amount: '5', currency: 'dollars', percent: 80 }, 'currency'],
      ['budget', { customer: 'x', amount: '5', currency: 'usd', percent: 75 }, 'percent'],
      ['failure_rate', { source: 'refunds', minutes: 60, threshold: 0 }, 'source'],
    ];
    for (const [kind, params, field] of cases) {
      expect(await createRule(h.services.pool, actor, { name: `bad ${kind}`, kind, params }), `${kind} ${JSON.stringify(params)}`).toMatchObject({ ok: false, field });
    }
    expect(await h.count(`SELECT count(*) FROM alert_rules`)).toBe(0);
    expect(await h.count(`SELECT count(*) FROM audit_log WHERE action LIKE 'alert_%'`)).toBe(0);
  });

  it('windows unpaid and failed sales by response code fire from a declined sale and resolve once it is paid and ages out', async () => {
    const unpaid = await rule('Unpaid windows', 'windows_unpaid', { hours: 1 });
    const declines = await rule('Declines 2001', 'failure_rate', { source: 'sales', minutes: 60, threshold: 0, code: '2001' });
    const other = await rule('Declines 2000', 'failure_rate', { source: 'sales', minutes: 60, threshold: 0, code: '2000' });
    const events = await rule('Stripe failures', 'failure_rate', { minutes: 60, threshold: 0 });

    const s = await h.addSubscriber({ externalId: 'unpaid-1', start: new Date(Date.now() - 5 * DAY), end: new Date(Date.now() - DAY) });
    const w = await openWindowNow(h.services.pool, s.subscriptionId, new Date(Date.now() - 5 * DAY), new Date(Date.now() - DAY));
    if (w.status !== 'opened') throw new Error(w.status);
    await h.ingest('unpaid-1', [{ value: 20_000, at: new Date(Date.now() - 3 * DAY) }]);
    await closeWindowNow(h.services.pool, w.window.id);
    h.sim.addFault({ kind: 'processor_declined', responseCode: '2001', match: { operation: 'transaction.sale' }, count: 1 });
    const patient = { ...h.settlement, retry: { ...h.settlement.retry, softDecline: { baseMs: 300, maxMs: 300 } } };
    expect(await settleWindow(h.services.pool, w.window.id, patient)).toMatchObject({ outcome: 'retry_scheduled' });
    expect(await h.count(`SELECT count(*) FROM ops_events WHERE type = 'metered_sale_failed' AND subject_id = $1 AND metadata->>'code' = '2001'`, [w.window.id])).toBe(1);

    const now = Date.now();
    const pass = await evaluate(now);
    expect(ids(pass.fired)).toEqual(expect.arrayContaining([unpaid, declines]));
    expect(ids(pass.fired)).not.toContain(other);
    expect(ids(pass.fired)).not.toContain(events);
    expect((await openFiring(unpaid))!.values).toMatchObject({ hours: 1, unpaidWindows: 1 });
    expect((await openFiring(declines))!.values).toMatchObject({ source: 'sales', code: '2001', failed: 1 });
    expect((await openFiring(declines))!.summary).toBe('1 Braintree sale failed with 2001 in the last 60 minutes (limit 0).');

    await h.drain(async () => (await h.windowState(w.window.id)) === 'paid');
    const paid = await evaluate(Date.now());
    expect(ids(paid.resolved)).toContain(unpaid);
    expect(ids(paid.resolved)).not.toContain(declines);
    expect(ids((await evaluate(now + 61 * MIN)).resolved)).toContain(declines);
    // The rule keeps its last evaluation for the desk and the gauges.
    const [stored] = await h.rows<{ last_firing: boolean; last_values: Record<string, unknown> }>(`SELECT last_firing, last_values FROM alert_rules WHERE id = $1`, [unpaid]);
    expect(stored).toMatchObject({ last_firing: false, last_values: { unpaidWindows: 0 } });
  });

  it('budget fires at 50 % and then 80 % of a customer’s upcoming charges, and resolves when the period is no longer upcoming', async () => {
    const end = Date.now() + 20 * DAY;
    const s = await h.addSubscriber({ externalId: 'budget-1', start: new Date(Date.now() - DAY), end: new Date(end) });
    const w = await openWindowNow(h.services.pool, s.subscriptionId, new Date(Date.now() - DAY), new Date(end));
    if (w.status !== 'opened') throw new Error(w.status);
    const half = await rule('Budget 50', 'budget', { customer: 'budget-1', amount: '2.00', currency: 'USD', percent: 50 });
    const most = await rule('Budget 80', 'budget', { customer: 'budget-1', amount: '2', currency: 'usd', percent: 80 });
    const euro = await rule('Budget in eur', 'budget', { customer: 'budget-1', amount: '0.01', currency: 'eur', percent: 50 });

    // Essential: 5 cents per 1,000 tokens, rounded up: 20,000 tokens are 1.00 USD, half of the budget.
    await h.ingest('budget-1', [{ value: 20_000, at: new Date(Date.now() - HOUR) }]);
    const first = await evaluate(Date.now());
    expect(ids(first.fired)).toContain(half);
    expect(ids(first.fired)).not.toContain(most);
    expect(ids(first.fired)).not.toContain(euro);
    expect((await openFiring(half))!.values).toMatchObject({ upcoming: '1.00', currency: 'usd', percent: 50, reachedPercent: 50 });

    await h.ingest('budget-1', [{ value: 20_000, at: new Date(Date.now() - MIN) }]);
    const second = await evaluate(Date.now());
    expect(ids(second.fired)).toEqual([most]);
    expect((await openFiring(most))!.summary).toBe('budget-1’s upcoming charges are 2.00 USD, 100 % of 2 USD (alert at 80 %).');

    const after = await evaluate(end + MIN);
    expect(ids(after.resolved)).toEqual(expect.arrayContaining([half, most]));
  });

  it('silence of one customer or one meter fires and resolves; "usual hours" fires only in an hour that had usage on 4 of 7 days', async () => {
    await h.addSubscriber({ externalId: 'quiet-1', start: new Date(Date.now() - DAY), end: new Date(Date.now() + 20 * DAY) });
    await h.addSubscriber({ externalId: 'busy-1', start: new Date(Date.now() - DAY), end: new Date(Date.now() + 20 * DAY) });
    const customer = await rule('Quiet customer', 'silence', { minutes: 30, customer: 'quiet-1' });
    const meter = await rule('Quiet meter', 'silence', { minutes: 30, meter: 'alert_meter' });
    const usual = await rule('Quiet in its hours', 'silence', { minutes: 30, customer: 'quiet-1', usualHours: 'on' });
    const busy = await rule('Busy customer', 'silence', { minutes: 30, customer: 'busy-1' });

    const [sent] = await h.ingest('quiet-1', [{ eventName: 'alert_meter', value: 3, at: new Date() }]);
    const at = Date.now() + 45 * MIN;
    await h.ingest('busy-1', [{ value: 1, at: new Date() }]);
    const quiet = await evaluate(at);
    expect(ids(quiet.fired)).toEqual(expect.arrayContaining([customer, meter]));
    expect(ids(quiet.fired)).not.toContain(usual);
    // busy-1 also sent nothing for 45 minutes at `at`: it fires too; one event of it 44 minutes on would not.
    expect(ids(quiet.fired)).toContain(busy);
    expect((await openFiring(customer))!.values).toMatchObject({ minutes: 30, scope: 'customer quiet-1' });
    const [notUsual] = await h.rows<{ last_firing: boolean; last_values: Record<string, unknown> }>(`SELECT last_firing, last_values FROM alert_rules WHERE id = $1`, [usual]);
    expect(notUsual).toMatchObject({ last_firing: false, last_values: { usualHours: true, daysWithUsageThisHour: 0 } });

    // Four of the last seven days had usage of quiet-1 in the hour of `at`: now it is its usual hour.
    const hourOfAt = Math.floor(at / HOUR) * HOUR;
    await receivedEarlier(sent!, [1, 2, 4, 6].map((d) => hourOfAt - d * DAY + 5 * MIN));
    const written = await rollup(hourOfAt - 8 * DAY, Math.floor(Date.now() / USAGE_BUCKET_MS) * USAGE_BUCKET_MS + USAGE_BUCKET_MS);
    expect(written.written).toBeGreaterThanOrEqual(5);
    expect(ids((await evaluate(at)).fired)).toEqual([usual]);
    expect((await openFiring(usual))!.values).toMatchObject({ daysWithUsageThisHour: 4 });

    await h.ingest('quiet-1', [{ eventName: 'alert_meter', value: 1, at: new Date() }]);
    expect(ids((await evaluate(Date.now())).resolved)).toEqual(expect.arrayContaining([customer, meter, usual]));
  });

  it('usage anomaly names the customer above K times its trailing median, with the numbers, and resolves when the spike is past', async () => {
    expect(median([1, 5, 2])).toBe(2);
    expect(median([0, 0, 10, 10])).toBe(5);
    await h.addSubscriber({ externalId: 'spike-1', start: new Date(Date.now() - 2 * DAY), end: new Date(Date.now() + 20 * DAY) });
    await h.addSubscriber({ externalId: 'steady-1', start: new Date(Date.now() - 2 * DAY), end: new Date(Date.now() + 20 * DAY) });
    const any = await rule('Token spikes', 'usage_anomaly', { meter: 'alert_meter', period: 'hour', factor: 3, minimum: 50 });
    const steadyOnly = await rule('Steady spikes', 'usage_anomaly', { meter: 'alert_meter', customer: 'steady-1', period: 'hour', factor: 3 });
    const daily = await rule('Daily spikes', 'usage_anomaly', { meter: 'alert_meter', period: 'day', factor: 3, minimum: 50 });

    // This hour: spike-1 sends 100, steady-1 sends 10; the 24 hours before, 10 an hour each.
    const [spike] = await h.ingest('spike-1', [{ eventName: 'alert_meter', value: 100, at: new Date() }]);
    const [steady] = await h.ingest('steady-1', [{ eventName: 'alert_meter', value: 10, at: new Date() }]);
    const at = Date.now() + USAGE_BUCKET_MS;
    const end = Math.floor(at / USAGE_BUCKET_MS) * USAGE_BUCKET_MS;
    const hours = Array.from({ length: 24 }, (_, k) => end - (k + 1) * HOUR - USAGE_BUCKET_MS + MIN);
    await receivedEarlier(spike!, hours, 10);
    await receivedEarlier(steady!, hours, 10);
    await rollup(end - 2 * DAY, end);
    const [sums] = await h.rows<{ events: string; rolled: string }>(
      `SELECT (SELECT sum(value) FROM meter_events WHERE event_name = 'alert_meter' AND id >= $1::uuid AND id < $2::uuid)::text AS events,
              (SELECT sum(value_sum) FROM usage_rollups WHERE event_name = 'alert_meter' AND bucket_start >= $3 AND bucket_start < $4)::text AS rolled`,
      [uuidv7Floor(end - 2 * DAY), uuidv7Floor(end), new Date(end - 2 * DAY), new Date(end)],
    );
    expect(sums!.rolled).toBe(sums!.events);

    const pass = await evaluate(at);
    expect(ids(pass.fired).sort()).toEqual([any, daily].sort());
    expect(ids(pass.fired)).not.toContain(steadyOnly);
    // The day rule: both customers' last 24 hours (330 and 240) against 7 days before of which 6 were empty, a
    // median of 0: a customer new to a meter is an anomaly once above the minimum.
    expect((await openFiring(daily))!.values).toMatchObject({ customersAbove: 2, worst: [{ customer: 'spike-1', usage: 330, median: 0, times: null }, { customer: 'steady-1', usage: 240 }] });
    const values = (await openFiring(any))!.values as { customersAbove: number; worst: Array<{ customer: string; usage: number; median: number; times: number }> };
    expect(values.customersAbove).toBe(1);
    expect(values.worst[0]).toMatchObject({ customer: 'spike-1', usage: 100, median: 10, times: 10 });
    expect((await openFiring(any))!.summary).toContain('spike-1 used 100 of alert_meter in the last hour, 10 times its median of 10 over the 24 hours before');

    const later = await evaluate(at + 2 * HOUR);
    expect(ids(later.resolved)).toContain(any);
    expect(ids(later.resolved)).not.toContain(daily);
    expect(await openFiring(daily)).toBeDefined();
  });
});
