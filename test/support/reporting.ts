// Stripe reporting against the real stack: a fresh database, the ledger, the Stripe simulator on loopback, the
// real SDK behind StripeProcessor, and the real task list run by graphile-worker's runOnce.
import { Logger, runOnce, type TaskList } from 'graphile-worker';
import Stripe from 'stripe';
import { afterAll, afterEach, beforeAll, expect, vi } from 'vitest';
import { createWebhookHandler } from '../../app/api/webhooks';
import { graphileLogger } from '../../app/db/prepare';
import { startHttpServer, type HttpServer } from '../../app/server/http';
import { createProcessWebhookTask } from '../../jobs/tasks/stripe__process_webhook';
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

/** The reporting harness with Stripe's meter error reports flowing back: held by the simulator until flushed. */
export interface ErrorReportHarness extends ReportingHarness {
  /** The Stripe client the webhook task asks (the real SDK against the simulator). */
  stripe: Stripe;
  /** Processes the stored webhooks with the real `stripe__process_webhook` task. */
  processWebhooks(): Promise<void>;
  /** Waits until the simulator rejected `identifier` asynchronously, then delivers its one error report to our endpoint. */
  deliverErrorReport(identifier: string): Promise<string>;
}

/**
 * This file's error-report harness, per wire API: a fresh database and simulator whose error reports leave only when
 * a test flushes them, our webhook endpoint on loopback and a customer `acme` (cus_acme); faults cleared after each
 * test. Its fields are set once beforeAll has run.
 */
export function useErrorReportHarness(api: 'v1' | 'v2'): ErrorReportHarness {
  const h = {} as ErrorReportHarness;
  let http: HttpServer | undefined;
  beforeAll(async () => {
    Object.assign(h, await startReportingHarness({ api, simulator: { errorReportDelayMs: 600_000 } }));
    http = await startHttpServer({ port: 0, handlers: [createWebhookHandler({ pool: h.services.pool, stripeWebhookSecret: h.sim.webhookSecret })] });
    h.sim.configure({ webhookUrl: `${http.url}/webhooks/stripe` });
    h.stripe = new Stripe(SIMULATOR_SECRET_KEY, { ...h.sim.clientConfig, maxNetworkRetries: 0 });
    h.processWebhooks = async () => {
      await runOnce({ pgPool: h.services.pool, logger: graphileLogger, concurrency: 1, noHandleSignals: true }, { stripe__process_webhook: createProcessWebhookTask({ stripe: h.stripe }) });
    };
    h.deliverErrorReport = async (identifier) => {
      await vi.waitFor(() => expect(h.sim.meterEvents().some((e) => e.identifier === identifier && e.status === 'rejected')).toBe(true));
      expect(await h.sim.flushErrorReports()).toBe(1);
      const delivery = h.sim.webhookDeliveries().at(-1)!;
      expect(delivery).toMatchObject({ type: 'v1.billing.meter.error_report_triggered', status: 200 });
      return delivery.event_id;
    };
    await h.addCustomer('acme', 'cus_acme');
  });
  afterAll(async () => {
    await http?.close();
    await h.close?.();
  });
  afterEach(() => h.sim.clearFaults());
  return h;
}
