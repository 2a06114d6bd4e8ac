// Stripe reporting against the real stack: a fresh database, the ledger, the Stripe simulator on loopback, the
// real SDK behind StripeProcessor, and the real task list run by graphile-worker's runOnce.
import { Logger, runOnce, type TaskList } from 'graphile-worker';
import { seedBase } from '../../app/seed/base';
import { StripeReporting, type StripeReportingOptions } from '../../app/billing/ledger/reporting';
import { StripeProcessor, type StripeProcessorConfig } from '../../app/billing/processors/stripe/processor';
import { SIMULATOR_SECRET_KEY, startStripeSimulator, type StripeSimulator, type StripeSimulatorOptions } from '../../simulators/stripe/simulator';
import { createServices, type Services } from '../../app/server/services';
import { createTaskList } from '../../jobs/tasks';
import { createTestDatabase, type TestDatabase } from './database';
import { ingestAll } from './ingest';

export const METER = 'ai_tokens';
const silent = new Logger(() => () => {});

export interface ReportingHarness {
  db: TestDatabase;
  services: Services;
  sim: StripeSimulator;
  processor: StripeProcessor;
  reporting: StripeReporting;
  tasks: TaskList;
  /** Ledger customer ids by external id. */
  customers: Map<string, string>;
  addCustomer(externalId: string, processorCustomerId: string, opts?: { inSimulator?: boolean }): Promise<string>;
  ingest(events: Array<{ customer: string; value?: number; identifier?: string; timestamp?: Date }>): Promise<string[]>;
  /** Runs due jobs until no Stripe event is pending (or `until` holds), waiting out backoffs. */
  drain(opts?: { timeoutMs?: number; until?: () => Promise<boolean> }): Promise<void>;
  runJobsOnce(): Promise<void>;
  rows<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  count(sql: string, params?: unknown[]): Promise<number>;
  /** Replaces the processor (e.g. another API or timeout) keeping the database and simulator. */
  rebuild(config?: Partial<StripeProcessorConfig>, reporting?: Partial<StripeReportingOptions>): Promise<void>;
  close(): Promise<void>;
}

export const FAST_BACKOFF: Partial<StripeReportingOptions> = {
  transientBackoff: { baseMs: 20, maxMs: 100 },
  rateLimitBackoff: { baseMs: 20, maxMs: 150 },
};

export async function startReportingHarness(options: {
  api?: 'v1' | 'v2';
  processor?: Partial<StripeProcessorConfig>;
  reporting?: Partial<StripeReportingOptions>;
  simulator?: StripeSimulatorOptions;
} = {}): Promise<ReportingHarness> {
  const db = await createTestDatabase();
  const services = createServices({ connectionString: db.connectionString, poolSize: 12 });
  // graphile-worker wants per-client error handlers on a pool it is given.
  services.pool.on('connect', (client) => client.on('error', () => undefined));
  await seedBase(services.prisma);
  const sim = await startStripeSimulator({ seed: 7, ...options.simulator });
  sim.addMeter(METER);
  const customers = new Map<string, string>();

  let processorConfig: StripeProcessorConfig = {
    secretKey: SIMULATOR_SECRET_KEY,
    apiBase: sim.url,
    api: options.api ?? 'v1',
    timeoutMs: 2000,
    rateLimitPauseMs: 20,
    ...options.processor,
  };
  let reportingOptions: Partial<StripeReportingOptions> = { ...FAST_BACKOFF, ...options.reporting };

  const h = {
    db,
    services,
    sim,
    customers,
  } as ReportingHarness;

  const build = () => {
    h.processor = new StripeProcessor(processorConfig);
    h.reporting = new StripeReporting({ pool: services.pool, processor: h.processor, ...reportingOptions });
    h.tasks = createTaskList({ stripeReporting: h.reporting });
  };
  build();

  h.rebuild = async (config = {}, reporting = {}) => {
    await h.processor.close();
    processorConfig = { ...processorConfig, ...config };
    reportingOptions = { ...reportingOptions, ...reporting };
    build();
  };

  h.addCustomer = async (externalId, processorCustomerId, opts = {}) => {
    const c = await services.prisma.customer.create({ data: { externalId, processor: 'stripe', processorCustomerId } });
    customers.set(externalId, c.id);
    if (opts.inSimulator !== false) sim.addCustomer(processorCustomerId);
    return c.id;
  };

  h.ingest = async (events) => {
    return ingestAll(
      services.ledger,
      events.map((e) => ({
        customer: e.customer,
        eventName: METER,
        value: e.value ?? 1,
        ...(e.identifier ? { identifier: e.identifier } : {}),
        ...(e.timestamp ? { timestamp: e.timestamp } : {}),
      })),
    );
  };

  h.runJobsOnce = async () => {
    await runOnce({ pgPool: services.pool, taskList: h.tasks, concurrency: 4, noHandleSignals: true, logger: silent });
  };

  h.count = async (sql, params = []) => Number((await services.pool.query<{ count: string }>(sql, params)).rows[0]!.count);
  h.rows = async <T,>(sql: string, params: unknown[] = []) => (await services.pool.query(sql, params)).rows as T[];

  h.drain = async (opts = {}) => {
    const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
    const done = opts.until ?? (async () => (await h.count(`SELECT count(*) FROM meter_events WHERE status = 'pending'`)) === 0);
    for (;;) {
      await h.runJobsOnce();
      if (await done()) return;
      if (Date.now() > deadline) {
        const pending = await h.rows(`SELECT identifier, attempts, claimed_at, last_error_code FROM meter_events WHERE status = 'pending' LIMIT 5`);
        throw new Error(`drain timed out; still pending e.g. ${JSON.stringify(pending)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  h.close = async () => {
    await h.processor.close();
    await sim.stop();
    await services.close();
    await db.drop();
  };
  return h;
}
