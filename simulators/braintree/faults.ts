// Scriptable faults for the Braintree simulator. A rule matches a request by operation, path prefix and, for
// sales, by order id / payment method token / customer id / amount; it fires `count` times or with `probability`
// (simulators/kit).
import { RuleReader, TRANSPORT_FAULT_KINDS, type FaultRuleBase } from '../kit/faults';

export { FaultBook, seededRandom } from '../kit/faults';

export const FAULT_KINDS = [...TRANSPORT_FAULT_KINDS, 'processor_declined', 'gateway_rejected'] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

/** Kinds that change a sale's outcome rather than the HTTP exchange: they only ever match sales. */
const SALE_OUTCOME_KINDS: ReadonlySet<FaultKind> = new Set(['processor_declined', 'gateway_rejected']);

export const OPERATIONS = [
  'transaction.sale',
  'transaction.find',
  'transaction.search_ids',
  'transaction.search',
  'transaction.void',
  'transaction.submit_for_settlement',
  'transaction.testing',
  'customer.create',
  'customer.find',
  'customer.delete',
  'payment_method.create',
  'payment_method.find',
  'payment_method.delete',
] as const;

export type Operation = (typeof OPERATIONS)[number];

export interface FaultMatch {
  /** One gateway operation, e.g. `transaction.sale` or `transaction.search_ids`. */
  operation?: Operation;
  /** Prefix of the path after `/merchants/<id>`, e.g. `/transactions` (which also covers the search paths). */
  path?: string;
  method?: string;
  /** Sales only: `transaction.order_id`. */
  orderId?: string;
  /** Sales only: the payment method token charged (given, or the customer's default). */
  token?: string;
  /** Sales only: `transaction.customer_id`, or the owner of the token. */
  customerId?: string;
  /** Sales only: the normalised amount, e.g. `12.30`. */
  amount?: string;
}

export interface FaultRule extends FaultRuleBase {
  kind: FaultKind;
  match?: FaultMatch;
  /** processor_declined: the processor response code (default `2000`). */
  responseCode?: string;
  /** processor_declined: overrides the code's usual soft/hard classification. */
  responseType?: 'soft_declined' | 'hard_declined';
  /** gateway_rejected: the rejection reason (default `fraud`). */
  reason?: string;
}

/** What the simulator knows about a request when choosing a fault. */
export interface FaultSubjects {
  orderId?: string | undefined;
  token?: string | undefined;
  customerId?: string | undefined;
  amount?: string | undefined;
}

function isOperation(value: unknown): value is Operation {
  return typeof value === 'string' && (OPERATIONS as readonly string[]).includes(value);
}

/** Throws with a readable message if `raw` is not a usable rule (the HTTP control API feeds it JSON). */
export function validateFaultRule(raw: unknown): FaultRule {
  const r = new RuleReader(raw, FAULT_KINDS);
  const rule: FaultRule = r.base();
  const responseCode = r.str('responseCode');
  if (responseCode !== undefined) {
    if (!/^\d{4}$/.test(responseCode)) throw new Error('fault responseCode must be four digits, e.g. 2001');
    rule.responseCode = responseCode;
  }
  const responseType = r.str('responseType');
  if (responseType !== undefined) {
    if (responseType !== 'soft_declined' && responseType !== 'hard_declined') throw new Error('fault responseType must be soft_declined or hard_declined');
    rule.responseType = responseType;
  }
  const reason = r.str('reason');
  if (reason !== undefined) rule.reason = reason;
  const match = r.match<Record<keyof FaultMatch, string>>(['operation', 'path', 'method', 'orderId', 'token', 'customerId', 'amount']);
  if (match) {
    if (match.operation !== undefined && !isOperation(match.operation)) throw new Error(`fault match.operation must be one of ${OPERATIONS.join(', ')}`);
    rule.match = match as FaultMatch;
  }
  return rule;
}

/**
 * Whether a rule applies in this phase: the exchange faults are picked before the request is handled, the
 * sale-outcome ones while a sale is decided, once its payment method is known.
 */
export function ruleMatches(
  rule: FaultRule,
  phase: 'exchange' | 'sale_outcome',
  req: { method: string; path: string; operation: Operation },
  subjects: FaultSubjects | undefined,
): boolean {
  if (SALE_OUTCOME_KINDS.has(rule.kind) !== (phase === 'sale_outcome')) return false;
  const match = rule.match;
  if (!match) return true;
  if (match.operation !== undefined && match.operation !== req.operation) return false;
  if (match.path !== undefined && !req.path.startsWith(match.path)) return false;
  if (match.method !== undefined && match.method.toUpperCase() !== req.method) return false;
  if (match.orderId !== undefined && subjects?.orderId !== match.orderId) return false;
  if (match.token !== undefined && subjects?.token !== match.token) return false;
  if (match.customerId !== undefined && subjects?.customerId !== match.customerId) return false;
  if (match.amount !== undefined && subjects?.amount !== match.amount) return false;
  return true;
}
