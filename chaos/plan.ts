// The campaign's plan: the fault kinds and simulator rules a seed draws from, the plans its subscribers take, and the
// seeded random streams (chaos/campaign.ts runs a seed; chaos/processes.ts runs its processes).
export const FAULT_KINDS = [
  'worker_kill',
  'settling_worker_kill',
  'web_kill',
  'processor_fault',
  'braintree_fault',
  'db_connections_dropped',
  'db_restart',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Faults placed along the Stripe ingest (the Braintree ones follow the Braintree timeline). */
export const INGEST_FAULTS: readonly FaultKind[] = ['worker_kill', 'web_kill', 'processor_fault', 'db_connections_dropped', 'db_restart'];

/** mulberry32 (the simulators' seededRandom): small, fast, and the same sequence for the same seed everywhere. */
export { seededRandom as prng } from '../simulators/kit/faults';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const PROCESSOR_FAULTS = [
  { kind: 'rate_limit', probability: 0.3 },
  { kind: 'server_error', probability: 0.3, status: 503 },
  { kind: 'timeout_applied', probability: 0.2 },
  { kind: 'timeout_not_applied', probability: 0.2 },
  { kind: 'reset_applied', probability: 0.2 },
  { kind: 'reset_not_applied', probability: 0.2 },
  { kind: 'slow', probability: 0.3, delayMs: 400 },
  { kind: 'reject_after_accept', probability: 0.05, delayMs: 100, errorCode: 'chaos_rejected_after_accept', errorMessage: 'rejected by the chaos campaign' },
] as const;

// Braintree simulator rules: on sales unless said otherwise; each fires `count` times (1-3, chosen by the seed).
const SALE = { operation: 'transaction.sale' } as const;
export const BRAINTREE_FAULTS = [
  { kind: 'server_error', status: 500, match: SALE },
  { kind: 'server_error', status: 503, match: SALE },
  { kind: 'timeout_applied', match: SALE },
  { kind: 'timeout_not_applied', match: SALE },
  { kind: 'reset_applied', match: SALE },
  { kind: 'reset_not_applied', match: SALE },
  { kind: 'rate_limit', match: SALE },
  { kind: 'processor_declined', responseCode: '2000', responseType: 'soft_declined' },
  { kind: 'processor_declined', responseCode: '2001', responseType: 'soft_declined' },
  { kind: 'processor_declined', responseCode: '2004', responseType: 'hard_declined' },
  // The search that follows a lost answer fails too.
  { kind: 'server_error', status: 500, match: { operation: 'transaction.search_ids' } },
] as const;

export const PLANS = ['essential', 'business', 'enterprise'] as const;
/** An event name no meter defines: stored, then `unmatched` (missing definition) when its window is authored. */
export const UNMETERED = 'chaos_unmetered';
export const CLOSE_GRACE_MS = 1000;

export interface Subscriber {
  externalId: string;
  processorSubscriptionId: string;
  plan: string;
  token: string | null;
  start1: number;
  end1: number;
  /** Offset from T0 at which the subscription is renewed to [end1, end2) through the API; null: never. */
  renewAt: number | null;
  end2: number | null;
}
