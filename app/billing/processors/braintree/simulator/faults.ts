// Scriptable faults for the Braintree simulator. A rule matches a request by operation, path prefix and, for
// sales, by order id / payment method token / customer id / amount; it fires `count` times or with `probability`.

export const FAULT_KINDS = [
  'rate_limit',
  'server_error',
  'slow',
  'timeout_applied',
  'timeout_not_applied',
  'reset_applied',
  'reset_not_applied',
  'processor_declined',
  'gateway_rejected',
] as const;

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

export interface FaultRule {
  kind: FaultKind;
  /** Assigned when added if absent; used to list and remove rules. */
  id?: string;
  match?: FaultMatch;
  /** Fire at most this many times, then the rule is dropped. Absent = unlimited. */
  count?: number;
  /** Chance (0..1) that a matching request is hit. Absent = always. */
  probability?: number;
  /** server_error: 500 (default), 503, 504 ... */
  status?: number;
  /** slow: delay before normal handling (default 1000 ms). */
  delayMs?: number;
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

export function isFaultKind(value: unknown): value is FaultKind {
  return typeof value === 'string' && (FAULT_KINDS as readonly string[]).includes(value);
}

function isOperation(value: unknown): value is Operation {
  return typeof value === 'string' && (OPERATIONS as readonly string[]).includes(value);
}

/** Throws with a readable message if `raw` is not a usable rule (the HTTP control API feeds it JSON). */
export function validateFaultRule(raw: unknown): FaultRule {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('fault rule must be an object');
  const r = raw as Record<string, unknown>;
  if (!isFaultKind(r.kind)) throw new Error(`fault kind must be one of ${FAULT_KINDS.join(', ')}`);
  const num = (name: string, min: number, max = Number.POSITIVE_INFINITY): number | undefined => {
    const v = r[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new Error(`fault ${name} must be a number in [${min}, ${max}]`);
    return v;
  };
  const str = (src: Record<string, unknown>, name: string): string | undefined => {
    const v = src[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw new Error(`fault ${name} must be a string`);
    return v;
  };
  const rule: FaultRule = { kind: r.kind };
  const id = str(r, 'id');
  if (id !== undefined) rule.id = id;
  const count = num('count', 1);
  if (count !== undefined) rule.count = Math.floor(count);
  const probability = num('probability', 0, 1);
  if (probability !== undefined) rule.probability = probability;
  const status = num('status', 500, 599);
  if (status !== undefined) rule.status = Math.floor(status);
  const delayMs = num('delayMs', 0);
  if (delayMs !== undefined) rule.delayMs = delayMs;
  const responseCode = str(r, 'responseCode');
  if (responseCode !== undefined) {
    if (!/^\d{4}$/.test(responseCode)) throw new Error('fault responseCode must be four digits, e.g. 2001');
    rule.responseCode = responseCode;
  }
  const responseType = str(r, 'responseType');
  if (responseType !== undefined) {
    if (responseType !== 'soft_declined' && responseType !== 'hard_declined') throw new Error('fault responseType must be soft_declined or hard_declined');
    rule.responseType = responseType;
  }
  const reason = str(r, 'reason');
  if (reason !== undefined) rule.reason = reason;
  if (r.match !== undefined && r.match !== null) {
    if (typeof r.match !== 'object' || Array.isArray(r.match)) throw new Error('fault match must be an object');
    const m = r.match as Record<string, unknown>;
    const match: FaultMatch = {};
    const operation = str(m, 'operation');
    if (operation !== undefined) {
      if (!isOperation(operation)) throw new Error(`fault match.operation must be one of ${OPERATIONS.join(', ')}`);
      match.operation = operation;
    }
    for (const key of ['path', 'method', 'orderId', 'token', 'customerId', 'amount'] as const) {
      const v = str(m, key);
      if (v !== undefined) match[key] = v;
    }
    rule.match = match;
  }
  return rule;
}

let ruleCounter = 0;

export class FaultBook {
  private rules: FaultRule[] = [];

  get size(): number {
    return this.rules.length;
  }

  add(rule: FaultRule): FaultRule {
    const stored: FaultRule = { ...rule, match: rule.match ? { ...rule.match } : undefined };
    if (!stored.match) delete stored.match;
    if (!stored.id) {
      ruleCounter += 1;
      stored.id = `fault_${ruleCounter}`;
    }
    this.rules.push(stored);
    return { ...stored };
  }

  remove(id: string): boolean {
    const before = this.rules.length;
    this.rules = this.rules.filter((r) => r.id !== id);
    return this.rules.length !== before;
  }

  clear(): void {
    this.rules = [];
  }

  list(): FaultRule[] {
    return this.rules.map((r) => ({ ...r, ...(r.match ? { match: { ...r.match } } : {}) }));
  }

  /**
   * First matching rule that fires; decrements its count (and drops it when spent). `phase` separates the
   * exchange faults (picked before the request is handled) from the sale-outcome ones (picked while a sale is
   * decided, once its payment method is known).
   */
  pick(
    phase: 'exchange' | 'sale_outcome',
    req: { method: string; path: string; operation: Operation },
    subjects: FaultSubjects | undefined,
    random: () => number,
  ): FaultRule | undefined {
    for (let i = 0; i < this.rules.length; i++) {
      const rule = this.rules[i]!;
      const outcomeKind = SALE_OUTCOME_KINDS.has(rule.kind);
      if (outcomeKind !== (phase === 'sale_outcome')) continue;
      if (!matches(rule.match, req, subjects)) continue;
      if (rule.probability !== undefined && random() >= rule.probability) continue;
      if (rule.count !== undefined) {
        rule.count -= 1;
        if (rule.count <= 0) this.rules.splice(i, 1);
      }
      return { ...rule };
    }
    return undefined;
  }
}

function matches(match: FaultMatch | undefined, req: { method: string; path: string; operation: Operation }, subjects: FaultSubjects | undefined): boolean {
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

/** Small seeded PRNG (mulberry32) so chaos runs can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
