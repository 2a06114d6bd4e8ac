// Builds a process's Stripe side from configuration: the processor (real Stripe, a Stripe-compatible base URL,
// or, with neither a key nor a base URL, the simulator started in this process for the zero-setup demo), the
// reporting service the worker's tasks use, and the webhook signing secret the web process verifies with.
import type pg from 'pg';
import Stripe from 'stripe';
import { StripeReporting, type StripeReportingOptions } from '../billing/ledger/reporting';
import { StripeProcessor, stripeClientConfig, type StripeProcessorConfig } from '../billing/processors/stripe/processor';
import { SIMULATOR_SECRET_KEY, startStripeSimulator, type StripeSimulator } from '../../simulators/stripe/simulator';
import type { MeterEventReporter, MeterEventToReport, ReportOptions, ReportOutcome } from '../billing/processors/types';

export interface StripeRuntimeConfig {
  pool: pg.Pool;
  /** Absent: the simulator (at `apiBase`, or started here when `apiBase` is absent too). */
  secretKey?: string;
  apiBase?: string;
  api: 'v1' | 'v2';
  webhookSecret?: string;
  /** Start the in-process simulator when no key and no base URL are configured. Default true. */
  allowSimulator?: boolean;
  /** Customer ids the in-process simulator does not learn (the demo's unknown customer, whose events fail). */
  simulatorUnknownCustomers?: readonly string[];
  processor?: Partial<StripeProcessorConfig>;
  reporting?: Partial<Omit<StripeReportingOptions, 'pool' | 'processor'>>;
}

export interface StripeRuntime {
  /** `live` = a real key; `simulator` = no key (in this process or at STRIPE_API_BASE). */
  mode: 'live' | 'simulator';
  processor: MeterEventReporter;
  reporting: StripeReporting;
  /** A plain API client (webhook tasks fetch thin events with it). */
  client: Stripe;
  /** The in-process simulator, when one was started. */
  simulator: StripeSimulator | null;
  /** What `POST /webhooks/stripe` verifies with; null when none is configured. */
  webhookSecret: string | null;
  stop(): Promise<void>;
}

export async function startStripe(config: StripeRuntimeConfig): Promise<StripeRuntime> {
  let simulator: StripeSimulator | null = null;
  let apiBase = config.apiBase;
  const secretKey = config.secretKey ?? SIMULATOR_SECRET_KEY;
  let webhookSecret = config.webhookSecret ?? null;
  let refresh: NodeJS.Timeout | undefined;
  const unknown: ReadonlySet<string> = new Set(config.simulatorUnknownCustomers ?? []);

  if (!config.secretKey && !apiBase && config.allowSimulator !== false) {
    simulator = await startStripeSimulator(webhookSecret ? { webhookSecret } : {});
    apiBase = simulator.url;
    webhookSecret = simulator.webhookSecret;
    // The demo reports successfully: the simulator learns our Stripe customers and meters, now and as they appear.
    const sim = simulator;
    const sync = async () => {
      const { rows } = await config.pool.query<{ customers: string[] | null; meters: string[] | null }>(
        `SELECT (SELECT array_agg(processor_customer_id) FROM customers WHERE processor = 'stripe') AS customers,
                (SELECT array_agg(event_name) FROM meters) AS meters`,
      );
      for (const c of rows[0]?.customers ?? []) if (!unknown.has(c)) sim.addCustomer(c);
      for (const m of rows[0]?.meters ?? []) sim.addMeter(m);
    };
    await sync();
    refresh = setInterval(() => void sync().catch(() => undefined), 5_000);
    refresh.unref();
  }

  const stripeProcessor = new StripeProcessor({ secretKey, apiBase, api: config.api, ...config.processor });
  const processor: MeterEventReporter = simulator ? new SimulatorRegistering(stripeProcessor, simulator, unknown) : stripeProcessor;
  const reporting = new StripeReporting({ pool: config.pool, processor, ...config.reporting });
  const client = new Stripe(secretKey, { ...stripeClientConfig(apiBase), maxNetworkRetries: 2, timeout: 10_000, telemetry: false });

  return {
    mode: config.secretKey ? 'live' : 'simulator',
    processor,
    reporting,
    client,
    simulator,
    webhookSecret,
    async stop() {
      if (refresh) clearInterval(refresh);
      await processor.close();
      await simulator?.stop();
    },
  };
}

/**
 * Demo only: registers each batch's customers with the in-process simulator before reporting, so a customer
 * created a second ago is known to "Stripe" (as it would be after the host app created it there).
 */
class SimulatorRegistering implements MeterEventReporter {
  readonly processor = 'stripe' as const;
  constructor(
    private readonly inner: StripeProcessor,
    private readonly simulator: StripeSimulator,
    private readonly unknown: ReadonlySet<string>,
  ) {}
  get api() {
    return this.inner.api;
  }
  get preferredBatchSize() {
    return this.inner.preferredBatchSize;
  }
  reportMeterEvents(events: readonly MeterEventToReport[], options?: ReportOptions): Promise<ReportOutcome[]> {
    for (const e of events) if (!this.unknown.has(e.processorCustomerId)) this.simulator.addCustomer(e.processorCustomerId);
    return this.inner.reportMeterEvents(events, options);
  }
  close() {
    return this.inner.close();
  }
}
