// A short fault campaign inside `npm test` (the long one is `npm run chaos -- --seeds 50`): two real web processes
// behind the campaign's round-robin proxy, three workers, operator actions from the desk, the Stripe and Braintree
// simulators each in its own process and a PostgreSQL cluster per seed, with
// kills (some aimed at a worker in the middle of a sale), processor faults, dropped connections and database restarts;
// Braintree windows closed, authored and settled by the workers; then the invariants of PRODUCT.md. And checks that
// the invariant checker itself sees what it must (a checker that cannot fail would prove nothing).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { AlertReceiver } from '../chaos/alerts';
import { runSeed } from '../chaos/campaign';
import { checkAlerts, checkInvariants, checkOpenFirings, checkOperatorActions, type Accepted, type AlertReceipt, type AlertRecords } from '../chaos/invariants';
import { createChannel } from '../app/billing/alerts/channels';
import { deliverAlert } from '../app/billing/alerts/deliveries';
import { evaluateAlerts } from '../app/billing/alerts/evaluate';
import { createRule } from '../app/billing/alerts/rules';
import { BraintreeProcessor } from '../app/billing/processors/braintree/processor';
import { startBraintreeSimulator, type BraintreeSimulator } from '../simulators/braintree/simulator';
import { closeWindowNow } from '../app/billing/windows/invoices';
import { settleWindow } from '../app/billing/windows/settlement';
import { openWindowNow } from '../app/billing/windows/windows';
import { startTestApp, seedCustomers, type TestApp } from './support/app';

describe('the fault campaign', () => {
  // Seeds whose schedules kill workers (one with a sale in flight) and the web process, drop connections, and put
  // Braintree faults on sales and searches (chaos/campaign.ts picks the faults from the seed).
  it.each([1, 2])('seed %i: nothing lost, nothing counted or charged twice, every event and window terminal or actionable', async (seed) => {
    const r = await runSeed({ seed, events: 600 });
    expect(r.violations).toEqual([]);
    expect(r.accepted).toBeGreaterThan(600);
    const injected = Object.values(r.faults).reduce((a, b) => a + b, 0);
    expect(injected).toBeGreaterThan(0);
    // Braintree windows were opened, closed, authored and settled by the workers (none is left between states: an
    // invariant), with sales sent to the simulator; whether a given sale is approved or declined is the seed's faults.
    const windows = Object.values(r.braintree.windows).reduce((a, b) => a + b, 0);
    expect(windows).toBeGreaterThanOrEqual(2 * r.braintree.subscriptions - 1);
    expect(r.braintree.sales).toBeGreaterThan(0);
    expect(r.braintree.events.matched ?? 0).toBeGreaterThan(0);
    // Alert evaluation ran all along (here and in the workers), rules fired, and both channels were sent to: the
    // random one answered in more than one way, the healthy one got everything (checkAlerts: no violation above).
    expect(r.alerts.passes.ok).toBeGreaterThan(5);
    expect(r.alerts.workerPasses.ran).toBeGreaterThan(5);
    expect(r.alerts.firings.opened).toBeGreaterThan(0);
    expect(r.alerts.deliveries.healthy.delivered ?? 0).toBeGreaterThan(r.alerts.firings.opened);
    expect(Object.keys(r.alerts.answers.random).length).toBeGreaterThan(1);
  }, 300_000);
});

describe('the invariant checker', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
    await seedCustomers(app);
  });
  afterAll(() => app?.close());

  it('flags a lost event, a changed value, a stuck event and a double count, and passes a clean ledger', async () => {
    const pool = app.services.pool;
    const ok = await app.services.ledger.reportUsage('acme', 'ai_tokens', { value: 5, identifier: 'inv-ok' });
    const stuck = await app.services.ledger.reportUsage('acme', 'ai_tokens', { value: 7, identifier: 'inv-stuck' });
    await pool.query(`UPDATE meter_events SET status = 'reported' WHERE id = $1`, [ok.event.id]);
    const accepted = new Map<string, Accepted>([['inv-ok', { identifier: 'inv-ok', value: 5, customer: 'acme' }]]);
    const clean = { counts: { 'inv-ok': 1 }, data: [{ identifier: 'inv-ok', value: 5, status: 'accepted' }] };
    await pool.query(`UPDATE meter_events SET status = 'reported' WHERE id = $1`, [stuck.event.id]);
    accepted.set('inv-stuck', { identifier: 'inv-stuck', value: 7, customer: 'acme' });
    const both = { counts: { 'inv-ok': 1, 'inv-stuck': 1 }, data: [...clean.data, { identifier: 'inv-stuck', value: 7, status: 'accepted' }] };
    expect(await checkInvariants(pool, accepted, both)).toEqual([]);

    const lost = new Map(accepted).set('inv-lost', { identifier: 'inv-lost', value: 1, customer: 'acme' });
    expect((await checkInvariants(pool, lost, both)).join('\n')).toMatch(/accepted but not in the ledger: 1 — inv-lost/);
    const changed = new Map(accepted).set('inv-ok', { identifier: 'inv-ok', value: 6, customer: 'acme' });
    expect((await checkInvariants(pool, changed, both)).join('\n')).toMatch(/stored with another value than accepted: 1 — inv-ok 6≠5/);
    expect((await checkInvariants(pool, accepted, { ...both, counts: { 'inv-ok': 2, 'inv-stuck': 1 } })).join('\n')).toMatch(/counted more than once by Stripe: 1 — inv-ok×2/);
    expect((await checkInvariants(pool, accepted, clean)).join('\n')).toMatch(/reported but not counted by Stripe: 1 — inv-stuck/);
    await pool.query(`UPDATE meter_events SET status = 'pending' WHERE id = $1`, [stuck.event.id]);
    expect((await checkInvariants(pool, accepted, both)).join('\n')).toMatch(/not in a terminal or actionable state: 1 — inv-stuck pending/);
  });
});

describe('the invariant checker, Braintree windows', () => {
  let app: TestApp;
  let sim: BraintreeSimulator;
  let paidWindow: string;
  let zeroWindow: string;
  const accepted = new Map<string, Accepted>();
  const DAY = 86_400_000;
  beforeAll(async () => {
    app = await startTestApp();
    await seedCustomers(app);
    sim = await startBraintreeSimulator({ amountRules: false });
    sim.addPaymentMethod('bt_umbrella', 'tok_umbrella');
    await app.services.pool.query(`UPDATE customers SET default_payment_method_token = 'tok_umbrella' WHERE external_id = 'umbrella'`);
    const processor = new BraintreeProcessor({ merchantId: sim.merchantId, publicKey: sim.publicKey, privateKey: sim.privateKey, apiBase: sim.url, timeoutMs: 2000 });
    const pool = app.services.pool;
    const { rows } = await pool.query<{ id: string }>(`SELECT id FROM subscriptions WHERE processor_subscription_id = 'bt_sub_umbrella'`);
    const subscriptionId = rows[0]!.id;
    const now = Date.now();
    // A past period with usage (one event no meter defines), settled by a real sale; an earlier one with none.
    const events = [
      { id: 'bt-inv-1', name: 'ai_tokens', value: 12_000, at: now - 4 * DAY },
      { id: 'bt-inv-2', name: 'ai_tokens', value: 3_000, at: now - 3 * DAY },
      { id: 'bt-inv-3', name: 'chaos_unmetered', value: 5, at: now - 3 * DAY },
      { id: 'bt-inv-open', name: 'ai_tokens', value: 7, at: now - 1000 },
    ];
    for (const e of events) {
      await app.services.ledger.reportUsage('umbrella', e.name, { value: e.value, identifier: e.id, timestamp: new Date(e.at) });
      accepted.set(e.id, { identifier: e.id, value: e.value, customer: 'umbrella' });
    }
    const zero = await openWindowNow(pool, subscriptionId, new Date(now - 6 * DAY), new Date(now - 5 * DAY));
    const paid = await openWindowNow(pool, subscriptionId, new Date(now - 5 * DAY), new Date(now - 2 * DAY));
    if (zero.status !== 'opened' || paid.status !== 'opened') throw new Error('windows not opened');
    zeroWindow = zero.window.id;
    paidWindow = paid.window.id;
    for (const id of [zeroWindow, paidWindow]) {
      await closeWindowNow(pool, id);
      expect((await settleWindow(pool, id, { processor, ambiguousSearchDelayMs: 0 })).outcome).toBe('paid');
    }
  });
  afterAll(async () => {
    await sim?.stop();
    await app?.close();
  });

  const q = (sql: string, params: unknown[] = []) => app.services.pool.query(sql, params);
  const check = async (records = { sales: sim.sales() }) => (await checkInvariants(app.services.pool, accepted, { counts: {}, data: [] }, records)).join('\n');
  /** Plants a violation with `plant`, expects the checker to report `expected`, then restores the ledger. */
  const flags = async (plant: string, restore: string, expected: RegExp, params: unknown[] = [], restoreParams = params) => {
    await q(plant, params);
    try {
      expect(await check()).toMatch(expected);
    } finally {
      await q(restore, restoreParams);
    }
    expect(await check()).toBe('');
  };

  it('passes the real windows, invoices and sale', async () => {
    expect(sim.sales()).toHaveLength(1);
    expect(await check()).toBe('');
  });

  it('flags a window charged twice, a sale for a window not paid, a wrong amount, a paid window never charged, a sale for a zero total', async () => {
    const [sale] = sim.sales();
    expect(await check({ sales: [sale!, { ...sale!, id: 'second' }] })).toMatch(/window charged more than once \(approved sales per order id\): 1 — mdw-/);
    expect(await check({ sales: [{ ...sale!, amount: '0.01' }] })).toMatch(/paid window not charged its invoice total: 1 — .*sale \S+ of 0\.01/);
    expect(await check({ sales: [] })).toMatch(/paid window not charged its invoice total: 1 — .*paid with no approved sale/);
    expect(await check({ sales: [sale!, { ...sale!, id: 'zero', orderId: `mdw-${zeroWindow}`, status: 'processor_declined' }] })).toMatch(/zero total but a sale was sent/);
    expect(await check({ sales: [sale!, { ...sale!, id: 'stray', orderId: 'mdw-nowhere' }] })).toMatch(/approved sale for a window that is not paid: 1 — mdw-nowhere stray \(window unknown\)/);
    // A declined sale the attempt never counted: a sale sent without its trace.
    expect(await check({ sales: [{ ...sale!, id: 'untraced', status: 'processor_declined' }, sale!] })).toMatch(/more sales for a window than its charge attempt sent: 1 — mdw-\S+: 2 sale\(s\), 1 tries \(window paid\)/);
    await flags(`UPDATE windows SET state = 'failed_exhausted' WHERE id = $1`, `UPDATE windows SET state = 'paid' WHERE id = $1`, /approved sale for a window that is not paid: 1 — mdw-\S+ \S+ \(window failed_exhausted\)/, [paidWindow]);
    await flags(`UPDATE windows SET state = 'retry_scheduled' WHERE id = $1`, `UPDATE windows SET state = 'paid' WHERE id = $1`, /window not settled .*: 1 — \S+ retry_scheduled/, [zeroWindow]);
  });

  it('flags an invoice total that is not its lines, and a line that is not the aggregation of exactly its events', async () => {
    await flags(`UPDATE invoices SET total_minor = total_minor + 1 WHERE window_id = $1`, `UPDATE invoices SET total_minor = total_minor - 1 WHERE window_id = $1`, /invoice total is not the sum of its lines: 1/, [paidWindow]);
    // A billed event's value changed under its line: the quantity is no longer its events' sum.
    await flags(`UPDATE meter_events SET value = value + 1 WHERE identifier = 'bt-inv-1'`, `UPDATE meter_events SET value = value - 1 WHERE identifier = 'bt-inv-1'`, /invoice line is not the aggregation of exactly its events: 1 — .*quantity 15000≠15001/);
    // A line whose amount does not follow from its billed units.
    await flags(
      `UPDATE invoice_lines SET amount_minor = amount_minor + 1 WHERE invoice_id = (SELECT id FROM invoices WHERE window_id = $1)`,
      `UPDATE invoice_lines SET amount_minor = amount_minor - 1 WHERE invoice_id = (SELECT id FROM invoices WHERE window_id = $1)`,
      /amount \d+≠/,
      [paidWindow],
    );
  });

  it('flags an event billed in two lines or windows, a line naming an event it does not count, and an event of another window', async () => {
    // An extra line in the zero window's invoice that names an event the paid window's line also counts.
    const { rows } = await q(`SELECT l.id, l.meter_id FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE i.window_id = $1`, [paidWindow]);
    const line = rows[0] as { id: string; meter_id: string };
    await q(
      `INSERT INTO invoice_lines (id, invoice_id, kind, meter_id, event_name, description, event_count, quantity, billed_units, unit_amount_decimal, per_units, rounding, amount_minor)
       SELECT gen_random_uuid(), i.id, 'usage', $2, 'ai_tokens', 'planted', 0, 0, 0, 5, 1000, 'up', 0 FROM invoices i WHERE i.window_id = $1`,
      [zeroWindow, line.meter_id],
    );
    await flags(
      `UPDATE meter_events SET invoice_line_id = (SELECT l.id FROM invoice_lines l WHERE l.description = 'planted') WHERE identifier = 'bt-inv-2'`,
      `UPDATE meter_events SET invoice_line_id = $1 WHERE identifier = 'bt-inv-2'`,
      /invoice line is not the aggregation of exactly its events: 2 — (?=.*says 2 events, 1 name it)(?=.*says 0 events, 1 name it, .*not its window's matched usage events)/,
      [],
      [line.id],
    );
    await q(`DELETE FROM invoice_lines WHERE description = 'planted'`);
    await flags(`UPDATE meter_events SET window_id = $1 WHERE identifier = 'bt-inv-2'`, `UPDATE meter_events SET window_id = $1 WHERE identifier = 'bt-inv-2'`, /1 of its events are not its window's matched usage events/, [zeroWindow], [paidWindow]);
  });

  it('flags a lost Braintree event, one in no Braintree state, and one a window skipped', async () => {
    const lost = new Map(accepted).set('bt-inv-lost', { identifier: 'bt-inv-lost', value: 1, customer: 'umbrella' });
    expect((await checkInvariants(app.services.pool, lost, { counts: {}, data: [] }, { sales: sim.sales() })).join('\n')).toMatch(/accepted but not in the ledger: 1 — bt-inv-lost/);
    await flags(`UPDATE meter_events SET status = 'reported' WHERE identifier = 'bt-inv-open'`, `UPDATE meter_events SET status = 'recorded' WHERE identifier = 'bt-inv-open'`, /Braintree event in no Braintree state.*: 1 — bt-inv-open reported/);
    await flags(
      `UPDATE meter_events SET last_error_code = NULL WHERE identifier = 'bt-inv-3'`,
      `UPDATE meter_events SET last_error_code = 'missing_definition' WHERE identifier = 'bt-inv-3'`,
      /Braintree event in no Braintree state.*: 1 — bt-inv-3 unmatched window=\S+ line=- code=-/,
    );
    // Back to recorded though it arrived long before its window was authored: the window skipped it.
    const { rows } = await q(`SELECT window_id, invoice_line_id, received_at FROM meter_events WHERE identifier = 'bt-inv-3'`);
    const before = rows[0] as { window_id: string; received_at: Date };
    await flags(
      `UPDATE meter_events SET status = 'recorded', window_id = NULL, last_error_code = NULL, received_at = now() - interval '1 hour' WHERE identifier = 'bt-inv-3'`,
      `UPDATE meter_events SET status = 'unmatched', window_id = $1, last_error_code = 'missing_definition', received_at = $2 WHERE identifier = 'bt-inv-3'`,
      /Braintree event left recorded by a window that should have billed it: 1 — bt-inv-3 \(window \S+, paid\)/,
      [],
      [before.window_id, before.received_at],
    );
  });
});

describe('the invariant checker, operator actions', () => {
  let app: TestApp;
  let windowId: string;
  beforeAll(async () => {
    app = await startTestApp();
    await seedCustomers(app);
    const { rows } = await app.services.pool.query<{ id: string }>(`SELECT id FROM subscriptions WHERE processor_subscription_id = 'bt_sub_umbrella'`);
    const opened = await openWindowNow(app.services.pool, rows[0]!.id, new Date(Date.now() - 3 * 86_400_000), new Date(Date.now() - 2 * 86_400_000));
    if (opened.status !== 'opened') throw new Error('window not opened');
    windowId = opened.window.id;
  });
  afterAll(() => app?.close());

  const none = { writtenOff: [] as string[], reauthored: [] as string[] };
  const noStripe = { counts: {}, data: [] };
  const check = async (
    record = none,
    sales: Array<{ id: string; orderId: string; amount: string; currencyIsoCode: string; status: string; createdAt: number }> = [],
    stripe: { counts: Record<string, number>; data: Array<{ identifier: string; value: number; status: string }> } = noStripe,
  ) => (await checkOperatorActions(app.services.pool, record, { sales }, stripe)).join('\n');

  it('flags a write-off that left no written-off window, a re-author without its entry or after a sale, and a retry of a counted event', async () => {
    const q = (sql: string, params: unknown[] = []) => app.services.pool.query(sql, params);
    expect(await check()).toBe('');
    expect(await check({ ...none, writtenOff: [windowId] })).toMatch(/write-off answered but the window is not written off with one audit entry: 1 — \S+ open, 0 window.write_off entries/);
    expect(await check({ ...none, reauthored: [windowId] })).toMatch(/re-author answered but no window.reauthor audit entry: 1/);
    // The audit log is append-only: what is planted stays, so each plant is checked in turn.
    await q(`INSERT INTO audit_log (actor_label, action, subject_type, subject_id) VALUES ('chaos', 'window.reauthor', 'window', $1)`, [windowId]);
    expect(await check({ ...none, reauthored: [windowId] })).toBe('');
    const sale = { id: 'sale-before', orderId: `mdw-${windowId}`, amount: '1.00', currencyIsoCode: 'USD', status: 'processor_declined', createdAt: Date.now() - 60_000 };
    expect(await check(none, [sale])).toMatch(/window re-authored after a sale was sent for it: 1 — \S+ re-authored at .* after sale sale-before/);
    expect(await check(none, [{ ...sale, createdAt: Date.now() + 60_000 }])).toBe('');

    const counted = await app.services.ledger.reportUsage('acme', 'ai_tokens', { value: 3, identifier: 'ops-counted' });
    await q(`INSERT INTO event_attempts (id, meter_event_id, started_at, source, outcome) VALUES (gen_random_uuid(), $1, now() - interval '1 minute', 'sync', 'reported')`, [counted.event.id]);
    await q(`INSERT INTO audit_log (actor_label, action, subject_type, after) VALUES ('chaos', 'meter_event.retry', 'meter_event', $1::jsonb)`, [JSON.stringify({ ids: [counted.event.id] })]);
    expect(await check()).toMatch(/retry re-sent an event Stripe had already counted: 1 — ops-counted \(last attempt reported/);
    // Stripe rejected that report afterwards (an asynchronous rejection, seed 17 of the campaign of 2026-12-07): the
    // event was not counted, and its retry is no re-send of a counted event.
    const rejectedByStripe = { counts: {}, data: [{ identifier: 'ops-counted', value: 3, status: 'rejected' }] };
    expect(await check(none, [], rejectedByStripe)).toBe('');
    // A second retry after a second reported attempt needs a second rejection: one rejection covers one retry.
    await q(`INSERT INTO event_attempts (id, meter_event_id, started_at, source, outcome) VALUES (gen_random_uuid(), $1, now(), 'sync', 'reported')`, [counted.event.id]);
    await q(`INSERT INTO audit_log (actor_label, action, subject_type, after, at) VALUES ('chaos', 'meter_event.retry', 'meter_event', $1::jsonb, now() + interval '1 second')`, [JSON.stringify({ ids: [counted.event.id] })]);
    expect(await check(none, [], rejectedByStripe)).toMatch(/retry re-sent an event Stripe had already counted: 1 — ops-counted \(last attempt reported .*Stripe rejected 1 of its identifiers\)/);
    // An accepted record under its identifier is no rejection.
    expect(await check(none, [], { counts: { 'ops-counted': 1 }, data: [{ identifier: 'ops-counted', value: 3, status: 'accepted' }] })).toMatch(/already counted: 2 — /);
  });
});

describe('the invariant checker, alerts', () => {
  // Real rules, channels and deliveries: two passes (silence fires with no event in the ledger, then resolves once one
  // arrives), each notice delivered by deliverAlert — the alerts__deliver task's code — to the campaign's receivers
  // (chaos/alerts.ts): the random one answers 500 first, then 2xx. The clean records pass; then each kind of violation
  // checkAlerts looks for is planted, reported, and restored.
  let app: TestApp;
  let random: AlertReceiver;
  let healthy: AlertReceiver;
  let records: AlertRecords;
  const ids = { random: '', healthy: '' };
  const actor = { userId: null, label: 'test:chaos', role: 'operator' };
  beforeAll(async () => {
    app = await startTestApp();
    await seedCustomers(app);
    const pool = app.services.pool;
    // Draws: 0.4 → a 500; 0.1 → accept, 0.1 → status 200 (chaos/alerts.ts's weights and statuses).
    const draws = [0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1];
    random = await AlertReceiver.start(() => draws.shift() ?? 0.1);
    healthy = await AlertReceiver.start(null);
    for (const [role, receiver] of [['random', random], ['healthy', healthy]] as const) {
      const made = await createChannel(pool, actor, { name: `chaos-${role}`, kind: 'webhook', url: receiver.url });
      if (!made.ok) throw new Error(made.message);
      receiver.setSecret(made.value.secret!);
      ids[role] = made.value.id;
    }
    const rule = await createRule(pool, actor, { name: 'silence', kind: 'silence', params: { minutes: 1 } });
    if (!rule.ok) throw new Error(rule.message);
    const pass = async () => {
      const client = await pool.connect();
      try {
        return await evaluateAlerts(client);
      } finally {
        client.release();
      }
    };
    expect((await pass()).fired).toHaveLength(1);
    await app.services.ledger.reportUsage('acme', 'ai_tokens', { value: 1, identifier: 'alerts-1' });
    expect((await pass()).resolved).toHaveLength(1);
    const withDb = async <T,>(fn: (db: pg.PoolClient) => Promise<T>) => {
      const c = await pool.connect();
      try {
        return await fn(c);
      } finally {
        c.release();
      }
    };
    const { rows } = await pool.query<{ id: string }>(`SELECT id::text FROM alert_deliveries ORDER BY created_at, channel_id`);
    expect(rows).toHaveLength(4);
    for (const { id } of rows) {
      for (let attempt = 1; attempt <= 2; attempt++) if ((await deliverAlert(withDb, id, { attempt, maxAttempts: 8 })).state === 'delivered') break;
    }
    records = {
      channels: [
        { id: ids.random, name: 'chaos-random', alwaysAccepts: false, received: () => random.receipts() },
        { id: ids.healthy, name: 'chaos-healthy', alwaysAccepts: true, received: () => healthy.receipts() },
      ],
    };
  });
  afterAll(async () => {
    await random?.close();
    await healthy?.close();
    await app?.close();
  });

  const q = (sql: string, params: unknown[] = []) => app.services.pool.query(sql, params);
  const check = async (r = records) => (await checkAlerts(app.services.pool, r)).join('\n');
  /** `records` with the random channel's receipts changed by `edit`. */
  const receipts = (edit: (rs: AlertReceipt[]) => AlertReceipt[]): AlertRecords => ({ channels: [{ ...records.channels[0]!, received: () => edit(random.receipts()) }, records.channels[1]!] });
  const flags = async (plant: string, restore: string, expected: RegExp, params: unknown[] = [], restoreParams = params) => {
    await q(plant, params);
    try {
      expect(await check()).toMatch(expected);
    } finally {
      await q(restore, restoreParams);
    }
    expect(await check()).toBe('');
  };

  it('passes the real firings and deliveries (one retried after a 500)', async () => {
    expect(random.receipts().map((r) => r.answer)).toEqual(['server_error', 'accept', 'accept']);
    expect(await check()).toBe('');
  });

  it('flags a second open firing, a firing resolved before it fired, and overlapping firings of one rule', async () => {
    const { rows } = await q(`SELECT id, rule_id, fired_at, resolved_at FROM alert_firings`);
    const f = rows[0] as { id: string; rule_id: string; fired_at: Date; resolved_at: Date };
    await q(`DROP INDEX alert_firings_one_open_per_rule`);
    try {
      await q(`INSERT INTO alert_firings (id, rule_id, values, summary) VALUES (gen_random_uuid(), $1, '{}', 'planted'), (gen_random_uuid(), $1, '{}', 'planted')`, [f.rule_id]);
      const found = await check();
      expect(found).toMatch(/rule with more than one open firing: 1 — silence×2/);
      expect(found).toMatch(/firing or resolution without exactly one delivery per channel enabled at the time: 4 —/);
      expect(await checkOpenFirings(app.services.pool)).toHaveLength(1);
    } finally {
      await q(`DELETE FROM alert_firings WHERE summary = 'planted'`);
      await q(`CREATE UNIQUE INDEX alert_firings_one_open_per_rule ON alert_firings (rule_id) WHERE resolved_at IS NULL`);
    }
    await flags(`UPDATE alert_firings SET resolved_at = fired_at - interval '1 second' WHERE id = $1`, `UPDATE alert_firings SET resolved_at = $2 WHERE id = $1`, /firing resolved before it fired.*: 1 — silence/, [f.id], [f.id, f.resolved_at]);
    // A second firing of the rule that opened before the first resolved (its deliveries planted too: only the overlap).
    await q(
      `INSERT INTO alert_firings (id, rule_id, fired_at, values, summary, resolved_at, resolved_values) VALUES ('00000000-0000-4000-8000-000000000001', $1, $2::timestamptz + interval '1 millisecond', '{}', 'planted', $3::timestamptz + interval '1 second', '{}')`,
      [f.rule_id, f.fired_at, f.resolved_at],
    );
    await q(`INSERT INTO alert_deliveries (id, channel_id, firing_id, event, state) SELECT gen_random_uuid(), c.id, '00000000-0000-4000-8000-000000000001', e, 'failed' FROM alert_channels c CROSS JOIN (VALUES ('firing'), ('resolved')) AS v(e)`);
    try {
      expect(await check()).toMatch(/^a rule's firings overlap in time: 1 — silence: fired .* while the one fired .* was open/);
    } finally {
      await q(`DELETE FROM alert_deliveries WHERE firing_id = '00000000-0000-4000-8000-000000000001'`);
      await q(`DELETE FROM alert_firings WHERE summary = 'planted'`);
    }
    expect(await check()).toBe('');
  });

  it('flags a notice with a delivery too many or none, and a pending delivery no job will send', async () => {
    const { rows } = await q(`SELECT firing_id FROM alert_deliveries WHERE event = 'firing' LIMIT 1`);
    const firingId = (rows[0] as { firing_id: string }).firing_id;
    await q(`INSERT INTO alert_deliveries (id, channel_id, firing_id, event) VALUES (gen_random_uuid(), $1, $2, 'firing')`, [ids.healthy, firingId]);
    try {
      const found = await check();
      expect(found).toMatch(/without exactly one delivery per channel enabled at the time: 1 — silence firing \S+: 2 deliveries to chaos-healthy/);
      expect(found).toMatch(/pending delivery that no job will send: 1 — \S+ \(firing, 0 attempts; no job\)/);
      expect(found).toMatch(/channel that always answers 2xx not delivered by the end: 1/);
    } finally {
      await q(`DELETE FROM alert_deliveries WHERE state = 'pending'`);
    }
    await flags(`UPDATE alert_deliveries SET event = 'test' WHERE channel_id = $1 AND event = 'resolved'`, `UPDATE alert_deliveries SET event = 'resolved' WHERE channel_id = $1 AND event = 'test'`, /0 deliveries to chaos-random.*\n.*delivery for no notice.*: 1 — \S+ test firing=/s, [ids.random]);
  });

  it('flags deliveries that do not agree with what the receivers got', async () => {
    const [firstAccepted] = random.receipts().filter((r) => r.answer === 'accept');
    const d = firstAccepted!.deliveryId!;
    // Delivered, but the channel never received it (or its receipt was no 2xx).
    expect(await check(receipts((rs) => rs.filter((r) => r.deliveryId !== d || r.answer !== 'accept')))).toMatch(/delivery recorded delivered that its channel did not last answer 2xx: 1 — chaos-random: \S+ delivered, 2 attempts recorded \(last 200\), received 1 \(server_error\)/);
    // A notification the ledger does not hold, one unsigned, one whose body names another firing.
    const stray = { ...firstAccepted!, deliveryId: '00000000-0000-4000-8000-00000000000f' };
    expect(await check(receipts((rs) => [...rs, stray]))).toMatch(/notification received that the ledger does not hold for that channel: 1 — chaos-random: 0{8}-0{4}-4000-8000-0{11}f/);
    expect(await check(receipts((rs) => rs.map((r) => (r.deliveryId === d ? { ...r, signatureValid: false } : r))))).toMatch(/notification whose signature does not verify: 2 — /);
    expect(await check(receipts((rs) => rs.map((r) => (r.deliveryId === d ? { ...r, body: { ...r.body!, firingId: 'another' } } : r))))).toMatch(/notification whose body does not match its delivery: 2 — /);
    // Answered 2xx, every attempt recorded, yet pending; an attempt recorded the channel never got; a status not answered.
    await flags(`UPDATE alert_deliveries SET state = 'pending', delivered_at = NULL WHERE id = $1`, `UPDATE alert_deliveries SET state = 'delivered', delivered_at = now() WHERE id = $1`, /delivery its channel answered 2xx not recorded delivered, every attempt recorded: 1 — chaos-random: \S+ pending, 2 attempts recorded/, [d]);
    await flags(`UPDATE alert_deliveries SET attempts = attempts + 1 WHERE id = $1`, `UPDATE alert_deliveries SET attempts = attempts - 1 WHERE id = $1`, /delivery attempt recorded that its channel never received: 1 — chaos-random: \S+ delivered, 3 attempts recorded/, [d]);
    await flags(`UPDATE alert_deliveries SET last_status = 202 WHERE id = $1`, `UPDATE alert_deliveries SET last_status = 200 WHERE id = $1`, /delivery whose last recorded status is not the answer its channel gave: 1 — chaos-random: \S+ delivered, 2 attempts recorded \(last 202\)/, [d]);
    // Answered 2xx but its record lost (fewer attempts recorded than received): pending is consistent, not a violation.
    await q(`UPDATE alert_deliveries SET state = 'pending', delivered_at = NULL, attempts = attempts - 1, last_status = 500 WHERE id = $1`, [d]);
    try {
      // (its job, queued with it, is still there to send it again)
      expect(await check()).toBe('');
    } finally {
      await q(`UPDATE alert_deliveries SET state = 'delivered', delivered_at = now(), attempts = attempts + 1, last_status = 200 WHERE id = $1`, [d]);
    }
    // The channel that always answers 2xx: a delivery not delivered, the channel marked failing.
    await flags(`UPDATE alert_deliveries SET state = 'failed' WHERE channel_id = $1 AND event = 'firing'`, `UPDATE alert_deliveries SET state = 'delivered' WHERE channel_id = $1 AND event = 'firing'`, /channel that always answers 2xx not delivered by the end: 1 — chaos-healthy: \S+ failed/, [ids.healthy]);
    await flags(`UPDATE alert_channels SET last_error = 'HTTP 500: planted' WHERE id = $1`, `UPDATE alert_channels SET last_error = NULL WHERE id = $1`, /the channel that always answers 2xx is marked failing: 1 — chaos-healthy: .*planted/, [ids.healthy]);
  });
});
