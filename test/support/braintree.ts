// Braintree windows against the real stack: a fresh database, the ledger, the Braintree simulator on loopback, the
// real SDK behind BraintreeProcessor, and the real task list run by graphile-worker's runOnce.
import { Logger, runOnce, type TaskList } from 'graphile-worker';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import type { Aggregation, Rounding } from '../../app/billing/windows/invoice-math';
import { seedBase } from '../../app/seed/base';
import { BraintreeProcessor, type BraintreeProcessorConfig } from '../../app/billing/processors/braintree/processor';
import { startBraintreeSimulator, type BraintreeSimulator, type BraintreeSimulatorOptions } from '../../simulators/braintree/simulator';
import type { SettlementOptions } from '../../app/billing/windows/settlement';
import { createServices, type Services } from '../../app/server/services';
import { createTaskList } from '../../jobs/tasks';
import { createTestDatabase, type TestDatabase } from './database';
import { ingestAll } from './ingest';

const silent = new Logger(() => () => {});
export const DAY = 86_400_000;

/** Retry timings in milliseconds so tests can watch a whole budget. */
export const FAST_SETTLEMENT: Omit<SettlementOptions, 'processor'> = {
  retry: { maxTries: 3, maxElapsedMs: 60_000, softDecline: { baseMs: 30, maxMs: 60 }, error: { baseMs: 20, maxMs: 40 } },
  ambiguousSearchDelayMs: 50,
  busyRetryMs: 30,
};

export interface BraintreeHarness {
  db: TestDatabase;
  services: Services;
  sim: BraintreeSimulator;
  processor: BraintreeProcessor;
  tasks: TaskList;
  settlement: SettlementOptions;
  addMeter(eventName: string, aggregation?: Aggregation): Promise<string>;
  addPrice(plan: string, eventName: string, p: { unitAmountDecimal: string; perUnits?: bigint; rounding?: Rounding; effectiveFrom?: Date; effectiveTo?: Date | null; currency?: string }): Promise<string>;
  /** A Braintree customer (vaulted in the simulator with `token` unless token is null) and its subscription. */
  addSubscriber(opts: { externalId: string; plan?: string; start: Date; end: Date; token?: string | null; status?: string }): Promise<{ customerId: string; subscriptionId: string; processorSubscriptionId: string }>;
  ingest(externalId: string, events: Array<{ eventName?: string; value?: number; at: Date; identifier?: string; subscription?: string }>): Promise<string[]>;
  runJobsOnce(): Promise<void>;
  /** Runs due jobs until `until` holds, waiting out backoffs. */
  drain(until: () => Promise<boolean>, timeoutMs?: number): Promise<void>;
  rows<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  count(sql: string, params?: unknown[]): Promise<number>;
  windowState(windowId: string): Promise<string>;
  close(): Promise<void>;
}

export async function startBraintreeHarness(opts: { simulator?: BraintreeSimulatorOptions; processor?: Partial<BraintreeProcessorConfig>; settlement?: Partial<Omit<SettlementOptions, 'processor'>> } = {}): Promise<BraintreeHarness> {
  const db = await createTestDatabase();
  // Usage up to a year old is accepted so tests can bill past periods.
  const services = createServices({ connectionString: db.connectionString, poolSize: 12, ledger: { maxAgeMs: { braintree: 365 * DAY } } });
  services.pool.on('connect', (client) => client.on('error', () => undefined));
  await seedBase(services.prisma);
  // Sandbox test amounts (2000.00-2999.99 decline ...) would make ordinary invoices fail at random.
  const sim = await startBraintreeSimulator({ amountRules: false, ...opts.simulator });
  const processor = new BraintreeProcessor({ merchantId: sim.merchantId, publicKey: sim.publicKey, privateKey: sim.privateKey, apiBase: sim.url, timeoutMs: 1000, ...opts.processor });
  const settlement: SettlementOptions = { processor, ...FAST_SETTLEMENT, ...opts.settlement };
  const tasks = createTaskList({ braintree: settlement });
  const h = { db, services, sim, processor, tasks, settlement } as BraintreeHarness;

  h.rows = async <T,>(sql: string, params: unknown[] = []) => (await services.pool.query(sql, params)).rows as T[];
  h.count = async (sql, params = []) => Number((await services.pool.query<{ count: string }>(sql, params)).rows[0]!.count);
  h.windowState = async (id) => (await h.rows<{ state: string }>(`SELECT state::text AS state FROM windows WHERE id = $1`, [id]))[0]!.state;

  h.addMeter = async (eventName, aggregation = 'sum') => {
    const m = await services.prisma.meter.upsert({ where: { eventName }, update: { aggregation }, create: { eventName, displayName: eventName, aggregation } });
    return m.id;
  };
  h.addPrice = async (planCode, eventName, p) => {
    const plan = await services.prisma.plan.findUniqueOrThrow({ where: { code: planCode } });
    const meter = await services.prisma.meter.findUniqueOrThrow({ where: { eventName } });
    const price = await services.prisma.meterPrice.create({
      data: {
        planId: plan.id,
        meterId: meter.id,
        unitAmountDecimal: p.unitAmountDecimal,
        perUnits: p.perUnits ?? 1n,
        rounding: p.rounding ?? 'up',
        currency: p.currency ?? 'usd',
        effectiveFrom: p.effectiveFrom ?? new Date('2020-01-01T00:00:00Z'),
        effectiveTo: p.effectiveTo ?? null,
      },
    });
    return price.id;
  };
  h.addSubscriber = async (o) => {
    const token = o.token === undefined ? `tok_${o.externalId}` : o.token;
    const btCustomer = `bt_${o.externalId}`;
    sim.addCustomer(btCustomer);
    if (token) sim.addPaymentMethod(btCustomer, token);
    const customer = await services.prisma.customer.create({
      data: { externalId: o.externalId, processor: 'braintree', processorCustomerId: btCustomer, defaultPaymentMethodToken: token },
    });
    const plan = await services.prisma.plan.findUniqueOrThrow({ where: { code: o.plan ?? 'essential' } });
    const processorSubscriptionId = `bt_sub_${o.externalId}`;
    const sub = await services.prisma.subscription.create({
      data: {
        customerId: customer.id,
        planId: plan.id,
        processor: 'braintree',
        processorSubscriptionId,
        currentPeriodStart: o.start,
        currentPeriodEnd: o.end,
        status: (o.status ?? 'active') as 'active',
      },
    });
    return { customerId: customer.id, subscriptionId: sub.id, processorSubscriptionId };
  };
  h.ingest = async (externalId, events) => {
    return ingestAll(
      services.ledger,
      events.map((e) => ({
        customer: externalId,
        eventName: e.eventName ?? 'ai_tokens',
        value: e.value ?? 1,
        timestamp: e.at,
        ...(e.identifier ? { identifier: e.identifier } : {}),
        ...(e.subscription ? { subscription: e.subscription } : {}),
      })),
    );
  };
  h.runJobsOnce = async () => {
    await runOnce({ pgPool: services.pool, taskList: h.tasks, concurrency: 4, noHandleSignals: true, logger: silent });
  };
  h.drain = async (until, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await h.runJobsOnce();
      if (await until()) return;
      if (Date.now() > deadline) throw new Error('drain timed out');
      await new Promise((r) => setTimeout(r, 15));
    }
  };
  h.close = async () => {
    await sim.stop();
    await services.close();
    await db.drop();
  };
  return h;
}

/**
 * This file's harness: started before its tests and closed after; before each test the job queue is emptied and the
 * simulator's faults cleared, so no test runs another's leftovers. Its fields are set once beforeAll has run.
 */
export function useBraintreeHarness(): BraintreeHarness {
  const h = {} as BraintreeHarness;
  beforeAll(async () => {
    Object.assign(h, await startBraintreeHarness());
  });
  afterAll(() => h.close?.());
  beforeEach(async () => {
    await h.services.pool.query(`DELETE FROM graphile_worker._private_jobs`);
    h.sim.clearFaults();
  });
  return h;
}
