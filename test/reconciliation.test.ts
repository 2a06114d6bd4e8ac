// Reconciliation end to end on real PostgreSQL: Stripe events reported through the real path (ledger -> worker task ->
// StripeProcessor -> the simulator) and read back through the real SDK's meter event summaries; Braintree windows
// settled through the real settlement and searched by order id through the real SDK. Zero drift when everything went
// through; planted drift is flagged once (a `ledger_drift` ops event per subject and period), and resolved when fixed.
import { spawn } from 'node:child_process';
import Stripe from 'stripe';
import { Logger, runOnce } from 'graphile-worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcileLedger, RECONCILE_DESK_JOB_KEY, type ReconcileOptions } from '../app/billing/reconciliation';
import { BraintreeProcessor } from '../app/billing/processors/braintree/processor';
import { startBraintreeSimulator, type BraintreeSimulator } from '../simulators/braintree/simulator';
import { StripeMeterEventSummaries } from '../app/billing/processors/stripe/meter-summaries';
import { SIMULATOR_SECRET_KEY } from '../simulators/stripe/simulator';
import { createTaskList } from '../jobs/tasks';
import { METER, startReportingHarness, type ReportingHarness } from './support/reporting';
import { closedBraintreeWindow, markPaidWithoutSale, saleAtGateway, settleForReal, voidAtGateway, type ReconWindow } from './support/reconciliation';

const DAY = 86_400_000;
const today = new Date(Math.floor(Date.now() / DAY) * DAY);
const yesterday = new Date(today.getTime() - DAY);
const earlierToday = () => new Date(Math.max(today.getTime(), Date.now() - 60_000));

let h: ReportingHarness;
let bt: BraintreeSimulator;
let btProcessor: BraintreeProcessor;
let stripeClient: Stripe;
let options: ReconcileOptions;

interface OpsRow {
  id: string;
  dedupe_key: string;
  processor: string;
  subject_type: string;
  subject_id: string;
  resolved_at: Date | null;
  metadata: { kind: string; ledger: { value: string; count: number }; processor: { value: string; count: number | null }; difference: string };
}
const driftEvents = () =>
  h.rows<OpsRow>(`SELECT id, dedupe_key, processor::text AS processor, subject_type, subject_id, resolved_at, metadata FROM ops_events WHERE type = 'ledger_drift' ORDER BY occurred_at, id`);
const reconcile = async (extra: Partial<ReconcileOptions> = {}) => {
  const r = await reconcileLedger(h.services.pool, { ...options, ...extra });
  if (r.status !== 'finished') throw new Error('reconciliation was busy');
  return r;
};

beforeAll(async () => {
  h = await startReportingHarness({ api: 'v1' });
  bt = await startBraintreeSimulator({ amountRules: false });
  btProcessor = new BraintreeProcessor({ merchantId: bt.merchantId, publicKey: bt.publicKey, privateKey: bt.privateKey, apiBase: bt.url, timeoutMs: 2000 });
  stripeClient = new Stripe(SIMULATOR_SECRET_KEY, { ...h.sim.clientConfig, maxNetworkRetries: 0 });
  // Grace 0: the test's reports are seconds old, and the simulator's summaries are consistent at once.
  options = { stripe: new StripeMeterEventSummaries({ client: stripeClient, meterCacheMs: 0 }), braintree: btProcessor, graceMs: 0 };
}, 60_000);
afterAll(async () => {
  await bt?.stop();
  await h?.close();
});

describe('after everything went through the real paths', () => {
  let paid: ReconWindow;
  beforeAll(async () => {
    for (const c of ['acme', 'globex', 'initech']) await h.addCustomer(c, `cus_${c}`);
    await h.ingest([
      { customer: 'acme', value: 1200, identifier: 'acme-1', timestamp: new Date(yesterday.getTime() + 3_600_000) },
      { customer: 'acme', value: 800, identifier: 'acme-2', timestamp: new Date(yesterday.getTime() + 20 * 3_600_000) },
      { customer: 'acme', value: 55, identifier: 'acme-3', timestamp: earlierToday() },
      { customer: 'globex', value: 3, identifier: 'globex-1', timestamp: earlierToday() },
      { customer: 'initech', value: 999_999, identifier: 'initech-1', timestamp: new Date(yesterday.getTime() + 5 * 3_600_000) },
    ]);
    await h.drain();
    paid = await closedBraintreeWindow(h.services, bt, 'Umbrella', 250_000);
    await settleForReal(h.services, btProcessor, paid);
  }, 60_000);

  it('finds zero drift, with every bucket and the paid window compared', async () => {
    expect(await h.count(`SELECT count(*) FROM meter_events WHERE status = 'reported'`)).toBe(5);
    const { run, findings } = await reconcile();
    expect(findings).toEqual([]);
    expect(run).toMatchObject({ driftCount: 0, newDriftCount: 0, resolvedCount: 0, error: null, stripe: { checked: 4, skipped: 0, errors: 0 } });
    expect(run.braintree!.checked).toBeGreaterThanOrEqual(1);
    expect(await driftEvents()).toEqual([]);
    const stored = await h.rows(`SELECT status::text AS status, drift_count, stripe_checked, braintree_checked, finished_at FROM reconciliation_runs WHERE id = $1`, [run.id]);
    expect(stored).toEqual([{ status: 'succeeded', drift_count: 0, stripe_checked: 4, braintree_checked: run.braintree!.checked, finished_at: expect.any(Date) }]);
  });

  it('leaves recent reports and sales for a later run (the grace period), never calling them drift', async () => {
    const { run } = await reconcile({ graceMs: 15 * 60_000 });
    expect(run.driftCount).toBe(0);
    expect(run.stripe).toMatchObject({ checked: 0, skipped: 4 });
    expect(run.braintree!.skipped).toBeGreaterThanOrEqual(1);
  });

  it('runs one at a time: a second run while one holds the lock is told it is busy', async () => {
    const blocker = await h.services.pool.connect();
    try {
      await blocker.query(`SELECT pg_advisory_lock(hashtext('meterdesk'), hashtext('reconciliation'))`);
      expect(await reconcileLedger(h.services.pool, options)).toEqual({ status: 'busy' });
      await blocker.query(`SELECT pg_advisory_unlock(hashtext('meterdesk'), hashtext('reconciliation'))`);
    } finally {
      blocker.release();
    }
  });
});

describe('planted drift', () => {
  let missing: ReconWindow;
  let doubled: ReconWindow;
  let secondSaleId: string;
  const dayKey = today.toISOString().slice(0, 10);

  beforeAll(async () => {
    await h.addCustomer('hooli', 'cus_hooli');
    await h.addCustomer('pied', 'cus_pied');
    await h.ingest([
      { customer: 'hooli', value: 10, identifier: 'hooli-1', timestamp: earlierToday() },
      { customer: 'pied', value: 4, identifier: 'pied-1', timestamp: earlierToday() },
    ]);
    await h.drain();
    // Ledger says reported, Stripe never received it.
    const [planted] = await h.ingest([{ customer: 'hooli', value: 500, identifier: 'hooli-never-sent', timestamp: earlierToday() }]);
    await h.services.pool.query(`UPDATE meter_events SET status = 'reported', reported_at = now() - interval '1 hour' WHERE id = $1`, [planted]);
    // Stripe holds an event the ledger never had.
    await stripeClient.billing.meterEvents.create({
      event_name: METER,
      identifier: 'pied-foreign',
      payload: { stripe_customer_id: 'cus_pied', value: '70' },
      timestamp: Math.floor(earlierToday().getTime() / 1000),
    });
    // Braintree: a window the ledger thinks paid with no sale; a window charged twice for one order id.
    missing = await closedBraintreeWindow(h.services, bt, 'Stark', 100_000);
    await markPaidWithoutSale(h.services.pool, missing);
    doubled = await closedBraintreeWindow(h.services, bt, 'Wayne', 300_000);
    await settleForReal(h.services, btProcessor, doubled);
    secondSaleId = (await saleAtGateway(bt, doubled)).id;
  }, 60_000);

  it('flags each difference with one ledger_drift ops event carrying ledger, processor, difference and kind', async () => {
    const { run, findings } = await reconcile();
    expect(run).toMatchObject({ driftCount: 4, newDriftCount: 4, resolvedCount: 0 });
    const byKind = Object.fromEntries(findings.map((f) => [f.kind, f]));
    expect(Object.keys(byKind).sort()).toEqual(['duplicate_sale', 'extra_at_processor', 'missing_at_processor', 'sale_missing']);
    expect(byKind.missing_at_processor).toMatchObject({ processor: 'stripe', customerId: h.customers.get('hooli'), eventName: METER, ledger: { value: '510', count: 2 }, processorSide: { value: '10' }, difference: '-500' });
    expect(byKind.missing_at_processor!.periodStart).toEqual(today);
    expect(byKind.extra_at_processor).toMatchObject({ customerId: h.customers.get('pied'), ledger: { value: '4', count: 1 }, processorSide: { value: '74' }, difference: '70' });
    expect(byKind.sale_missing).toMatchObject({ processor: 'braintree', windowId: missing.windowId, ledger: { value: missing.totalMinor.toString(), count: 1 }, processorSide: { value: '0', count: 0 }, currency: 'usd' });
    expect(byKind.duplicate_sale).toMatchObject({ windowId: doubled.windowId, processorSide: { value: (doubled.totalMinor * 2n).toString(), count: 2 }, difference: doubled.totalMinor.toString() });

    const events = await driftEvents();
    expect(events.map((e) => e.dedupe_key).sort()).toEqual(
      [
        `ledger_drift:stripe:${h.customers.get('hooli')}:${dayKey}:${METER}`,
        `ledger_drift:stripe:${h.customers.get('pied')}:${dayKey}:${METER}`,
        `ledger_drift:braintree:${missing.windowId}`,
        `ledger_drift:braintree:${doubled.windowId}`,
      ].sort(),
    );
    const hooli = events.find((e) => e.subject_id === h.customers.get('hooli'))!;
    expect(hooli).toMatchObject({ processor: 'stripe', subject_type: 'customer', resolved_at: null });
    expect(hooli.metadata).toMatchObject({ kind: 'missing_at_processor', ledger: { value: '510', count: 2 }, processor: { value: '10' }, difference: '-500' });
    expect(events.find((e) => e.subject_id === doubled.windowId)).toMatchObject({ processor: 'braintree', subject_type: 'window' });

    // The run is stored with its findings, each pointing at its ops event.
    const stored = await h.rows<{ kind: string; ops_event_id: string; ledger_value: string; difference: string }>(
      `SELECT kind, ops_event_id, trim_scale(ledger_value)::text AS ledger_value, trim_scale(difference)::text AS difference FROM reconciliation_findings WHERE run_id = $1 ORDER BY kind`,
      [run.id],
    );
    expect(stored.map((f) => f.kind)).toEqual(['duplicate_sale', 'extra_at_processor', 'missing_at_processor', 'sale_missing']);
    expect(new Set(stored.map((f) => f.ops_event_id))).toEqual(new Set(events.map((e) => e.id)));
    expect(stored.find((f) => f.kind === 'missing_at_processor')).toMatchObject({ ledger_value: '510', difference: '-500' });
  });

  it('does not duplicate on a re-run: same open ops events, nothing new', async () => {
    const before = await driftEvents();
    const { run } = await reconcile();
    expect(run).toMatchObject({ driftCount: 4, newDriftCount: 0, resolvedCount: 0 });
    const after = await driftEvents();
    expect(after.map((e) => e.id)).toEqual(before.map((e) => e.id));
    expect(after.every((e) => e.resolved_at === null)).toBe(true);
  });

  it('the job runs it (payload validated), and the CLI prints the summary and exits 1 on drift', async () => {
    const tasks = createTaskList({ reconciliation: options });
    await h.services.pool.query(`SELECT graphile_worker.add_job('ops__reconcile_ledger', '{"trigger":"desk","lookbackDays":2}'::json, job_key => $1)`, [RECONCILE_DESK_JOB_KEY]);
    await runOnce({ pgPool: h.services.pool, taskList: { ops__reconcile_ledger: tasks.ops__reconcile_ledger! }, noHandleSignals: true, logger: new Logger(() => () => {}) });
    const [latest] = await h.rows<{ trigger: string; drift_count: number; period_from: Date }>(`SELECT trigger, drift_count, period_from FROM reconciliation_runs ORDER BY started_at DESC LIMIT 1`);
    expect(latest).toEqual({ trigger: 'desk', drift_count: 4, period_from: yesterday });
    expect(await h.count(`SELECT count(*) FROM graphile_worker.jobs WHERE task_identifier = 'ops__reconcile_ledger'`)).toBe(0);

    // The default grace (15 min) leaves this test's seconds-old reports and sales for later: nothing is drift then.
    const patient = await runCli(['reconcile', '--lookback-days', '2'], { DATABASE_URL: h.db.connectionString, STRIPE_API_BASE: h.sim.url, BRAINTREE_API_BASE: bt.url });
    expect(patient.stdout).toMatch(/Stripe: 0 customer-meter-days compared, \d+ in flight/);
    expect(await runCli(['reconcile', '--grace-minutes', 'soon'], { DATABASE_URL: h.db.connectionString, STRIPE_API_BASE: h.sim.url })).toMatchObject({ code: 2 });
    const cli = await runCli(['reconcile', '--lookback-days', '2', '--grace-minutes', '0'], {
      DATABASE_URL: h.db.connectionString,
      STRIPE_API_BASE: h.sim.url,
      BRAINTREE_API_BASE: bt.url,
    });
    expect(cli.code).toBe(1);
    expect(cli.stdout).toMatch(/4 differences \(0 new\)/);
    expect(cli.stdout).toMatch(/stripe missing_at_processor: hooli ai_tokens .*ledger 510, processor 10 \(difference -500\)/);
    expect(cli.stdout).toMatch(/braintree duplicate_sale: Wayne window/);
    expect(await driftEvents()).toHaveLength(4);
  }, 120_000);

  it('resolves each ops event once its difference is gone', async () => {
    // Stripe gets the event the ledger reported (same identifier, as a retry would send it); the foreign one is cancelled.
    await stripeClient.billing.meterEvents.create({
      event_name: METER,
      identifier: 'hooli-never-sent',
      payload: { stripe_customer_id: 'cus_hooli', value: '500' },
      timestamp: Math.floor(earlierToday().getTime() / 1000),
    });
    await stripeClient.billing.meterEventAdjustments.create({ event_name: METER, type: 'cancel', cancel: { identifier: 'pied-foreign' } });
    // The missing sale is made; the second sale is voided.
    await saleAtGateway(bt, missing);
    await voidAtGateway(bt, secondSaleId);

    const { run, findings } = await reconcile();
    expect(findings).toEqual([]);
    expect(run).toMatchObject({ driftCount: 0, resolvedCount: 4 });
    const events = await driftEvents();
    expect(events).toHaveLength(4);
    expect(events.every((e) => e.resolved_at instanceof Date)).toBe(true);
    // Nothing left to resolve the next time.
    expect((await reconcile()).run).toMatchObject({ driftCount: 0, resolvedCount: 0 });
  });

  it('opens a new ops event when a resolved difference comes back, keeping the old one as history', async () => {
    const [planted] = await h.ingest([{ customer: 'hooli', value: 9, identifier: 'hooli-again', timestamp: earlierToday() }]);
    await h.services.pool.query(`UPDATE meter_events SET status = 'reported', reported_at = now() - interval '1 hour' WHERE id = $1`, [planted]);
    const { run } = await reconcile();
    expect(run).toMatchObject({ driftCount: 1, newDriftCount: 1 });
    const key = `ledger_drift:stripe:${h.customers.get('hooli')}:${dayKey}:${METER}`;
    const rows = await h.rows<{ dedupe_key: string; resolved_at: Date | null }>(`SELECT dedupe_key, resolved_at FROM ops_events WHERE dedupe_key LIKE $1 ORDER BY occurred_at`, [`${key}%`]);
    expect(rows).toEqual([
      { dedupe_key: expect.stringMatching(new RegExp(`^${key}:resolved:`)), resolved_at: expect.any(Date) },
      { dedupe_key: key, resolved_at: null },
    ]);
  });
});

async function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/cli/main.ts', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, stdout, stderr };
}
