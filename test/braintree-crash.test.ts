// Crash test: worker processes settling many windows are killed with SIGKILL after every sale reached the Braintree
// simulator but before any answer was stored (the simulator applies the sales and holds the responses). After a
// restart (new workers, the settlement sweep), every window is paid with exactly one sale in the simulator.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { closeWindowNow } from '../app/billing/windows/invoices';
import { orderIdFor } from '../app/billing/windows/settlement';
import { openWindowNow } from '../app/billing/windows/windows';
import { DAY, startBraintreeHarness, type BraintreeHarness } from './support/braintree';

const WINDOWS = 40;
let h: BraintreeHarness;
const children: ChildProcess[] = [];

beforeAll(async () => {
  h = await startBraintreeHarness();
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await h?.close();
});

function startWorker(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/braintree-worker-child.ts'], {
    env: {
      ...process.env,
      DATABASE_URL: h.db.connectionString,
      BT_API_BASE: h.sim.url,
      BT_MERCHANT_ID: h.sim.merchantId,
      BT_PUBLIC_KEY: h.sim.publicKey,
      BT_PRIVATE_KEY: h.sim.privateKey,
      BT_TIMEOUT_MS: '30000',
      // Enough slots for every held sale to be in flight at once.
      WORKER_CONCURRENCY: String(WINDOWS / 2 + 4),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`worker did not start:\n${out}`)), 30_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('worker ready')) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) => reject(new Error(`worker exited (${code ?? signal}):\n${out}`)));
  });
}

const exited = (c: ChildProcess) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r)));

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

it('charges each window exactly once across SIGKILLed workers', async () => {
  const windowIds: string[] = [];
  const end = new Date(Date.now() - DAY);
  const start = new Date(end.getTime() - 10 * DAY);
  for (let i = 0; i < WINDOWS; i++) {
    const ext = `crash-${i}`;
    const s = await h.addSubscriber({ externalId: ext, start, end });
    const w = await openWindowNow(h.services.pool, s.subscriptionId, start, end);
    if (w.status !== 'opened') throw new Error(w.status);
    await h.ingest(ext, [{ value: 1000 * (i + 1), at: new Date(start.getTime() + DAY) }]);
    windowIds.push(w.window.id);
  }
  // Every sale is applied by the gateway, and its answer never comes back.
  h.sim.addFault({ kind: 'timeout_applied', match: { operation: 'transaction.sale' } });
  for (const id of windowIds) await closeWindowNow(h.services.pool, id); // enqueues the settle jobs

  const first = await Promise.all([startWorker(), startWorker()]);
  await waitFor('every sale to reach the simulator', () => h.sim.sales().length >= WINDOWS);
  for (const c of first) c.kill('SIGKILL');
  await Promise.all(first.map(exited));

  // Nothing was stored: every window is still settling with its sale marked sent and unanswered.
  const states = await h.rows<{ state: string; status: string; tries: number }>(
    `SELECT w.state::text AS state, a.status::text AS status, a.tries FROM windows w JOIN charge_attempts a ON a.window_id = w.id WHERE w.id = ANY($1::uuid[])`,
    [windowIds],
  );
  expect(states).toHaveLength(WINDOWS);
  expect(states.every((s) => s.state === 'settling' && s.status === 'pending' && s.tries === 1)).toBe(true);

  h.sim.clearFaults();
  const second = await Promise.all([startWorker(), startWorker()]);
  // The restarted workers' sweep finds the settling windows (their jobs are still locked by the dead workers).
  await h.services.pool.query(`SELECT graphile_worker.add_job('braintree__sweep_settlements', '{}'::json)`);
  await waitFor('every window to be paid', async () => (await h.count(`SELECT count(*) FROM windows WHERE id = ANY($1::uuid[]) AND state = 'paid'`, [windowIds])) === WINDOWS);
  for (const c of second) c.kill('SIGTERM');

  const perOrder = h.sim.salesByOrderId();
  for (const id of windowIds) expect(perOrder.get(orderIdFor(id))).toBe(1);
  expect(h.sim.sales()).toHaveLength(WINDOWS);
  const attempts = await h.rows<{ status: string; tries: number; transaction_id: string | null }>(
    `SELECT status::text AS status, tries, transaction_id FROM charge_attempts WHERE window_id = ANY($1::uuid[])`,
    [windowIds],
  );
  expect(attempts.every((a) => a.status === 'succeeded' && a.tries === 1 && a.transaction_id)).toBe(true);
  await Promise.all(second.map(exited));
}, 90_000);
