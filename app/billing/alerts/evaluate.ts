// One evaluation pass over every enabled alert rule (ADR 036), run every minute by alerts__evaluate. Each measure a
// rule needs is one index probe or one index range, computed once per pass and shared by every rule that asks the
// same question (1,000 rules on 10M events cost a handful of queries, not 1,000 scans):
//   reporting_lag   the smallest id of pending Stripe events, through meter_events_status_id_idx (ids are UUIDv7 minted at
//                   receipt, so the smallest is the oldest);
//   windows_unpaid  windows not paid or written off whose period ended before the limit, through (state, period_end);
//   failure_rate    ops_events of type meter_reporting_failed (events) or metered_sale_failed (sales) in the last M
//                   minutes, through (type, occurred_at): every move of a Stripe event to failed, and every Braintree
//                   sale that failed, records exactly one, with its error code;
//   silence         the largest id of meter_events (the newest receipt): one primary-key probe per partition, or one
//                   probe of (customer_id, id) or (event_name, id) for a customer or a meter; its usual hours from
//                   usage_rollups (7 one-hour ranges);
//   usage_anomaly   usage_rollups of one meter (and customer) over the last period and the ones before, through
//                   (event_name, bucket_start) (ADR 037);
//   budget          the customer's upcoming charges: the preview of its live Braintree subscriptions' open windows
//                   (the same figures as the invoices page), through the customer's subscriptions and window events;
//   ops_event       ops_events of one type in the last M minutes, through (type, occurred_at).
// A rule whose condition holds opens a firing, stored once: the partial unique index on (rule_id) WHERE resolved_at
// IS NULL keeps one open firing per rule, so two passes at once cannot fire it twice. While it holds, the firing is
// only touched (last_evaluated_at); when it stops holding (or the rule is turned off), the firing resolves with the
// values of that moment. Each opening and resolution becomes one delivery per enabled channel, queued in the same
// transaction as the firing's row (alerts__deliver), so a notification is neither lost nor sent for a rolled-back pass.
import type pg from 'pg';
import { addJobCall } from '../../db/graphile-jobs';
import type { Queryable } from '../db';
import { uuidv7Time } from '../ids';
import { USAGE_BUCKET_MS } from '../rollups';
import { formatMinor, parseMinor } from '../windows/invoice-math';
import { LIVE_SUBSCRIPTION_STATUSES } from '../windows/types';
import { withClient } from '../windows/transaction';
import { previewUpcomingChargesOf } from '../windows/upcoming-charges';
import { loadRules, type AlertRule } from './rules';

export const DELIVER_TASK = 'alerts__deliver';
/** Attempts per delivery; graphile-worker's backoff (exp(attempt) seconds) spreads them over about 50 minutes. */
export const DELIVERY_ATTEMPTS = 8;

const UNPAID_STATES = ['open', 'closed', 'settling', 'retry_scheduled', 'failed_exhausted', 'awaiting_payment_method'];

export interface Evaluation {
  rule: AlertRule;
  firing: boolean;
  values: Record<string, unknown>;
  summary: string;
}

export interface EvaluationResult {
  at: Date;
  rules: number;
  /** Firings opened by this pass. */
  fired: { firingId: string; ruleId: string }[];
  /** Firings resolved by this pass. */
  resolved: { firingId: string; ruleId: string }[];
  /** Rules that were firing and still are. */
  stillFiring: number;
  /** Deliveries queued for the openings and resolutions. */
  deliveries: number;
}

/** Measures shared by the rules of one pass, each computed at most once per distinct question (exported for bench/alerts.ts). */
export class Measures {
  private readonly memo = new Map<string, Promise<unknown>>();
  constructor(
    private readonly db: Queryable,
    readonly now: Date,
  ) {}

  private once<T>(key: string, compute: () => Promise<T>): Promise<T> {
    let value = this.memo.get(key) as Promise<T> | undefined;
    if (!value) this.memo.set(key, (value = compute()));
    return value;
  }

  oldestPending(): Promise<{ id: string; receivedAt: Date } | null> {
    return this.once('oldest-pending', async () => {
      const { rows } = await this.db.query<{ id: string | null }>(
        `SELECT id::text AS id FROM meter_events WHERE status = 'pending' AND processor = 'stripe' ORDER BY meter_events.id LIMIT 1`,
      );
      const id = rows[0]?.id;
      return id ? { id, receivedAt: new Date(uuidv7Time(id)) } : null;
    });
  }

  newestReceipt(): Promise<Date | null> {
    return this.once('newest-receipt', async () => {
      const { rows } = await this.db.query<{ id: string | null }>(`SELECT id::text AS id FROM meter_events ORDER BY meter_events.id DESC LIMIT 1`);
      const id = rows[0]?.id;
      return id ? new Date(uuidv7Time(id)) : null;
    });
  }

  /** A customer's id from its external id (null: no such customer). */
  customerId(externalId: string): Promise<string | null> {
    return this.once(`customer:${externalId}`, async () => {
      const { rows } = await this.db.query<{ id: string }>(`SELECT id FROM customers WHERE external_id = $1`, [externalId]);
      return rows[0]?.id ?? null;
    });
  }

  /** The newest receipt of the whole ledger, one customer's events or one meter's. */
  newestReceiptOf(scope: { customer?: string; meter?: string }): Promise<Date | null> {
    if (!scope.customer && !scope.meter) return this.newestReceipt();
    return this.once(`newest:${scope.customer ?? ''}:${scope.meter ?? ''}`, async () => {
      if (scope.customer) {
        const customerId = await this.customerId(scope.customer);
        if (!customerId) return null;
        const { rows } = await this.db.query<{ id: string }>(`SELECT id::text AS id FROM meter_events WHERE customer_id = $1 ORDER BY meter_events.id DESC LIMIT 1`, [customerId]);
        return rows[0] ? new Date(uuidv7Time(rows[0].id)) : null;
      }
      const { rows } = await this.db.query<{ id: string }>(`SELECT id::text AS id FROM meter_events WHERE event_name = $1 ORDER BY meter_events.id DESC LIMIT 1`, [scope.meter]);
      return rows[0] ? new Date(uuidv7Time(rows[0].id)) : null;
    });
  }

  /** On how many of the last 7 days the scope had usage in this same UTC hour of the day (from usage_rollups). */
  usualHourDays(scope: { customer?: string; meter?: string }): Promise<number> {
    return this.once(`usual:${scope.customer ?? ''}:${scope.meter ?? ''}`, async () => {
      const customerId = scope.customer ? await this.customerId(scope.customer) : null;
      if (scope.customer && !customerId) return 0;
      const hour = new Date(Math.floor(this.now.getTime() / 3_600_000) * 3_600_000);
      const { rows } = await this.db.query<{ days: number }>(
        `SELECT count(*)::int AS days FROM generate_series(1, 7) AS d(n)
          WHERE EXISTS (SELECT 1 FROM usage_rollups u
                         WHERE u.bucket_start >= $1::timestamptz - d.n * interval '1 day'
                           AND u.bucket_start < $1::timestamptz - d.n * interval '1 day' + interval '1 hour'
                           AND ($2::uuid IS NULL OR u.customer_id = $2) AND ($3::text IS NULL OR u.event_name = $3))`,
        [hour, customerId, scope.meter ?? null],
      );
      return rows[0]?.days ?? 0;
    });
  }

  /**
   * Per customer with usage of `meter` in the last `period` (completed 10-minute buckets): that usage and the
   * usage of each of the `trailing` periods before it (zeros included), from usage_rollups.
   */
  usageByPeriod(meter: string, customer: string | undefined, periodMs: number, trailing: number): Promise<{ externalId: string; current: number; before: number[] }[]> {
    return this.once(`usage:${meter}:${customer ?? ''}:${periodMs}:${trailing}`, async () => {
      const customerId = customer ? await this.customerId(customer) : null;
      if (customer && !customerId) return [];
      const end = Math.floor(this.now.getTime() / USAGE_BUCKET_MS) * USAGE_BUCKET_MS;
      const { rows } = await this.db.query<{ external_id: string; k: number[]; v: string[] }>(
        `WITH chunks AS (
           SELECT customer_id, ceil(extract(epoch FROM ($2::timestamptz - bucket_start)) * 1000 / $4)::int - 1 AS k, sum(value_sum) AS v
             FROM usage_rollups
            WHERE event_name = $1 AND bucket_start >= $3 AND bucket_start < $2 AND ($5::uuid IS NULL OR customer_id = $5)
            GROUP BY 1, 2
         )
         SELECT c.external_id, array_agg(k ORDER BY k) AS k, array_agg(v::text ORDER BY k) AS v
           FROM chunks JOIN customers c ON c.id = chunks.customer_id
          GROUP BY c.external_id
         HAVING bool_or(k = 0)`,
        [meter, new Date(end), new Date(end - (trailing + 1) * periodMs), periodMs, customerId],
      );
      return rows.map((r) => {
        const before = Array.from({ length: trailing }, () => 0);
        let current = 0;
        r.k.forEach((k, i) => {
          const v = Number(r.v[i]);
          if (k === 0) current = v;
          else if (k <= trailing) before[k - 1] = v;
        });
        return { externalId: r.external_id, current, before };
      });
    });
  }

  /** A customer's upcoming charges per currency: its live Braintree subscriptions' open windows, previewed. */
  upcomingCharges(customer: string): Promise<Map<string, bigint> | null> {
    return this.once(`upcoming:${customer}`, async () => {
      const customerId = await this.customerId(customer);
      if (!customerId) return null;
      const { rows } = await this.db.query<{ id: string }>(
        `SELECT id FROM subscriptions WHERE customer_id = $1 AND processor = 'braintree' AND status::text = ANY($2::text[]) AND current_period_end > $3`,
        [customerId, [...LIVE_SUBSCRIPTION_STATUSES], this.now],
      );
      const totals = new Map<string, bigint>();
      for (const p of await previewUpcomingChargesOf(this.db, rows.map((r) => r.id), { now: this.now })) {
        totals.set(p.currency, (totals.get(p.currency) ?? 0n) + p.totalMinor);
      }
      return totals;
    });
  }

  unpaidWindows(hours: number): Promise<{ count: number; oldestPeriodEnd: Date | null }> {
    return this.once(`unpaid:${hours}`, async () => {
      const { rows } = await this.db.query<{ count: number; oldest: Date | null }>(
        `SELECT count(*)::int AS count, min(period_end) AS oldest FROM windows
          WHERE state = ANY($1::window_state[]) AND period_end < $2`,
        [UNPAID_STATES, new Date(this.now.getTime() - hours * 3_600_000)],
      );
      return { count: rows[0]?.count ?? 0, oldestPeriodEnd: rows[0]?.oldest ?? null };
    });
  }

  opsEvents(type: string, minutes: number, code?: string): Promise<number> {
    return this.once(`ops:${type}:${minutes}:${code ?? ''}`, async () => {
      const { rows } = await this.db.query<{ count: number }>(
        `SELECT count(*)::int AS count FROM ops_events
          WHERE type = $1 AND occurred_at > $2 AND occurred_at <= $3 AND ($4::text IS NULL OR metadata->>'code' = $4)`,
        [type, new Date(this.now.getTime() - minutes * 60_000), this.now, code ?? null],
      );
      return rows[0]?.count ?? 0;
    });
  }
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** The median of `values` (the middle one, or the mean of the two middle ones). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export const ANOMALY_WINDOWS = { hour: { periodMs: 3_600_000, trailing: 24, before: 'the 24 hours before' }, day: { periodMs: 86_400_000, trailing: 7, before: 'the 7 days before' } } as const;
/** Customers named in an anomaly's values (the worst first). */
const ANOMALY_LISTED = 5;
const plural = (n: number, one: string, many = `${one}s`) => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

/** Whether `rule` holds now, with the numbers that say so. */
export async function evaluateRule(rule: AlertRule, m: Measures): Promise<Evaluation> {
  const now = m.now.getTime();
  switch (rule.kind) {
    case 'reporting_lag': {
      const oldest = await m.oldestPending();
      const ageMinutes = oldest ? round1((now - oldest.receivedAt.getTime()) / 60_000) : 0;
      return {
        rule,
        firing: oldest !== null && ageMinutes > rule.params.minutes,
        values: { minutes: rule.params.minutes, oldestPendingEventId: oldest?.id ?? null, oldestPendingReceivedAt: oldest?.receivedAt.toISOString() ?? null, ageMinutes },
        summary: oldest
          ? `The oldest Stripe event still pending was received ${ageMinutes} minutes ago (limit ${rule.params.minutes}).`
          : `No Stripe event is pending (limit ${rule.params.minutes} minutes).`,
      };
    }
    case 'windows_unpaid': {
      const unpaid = await m.unpaidWindows(rule.params.hours);
      return {
        rule,
        firing: unpaid.count > 0,
        values: { hours: rule.params.hours, unpaidWindows: unpaid.count, oldestPeriodEnd: unpaid.oldestPeriodEnd?.toISOString() ?? null },
        summary: `${plural(unpaid.count, 'window')} not paid ${rule.params.hours} hours after the period ended${unpaid.oldestPeriodEnd ? ` (oldest period ended ${unpaid.oldestPeriodEnd.toISOString()})` : ''}.`,
      };
    }
    case 'failure_rate': {
      const { source, minutes, threshold, code } = rule.params;
      const failed = await m.opsEvents(source === 'sales' ? 'metered_sale_failed' : 'meter_reporting_failed', minutes, code);
      const what = source === 'sales' ? 'Braintree sale' : 'Stripe event';
      return {
        rule,
        firing: failed > threshold,
        values: { source, minutes, threshold, code: code ?? null, failed },
        summary: `${plural(failed, what)} failed${code ? ` with ${code}` : ''} in the last ${minutes} minutes (limit ${threshold}).`,
      };
    }
    case 'silence': {
      const { minutes, customer, meter, usualHours } = rule.params;
      const scope = { customer, meter };
      const of = customer ? `customer ${customer}` : meter ? `meter ${meter}` : 'the ledger';
      const newest = await m.newestReceiptOf(scope);
      const quietMinutes = newest ? round1((now - newest.getTime()) / 60_000) : null;
      const quiet = quietMinutes === null || quietMinutes > minutes;
      const usualDays = usualHours ? await m.usualHourDays(scope) : null;
      const inUsualHours = usualDays === null || usualDays >= 4;
      const hour = `${String(m.now.getUTCHours()).padStart(2, '0')}:00 UTC`;
      return {
        rule,
        firing: quiet && inUsualHours,
        values: { minutes, scope: of, lastEventReceivedAt: newest?.toISOString() ?? null, quietMinutes, ...(usualHours ? { usualHours: true, hour, daysWithUsageThisHour: usualDays } : {}) },
        summary:
          (newest
            ? `No usage event from ${of} for ${quietMinutes} minutes (limit ${minutes}); the last came at ${newest.toISOString()}.`
            : `No usage event has ever been received from ${of}.`) +
          (usualDays === null ? '' : ` It had usage at ${hour} on ${usualDays} of the last 7 days${inUsualHours ? '' : ' (fewer than 4: not its usual hours, so it does not fire)'}.`),
      };
    }
    case 'usage_anomaly': {
      const { meter, customer, period, factor, minimum } = rule.params;
      const window = ANOMALY_WINDOWS[period];
      const usage = await m.usageByPeriod(meter!, customer, window.periodMs, window.trailing);
      const scored = usage
        .map((u) => ({ customer: u.externalId, usage: u.current, median: median(u.before), trailing: u.before }))
        .filter((u) => u.usage >= minimum && u.usage > factor * u.median)
        .sort((a, b) => b.usage / Math.max(b.median, 1e-9) - a.usage / Math.max(a.median, 1e-9));
      const worst = scored[0];
      return {
        rule,
        firing: worst !== undefined,
        values: {
          meter,
          customer: customer ?? null,
          period,
          factor,
          minimum,
          customersAbove: scored.length,
          worst: scored.slice(0, ANOMALY_LISTED).map((u) => ({ customer: u.customer, usage: u.usage, median: u.median, times: u.median > 0 ? round3(u.usage / u.median) : null, trailing: u.trailing })),
        },
        summary: worst
          ? `${worst.customer} used ${worst.usage.toLocaleString('en-US')} of ${meter} in the last ${period}, ${worst.median > 0 ? `${round1(worst.usage / worst.median)} times` : 'against'} its median of ${worst.median.toLocaleString('en-US')} over ${window.before} (limit ${factor} times, at least ${minimum.toLocaleString('en-US')})${scored.length > 1 ? `; ${plural(scored.length - 1, 'other customer')} too` : ''}.`
          : `No customer used ${meter} in the last ${period} above ${factor} times its median over ${window.before} (at least ${minimum.toLocaleString('en-US')}).`,
      };
    }
    case 'budget': {
      const { customer, amount, currency, percent } = rule.params;
      const totals = await m.upcomingCharges(customer!);
      const budgetMinor = parseMinor(amount, currency);
      const upcoming = totals?.get(currency) ?? 0n;
      const reached = budgetMinor > 0n ? Number((upcoming * 10_000n) / budgetMinor) / 100 : 0;
      return {
        rule,
        firing: upcoming * 100n >= budgetMinor * BigInt(percent),
        values: { customer, amount, currency, percent, upcoming: formatMinor(upcoming, currency), reachedPercent: reached, ...(totals === null ? { customerFound: false } : {}) },
        summary: `${customer}’s upcoming charges are ${formatMinor(upcoming, currency)} ${currency.toUpperCase()}, ${reached} % of ${amount} ${currency.toUpperCase()} (alert at ${percent} %).`,
      };
    }
    case 'ops_event': {
      const { type, minutes, threshold } = rule.params;
      const count = await m.opsEvents(type, minutes);
      return {
        rule,
        firing: count > threshold,
        values: { type, minutes, threshold, opsEvents: count },
        summary: `${plural(count, `${type} ops event`)} in the last ${minutes} minutes (limit ${threshold}).`,
      };
    }
  }
}

/**
 * One pass: evaluates every enabled rule at `now` and stores what changed, in one transaction on one connection
 * (`db`'s, or one taken from the pool for the pass). Passes serialize on a transaction-scoped advisory lock; running one twice changes nothing.
 */
export function evaluateAlerts(db: pg.Pool | pg.ClientBase, options: { now?: Date } = {}): Promise<EvaluationResult> {
  return withClient(db, (client) => evaluatePass(client, options));
}

async function evaluatePass(client: pg.ClientBase, options: { now?: Date }): Promise<EvaluationResult> {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('meterdesk.alerts'))`);
    // The clock is read once the lock is held: a pass that waited must not resolve a firing a later pass opened.
    const now = options.now ?? new Date();
    const rules = await loadRules(client, { enabledOnly: true });
    const measures = new Measures(client, now);
    // One rule after another: they share one connection (queries on it run one at a time anyway) and the measures.
    const evaluations: Evaluation[] = [];
    for (const rule of rules) evaluations.push(await evaluateRule(rule, measures));
    const { rows: open } = await client.query<{ id: string; rule_id: string }>(`SELECT id, rule_id FROM alert_firings WHERE resolved_at IS NULL`);
    const openByRule = new Map(open.map((f) => [f.rule_id, f.id]));
    const byRule = new Map(evaluations.map((e) => [e.rule.id, e]));

    // Each rule keeps its last evaluation: the desk shows it and the gauges export it (exportAlertGauges).
    if (evaluations.length) {
      await client.query(
        `UPDATE alert_rules r SET last_evaluated_at = $1, last_firing = t.f, last_values = t.v, last_summary = t.s
           FROM unnest($2::uuid[], $3::boolean[], $4::jsonb[], $5::text[]) AS t(id, f, v, s)
          WHERE r.id = t.id`,
        [now, evaluations.map((e) => e.rule.id), evaluations.map((e) => e.firing), evaluations.map((e) => JSON.stringify(e.values)), evaluations.map((e) => e.summary)],
      );
    }
    const toFire = evaluations.filter((e) => e.firing && !openByRule.has(e.rule.id));
    const still = evaluations.filter((e) => e.firing && openByRule.has(e.rule.id)).map((e) => openByRule.get(e.rule.id)!);
    // Open firings whose rule no longer holds, is turned off or is gone.
    const toResolve = open.filter((f) => !byRule.get(f.rule_id)?.firing);

    const { rows: fired } = toFire.length
      ? await client.query<{ id: string; rule_id: string }>(
          `INSERT INTO alert_firings (id, rule_id, fired_at, last_evaluated_at, values, summary)
           SELECT gen_random_uuid(), r, $1, $1, v, s FROM unnest($2::uuid[], $3::jsonb[], $4::text[]) AS t(r, v, s)
           ON CONFLICT (rule_id) WHERE resolved_at IS NULL DO NOTHING
           RETURNING id, rule_id`,
          [now, toFire.map((e) => e.rule.id), toFire.map((e) => JSON.stringify(e.values)), toFire.map((e) => e.summary)],
        )
      : { rows: [] };
    if (still.length) await client.query(`UPDATE alert_firings SET last_evaluated_at = $1 WHERE id = ANY($2::uuid[])`, [now, still]);
    const { rows: resolved } = toResolve.length
      ? await client.query<{ id: string; rule_id: string }>(
          `UPDATE alert_firings f SET resolved_at = $1, last_evaluated_at = $1, resolved_values = t.v
             FROM unnest($2::uuid[], $3::jsonb[]) AS t(id, v)
            WHERE f.id = t.id AND f.resolved_at IS NULL
           RETURNING f.id, f.rule_id`,
          [now, toResolve.map((f) => f.id), toResolve.map((f) => JSON.stringify(byRule.get(f.rule_id)?.values ?? { ruleDisabled: true }))],
        )
      : { rows: [] };

    const notices = [...fired.map((f) => ({ id: f.id, event: 'firing' })), ...resolved.map((f) => ({ id: f.id, event: 'resolved' }))];
    const deliveries = await queueDeliveries(client, notices);
    await client.query('COMMIT');
    return {
      at: now,
      rules: rules.length,
      fired: fired.map((f) => ({ firingId: f.id, ruleId: f.rule_id })),
      resolved: resolved.map((f) => ({ firingId: f.id, ruleId: f.rule_id })),
      stillFiring: still.length,
      deliveries,
    };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** One delivery per (notice, enabled channel), each with its own alerts__deliver job: a failing channel delays only itself. */
export async function queueDeliveries(db: Queryable, notices: { id: string | null; event: string }[], channelId?: string): Promise<number> {
  if (notices.length === 0) return 0;
  const { rows } = await db.query(
    `WITH d AS (
       INSERT INTO alert_deliveries (id, channel_id, firing_id, event)
       SELECT gen_random_uuid(), c.id, n.id, n.event
         FROM unnest($1::uuid[], $2::text[]) AS n(id, event)
         CROSS JOIN alert_channels c
        WHERE c.enabled AND ($3::uuid IS NULL OR c.id = $3)
       RETURNING id
     )
     SELECT d.id, ${addJobCall({ identifier: `'${DELIVER_TASK}'`, payload: `json_build_object('deliveryId', d.id)`, maxAttempts: String(DELIVERY_ATTEMPTS) })} AS job FROM d`,
    [notices.map((n) => n.id), notices.map((n) => n.event), channelId ?? null],
  );
  return rows.length;
}
