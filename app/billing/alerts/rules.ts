// Alert rules as data (ADR 036): each kind has a Zod schema for its numbers, so a rule with impossible numbers is
// refused field by field and nothing is written. Creating, enabling and disabling a rule commits with its audit row.
import type pg from 'pg';
import { z } from 'zod';
import { writeAudit, type Actor } from '../audit';
import { withTransaction, type Queryable } from '../db';
import type { AdminResult } from '../access/desk-users';
import { OPS_EVENT_TYPES } from '../ops-events';
import { firstFieldRefusal } from '../validation';
import { RULE_KINDS, type RuleKind } from './kinds';

const minutes = (max: number) =>
  z.coerce.number({ error: 'must be a number of minutes' }).int('must be whole minutes').min(1, 'must be at least 1 minute').max(max, `must be at most ${max} minutes`);

export { RULE_KINDS, type RuleKind };

export const FAILURE_SOURCES = ['events', 'sales'] as const;
export const ANOMALY_PERIODS = ['hour', 'day'] as const;
export const BUDGET_PERCENTS = [50, 80, 100] as const;

/** A customer's external id or a meter's event name; empty means none. createRule checks that it exists. */
const reference = (what: 'customer' | 'meter', hint: string) =>
  z
    .string({ error: `must be ${hint}` })
    .trim()
    .max(200, 'must be at most 200 characters')
    .optional()
    .transform((v) => (v ? v : undefined));

/** An HTML checkbox (`on` when ticked, absent otherwise) or a stored boolean. */
const checkbox = z
  .union([z.boolean(), z.literal('on'), z.literal('true'), z.literal('false'), z.literal('')])
  .optional()
  .transform((v) => v === true || v === 'on' || v === 'true');

export const RULE_PARAMS = {
  reporting_lag: z.object({ minutes: minutes(10_080) }),
  windows_unpaid: z.object({
    hours: z.coerce.number({ error: 'must be a number of hours' }).int('must be whole hours').min(1, 'must be at least 1 hour').max(2_160, 'must be at most 2160 hours (90 days)'),
  }),
  failure_rate: z.object({
    /** events: Stripe meter events moved to failed; sales: Braintree sales declined or refused. */
    source: z.enum(FAILURE_SOURCES, { error: 'must be events or sales' }).default('events'),
    minutes: minutes(1_440),
    threshold: z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(0, 'cannot be negative').max(10_000_000, 'must be at most 10,000,000'),
    code: z
      .string()
      .trim()
      .max(100, 'must be at most 100 characters')
      .regex(/^[a-z0-9_]*$/, 'must be an error code such as no_customer (lower case, digits, _)')
      .optional()
      .transform((c) => (c ? c : undefined)),
  }),
  silence: z
    .object({
      minutes: minutes(10_080),
      customer: reference('customer', 'a customer’s external id'),
      meter: reference('meter', 'a meter’s event name'),
      /** Only during its usual hours: the same UTC hour of the day had usage on at least 4 of the last 7 days. */
      usualHours: checkbox,
    })
    .refine((p) => !(p.customer && p.meter), { path: ['meter'], message: 'choose a customer or a meter, not both' }),
  usage_anomaly: z.object({
    meter: reference('meter', 'a meter’s event name').refine((m) => m !== undefined, 'name the meter (its event name)'),
    customer: reference('customer', 'a customer’s external id'),
    period: z.enum(ANOMALY_PERIODS, { error: 'must be hour or day' }),
    factor: z.coerce.number({ error: 'must be a number' }).min(1.1, 'must be at least 1.1 (times the median)').max(1_000, 'must be at most 1,000'),
    /** The usage a period needs before it can be an anomaly, so that 3 after a median of 1 does not page anyone. */
    minimum: z.coerce.number({ error: 'must be a number' }).min(0, 'cannot be negative').max(1e15, 'must be at most 10^15').default(1),
  }),
  budget: z.object({
    customer: reference('customer', 'a customer’s external id').refine((c) => c !== undefined, 'name the customer (its external id)'),
    amount: z
      .string({ error: 'give the amount, e.g. 500.00' })
      .trim()
      .regex(/^\d{1,15}(\.\d{1,3})?$/, 'must be an amount such as 500 or 500.00')
      .refine((a) => Number(a) > 0, 'must be more than 0'),
    currency: z
      .string({ error: 'give the currency, e.g. usd' })
      .trim()
      .toLowerCase()
      .regex(/^[a-z]{3}$/, 'must be a three-letter currency code such as usd'),
    percent: z.coerce.number({ error: 'must be 50, 80 or 100' }).refine((p) => BUDGET_PERCENTS.includes(p as (typeof BUDGET_PERCENTS)[number]), 'must be 50, 80 or 100'),
  }),
  ops_event: z.object({
    type: z.enum(OPS_EVENT_TYPES, { error: `must be one of ${OPS_EVENT_TYPES.join(', ')}` }),
    minutes: minutes(10_080),
    threshold: z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(0, 'cannot be negative').max(1_000_000, 'must be at most 1,000,000'),
  }),
} satisfies Record<RuleKind, z.ZodType>;

export type RuleParams = { [K in RuleKind]: z.output<(typeof RULE_PARAMS)[K]> };
export type AlertRule = { [K in RuleKind]: { id: string; name: string; kind: K; params: RuleParams[K]; enabled: boolean } }[RuleKind];

const ruleName = z.string({ error: 'Name the rule' }).trim().min(1, 'Name the rule').max(100, 'Use at most 100 characters');
const ruleKind = z.enum(Object.keys(RULE_KINDS) as [RuleKind, ...RuleKind[]], { error: `must be one of ${Object.keys(RULE_KINDS).join(', ')}` });
/** Name first, then kind: the kind chooses the schema of the numbers. */
const ruleHead = z.object({ name: ruleName, kind: ruleKind });

export interface RuleInput {
  name: unknown;
  kind: unknown;
  params: Record<string, unknown>;
  reason?: string;
}

/** The rule `input` describes, or its first field error (`name`, `kind`, or one of the numbers: `minutes`, …). */
export function parseRule(input: RuleInput): AdminResult<{ name: string; kind: RuleKind; params: RuleParams[RuleKind] }> {
  const head = ruleHead.safeParse(input);
  if (!head.success) return firstFieldRefusal(head.error);
  const params = RULE_PARAMS[head.data.kind].safeParse(input.params);
  if (!params.success) return firstFieldRefusal(params.error);
  return { ok: true, value: { ...head.data, params: params.data } };
}

export async function createRule(pool: pg.Pool, actor: Actor, input: RuleInput): Promise<AdminResult<{ id: string; name: string }>> {
  const parsed = parseRule(input);
  if (!parsed.ok) return parsed;
  const { name, kind, params } = parsed.value;
  return withTransaction(pool, async (tx) => {
    const missing = await missingReference(tx, params);
    if (missing) return { ok: false, ...missing };
    const { rows } = await tx.query<{ id: string }>(
      `INSERT INTO alert_rules (id, name, kind, params) VALUES (gen_random_uuid(), $1, $2, $3::jsonb)
       ON CONFLICT (name) DO NOTHING RETURNING id`,
      [name, kind, JSON.stringify(params)],
    );
    const id = rows[0]?.id;
    if (!id) return { ok: false, field: 'name', message: `A rule named "${name}" already exists.` };
    await writeAudit(tx, { actor, action: 'alert_rule.create', subjectType: 'alert_rule', subjectId: id, reason: input.reason, after: { name, kind, params } });
    return { ok: true, value: { id, name } };
  });
}

/** The customer or meter a rule names that does not exist, as a field error; null when all do. */
async function missingReference(db: Queryable, params: Record<string, unknown>): Promise<{ field: string; message: string } | null> {
  if (typeof params.customer === 'string') {
    const { rowCount } = await db.query(`SELECT 1 FROM customers WHERE external_id = $1`, [params.customer]);
    if (!rowCount) return { field: 'customer', message: `No customer has the external id "${params.customer}".` };
  }
  if (typeof params.meter === 'string') {
    const { rowCount } = await db.query(`SELECT 1 FROM meters WHERE event_name = $1`, [params.meter]);
    if (!rowCount) return { field: 'meter', message: `No meter has the event name "${params.meter}".` };
  }
  return null;
}

/** Turns a rule off (its open firing resolves at the next evaluation) or on again. */
export async function setRuleEnabled(pool: pg.Pool, actor: Actor, input: { ruleId: string; enabled: boolean; reason?: string }): Promise<AdminResult<{ name: string }>> {
  return withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ name: string }>(
      `UPDATE alert_rules SET enabled = $2, updated_at = now() WHERE id = $1 AND enabled <> $2 RETURNING name`,
      [input.ruleId, input.enabled],
    );
    const row = rows[0];
    if (!row) return { ok: false, message: `That rule does not exist or is already ${input.enabled ? 'on' : 'off'}.` };
    await writeAudit(tx, {
      actor,
      action: input.enabled ? 'alert_rule.enable' : 'alert_rule.disable',
      subjectType: 'alert_rule',
      subjectId: input.ruleId,
      reason: input.reason,
      before: { enabled: !input.enabled },
      after: { enabled: input.enabled },
    });
    return { ok: true, value: { name: row.name } };
  });
}

/** Every rule, enabled or not; params are re-read through their schema, so a row edited by hand cannot mislead. */
export async function loadRules(db: Queryable, options: { enabledOnly?: boolean } = {}): Promise<AlertRule[]> {
  const { rows } = await db.query<{ id: string; name: string; kind: string; params: unknown; enabled: boolean }>(
    `SELECT id, name, kind, params, enabled FROM alert_rules ${options.enabledOnly ? 'WHERE enabled' : ''} ORDER BY name`,
  );
  const rules: AlertRule[] = [];
  for (const row of rows) {
    if (!(row.kind in RULE_PARAMS)) continue;
    const kind = row.kind as RuleKind;
    const params = RULE_PARAMS[kind].safeParse(row.params);
    if (params.success) rules.push({ id: row.id, name: row.name, kind, params: params.data, enabled: row.enabled } as AlertRule);
  }
  return rules;
}
