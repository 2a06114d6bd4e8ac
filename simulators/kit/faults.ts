// The fault book both simulators share: scripted rules that match a request and fire `count` times or with
// `probability`. What a rule matches and what it does belong to each simulator; counting, picking, listing and
// reading a rule from the control API's JSON are the same everywhere.

/** The transport faults both simulators inject: answers that fail, come late, or never come (applied or not). */
export const TRANSPORT_FAULT_KINDS = [
  'rate_limit',
  'server_error',
  'slow',
  'timeout_applied',
  'timeout_not_applied',
  'reset_applied',
  'reset_not_applied',
] as const;

export interface FaultRuleBase {
  kind: string;
  /** Assigned when added if absent; used to list and remove rules. */
  id?: string;
  match?: object;
  /** Fire at most this many times, then the rule is dropped. Absent = unlimited. */
  count?: number;
  /** Chance (0..1) that a matching request is hit. Absent = always. */
  probability?: number;
  /** server_error: the 5xx status (default 500). */
  status?: number;
  /** slow: delay before normal handling (default 1000 ms); other kinds may read it as their own delay. */
  delayMs?: number;
}

/** The fault methods every simulator offers (the tests and the control API use them). */
export interface FaultControls<R extends FaultRuleBase> {
  addFault(rule: R): R;
  removeFault(id: string): boolean;
  faults(): R[];
  clearFaults(): void;
}

/** A simulator's fault book behind those methods; `validate` reads a rule as the control API reads its JSON. */
export abstract class WithFaultBook<R extends FaultRuleBase> implements FaultControls<R> {
  protected readonly faultBook = new FaultBook<R>();
  protected constructor(private readonly validateRule: (raw: unknown) => R) {}
  addFault(rule: R): R {
    return this.faultBook.add(this.validateRule(rule));
  }
  removeFault(id: string): boolean {
    return this.faultBook.remove(id);
  }
  faults(): R[] {
    return this.faultBook.list();
  }
  clearFaults(): void {
    this.faultBook.clear();
  }
}

let ruleCounter = 0;

export class FaultBook<R extends FaultRuleBase> {
  private rules: R[] = [];

  get size(): number {
    return this.rules.length;
  }

  add(rule: R): R {
    const stored: R = { ...rule };
    if (rule.match) stored.match = { ...rule.match };
    else delete stored.match;
    if (!stored.id) {
      ruleCounter += 1;
      stored.id = `fault_${ruleCounter}`;
    }
    this.rules.push(stored);
    return copy(stored);
  }

  remove(id: string): boolean {
    const before = this.rules.length;
    this.rules = this.rules.filter((r) => r.id !== id);
    return this.rules.length !== before;
  }

  clear(): void {
    this.rules = [];
  }

  list(): R[] {
    return this.rules.map(copy);
  }

  /** The first rule `applies` accepts that fires; decrements its count (and drops it when spent). */
  pick(applies: (rule: R) => boolean, random: () => number): R | undefined {
    for (let i = 0; i < this.rules.length; i++) {
      const rule = this.rules[i]!;
      if (!applies(rule)) continue;
      if (rule.probability !== undefined && random() >= rule.probability) continue;
      if (rule.count !== undefined) {
        rule.count -= 1;
        if (rule.count <= 0) this.rules.splice(i, 1);
      }
      return copy(rule);
    }
    return undefined;
  }
}

function copy<R extends FaultRuleBase>(rule: R): R {
  return rule.match ? { ...rule, match: { ...rule.match } } : { ...rule };
}

/** Reads one rule from JSON with readable errors; each simulator adds the fields of its own kinds. */
export class RuleReader<K extends string> {
  readonly raw: Record<string, unknown>;
  readonly kind: K;

  constructor(raw: unknown, kinds: readonly K[]) {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('fault rule must be an object');
    this.raw = raw as Record<string, unknown>;
    const kind = this.raw.kind;
    if (typeof kind !== 'string' || !(kinds as readonly string[]).includes(kind)) throw new Error(`fault kind must be one of ${kinds.join(', ')}`);
    this.kind = kind as K;
  }

  num(name: string, min: number, max = Number.POSITIVE_INFINITY): number | undefined {
    const v = this.raw[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new Error(`fault ${name} must be a number in [${min}, ${max}]`);
    return v;
  }

  str(name: string, src: Record<string, unknown> = this.raw): string | undefined {
    const v = src[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw new Error(`fault ${name} must be a string`);
    return v;
  }

  /** kind, id, count, probability, status and delayMs: the fields every simulator's rules have. */
  base(): FaultRuleBase & { kind: K } {
    const rule: FaultRuleBase & { kind: K } = { kind: this.kind };
    const id = this.str('id');
    if (id !== undefined) rule.id = id;
    const count = this.num('count', 1);
    if (count !== undefined) rule.count = Math.floor(count);
    const probability = this.num('probability', 0, 1);
    if (probability !== undefined) rule.probability = probability;
    const status = this.num('status', 500, 599);
    if (status !== undefined) rule.status = Math.floor(status);
    const delayMs = this.num('delayMs', 0);
    if (delayMs !== undefined) rule.delayMs = delayMs;
    return rule;
  }

  /** The `match` object with the given string keys, or undefined when absent. */
  match<M extends Record<string, string>>(keys: readonly (keyof M & string)[]): M | undefined {
    const m = this.raw.match;
    if (m === undefined || m === null) return undefined;
    if (typeof m !== 'object' || Array.isArray(m)) throw new Error('fault match must be an object');
    const out: Record<string, string> = {};
    for (const key of keys) {
      const v = this.str(key, m as Record<string, unknown>);
      if (v !== undefined) out[key] = v;
    }
    return out as M;
  }
}

/** Small seeded PRNG (mulberry32) so fault campaigns can be replayed. */
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
