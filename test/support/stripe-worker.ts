// A worker process for the crash test: the production wiring (startStripe + createTaskList + startWorker) with
// timings shortened so that a killed worker's claims expire within seconds, and the reconciler run every
// `--reconcile-every-ms` instead of every minute (graphile's crontab has minute granularity).
// Usage: node --import tsx test/support/stripe-worker.ts --database-url U --stripe-base URL --api v1|v2 [...]
import { parseArgs } from 'node:util';
import { createPool } from '../../app/db/clients';
import { addJob } from '../../app/billing/db';
import { RECONCILE_TASK } from '../../app/billing/ledger/reporting';
import { startStripe } from '../../app/server/stripe';
import { createTaskList } from '../../jobs/tasks';
import { startWorker } from '../../jobs/worker';
import { stopOnSignal } from './process-output';

const { values } = parseArgs({
  options: {
    'database-url': { type: 'string' },
    'stripe-base': { type: 'string' },
    api: { type: 'string', default: 'v1' },
    rate: { type: 'string', default: '2500' },
    'claim-timeout-ms': { type: 'string', default: '2000' },
    'lost-after-ms': { type: 'string', default: '2000' },
    'reconcile-every-ms': { type: 'string', default: '500' },
  },
});
const connectionString = values['database-url'];
if (!connectionString || !values['stripe-base']) throw new Error('--database-url and --stripe-base are required');
const api = values.api === 'v2' ? 'v2' : 'v1';

const pool = createPool(connectionString, 8);
pool.on('connect', (client) => client.on('error', () => undefined));
const stripe = await startStripe({
  pool,
  apiBase: values['stripe-base'],
  api,
  allowSimulator: false,
  processor: { v1RatePerSecond: Number(values.rate), timeoutMs: 2000, rateLimitPauseMs: 50 },
  reporting: {
    claimTimeoutMs: Number(values['claim-timeout-ms']),
    lostAfterMs: Number(values['lost-after-ms']),
    callBudgetMs: 1000,
    transientBackoff: { baseMs: 50, maxMs: 500 },
    rateLimitBackoff: { baseMs: 50, maxMs: 500 },
  },
});
const worker = await startWorker({ connectionString, concurrency: 4, tasks: createTaskList({ stripeReporting: stripe.reporting }), crontab: '' });
const reconcile = setInterval(() => {
  void addJob(pool, RECONCILE_TASK, {}, { jobKey: 'crash:reconcile', maxAttempts: 1 }).catch(() => undefined);
}, Number(values['reconcile-every-ms']));
process.stdout.write(`ready ${process.pid} ${api}\n`);

stopOnSignal(async () => {
  clearInterval(reconcile);
  await worker.stop();
  await stripe.stop();
  await pool.end();
});
