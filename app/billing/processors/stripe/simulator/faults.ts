// Scriptable faults for the Stripe simulator. A rule matches a request by path prefix and, for meter event
// calls, by identifier / customer / event name; it fires `count` times or with `probability`.

export const FAULT_KINDS = [
  'rate_limit',
  'server_error',
  'slow',
  'timeout_applied',
  'timeout_not_applied',
  'reset_applied',
  'reset_not_applied',
  'reject_after_accept',
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultMatch {
  /** Path prefix, e.g. `/v1/billing/meter_events` or `/v2/billing/meter_event_stream`. */
  path?: string;
  method?: string;
  /** Meter event identifier (any event of a v2 stream batch). */
  identifier?: string;
  /** `payload[stripe_customer_id]` (any event of a v2 stream batch). */
  customer?: string;
  eventName?: string;
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
  /** server_error: 500 (default) or 503 etc. */
  status?: number;
  /** slow: delay before normal handling (default 1000). reject_after_accept: delay before the error is queued (default 0). */
  delayMs?: number;
  /** reject_after_accept: error code in the error report (open-ended: unknown codes are allowed). */
  errorCode?: string;
  /** reject_after_accept: sample error message. */
  errorMessage?: string;
}

/** What the simulator knows about a request when choosing a fault. */
export interface FaultSubjects {
  identifiers?: readonly string[];
  customers?: readonly string[];
  eventNames?: readonly string[];
}

export function isFaultKind(value: unknown): value is FaultKind {
  return typeof value === 'string' && (FAULT_KINDS as readonly string[]).includes(value);
}

/** Throws with a readable message if `raw` is not a usable rule (the HTTP control API feeds it JSON). */
export function validateFaultRule(raw: unknown): FaultRule {
  if (raw === null || typeof raw !== 'object') throw new Error('fault rule must be an object');
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
  const errorCode = str(r, 'errorCode');
  if (errorCode !== undefined) rule.errorCode = errorCode;
  const errorMessage = str(r, 'errorMessage');
  if (errorMessage !== undefined) rule.errorMessage = errorMessage;
  if (r.match !== undefined && r.match !== null) {
    if (typeof r.match !== 'object') throw new Error('fault match must be an object');
    const m = r.match as Record<string, unknown>;
    const match: FaultMatch = {};
    for (const key of ['path', 'method', 'identifier', 'customer', 'eventName'] as const) {
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
    return this.rules.map((r) => ({ ...r }));
  }

  /** First matching rule that fires; decrements its count (and drops it when spent). */
  pick(method: string, path: string, subjects: FaultSubjects | undefined, random: () => number): FaultRule | undefined {
    for (let i = 0; i < this.rules.length; i++) {
      const rule = this.rules[i]!;
      if (!matches(rule.match, method, path, subjects)) continue;
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

function matches(match: FaultMatch | undefined, method: string, path: string, subjects: FaultSubjects | undefined): boolean {
  if (!match) return true;
  if (match.path !== undefined && !path.startsWith(match.path)) return false;
  if (match.method !== undefined && match.method.toUpperCase() !== method) return false;
  if (match.identifier !== undefined && !subjects?.identifiers?.includes(match.identifier)) return false;
  if (match.customer !== undefined && !subjects?.customers?.includes(match.customer)) return false;
  if (match.eventName !== undefined && !subjects?.eventNames?.includes(match.eventName)) return false;
  return true;
}

/** Whether one event of a (possibly batched) request is the one a rule names. */
export function ruleNamesEvent(rule: FaultRule, event: { identifier: string; customer: string; eventName: string }): boolean {
  const m = rule.match;
  if (!m) return true;
  if (m.identifier !== undefined && m.identifier !== event.identifier) return false;
  if (m.customer !== undefined && m.customer !== event.customer) return false;
  if (m.eventName !== undefined && m.eventName !== event.eventName) return false;
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
