// Braintree windows and invoices against real PostgreSQL: opening (snapshot, uniqueness, no overlap), closing and
// authoring (classification, late usage, ops events), re-authoring, renewals by signed webhook, stale renewals and
// the upcoming-charges preview.
import { createHash, createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../app/billing/audit';
import { StateError } from '../app/billing/errors';
import { createBraintreeWebhookHandler } from '../app/api/braintree-webhooks';
import { startHttpServer, type HttpServer } from '../app/server/http';
import { closeWindowNow, previewUpcomingCharges, previewUpcomingChargesOf, reauthorWindow } from '../app/billing/windows/invoices';
import { settleWindow } from '../app/billing/windows/settlement';
import { enqueueDueWindowCloses, openCurrentWindows, openWindowNow, reconcileStaleRenewals } from '../app/billing/windows/windows';
import { DAY, startBraintreeHarness, type BraintreeHarness } from './support/braintree';

const operator: Actor = { userId: null, label: 'ops@example.test', role: 'operator' };

let h: BraintreeHarness;
let http: HttpServer;
let n = 0;
const now = () => Date.now();
const at = (msFromNow: number) => new Date(now() + msFromNow);
const uniq = (p: string) => `${p}-${++n}`;

beforeAll(async () => {
  h = await startBraintreeHarness();
  http = await startHttpServer({ port: 0, handlers: [createBraintreeWebhookHandler({ pool: h.services.pool, parser: h.processor })] });
  h.sim.configure({ webhookUrl: `${http.url}/webhooks/braintree` });
});
afterAll(async () => {
  await http?.close();
  await h?.close();
});

async function opsEvents(type: string, subjectId: string) {
  return h.rows<{ metadata: Record<string, unknown> }>(`SELECT metadata FROM ops_events WHERE type = $1 AND subject_id = $2`, [type, subjectId]);
}

async function lines(windowId: string) {
  return h.rows<{ id: string; kind: string; event_name: string; quantity: string; billed_units: string; amount_minor: string; event_count: number; carried_from_window_id: string | null; description: string }>(
    `SELECT l.id, l.kind::text AS kind, l.event_name, l.quantity::text AS quantity, l.billed_units::text AS billed_units, l.amount_minor::text AS amount_minor,
            l.event_count, l.carried_from_window_id, l.description
     FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE i.window_id = $1 ORDER BY l.kind, l.event_name`,
    [windowId],
  );
}

async function invoice(windowId: string) {
  return (await h.rows<{ total_minor: string; revision: number }>(`SELECT total_minor::text AS total_minor, revision FROM invoices WHERE window_id = $1`, [windowId]))[0];
}

async function eventStatuses(ids: string[]) {
  return (await h.rows<{ status: string }>(`SELECT status::text AS status FROM meter_events WHERE id = ANY($1::uuid[]) ORDER BY id`, [ids])).map((r) => r.status);
}

describe('opening', () => {
  it('opens one window per period with the prices in force at its start; a second window for the period is impossible', async () => {
    const meter = uniq('snap');
    await h.addMeter(meter);
    await h.addPrice('business', meter, { unitAmountDecimal: '100', effectiveFrom: new Date('2020-01-01'), effectiveTo: at(-20 * DAY) });
    await h.addPrice('business', meter, { unitAmountDecimal: '200', effectiveFrom: at(-20 * DAY) });
    await h.addPrice('business', meter, { unitAmountDecimal: '300', effectiveFrom: at(-1 * DAY) });
    const s = await h.addSubscriber({ externalId: uniq('open'), plan: 'business', start: at(-10 * DAY), end: at(20 * DAY) });

    const [start, end] = [at(-10 * DAY), at(20 * DAY)];
    const results = await Promise.all(Array.from({ length: 6 }, () => openWindowNow(h.services.pool, s.subscriptionId, start, end)));
    expect(results.map((r) => r.status).sort()).toEqual(['exists', 'exists', 'exists', 'exists', 'exists', 'opened']);
    expect(await h.count(`SELECT count(*) FROM windows WHERE subscription_id = $1`, [s.subscriptionId])).toBe(1);

    const [w] = await h.rows<{ price_snapshot: Array<{ eventName: string; unitAmountDecimal: string }>; currency: string; state: string }>(
      `SELECT price_snapshot, currency, state::text AS state FROM windows WHERE subscription_id = $1 ORDER BY period_start LIMIT 1`,
      [s.subscriptionId],
    );
    expect(w!.state).toBe('open');
    expect(w!.currency).toBe('usd');
    expect(w!.price_snapshot.find((p) => p.eventName === meter)?.unitAmountDecimal).toBe('200');
    expect(w!.price_snapshot.find((p) => p.eventName === 'ai_tokens')?.unitAmountDecimal).toBe('50');
  });

  it('refuses a second window for the same period at the database level', async () => {
    const s = await h.addSubscriber({ externalId: uniq('uniq'), start: at(-3 * DAY), end: at(3 * DAY) });
    const r = await openWindowNow(h.services.pool, s.subscriptionId, at(-3 * DAY), at(3 * DAY));
    expect(r.status).toBe('opened');
    if (r.status !== 'opened') return;
    await expect(
      h.services.pool.query(
        `INSERT INTO windows (id, subscription_id, customer_id, period_start, period_end, price_snapshot, currency, updated_at)
         VALUES (gen_random_uuid(), $1, $2, $3, $4, '[]', 'usd', now())`,
        [s.subscriptionId, s.customerId, r.window.periodStart, r.window.periodEnd],
      ),
    ).rejects.toMatchObject({ code: '23505' });
  });

  it('never overlaps windows: a period edited to overlap starts where the previous window ends', async () => {
    const s = await h.addSubscriber({ externalId: uniq('overlap'), start: at(-10 * DAY), end: at(-5 * DAY) });
    const first = await openWindowNow(h.services.pool, s.subscriptionId, at(-10 * DAY), at(-5 * DAY));
    if (first.status !== 'opened') throw new Error(first.status);
    const second = await openWindowNow(h.services.pool, s.subscriptionId, at(-7 * DAY), at(5 * DAY));
    if (second.status !== 'opened') throw new Error(second.status);
    expect(second.window.periodStart.getTime()).toBe(first.window.periodEnd.getTime());
    const covered = await openWindowNow(h.services.pool, s.subscriptionId, at(-2 * DAY), second.window.periodEnd);
    expect(covered.status).toBe('covered');
  });

  it('opens the current window of live subscriptions only (crontab task)', async () => {
    const live = await h.addSubscriber({ externalId: uniq('live'), start: at(-DAY), end: at(DAY) });
    const canceled = await h.addSubscriber({ externalId: uniq('canceled'), start: at(-DAY), end: at(DAY), status: 'canceled' });
    await openCurrentWindows(h.services.pool);
    expect(await h.count(`SELECT count(*) FROM windows WHERE subscription_id = $1 AND state = 'open'`, [live.subscriptionId])).toBe(1);
    expect(await h.count(`SELECT count(*) FROM windows WHERE subscription_id = $1`, [canceled.subscriptionId])).toBe(0);
    await openCurrentWindows(h.services.pool);
    expect(await h.count(`SELECT count(*) FROM windows WHERE subscription_id = $1`, [live.subscriptionId])).toBe(1);
  });
});

describe('closing and authoring', () => {
  it('authors the invoice from the subscription’s events only, classifies them, and fires missing_definition once', async () => {
    const ext = uniq('close');
    const s = await h.addSubscriber({ externalId: ext, start: at(-10 * DAY), end: at(-1 * DAY) });
    const opened = await openWindowNow(h.services.pool, s.subscriptionId, at(-10 * DAY), at(-1 * DAY));
    if (opened.status !== 'opened') throw new Error(opened.status);
    const w = opened.window;
    const inPeriod = await h.ingest(ext, [
      { value: 1250, at: at(-9 * DAY) },
      { value: 1000, at: at(-8 * DAY) },
      { eventName: 'undefined_meter', value: 3, at: at(-8 * DAY) },
      { eventName: 'undefined_meter', value: 4, at: at(-7 * DAY) },
    ]);
    const after = await h.ingest(ext, [{ value: 999, at: at(-DAY / 2) }]);
    // Another customer's usage in the same period is never this window's.
    const other = uniq('other');
    await h.addSubscriber({ externalId: other, start: at(-10 * DAY), end: at(-1 * DAY) });
    const othersEvents = await h.ingest(other, [{ value: 5, at: at(-9 * DAY) }]);

    const closed = await closeWindowNow(h.services.pool, w.id);
    expect(closed.status).toBe('closed');
    expect(await h.windowState(w.id)).toBe('closed');
    const ls = await lines(w.id);
    expect(ls).toHaveLength(1);
    // Essential: $0.05 per 1,000 rounded up: 2,250 -> 3 units -> 15 cents.
    expect(ls[0]).toMatchObject({ kind: 'usage', event_name: 'ai_tokens', quantity: '2250', billed_units: '3', amount_minor: '15', event_count: 2 });
    expect((await invoice(w.id))!.total_minor).toBe('15');
    expect(await eventStatuses(inPeriod)).toEqual(expect.arrayContaining(['matched', 'matched', 'unmatched', 'unmatched']));
    expect(await eventStatuses(after)).toEqual(['recorded']);
    expect(await eventStatuses(othersEvents)).toEqual(['recorded']);
    expect(await h.count(`SELECT count(*) FROM meter_events WHERE invoice_line_id = $1`, [ls[0]!.id])).toBe(2);
    const missing = await opsEvents('metered_missing_definition', w.id);
    expect(missing).toHaveLength(1);
    expect(missing[0]!.metadata).toMatchObject({ event_names: ['undefined_meter'], events: 2 });
    expect(await h.count(`SELECT count(*) FROM graphile_worker.jobs WHERE task_identifier = 'braintree__settle_window' AND key = $1`, [`braintree_settle:${w.id}`])).toBe(1);

    // A second close changes nothing.
    expect(await closeWindowNow(h.services.pool, w.id)).toEqual({ status: 'not_open', state: 'closed' });
    expect(await opsEvents('metered_missing_definition', w.id)).toHaveLength(1);
    expect(await h.count(`SELECT count(*) FROM invoices WHERE window_id = $1`, [w.id])).toBe(1);
  });

  it('marks as unusable an event whose value would overflow its line, and bills the rest', async () => {
    const meter = uniq('gpu');
    await h.addMeter(meter, 'sum');
    await h.addPrice('enterprise', meter, { unitAmountDecimal: '1000000', perUnits: 1n });
    const ext = uniq('overflow');
    const s = await h.addSubscriber({ externalId: ext, plan: 'enterprise', start: at(-5 * DAY), end: at(-DAY) });
    const opened = await openWindowNow(h.services.pool, s.subscriptionId, at(-5 * DAY), at(-DAY));
    if (opened.status !== 'opened') throw new Error(opened.status);
    const [ok, huge] = await h.ingest(ext, [
      { eventName: meter, value: 7, at: at(-4 * DAY) },
      { eventName: meter, value: Number.MAX_SAFE_INTEGER, at: at(-3 * DAY) },
    ]);
    await closeWindowNow(h.services.pool, opened.window.id);
    expect(await eventStatuses([ok!])).toEqual(['matched']);
    const [row] = await h.rows<{ status: string; last_error_code: string; window_id: string }>(`SELECT status::text AS status, last_error_code, window_id FROM meter_events WHERE id = $1`, [huge]);
    expect(row).toEqual({ status: 'unusable', last_error_code: 'line_overflow', window_id: opened.window.id });
    expect((await invoice(opened.window.id))!.total_minor).toBe('7000000');
  });

  it('carries late events into the next window as a labelled late-usage line, once', async () => {
    const ext = uniq('late');
    const s = await h.addSubscriber({ externalId: ext, start: at(-20 * DAY), end: at(-10 * DAY) });
    const w1 = await openWindowNow(h.services.pool, s.subscriptionId, at(-20 * DAY), at(-10 * DAY));
    if (w1.status !== 'opened') throw new Error(w1.status);
    await h.ingest(ext, [{ value: 1000, at: at(-15 * DAY) }]);
    await closeWindowNow(h.services.pool, w1.window.id);
    const w2 = await openWindowNow(h.services.pool, s.subscriptionId, w1.window.periodEnd, at(-2 * DAY));
    if (w2.status !== 'opened') throw new Error(w2.status);
    const late = await h.ingest(ext, [
      { value: 3000, at: at(-14 * DAY) },
      { value: 10, at: at(-13 * DAY) },
    ]);
    const own = await h.ingest(ext, [{ value: 1, at: at(-5 * DAY) }]);
    await closeWindowNow(h.services.pool, w2.window.id);

    const ls = await lines(w2.window.id);
    expect(ls.map((l) => [l.kind, l.quantity, l.amount_minor, l.carried_from_window_id])).toEqual([
      ['usage', '1', '5', null],
      ['late_usage', '3010', '20', w1.window.id],
    ]);
    expect(ls[1]!.description).toMatch(/^Late usage: AI tokens \(\d{4}-\d{2}-\d{2} – \d{4}-\d{2}-\d{2}\)$/);
    const rows = await h.rows<{ window_id: string; late: boolean; status: string }>(`SELECT window_id, late, status::text AS status FROM meter_events WHERE id = ANY($1::uuid[])`, [late]);
    expect(rows.every((r) => r.window_id === w2.window.id && r.late && r.status === 'matched')).toBe(true);
    expect(await eventStatuses(own)).toEqual(['matched']);
    const ops = await opsEvents('metered_late_usage', w2.window.id);
    expect(ops).toHaveLength(1);
    expect(ops[0]!.metadata).toMatchObject({ carried_from_window_id: w1.window.id, events: 2, billed_events: 2, amount_minor: '20' });
    // The first window's invoice did not change.
    expect((await invoice(w1.window.id))!.total_minor).toBe('5');
  });

  it('enqueues closes only for windows whose period ended past the grace (crontab task)', async () => {
    const s1 = await h.addSubscriber({ externalId: uniq('grace'), start: at(-3 * DAY), end: at(-60_000) });
    const s2 = await h.addSubscriber({ externalId: uniq('grace'), start: at(-3 * DAY), end: at(-3_600_000) });
    const w1 = await openWindowNow(h.services.pool, s1.subscriptionId, at(-3 * DAY), at(-60_000));
    const w2 = await openWindowNow(h.services.pool, s2.subscriptionId, at(-3 * DAY), at(-3_600_000));
    await enqueueDueWindowCloses(h.services.pool, { graceMs: 5 * 60_000 });
    const queued = (
      await h.rows<{ payload: { windowIds?: string[] } }>(
        `SELECT j.payload FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE t.identifier = 'braintree__close_window'`,
      )
    ).flatMap((r) => r.payload.windowIds ?? []);
    expect(queued).toContain(w2.status === 'opened' ? w2.window.id : '');
    expect(queued).not.toContain(w1.status === 'opened' ? w1.window.id : '');
    await h.drain(async () => (await h.windowState(w2.status === 'opened' ? w2.window.id : '')) !== 'open');
  });
});

describe('re-authoring', () => {
  it('bills the events that had no definition once an operator adds it; revision + 1; audited', async () => {
    const ext = uniq('reauthor');
    const meter = uniq('renders');
    const s = await h.addSubscriber({ externalId: ext, start: at(-6 * DAY), end: at(-DAY), token: null });
    const w = await openWindowNow(h.services.pool, s.subscriptionId, at(-6 * DAY), at(-DAY));
    if (w.status !== 'opened') throw new Error(w.status);
    const ids = await h.ingest(ext, [
      { value: 2000, at: at(-5 * DAY) },
      { eventName: meter, value: 3, at: at(-4 * DAY) },
      { eventName: meter, value: 4, at: at(-3 * DAY) },
    ]);
    await closeWindowNow(h.services.pool, w.window.id);
    expect((await invoice(w.window.id))!.total_minor).toBe('10');

    await h.addMeter(meter, 'max');
    await h.addPrice('essential', meter, { unitAmountDecimal: '25', effectiveFrom: new Date() });
    const r = await reauthorWindow(h.services.pool, { windowId: w.window.id, actor: operator, reason: 'added renders meter' });
    expect(r.addedPrices).toEqual([meter]);
    expect(r.before).toMatchObject({ revision: 1, totalMinor: 10n, unmatched: 2 });
    expect(r.invoice).toMatchObject({ revision: 2, totalMinor: 110n, unmatched: 0 });
    expect(await eventStatuses(ids)).toEqual(['matched', 'matched', 'matched']);
    expect((await lines(w.window.id)).map((l) => [l.event_name, l.quantity, l.amount_minor])).toEqual([
      ['ai_tokens', '2000', '10'],
      [meter, '4', '100'],
    ]);
    const [audit] = await h.rows<{ action: string; reason: string; before: Record<string, unknown>; after: Record<string, unknown> }>(
      `SELECT action, reason, before, after FROM audit_log WHERE subject_id = $1`,
      [w.window.id],
    );
    expect(audit).toMatchObject({ action: 'window.reauthor', reason: 'added renders meter', before: { revision: 1, total_minor: '10' }, after: { revision: 2, total_minor: '110', added_prices: [meter] } });

    // Still allowed while awaiting a payment method (no sale was ever sent)...
    await settleWindow(h.services.pool, w.window.id, h.settlement);
    expect(await h.windowState(w.window.id)).toBe('awaiting_payment_method');
    await expect(reauthorWindow(h.services.pool, { windowId: w.window.id, actor: operator })).resolves.toMatchObject({ invoice: { revision: 3, totalMinor: 110n } });
  });

  it('the ledger keeps what it names: a window is never deleted, a line that bills events cannot be (ADR 013)', async () => {
    const ext = uniq('refs');
    const s = await h.addSubscriber({ externalId: ext, start: at(-6 * DAY), end: at(-DAY), token: null });
    const w = await openWindowNow(h.services.pool, s.subscriptionId, at(-6 * DAY), at(-DAY));
    if (w.status !== 'opened') throw new Error(w.status);
    const ids = await h.ingest(ext, [{ value: 5, at: at(-5 * DAY) }]);
    await closeWindowNow(h.services.pool, w.window.id);
    const [line] = await lines(w.window.id);
    const refused = [
      [`DELETE FROM windows WHERE id = $1`, [w.window.id]],
      [`UPDATE windows SET id = gen_random_uuid() WHERE id = $1`, [w.window.id]],
      [`DELETE FROM invoice_lines WHERE id = $1`, [line!.id]],
      [`UPDATE invoice_lines SET id = gen_random_uuid() WHERE id = $1`, [line!.id]],
      [`DELETE FROM invoices WHERE window_id = $1`, [w.window.id]],
      [`TRUNCATE invoice_lines CASCADE`, []],
    ] as const;
    for (const [sql, params] of refused) {
      await expect(h.services.pool.query(sql, [...params]), sql).rejects.toMatchObject({ code: '23001' });
    }
    const [event] = await h.rows<{ window_id: string; invoice_line_id: string }>(`SELECT window_id, invoice_line_id FROM meter_events WHERE id = $1`, [ids[0]]);
    expect(event).toEqual({ window_id: w.window.id, invoice_line_id: line!.id });
    expect((await lines(w.window.id)).map((l) => l.id)).toEqual([line!.id]);
  });

  it('refuses to re-author an open window or a charged one', async () => {
    const ext = uniq('charged');
    const s = await h.addSubscriber({ externalId: ext, start: at(-6 * DAY), end: at(-DAY) });
    const w = await openWindowNow(h.services.pool, s.subscriptionId, at(-6 * DAY), at(-DAY));
    if (w.status !== 'opened') throw new Error(w.status);
    await expect(reauthorWindow(h.services.pool, { windowId: w.window.id, actor: operator })).rejects.toThrow(StateError);
    await h.ingest(ext, [{ value: 5000, at: at(-3 * DAY) }]);
    await closeWindowNow(h.services.pool, w.window.id);
    await settleWindow(h.services.pool, w.window.id, h.settlement);
    expect(await h.windowState(w.window.id)).toBe('paid');
    await expect(reauthorWindow(h.services.pool, { windowId: w.window.id, actor: operator })).rejects.toThrow(StateError);
    expect((await invoice(w.window.id))!.revision).toBe(1);
    expect(await h.count(`SELECT count(*) FROM audit_log WHERE subject_id = $1`, [w.window.id])).toBe(0);
  });
});

describe('renewals by webhook', () => {
  const ymd = (d: Date) => d.toISOString().slice(0, 10);
  const midnight = (offsetDays: number) => new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + offsetDays));

  it('subscription_charged_successfully closes the previous window and opens the new period’s, stored once', async () => {
    const ext = uniq('renew');
    const s = await h.addSubscriber({ externalId: ext, start: midnight(-30), end: midnight(0) });
    await openCurrentWindows(h.services.pool, { now: at(-DAY) });
    const [prev] = await h.rows<{ id: string }>(`SELECT id FROM windows WHERE subscription_id = $1`, [s.subscriptionId]);
    await h.ingest(ext, [{ value: 1000, at: midnight(-3) }]);

    const subject = { subscription: { id: s.processorSubscriptionId, status: 'Active' as const, billingPeriodStartDate: ymd(midnight(0)), billingPeriodEndDate: ymd(midnight(29)), nextBillingDate: ymd(midnight(30)) } };
    const webhook = h.sim.buildWebhook('subscription_charged_successfully', subject);
    const post = (body: string) => fetch(`${http.url}/webhooks/braintree`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    const form = new URLSearchParams({ bt_signature: webhook.bt_signature, bt_payload: webhook.bt_payload }).toString();
    const first = await post(form);
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ received: true, duplicate: false });
    expect(await (await post(form)).json()).toEqual({ received: true, duplicate: true });

    await h.drain(async () => (await h.count(`SELECT count(*) FROM webhook_events WHERE processor = 'braintree' AND processed_at IS NOT NULL AND type = 'subscription_charged_successfully' AND payload->'subscription'->>'id' = $1`, [s.processorSubscriptionId])) === 1);
    expect(await h.windowState(prev!.id)).not.toBe('open');
    expect((await invoice(prev!.id))!.total_minor).toBe('5');
    const [sub] = await h.rows<{ current_period_start: Date; current_period_end: Date }>(`SELECT current_period_start, current_period_end FROM subscriptions WHERE id = $1`, [s.subscriptionId]);
    expect(sub).toEqual({ current_period_start: midnight(0), current_period_end: midnight(30) });
    const windows = await h.rows<{ period_start: Date; period_end: Date; state: string }>(`SELECT period_start, period_end, state::text AS state FROM windows WHERE subscription_id = $1 ORDER BY period_start`, [s.subscriptionId]);
    expect(windows).toHaveLength(2);
    expect(windows[1]).toEqual({ period_start: midnight(0), period_end: midnight(30), state: 'open' });

    // Sent through the simulator (its own delivery), the same renewal changes nothing more.
    const again = await h.sim.sendWebhook('subscription_went_active', subject);
    expect(again.status).toBe(200);
    await h.drain(async () => (await h.count(`SELECT count(*) FROM webhook_events WHERE processor = 'braintree' AND processed_at IS NULL`)) === 0);
    expect(await h.count(`SELECT count(*) FROM windows WHERE subscription_id = $1`, [s.subscriptionId])).toBe(2);
  });

  it('answers Braintree’s destination check (bt_challenge) with the SDK', async () => {
    const r = await fetch(`${http.url}/webhooks/braintree?bt_challenge=20f9f8ed05f77439fe955c977e4c8a53`);
    expect(r.status).toBe(200);
    // Braintree's scheme: public key | HMAC-SHA1 keyed with SHA-1 of the private key.
    const digest = createHmac('sha1', createHash('sha1').update(h.sim.privateKey).digest()).update('20f9f8ed05f77439fe955c977e4c8a53').digest('hex');
    expect(await r.text()).toBe(`${h.sim.publicKey}|${digest}`);
    expect((await fetch(`${http.url}/webhooks/braintree?bt_challenge=not-hex!`)).status).toBe(400);
    expect((await fetch(`${http.url}/webhooks/braintree`)).status).toBe(405);
  });

  it('refuses a bad signature (400, webhook_rejected) and records an unknown subscription as not applied', async () => {
    const before = await h.count(`SELECT count(*) FROM ops_events WHERE type = 'webhook_rejected' AND processor = 'braintree'`);
    const webhook = h.sim.buildWebhook('subscription_charged_successfully', { subscription: { id: 'nobody', billingPeriodStartDate: '2026-01-01', nextBillingDate: '2026-02-01' } });
    const tampered = new URLSearchParams({ bt_signature: webhook.bt_signature.replace(/.$/, (c) => (c === 'a' ? 'b' : 'a')), bt_payload: webhook.bt_payload });
    const r = await fetch(`${http.url}/webhooks/braintree`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: tampered.toString() });
    expect(r.status).toBe(400);
    expect(await h.count(`SELECT count(*) FROM ops_events WHERE type = 'webhook_rejected' AND processor = 'braintree'`)).toBe(before + 1);

    const ok = await h.sim.sendWebhook('subscription_charged_successfully', { subscription: { id: 'nobody', billingPeriodStartDate: '2026-01-01', nextBillingDate: '2026-02-01' } });
    expect(ok.status).toBe(200);
    await h.drain(async () => (await h.count(`SELECT count(*) FROM webhook_events WHERE processor = 'braintree' AND last_error LIKE 'unknown_subscription%'`)) === 1);
  });
});

describe('stale renewals', () => {
  it('repairs a subscription whose period ended with no window through open + close, once, audited as the scheduler', async () => {
    const ext = uniq('stale');
    const s = await h.addSubscriber({ externalId: ext, start: at(-8 * DAY), end: at(-2 * DAY) });
    await h.ingest(ext, [{ value: 4000, at: at(-5 * DAY) }]);
    const { repaired } = await reconcileStaleRenewals(h.services.pool);
    const [w] = await h.rows<{ id: string; stale_repaired: boolean; state: string }>(`SELECT id, stale_repaired, state::text AS state FROM windows WHERE subscription_id = $1`, [s.subscriptionId]);
    expect(repaired).toContain(w!.id);
    expect(w).toMatchObject({ stale_repaired: true, state: 'closed' });
    expect((await invoice(w!.id))!.total_minor).toBe('20');
    expect(await opsEvents('metered_renewal_stale_repaired', w!.id)).toHaveLength(1);
    // Audited as an operator's repair is, with the scheduler as the actor.
    const audit = await h.rows<{ actor_label: string; actor_user_id: string | null; reason: string; after: { state: string } }>(
      `SELECT actor_label, actor_user_id, reason, after FROM audit_log WHERE action = 'window.repair_stale' AND subject_id = $1`,
      [w!.id],
    );
    expect(audit).toEqual([{ actor_label: 'scheduler', actor_user_id: null, reason: expect.stringContaining('stale-renewal reconciler'), after: expect.objectContaining({ state: 'closed' }) }]);

    const second = await reconcileStaleRenewals(h.services.pool);
    expect(second.repaired).not.toContain(w!.id);
    expect(await h.count(`SELECT count(*) FROM windows WHERE subscription_id = $1`, [s.subscriptionId])).toBe(1);
    expect(await opsEvents('metered_renewal_stale_repaired', w!.id)).toHaveLength(1);
  });
});

describe('upcoming charges', () => {
  it('previews the open window as it stands, writing nothing, and matches the invoice authored later', async () => {
    const ext = uniq('preview');
    const s = await h.addSubscriber({ externalId: ext, start: at(-4 * DAY), end: at(-DAY) });
    const w = await openWindowNow(h.services.pool, s.subscriptionId, at(-4 * DAY), at(-DAY));
    if (w.status !== 'opened') throw new Error(w.status);
    await h.ingest(ext, [
      { value: 1500, at: at(-3 * DAY) },
      { eventName: 'nothing_defined', value: 2, at: at(-2 * DAY) },
    ]);
    const preview = await previewUpcomingCharges(h.services.pool, s.subscriptionId);
    expect(preview).toMatchObject({ windowId: w.window.id, totalMinor: 10n, unmatchedEvents: 1, unmatchedEventNames: ['nothing_defined'] });
    expect(await h.count(`SELECT count(*) FROM meter_events WHERE subscription_id = $1 AND status = 'recorded'`, [s.subscriptionId])).toBe(2);
    const closed = await closeWindowNow(h.services.pool, w.window.id);
    if (closed.status !== 'closed') throw new Error(closed.status);
    expect(closed.invoice.totalMinor).toBe(preview.totalMinor);
    expect(closed.invoice.lines).toEqual(preview.lines);

    // With no open window, the current period is previewed at today's prices.
    const s2 = await h.addSubscriber({ externalId: uniq('preview'), start: at(-DAY), end: at(DAY) });
    expect(await previewUpcomingCharges(h.services.pool, s2.subscriptionId)).toMatchObject({ windowId: null, totalMinor: 0n, lines: [] });
  });

  const HOUR = DAY / 24;
  it('previews several subscriptions in one read, each as it would be previewed alone, in the order asked', async () => {
    // Two subscriptions without an open window, each with its own usage: their previews must not share a window key.
    const a = uniq('previews');
    const b = uniq('previews');
    const sa = await h.addSubscriber({ externalId: a, start: at(-DAY), end: at(DAY) });
    const sb = await h.addSubscriber({ externalId: b, start: at(-DAY), end: at(DAY) });
    const sc = await h.addSubscriber({ externalId: uniq('previews'), start: at(-4 * DAY), end: at(-DAY) });
    const w = await openWindowNow(h.services.pool, sc.subscriptionId, at(-4 * DAY), at(-DAY));
    if (w.status !== 'opened') throw new Error(w.status);
    await h.ingest(a, [{ value: 1500, at: at(-HOUR) }]);
    await h.ingest(b, [{ value: 4500, at: at(-HOUR) }, { value: 1500, at: at(-2 * HOUR) }]);
    const ids = [sb.subscriptionId, '00000000-0000-4000-8000-000000000000', sa.subscriptionId, sc.subscriptionId];
    const together = await previewUpcomingChargesOf(h.services.pool, ids);
    expect(together.map((p) => p.subscriptionId)).toEqual([sb.subscriptionId, sa.subscriptionId, sc.subscriptionId]);
    const alone = await Promise.all([sb, sa, sc].map((s) => previewUpcomingCharges(h.services.pool, s.subscriptionId)));
    expect(together.map(({ asOf: _, ...p }) => p)).toEqual(alone.map(({ asOf: _, ...p }) => p));
    // Each its own usage: b's two events cost more than a's one, and c's open window has none.
    expect(together[1]!.totalMinor).toBeGreaterThan(0n);
    expect(together[0]!.totalMinor).toBeGreaterThan(together[1]!.totalMinor);
    expect(together[2]!.totalMinor).toBe(0n);
    expect(together[2]!.windowId).toBe(w.window.id);
  });
});
