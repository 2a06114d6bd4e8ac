// `npm run cli -- reconcile [--lookback-days N] [--grace-minutes M]`: one reconciliation run (app/billing/reconciliation.ts) against the
// processors this environment configures, its summary and findings on stdout. Exit 0: zero drift; 1: drift found;
// 2: nothing to compare with (no processor configured); 3: another run is in progress.
import Stripe from 'stripe';
import type { Env } from '../env';
import { createPool } from '../db/clients';
import { describeRun, DRIFT_KIND_LABELS, reconcileLedger, type ReconciliationSources } from '../billing/reconciliation';
import { createBraintreeProcessor } from '../billing/processors/braintree/processor';
import { SIMULATOR_MERCHANT_ID, SIMULATOR_PRIVATE_KEY, SIMULATOR_PUBLIC_KEY } from '../../simulators/braintree/simulator';
import { StripeMeterEventSummaries } from '../billing/processors/stripe/meter-summaries';
import { stripeClientConfig } from '../billing/processors/stripe/processor';
import { SIMULATOR_SECRET_KEY } from '../../simulators/stripe/simulator';

/**
 * The processors reachable from here: a key (the real processor) or a base URL (a simulator someone runs). The
 * zero-setup simulators live inside the `start` process, so a separate CLI cannot see them; the desk's "Run
 * reconciliation now" runs there instead.
 */
export function reconciliationSources(
  env: Pick<Env, 'STRIPE_SECRET_KEY' | 'STRIPE_API_BASE' | 'BRAINTREE_MERCHANT_ID' | 'BRAINTREE_PUBLIC_KEY' | 'BRAINTREE_PRIVATE_KEY' | 'BRAINTREE_API_BASE'>,
): { sources: ReconciliationSources; notes: string[] } {
  const notes: string[] = [];
  const sources: ReconciliationSources = {};
  if (env.STRIPE_SECRET_KEY || env.STRIPE_API_BASE) {
    const client = new Stripe(env.STRIPE_SECRET_KEY ?? SIMULATOR_SECRET_KEY, {
      ...stripeClientConfig(env.STRIPE_API_BASE),
      maxNetworkRetries: 2,
      timeout: 10_000,
      telemetry: false,
    });
    sources.stripe = new StripeMeterEventSummaries({ client });
  } else notes.push('Stripe: not checked (set STRIPE_SECRET_KEY, or STRIPE_API_BASE for a simulator)');
  const braintreeKeys = env.BRAINTREE_MERCHANT_ID && env.BRAINTREE_PUBLIC_KEY && env.BRAINTREE_PRIVATE_KEY;
  if (braintreeKeys || env.BRAINTREE_API_BASE) {
    sources.braintree = createBraintreeProcessor({
      merchantId: env.BRAINTREE_MERCHANT_ID ?? SIMULATOR_MERCHANT_ID,
      publicKey: env.BRAINTREE_PUBLIC_KEY ?? SIMULATOR_PUBLIC_KEY,
      privateKey: env.BRAINTREE_PRIVATE_KEY ?? SIMULATOR_PRIVATE_KEY,
      apiBase: env.BRAINTREE_API_BASE,
      timeoutMs: 30_000,
    });
  } else notes.push('Braintree: not checked (set the BRAINTREE_* keys, or BRAINTREE_API_BASE for a simulator)');
  return { sources, notes };
}

export async function reconcileCommand(env: Env, connectionString: string, opts: { lookbackDays?: number; graceMinutes?: number } = {}): Promise<number> {
  const { sources, notes } = reconciliationSources(env);
  for (const n of notes) console.log(n);
  if (!sources.stripe && !sources.braintree) {
    console.error('nothing to reconcile against: no processor is configured for this process');
    return 2;
  }
  const pool = createPool(connectionString, 2);
  try {
    const result = await reconcileLedger(pool, {
      ...sources,
      trigger: 'cli',
      ...(opts.lookbackDays ? { lookbackDays: opts.lookbackDays } : {}),
      ...(opts.graceMinutes !== undefined ? { graceMs: opts.graceMinutes * 60_000 } : {}),
    });
    if (result.status === 'busy') {
      console.error('another reconciliation run is in progress; try again when it has finished');
      return 3;
    }
    console.log(`reconciliation run ${result.run.id}`);
    for (const line of describeRun(result.run)) console.log(line);
    for (const f of result.findings) {
      const subject = f.processor === 'stripe' ? `${f.customerLabel} ${f.eventName} ${f.periodStart.toISOString().slice(0, 10)}` : `${f.customerLabel} window ${f.windowId}`;
      const unit = f.currency ? ` ${f.currency.toUpperCase()} minor units` : '';
      console.log(`  ${f.processor} ${f.kind}: ${subject}: ledger ${f.ledger.value}, processor ${f.processorSide.value} (difference ${f.difference}${unit}) — ${DRIFT_KIND_LABELS[f.kind]}`);
    }
    return result.run.driftCount > 0 ? 1 : 0;
  } finally {
    await pool.end();
  }
}
