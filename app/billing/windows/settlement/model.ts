// What settlement works with: the retry policy and options, the results a run reports, the claim on a window's
// attempt, and the two derivations every part shares (the sale's order id, the window's advisory lock key).
import type { ChargeProcessor, SaleResult } from '../../processors/types';
import type { WindowState } from '../types';

export interface RetryPolicy {
  /** Sales per budget, the first included. Default 6. */
  maxTries: number;
  /** No automatic retry is scheduled past this long after the budget started. Default 7 days. */
  maxElapsedMs: number;
  /** Backoff after a soft decline (issuers need time: funds, limits). Default 6 h doubling, at most 48 h. */
  softDecline: { baseMs: number; maxMs: number };
  /** Backoff after an API error (not applied: 429, auth, connection, processor `failed`). Default 1 min doubling, at most 1 h. */
  error: { baseMs: number; maxMs: number };
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxTries: 6,
  maxElapsedMs: 7 * 24 * 3_600_000,
  softDecline: { baseMs: 6 * 3_600_000, maxMs: 48 * 3_600_000 },
  error: { baseMs: 60_000, maxMs: 3_600_000 },
};

export interface SettlementOptions {
  processor: ChargeProcessor;
  retry?: Partial<RetryPolicy>;
  /**
   * After a sale whose answer was lost, how long from sending before a "not found" search is trusted (Braintree's
   * gateway works on a sale for up to 60 s, and duplicate checking does not see in-flight sales). Default 65 s.
   */
  ambiguousSearchDelayMs?: number;
  /** When another live settler holds the window, look again this much later. Default 5 s. */
  busyRetryMs?: number;
  /** Sales one batch settlement (settleWindows) keeps in flight at once. Default DEFAULT_SALES_IN_FLIGHT. */
  salesInFlight?: number;
  now?: () => Date;
  random?: () => number;
}

export type SettleOutcome =
  | 'paid'
  | 'retry_scheduled'
  | 'failed_exhausted'
  | 'awaiting_payment_method'
  /** Another live settler holds this window; a job was queued to look again. */
  | 'busy'
  /** The window is in no state to settle (open, paid, exhausted, written off, awaiting a payment method). */
  | 'nothing_to_do'
  /** A retry exists but is not due yet (its job runs at next_retry_at). */
  | 'not_due'
  /** A lost sale answer is searched for once the gateway timeout has passed; a job was queued for then. */
  | 'search_later'
  | 'not_found';

export interface SettleResult {
  outcome: SettleOutcome;
  state: WindowState | null;
  /** Sales sent in this run (0 or 1). */
  salesSent: number;
  /** The run adopted a sale found by order id instead of sending one. */
  adopted: boolean;
  detail?: string;
}

/** The order id of a window's sale: derived from the window id, the same on every try. */
export function orderIdFor(windowId: string): string {
  return `mdw-${windowId}`;
}

/** Validation codes that mean "this customer cannot be charged with what is on file". */
export const PAYMENT_METHOD_CODES = new Set(['91508', '91510', '91511', '91516', '91518']);

export interface Claim {
  windowId: string;
  state: WindowState;
  currency: string;
  totalMinor: bigint;
  processorCustomerId: string;
  token: string | null;
  attempt: AttemptRow;
}

export interface AttemptRow {
  id: string;
  order_id: string;
  amount_minor: string;
  status: string;
  tries: number;
  budget_tries: number;
  budget_started_at: Date | null;
  last_sent_at: Date | null;
  next_retry_at: Date | null;
}

export type Outcome =
  | SaleResult
  | { outcome: 'search_error'; code: string; message: string }
  | { outcome: 'no_payment_method' };

/** The session advisory lock that tells a live settler of a window from a dead one (SQL over a uuid parameter). */
export const windowLockKey = (param: string) => `('x' || substr(replace(${param}::text, '-', ''), 1, 16))::bit(64)::bigint`;
