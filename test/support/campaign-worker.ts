// The fault campaign's worker process: the production wiring (configuration from the environment through app/env.ts,
// startStripe, the real BraintreeProcessor, createTaskList, startWorker), with timings shortened so that a seed
// settles in seconds instead of hours: claims of killed workers expire within seconds, a lost Braintree answer is
// searched for after seconds instead of 65 s, retries back off in hundreds of milliseconds, and the crontab's
// recurring tasks (minute granularity in graphile's crontab) are enqueued every `--tick-ms`.
// Usage: DATABASE_URL=... STRIPE_API_BASE=... BRAINTREE_API_BASE=... node --import tsx test/support/campaign-worker.ts [--tick-ms N ...]
// `--tick-ms 0` enqueues no recurring task (a test then runs them itself).
import { parseArgs } from 'node:util';
import { addJob } from '../../app/billing/db';
import { RECONCILE_TASK } from '../../app/billing/ledger/reporting';
import { BraintreeProcessor } from '../../app/billing/processors/braintree/processor';
import { createPool } from '../../app/db/clients';
import { readEnv } from '../../app/env';
import { configureLogging } from '../../app/log';
import { startStripe } from '../../app/server/stripe';
import { createTaskList } from '../../jobs/tasks';
import { startWorker } from '../../jobs/worker';
import { stopOnSignal } from './process-output';

const { values } = parseArgs({
  options: {
    'tick-ms': { type: 'string', default: '500' },
    'claim-timeout-ms': { type: 'string', default: '2000' },
    'lost-after-ms': { type: 'string', default: '2000' },
    'braintree-timeout-ms': { type: 'string', default: '2000' },
    'ambiguous-search-delay-ms': { type: 'string', default: '2500' },
    'close-grace-ms': { type: 'string', default: '1000' },
    'sweep-after-ms': { type: 'string', default: '2000' },
  },
});
const ms = (name: keyof typeof values) => Number(values[name]);
const env = readEnv();
configureLogging({ role: 'worker', level: env.LOG_LEVEL, format: env.LOG_FORMAT });
const connectionString = env.DATABASE_URL;
if (!connectionString) throw new Error('DATABASE_URL is required');

const pool = createPool(connectionString, 8);
const stripe = await startStripe({
  pool,
  secretKey: env.STRIPE_SECRET_KEY,
  apiBase: env.STRIPE_API_BASE,
  api: env.STRIPE_METER_API,
  allowSimulator: false,
  processor: { v1RatePerSecond: 2500, timeoutMs: 2000, rateLimitPauseMs: 50 },
  reporting: {
    claimTimeoutMs: ms('claim-timeout-ms'),
    lostAfterMs: ms('lost-after-ms'),
    callBudgetMs: 1000,
    transientBackoff: { baseMs: 50, maxMs: 500 },
    rateLimitBackoff: { baseMs: 50, maxMs: 500 },
  },
});
const braintree =
  env.BRAINTREE_API_BASE && env.BRAINTREE_MERCHANT_ID && env.BRAINTREE_PUBLIC_KEY && env.BRAINTREE_PRIVATE_KEY
    ? new BraintreeProcessor({
        merchantId: env.BRAINTREE_MERCHANT_ID,
        publicKey: env.BRAINTREE_PUBLIC_KEY,
        privateKey: env.BRAINTREE_PRIVATE_KEY,
        apiBase: env.BRAINTREE_API_BASE,
        timeoutMs: ms('braintree-timeout-ms'),
      })
    : null;
const sweepAfterMs = ms('sweep-after-ms');
const worker = await startWorker({
  connectionString,
  concurrency: env.WORKER_CONCURRENCY,
  // A settle job holds its client for the sale (the window's advisory lock): the pool must cover the concurrency.
  maxPoolSize: env.WORKER_CONCURRENCY + 4,
  tasks: createTaskList({
    stripeReporting: stripe.reporting,
    stripeClient: stripe.client,
    ...(braintree
      ? {
          braintree: {
            processor: braintree,
            ambiguousSearchDelayMs: ms('ambiguous-search-delay-ms'),
            busyRetryMs: 500,
            retry: { error: { baseMs: 200, maxMs: 1000 }, softDecline: { baseMs: 300, maxMs: 1500 } },
            closeGraceMs: ms('close-grace-ms'),
            sweep: { closedAfterMs: sweepAfterMs, settlingAfterMs: sweepAfterMs, retryGraceMs: 500 },
          },
        }
      : {}),
    webhookSweep: { afterMs: sweepAfterMs },
  }),
  crontab: '',
});

// The crontab's recurring tasks, at the campaign's pace. A fixed job key per task: the other worker's tick replaces
// a queued one instead of doubling it.
const RECURRING = [
  RECONCILE_TASK,
  'ops__sweep_webhooks',
  ...(braintree ? ['braintree__open_windows', 'braintree__close_windows', 'braintree__reconcile_stale_renewals', 'braintree__sweep_settlements'] : []),
];
const tickMs = ms('tick-ms');
const tick =
  tickMs > 0
    ? setInterval(() => {
        for (const task of RECURRING) void addJob(pool, task, {}, { jobKey: `campaign:${task}`, maxAttempts: 1 }).catch(() => undefined);
      }, tickMs)
    : undefined;
process.stdout.write(`ready ${process.pid} ${env.STRIPE_METER_API}${braintree ? ' braintree' : ''}\n`);

stopOnSignal(async () => {
  if (tick) clearInterval(tick);
  await worker.stop();
  await stripe.stop();
  await pool.end();
});
