// Builds a process's Braintree side from configuration: the processor on the real SDK (Braintree's environment,
// a gateway-compatible base URL, or — with no keys — the simulator started in this process for the zero-setup
// demo), used by the settlement task and by the webhook endpoint to verify bt_signature.
import type pg from 'pg';
import { createBraintreeProcessor, type BraintreeProcessor } from '../billing/processors/braintree/processor';
import {
  SIMULATOR_MERCHANT_ID,
  SIMULATOR_PRIVATE_KEY,
  SIMULATOR_PUBLIC_KEY,
  startBraintreeSimulator,
  type BraintreeSimulator,
} from '../../simulators/braintree/simulator';

export interface BraintreeRuntimeConfig {
  pool: pg.Pool;
  merchantId?: string;
  publicKey?: string;
  privateKey?: string;
  apiBase?: string;
  /** Start the in-process simulator when no keys and no base URL are configured. Default true. */
  allowSimulator?: boolean;
}

export interface BraintreeRuntime {
  mode: 'live' | 'simulator';
  processor: BraintreeProcessor;
  simulator: BraintreeSimulator | null;
  stop(): Promise<void>;
}

const PATH_SAFE = /^[A-Za-z0-9_-]{1,36}$/;

export async function startBraintree(config: BraintreeRuntimeConfig): Promise<BraintreeRuntime> {
  const live = Boolean(config.merchantId && config.publicKey && config.privateKey);
  let simulator: BraintreeSimulator | null = null;
  let apiBase = config.apiBase;
  let refresh: NodeJS.Timeout | undefined;
  if (!live && !apiBase && config.allowSimulator !== false) {
    // The demo's invoices are small; Braintree's sandbox "decline by amount" rules stay off so none declines by chance.
    simulator = await startBraintreeSimulator({ amountRules: false });
    apiBase = simulator.url;
    const sim = simulator;
    // The simulator's vault learns our Braintree customers and their payment method tokens, now and as they appear.
    const sync = async () => {
      const { rows } = await config.pool.query<{ processor_customer_id: string; default_payment_method_token: string | null }>(
        `SELECT processor_customer_id, default_payment_method_token FROM customers WHERE processor = 'braintree'`,
      );
      for (const c of rows) {
        if (!PATH_SAFE.test(c.processor_customer_id)) continue;
        sim.addCustomer(c.processor_customer_id);
        if (c.default_payment_method_token && PATH_SAFE.test(c.default_payment_method_token)) {
          try {
            sim.addPaymentMethod(c.processor_customer_id, c.default_payment_method_token, { makeDefault: true });
          } catch {
            // The token belongs to another customer in the simulator: leave it; the sale will say so.
          }
        }
      }
    };
    await sync();
    refresh = setInterval(() => void sync().catch(() => undefined), 5_000);
    refresh.unref();
  }
  const processor = createBraintreeProcessor({
    merchantId: config.merchantId ?? SIMULATOR_MERCHANT_ID,
    publicKey: config.publicKey ?? SIMULATOR_PUBLIC_KEY,
    privateKey: config.privateKey ?? SIMULATOR_PRIVATE_KEY,
    apiBase,
  });
  return {
    mode: live ? 'live' : 'simulator',
    processor,
    simulator,
    async stop() {
      if (refresh) clearInterval(refresh);
      await simulator?.stop();
    },
  };
}
