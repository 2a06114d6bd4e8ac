// A worker process for the Braintree crash test: graphile-worker running the real task list with the real
// BraintreeProcessor pointed at the test's simulator. Configured by environment (this is a test fixture, not the app).
import { Logger, run } from 'graphile-worker';
import { BraintreeProcessor } from '../../app/billing/processors/braintree/processor';
import { createTaskList } from '../../jobs/tasks';

const env = process.env;
const processor = new BraintreeProcessor({
  merchantId: env.BT_MERCHANT_ID!,
  publicKey: env.BT_PUBLIC_KEY!,
  privateKey: env.BT_PRIVATE_KEY!,
  apiBase: env.BT_API_BASE!,
  timeoutMs: Number(env.BT_TIMEOUT_MS ?? 30_000),
});
const runner = await run({
  connectionString: env.DATABASE_URL!,
  concurrency: Number(env.WORKER_CONCURRENCY ?? 8),
  // A settle job holds its client for the sale (the window's advisory lock), so the pool must cover concurrency.
  maxPoolSize: Number(env.WORKER_CONCURRENCY ?? 8) + 4,
  pollInterval: 50,
  noHandleSignals: true,
  logger: new Logger(() => () => {}),
  taskList: createTaskList({
    braintree: {
      processor,
      ambiguousSearchDelayMs: 0,
      retry: { error: { baseMs: 50, maxMs: 200 }, softDecline: { baseMs: 50, maxMs: 200 } },
      sweep: { settlingAfterMs: 0, closedAfterMs: 0 },
    },
  }),
});
console.log('worker ready');
await runner.promise;
