// One evaluation pass over every enabled alert rule (ADR 036), run every minute by alerts__evaluate. Each measure a
// rule needs is one index probe or one index range, computed once per pass and shared by every rule that asks the
// same question (1,000 rules on 10M events cost a handful of queries, not 1,000 scans):
//   reporting_lag   the smallest id of pending Stripe events, through meter_events_status_id_idx (ids are UUIDv7 minted at
//                   receipt, so the smallest is the oldest);
//   windows_unpaid  windows not paid or written off whose period ended before the limit, through (state, period_end);
//   failure_rate    ops_events of type meter_reporting_failed in the last M minutes, through (type, occurred_at):
//                   every move of a Stripe event to failed records exactly one, with its error code;
//   silence         the largest id of meter_events (the newest receipt), one primary-key probe per partition;
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

/** Measures shared by the rules of one pass, each computed at most once per distinct question. */
class Measures {
  private readonly memo = new Map<string, Promise<unknown>>();
  constructor(
    private readonly db: pg.ClientBase,
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
        `SELECT id::text AS id FROM meter_events WHERE status = 'pending' AND processor = 'stripe' ORDER BY id LIMIT 1`,
      );
      const id = rows[0]?.id;
      return id ? { id, receivedAt: new Date(uuidv7Time(id)) } : null;
    });
  }

  newestReceipt(): Promise<Date | null> {
    return this.once('newest-receipt', async () => {
      const { rows } = await this.db.query<{ id: string | null }>(`SELECT id::text AS id FROM meter_events ORDER BY id DESC LIMIT 1`);
      const id = rows[0]?.id;
      return id ? new Date(uuidv7Time(id)) : null;
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
      const { minutes, threshold, code } = rule.params;
      const failed = await m.opsEvents('meter_reporting_failed', minutes, code);
      return {
        rule,
        firing: failed > threshold,
        values: { minutes, threshold, code: code ?? null, failedEvents: failed },
        summary: `${plural(failed, 'Stripe event')} failed${code ? ` with ${code}` : ''} in the last ${minutes} minutes (limit ${threshold}).`,
      };
    }
    case 'silence': {
      const newest = await m.newestReceipt();
      const quietMinutes = newest ? round1((now - newest.getTime()) / 60_000) : null;
      return {
        rule,
        firing: quietMinutes === null || quietMinutes > rule.params.minutes,
        values: { minutes: rule.params.minutes, lastEventReceivedAt: newest?.toISOString() ?? null, quietMinutes },
        summary: newest
          ? `No usage event received for ${quietMinutes} minutes (limit ${rule.params.minutes}); the last came at ${newest.toISOString()}.`
          : 'No usage event has ever been received.',
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
 * One pass: evaluates every enabled rule at `now` and stores what changed, in one transaction on `client` (a
 * dedicated connection). Passes serialize on a transaction-scoped advisory lock; running one twice changes nothing.
 */
export async function evaluateAlerts(client: pg.ClientBase, options: { now?: Date } = {}): Promise<EvaluationResult> {
  const now = options.now ?? new Date();
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('meterdesk.alerts'))`);
    const rules = await loadRules(client, { enabledOnly: true });
    const measures = new Measures(client, now);
    const evaluations = await Promise.all(rules.map((rule) => evaluateRule(rule, measures)));
    const { rows: open } = await client.query<{ id: string; rule_id: string }>(`SELECT id, rule_id FROM alert_firings WHERE resolved_at IS NULL`);
    const openByRule = new Map(open.map((f) => [f.rule_id, f.id]));
    const byRule = new Map(evaluations.map((e) => [e.rule.id, e]));

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
