// The reconciliation page against real PostgreSQL and the built desk: the last run (when, what was compared, drift
// stated plainly) and its findings for operator, finance and admin; "Run reconciliation now" for operator and admin
// only, audited, queued once and run by the worker's task (Braintree searched through the real SDK).
import { Logger, runOnce } from 'graphile-worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RECONCILE_DESK_JOB_KEY, reconcileLedger } from '../../app/billing/reconciliation';
import { BraintreeProcessor } from '../../app/billing/processors/braintree/processor';
import { startBraintreeSimulator, type BraintreeSimulator } from '../../simulators/braintree/simulator';
import { createTaskList } from '../../jobs/tasks';
import { startDeskTestApp, type DeskTestApp } from '../support/desk';
import { closedBraintreeWindow, markPaidWithoutSale, saleAtGateway, settleForReal, type ReconWindow } from '../support/reconciliation';

let app: DeskTestApp;
let bt: BraintreeSimulator;
let processor: BraintreeProcessor;
let stark: ReconWindow;
const cookie: Record<string, string> = {};

beforeAll(async () => {
  app = await startDeskTestApp();
  for (const role of ['operator', 'finance', 'support', 'admin'] as const) cookie[role] = await app.sessionCookieFor(role);
  bt = await startBraintreeSimulator({ amountRules: false });
  processor = new BraintreeProcessor({ merchantId: bt.merchantId, publicKey: bt.publicKey, privateKey: bt.privateKey, apiBase: bt.url, timeoutMs: 2000 });
  // 100,000 tokens on Essential ($0.05 per 1,000): $5.00, marked paid with no sale. Umbrella went through for real.
  stark = await closedBraintreeWindow(app.services, bt, 'Stark Industries', 100_000);
  await markPaidWithoutSale(app.services.pool, stark);
  await settleForReal(app.services, processor, await closedBraintreeWindow(app.services, bt, 'Umbrella', 250_000));
}, 120_000);
afterAll(async () => {
  await bt?.stop();
  await app?.close();
});

const q = async <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) => (await app.services.pool.query<T>(sql, params)).rows;
const page = async (role: string) => {
  const res = await app.request('/reconciliation', { cookie: cookie[role] });
  return { status: res.status, html: await res.text() };
};

describe('the reconciliation page', () => {
  it('before any run: says so; the run button only for operator and admin; support is refused', async () => {
    const operator = await page('operator');
    expect(operator.status).toBe(200);
    expect(operator.html).toContain('No reconciliation has finished yet.');
    expect(operator.html).toContain('Run reconciliation now');
    expect(operator.html).toMatch(/<label for="run-reason">Reason \(optional\)<\/label>/);
    expect((await page('admin')).html).toContain('Run reconciliation now');
    const finance = await page('finance');
    expect(finance.status).toBe(200);
    expect(finance.html).not.toContain('Run reconciliation now');
    expect(finance.html).toContain('An operator or an admin can run it now');
    expect((await page('support')).status).toBe(403);
    // The nav links it for the roles that may read it.
    expect(finance.html).toMatch(/href="\/reconciliation"[^>]*>Reconciliation</);
  });

  it('shows the last run and its findings: customer, window, period, ledger vs processor, difference, kind', async () => {
    const r = await reconcileLedger(app.services.pool, { braintree: processor, graceMs: 0 });
    expect(r.status === 'finished' && r.run.driftCount).toBe(1);
    const { html } = await page('finance');
    expect(html).toContain('1 difference');
    expect(html).toContain('Braintree');
    expect(html).toContain('2 windows compared'); // Stark's and Umbrella's
    expect(html).toContain('not checked'); // Stripe was not part of this run
    expect(html).toContain('<table');
    expect(html).toMatch(/<th scope="col"[^>]*>Difference<\/th>/);
    expect(html).toContain('Stark Industries');
    expect(html).toContain(`/windows/${stark.windowId}`);
    expect(html).toContain('Window paid, but no sale at Braintree');
    expect(html).toContain('sale_missing');
    expect(html).toContain('$5.00');
    expect(html).toContain('−$5.00');
    expect(html).toContain('1 open ledger_drift ops event');
  });

  it('says what the difference means, what to do, and links to the action that resolves it', async () => {
    const { html } = await page('operator');
    expect(html).toContain('Each finding below says what it means, what to do and where.');
    expect(html).toContain('The ledger has this window paid, but Braintree has no approved sale under its order id');
    expect(html).toContain('Open the window and settle it again');
    expect(html).toMatch(new RegExp(`<a[^>]*href="/windows/${stark.windowId}"[^>]*>The window, to settle again<span class="visually-hidden"> \\(Stark Industries\\)`));
  });

  it('refuses the action to support and finance (403) and queues nothing', async () => {
    for (const role of ['support', 'finance']) {
      const res = await app.postForm('/reconciliation', { intent: 'run' }, { cookie: cookie[role] });
      expect(res.status, role).toBe(403);
    }
    expect(await q(`SELECT 1 FROM graphile_worker.jobs WHERE task_identifier = 'ops__reconcile_ledger'`)).toEqual([]);
    expect(await q(`SELECT 1 FROM audit_log WHERE action = 'reconciliation.run'`)).toEqual([]);
  });

  it('an operator runs it now: audited, queued once, run by the worker; zero drift stated plainly once fixed', async () => {
    const empty = await app.postForm('/reconciliation', {}, { cookie: cookie.operator });
    expect(empty.status).toBe(400);
    for (let i = 0; i < 2; i++) {
      const res = await app.postForm('/reconciliation', { intent: 'run', reason: 'Stark paid by phone' }, { cookie: cookie.operator });
      expect(res.status).toBe(302);
      expect(res.headers.get('location')).toBe('/reconciliation');
    }
    expect(await q(`SELECT key FROM graphile_worker.jobs WHERE task_identifier = 'ops__reconcile_ledger'`)).toEqual([{ key: RECONCILE_DESK_JOB_KEY }]);
    const audit = await q<{ actor_user_id: string; reason: string }>(`SELECT actor_user_id, reason FROM audit_log WHERE action = 'reconciliation.run'`);
    expect(audit).toEqual([
      { actor_user_id: app.userIds.operator, reason: 'Stark paid by phone' },
      { actor_user_id: app.userIds.operator, reason: 'Stark paid by phone' },
    ]);
    expect((await page('operator')).html).toContain('A run is queued');

    await saleAtGateway(bt, stark);
    const tasks = createTaskList({ reconciliation: { braintree: processor, graceMs: 0 } });
    await runOnce({ pgPool: app.services.pool, taskList: { ops__reconcile_ledger: tasks.ops__reconcile_ledger! }, noHandleSignals: true, logger: new Logger(() => () => {}) });

    const [run] = await q<{ trigger: string; requested_by: string; drift_count: number; resolved_count: number }>(
      `SELECT trigger, requested_by, drift_count, resolved_count FROM reconciliation_runs ORDER BY started_at DESC LIMIT 1`,
    );
    expect(run).toEqual({ trigger: 'desk', requested_by: app.userIds.operator, drift_count: 0, resolved_count: 1 });
    const { html } = await page('admin');
    expect(html).toContain('Zero drift: the ledger and the processors agree on everything compared.');
    expect(html).toContain('No differences: nothing to act on.');
    expect(html).toContain('1 earlier difference found gone');
    expect(html).not.toContain('A run is queued');
  });
});
