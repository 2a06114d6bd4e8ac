// A stored webhook whose job died with its worker: graphile-worker leaves a dead worker's job locked for four hours,
// so a meter error report taken by a worker that was SIGKILLed (or aborted after a database fault) would leave the
// events it rejects `reported` that long. The fault campaign found it (seed 3, docs/reliability.md); the sweep
// (ops__sweep_webhooks) queues such a webhook again. Real processes: the worker is the campaign's worker child,
// killed while its job waits on the webhook row.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { Logger, parseCrontab, runOnce } from 'graphile-worker';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createCustomer } from '../app/billing/customers';
import { addJob } from '../app/billing/db';
import { storeStripeWebhook } from '../app/billing/processors/stripe/webhooks';
import { seedBase } from '../app/seed/base';
import { sweepWebhooks } from '../app/billing/webhook-sweep';
import type { Services } from '../app/server/services';
import { createTaskList } from '../jobs/tasks';
import type { TestDatabase } from './support/database';
import Stripe from 'stripe';
import { stripeClientConfig } from '../app/billing/processors/stripe/processor';
import { SIMULATOR_SECRET_KEY, startStripeSimulator, type StripeSimulator } from '../simulators/stripe/simulator';
import { closeTestServices, openTestServices } from './support/services';

let db: TestDatabase;
let services: Services;
/** Serves the meter error reports the job fetches (thin notifications carry no data). */
let sim: StripeSimulator;
let stripe: Stripe;
const silent = new Logger(() => () => {});

beforeAll(async () => {
  ({ db, services } = await openTestServices());
  await seedBase(services.prisma);
  await createCustomer(services.prisma, { external_id: 'acme', processor: 'stripe', processor_customer_id: 'cus_acme' });
  sim = await startStripeSimulator();
  stripe = new Stripe(SIMULATOR_SECRET_KEY, { ...stripeClientConfig(sim.url), maxNetworkRetries: 0 });
});
afterAll(async () => {
  await sim?.stop();
  await closeTestServices(db, services);
});

const q = async <T = Record<string, unknown>>(sql: string, params: unknown[] = []) => (await services.pool.query(sql, params)).rows as T[];

/** A meter error report as Stripe pushes it (no data), with the event itself held by the simulator for the fetch. */
function errorReport(identifier: string, id: string) {
  const type = 'v1.billing.meter.error_report_triggered';
  sim.holdThinEvent({
    id,
    type,
    data: { reason: { error_count: 1, error_types: [{ code: 'no_customer', error_count: 1, sample_errors: [{ error_message: 'No customer', request: { identifier } }] }] } },
  });
  return { id, type, kind: 'thin' as const, payload: { id, object: 'v2.core.event', type, created: new Date().toISOString(), livemode: false, context: null } };
}

async function reportedEvent(identifier: string): Promise<string> {
  const stored = await services.ledger.reportUsage('acme', 'ai_tokens', { value: 3, identifier });
  // As the worker leaves it after Stripe's v2 stream answered 202.
  await services.pool.query(`UPDATE meter_events SET status = 'reported', reported_at = now() WHERE id = $1`, [stored.event.id]);
  return stored.event.id;
}

it('processes again a webhook whose job died with its worker, and leaves alone what needs an operator', async () => {
  const eventId = await reportedEvent('sweep-1');
  const { webhookEventId } = await storeStripeWebhook(services.pool, errorReport('sweep-1', 'evt_sweep_1'));

  // The worker takes the job and waits on the row we hold; then it is killed.
  const holder = await services.pool.connect();
  await holder.query('BEGIN');
  await holder.query(`SELECT 1 FROM webhook_events WHERE id = $1 FOR UPDATE`, [webhookEventId]);
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/campaign-worker.ts', '--tick-ms', '0'], {
    env: { ...process.env, DATABASE_URL: db.connectionString, STRIPE_API_BASE: sim.url, STRIPE_METER_API: 'v2', WORKER_CONCURRENCY: '2' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  for (;;) {
    const waiting = await q(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%webhook_events%' AND pid <> pg_backend_pid()`);
    if (waiting.length > 0) break;
    if (child.exitCode !== null) throw new Error(`worker exited before taking the job:\n${out}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill('SIGKILL');
  await exited;
  await holder.query('ROLLBACK');
  holder.release();

  // The job is still locked by the dead worker: another worker does not run it (graphile-worker waits four hours).
  await runOnce({ pgPool: services.pool, taskList: createTaskList({ stripeClient: stripe }), noHandleSignals: true, logger: silent });
  expect(await q(`SELECT processed_at FROM webhook_events WHERE id = $1`, [webhookEventId])).toEqual([{ processed_at: null }]);
  expect(await q(`SELECT status::text AS status FROM meter_events WHERE id = $1`, [eventId])).toEqual([{ status: 'reported' }]);

  // Not swept: a webhook younger than the sweep's delay, one waiting for an operator, one processed.
  const { webhookEventId: definitive } = await storeStripeWebhook(services.pool, errorReport('sweep-2', 'evt_sweep_2'));
  await services.pool.query(`UPDATE webhook_events SET last_error = 'customer_not_found: no customer cus_x' WHERE id = $1`, [definitive]);
  const { webhookEventId: processed } = await storeStripeWebhook(services.pool, errorReport('sweep-3', 'evt_sweep_3'));
  await services.pool.query(`UPDATE webhook_events SET processed_at = now() WHERE id = $1`, [processed]);
  await services.pool.query(`DELETE FROM graphile_worker._private_jobs WHERE payload->>'webhookEventId' = ANY($1::text[])`, [[definitive, processed]]);
  expect(await sweepWebhooks(services.pool, { afterMs: 60_000 })).toEqual({ enqueued: 0 });

  expect(await sweepWebhooks(services.pool, { afterMs: 0 })).toEqual({ enqueued: 1 });
  // A second sweep while that job is queued adds nothing (one sweep job per webhook).
  await sweepWebhooks(services.pool, { afterMs: 0 });
  expect(await q(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE key = $1`, [`webhook_sweep:${webhookEventId}`])).toEqual([{ n: 1 }]);
  await services.pool.query(`DELETE FROM graphile_worker._private_jobs WHERE key = $1`, [`webhook_sweep:${webhookEventId}`]);

  // The crontab task does it (its delay shortened here; 5 minutes by default).
  const crontab = parseCrontab(await readFile(new URL('../jobs/crontab', import.meta.url), 'utf8'));
  expect(crontab.map((c) => c.task)).toContain('ops__sweep_webhooks');
  await addJob(services.pool, 'ops__sweep_webhooks', {});
  await runOnce({ pgPool: services.pool, taskList: createTaskList({ webhookSweep: { afterMs: 0 }, stripeClient: stripe }), noHandleSignals: true, logger: silent });

  const [row] = await q<{ processed: boolean }>(`SELECT processed_at IS NOT NULL AS processed FROM webhook_events WHERE id = $1`, [webhookEventId]);
  expect(row).toEqual({ processed: true });
  expect(await q(`SELECT status::text AS status, last_error_code FROM meter_events WHERE id = $1`, [eventId])).toEqual([{ status: 'failed', last_error_code: 'no_customer' }]);
  expect(await q(`SELECT source::text AS source, outcome::text AS outcome FROM event_attempts WHERE meter_event_id = $1`, [eventId])).toEqual([{ source: 'webhook', outcome: 'rejected' }]);
  expect(await q(`SELECT processed_at FROM webhook_events WHERE id = $1`, [definitive])).toEqual([{ processed_at: null }]);
}, 60_000);
