// Shapes shared by the windows domain (rows as the SQL below reads them).
export type WindowState =
  | 'open'
  | 'closed'
  | 'settling'
  | 'paid'
  | 'retry_scheduled'
  | 'failed_exhausted'
  | 'awaiting_payment_method'
  | 'written_off';

export const WINDOW_STATES: readonly WindowState[] = [
  'open',
  'closed',
  'settling',
  'paid',
  'retry_scheduled',
  'failed_exhausted',
  'awaiting_payment_method',
  'written_off',
];

export interface WindowRow {
  id: string;
  subscriptionId: string;
  customerId: string;
  periodStart: Date;
  periodEnd: Date;
  state: WindowState;
  priceSnapshot: unknown;
  currency: string;
  staleRepaired: boolean;
  closedAt: Date | null;
  paidAt: Date | null;
}

export const WINDOW_COLUMNS = `id, subscription_id AS "subscriptionId", customer_id AS "customerId", period_start AS "periodStart",
  period_end AS "periodEnd", state::text AS state, price_snapshot AS "priceSnapshot", currency, stale_repaired AS "staleRepaired",
  closed_at AS "closedAt", paid_at AS "paidAt"`;

/** Subscription statuses whose current period gets a window opened on time. */
export const LIVE_SUBSCRIPTION_STATUSES = ['trialing', 'active', 'past_due'] as const;

export const CLOSE_WINDOW_TASK = 'braintree__close_window';
export const SETTLE_WINDOW_TASK = 'braintree__settle_window';

/** Job keys: one queued job per window and purpose (graphile-worker replaces a queued one, never runs two). */
export const closeJobKey = (windowId: string) => `braintree_close:${windowId}`;
export const settleJobKey = (windowId: string) => `braintree_settle:${windowId}`;
