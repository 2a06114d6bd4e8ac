// Braintree renewal windows: opening (with the frozen price snapshot), closing when the period ends, renewals
// announced by Braintree's webhooks, and the stale-renewal reconciler. One window per (subscription, period),
// never overlapping another window of the subscription. Decisions: docs/decisions (Braintree windows ADR).
import type pg from 'pg';
import { addJob, type Queryable } from '../db';
import { addJobCall, waitingJobPayloads } from '../../db/graphile-jobs';
import { writeAudit, type Actor } from '../audit';
import { recordOpsEvents } from '../ops-events';
import { toStoredSnapshot } from './invoice-math';
import { CLOSE_BATCH_SIZE, closeWindow, type CloseWindowResult } from './invoices';
import { loadPriceSnapshot } from './snapshot';
import { inTransaction, withClient } from './transaction';
import { CLOSE_WINDOW_TASK, LIVE_SUBSCRIPTION_STATUSES, WINDOW_COLUMNS, closeJobKey, type WindowRow } from './types';

export type OpenWindowResult =
  | { status: 'opened'; window: WindowRow }
  /** This exact period already has its window (a second window for a period is impossible). */
  | { status: 'exists'; window: WindowRow }
  /** Another window already bills the end of this period (e.g. the period was edited to overlap it). */
  | { status: 'covered'; window: WindowRow }
  | { status: 'not_found' };

/**
 * Opens the window for a subscription's period, freezing the plan's prices in force at the period start. Runs in
 * the caller's transaction with the subscription row locked, so concurrent openers serialise; the insert is
 * `ON CONFLICT DO NOTHING` on (subscription, periodStart, periodEnd) as the database's own guarantee.
 *
 * Windows of a subscription never overlap: when the period starts before an existing window of the subscription
 * ends (a period edited through the API), the new window starts where that one ends. A period whose end an
 * existing window already covers opens nothing.
 */
export async function openWindow(
  db: Queryable,
  subscriptionId: string,
  periodStart: Date,
  periodEnd: Date,
  opts: { staleRepaired?: boolean; now?: Date } = {},
): Promise<OpenWindowResult> {
  const now = opts.now ?? new Date();
  if (!(periodEnd > periodStart)) throw new RangeError(`window period must end after it starts (${periodStart.toISOString()} .. ${periodEnd.toISOString()})`);
  const sub = await db.query<{ id: string; customer_id: string; plan_id: string }>(
    `SELECT id, customer_id, plan_id FROM subscriptions WHERE id = $1 FOR NO KEY UPDATE`,
    [subscriptionId],
  );
  const s = sub.rows[0];
  if (!s) return { status: 'not_found' };
  const exact = await db.query<WindowRow>(
    `SELECT ${WINDOW_COLUMNS} FROM windows WHERE subscription_id = $1 AND period_start = $2 AND period_end = $3`,
    [subscriptionId, periodStart, periodEnd],
  );
  if (exact.rows[0]) return { status: 'exists', window: exact.rows[0] };
  const covering = await db.query<WindowRow>(
    `SELECT ${WINDOW_COLUMNS} FROM windows WHERE subscription_id = $1 AND period_start < $2 AND period_end >= $2
     ORDER BY period_start DESC LIMIT 1`,
    [subscriptionId, periodEnd],
  );
  if (covering.rows[0]) return { status: 'covered', window: covering.rows[0] };
  const previous = await db.query<{ end: Date | null }>(
    `SELECT max(period_end) AS end FROM windows WHERE subscription_id = $1 AND period_start < $2`,
    [subscriptionId, periodEnd],
  );
  const prevEnd = previous.rows[0]?.end ?? null;
  const start = prevEnd && prevEnd > periodStart ? prevEnd : periodStart;

  const snapshot = await loadPriceSnapshot(db, s.plan_id, start, now);
  const inserted = await db.query<WindowRow>(
    `INSERT INTO windows (id, subscription_id, customer_id, period_start, period_end, state, price_snapshot, currency,
                          stale_repaired, created_at, updated_at)
     VALUES (gen_random_uuid(), $1, $2, $3, $4, 'open', $5::jsonb, $6, $7, $8, $8)
     ON CONFLICT (subscription_id, period_start, period_end) DO NOTHING
     RETURNING ${WINDOW_COLUMNS}`,
    [subscriptionId, s.customer_id, start, periodEnd, JSON.stringify(toStoredSnapshot(snapshot.prices)), snapshot.currency, opts.staleRepaired ?? false, now],
  );
  if (inserted.rows[0]) return { status: 'opened', window: inserted.rows[0] };
  const existing = await db.query<WindowRow>(
    `SELECT ${WINDOW_COLUMNS} FROM windows WHERE subscription_id = $1 AND period_start = $2 AND period_end = $3`,
    [subscriptionId, start, periodEnd],
  );
  return { status: 'exists', window: existing.rows[0]! };
}

/** `openWindow` in its own transaction. */
export async function openWindowNow(
  db: pg.Pool | pg.ClientBase,
  subscriptionId: string,
  periodStart: Date,
  periodEnd: Date,
  opts: { staleRepaired?: boolean; now?: Date } = {},
): Promise<OpenWindowResult> {
  return withClient(db, (client) => inTransaction(client, () => openWindow(client, subscriptionId, periodStart, periodEnd, opts)));
}

/** Live Braintree subscriptions in their current period with no window covering it. */
const NEEDS_WINDOW = `
  SELECT s.id, s.current_period_start, s.current_period_end FROM subscriptions s
  WHERE s.processor = 'braintree' AND s.status::text = ANY($1::text[])
    AND s.current_period_start <= $2 AND s.current_period_end > $2
    AND NOT EXISTS (SELECT 1 FROM windows w WHERE w.subscription_id = s.id
                    AND w.period_start < s.current_period_end AND w.period_end >= s.current_period_end)
  ORDER BY s.current_period_end LIMIT $3`;

/** Crontab work: opens the current period's window of every live Braintree subscription lacking one. */
export async function openCurrentWindows(db: pg.Pool | pg.ClientBase, opts: { now?: Date; limit?: number } = {}): Promise<{ opened: string[] }> {
  const now = opts.now ?? new Date();
  return withClient(db, async (client) => {
    const { rows } = await client.query<{ id: string; current_period_start: Date; current_period_end: Date }>(NEEDS_WINDOW, [
      [...LIVE_SUBSCRIPTION_STATUSES],
      now,
      opts.limit ?? 1000,
    ]);
    const opened: string[] = [];
    for (const r of rows) {
      const result = await inTransaction(client, () => openWindow(client, r.id, r.current_period_start, r.current_period_end, { now }));
      if (result.status === 'opened') opened.push(result.window.id);
    }
    return { opened };
  });
}

/**
 * Crontab work: enqueues the close of each open window whose period ended at least `graceMs` ago (usage reported a
 * little after the period end still lands in its own window instead of a late-usage line), in `braintree__close_window`
 * jobs of up to CLOSE_BATCH_SIZE windows. A window already named by a close job still waiting to run is left out, so
 * a backlog is never queued twice; one named by a running job is queued again (a no-op if that job closes it, the
 * recovery if its worker died holding it).
 */
export async function enqueueDueWindowCloses(pool: Queryable, opts: { now?: Date; graceMs?: number; limit?: number; batchSize?: number } = {}): Promise<{ enqueued: number }> {
  const now = opts.now ?? new Date();
  const due = new Date(now.getTime() - (opts.graceMs ?? 0));
  const { rows } = await pool.query<{ windows: number }>(
    `WITH waiting AS (
       SELECT p.id FROM (${waitingJobPayloads('$1')}) j
       CROSS JOIN LATERAL (
         SELECT j.payload->>'windowId' WHERE j.payload->>'windowId' IS NOT NULL
         UNION ALL
         SELECT json_array_elements_text(CASE WHEN json_typeof(j.payload->'windowIds') = 'array' THEN j.payload->'windowIds' ELSE '[]'::json END)
       ) p(id)
     ), due AS (
       SELECT id, (row_number() OVER (ORDER BY period_end, id) - 1) / $4 AS batch FROM (
         SELECT id, period_end FROM windows
         WHERE state = 'open' AND period_end <= $2 AND id::text NOT IN (SELECT id FROM waiting WHERE id IS NOT NULL)
         ORDER BY period_end, id LIMIT $3
       ) d
     )
     SELECT count(*)::int AS windows, ${addJobCall({ identifier: '$1', payload: `json_build_object('windowIds', json_agg(id ORDER BY id))`, maxAttempts: '25' })} IS NOT NULL AS queued
     FROM due GROUP BY batch`,
    [CLOSE_WINDOW_TASK, due, opts.limit ?? 5000, opts.batchSize ?? CLOSE_BATCH_SIZE],
  );
  return { enqueued: rows.reduce((n, r) => n + r.windows, 0) };
}

/** Enqueues the close of one window (e.g. from the desk). */
export async function enqueueWindowClose(db: Queryable, windowId: string): Promise<void> {
  await addJob(db, CLOSE_WINDOW_TASK, { windowId }, { jobKey: closeJobKey(windowId) });
}

// ───────────────────────────── renewals ─────────────────────────────

export interface RenewalResult {
  /** The window of the period that ended (closed now, or already closed). */
  previous: { window: WindowRow | null; close: CloseWindowResult | null; opened: boolean };
  /** The window of the new period, when it was opened (or existed). */
  current: OpenWindowResult | null;
  advanced: boolean;
}

/**
 * A renewal announced by the processor (Braintree `subscription_charged_successfully` / `subscription_went_active`):
 * the period [periodStart, periodEnd) is now current. When it ends later than the stored period, the stored
 * period's window is opened if missing and closed now, the subscription moves to the new period and the new
 * period's window is opened. Runs in the caller's transaction. An announcement of a period that is not newer
 * (redelivered or out of order) changes nothing.
 */
export async function renewSubscriptionPeriod(
  db: Queryable,
  input: { subscriptionId: string; periodStart: Date; periodEnd: Date; now?: Date },
): Promise<RenewalResult> {
  const now = input.now ?? new Date();
  const sub = await db.query<{ current_period_start: Date; current_period_end: Date }>(
    `SELECT current_period_start, current_period_end FROM subscriptions WHERE id = $1 FOR NO KEY UPDATE`,
    [input.subscriptionId],
  );
  const s = sub.rows[0];
  if (!s) throw new Error(`subscription ${input.subscriptionId} does not exist`);
  if (input.periodEnd <= s.current_period_end) {
    return { previous: { window: null, close: null, opened: false }, current: null, advanced: false };
  }
  const prev = await openWindow(db, input.subscriptionId, s.current_period_start, s.current_period_end, { now });
  let prevWindow: WindowRow | null = prev.status === 'not_found' ? null : prev.window;
  let close: CloseWindowResult | null = null;
  if (prevWindow && prevWindow.state === 'open') {
    close = await closeWindow(db, prevWindow.id, { now });
    if (close.status === 'closed') prevWindow = { ...prevWindow, state: 'closed', closedAt: now };
  }
  await db.query(
    `UPDATE subscriptions SET current_period_start = $2, current_period_end = $3, updated_at = $4 WHERE id = $1`,
    [input.subscriptionId, input.periodStart, input.periodEnd, now],
  );
  const current = await openWindow(db, input.subscriptionId, input.periodStart, input.periodEnd, { now });
  return { previous: { window: prevWindow, close, opened: prev.status === 'opened' }, current, advanced: true };
}

// ───────────────────────────── stale renewals ─────────────────────────────

/**
 * Braintree subscriptions whose current period has ended with no window for it (the opener never saw the period:
 * worker down, period set already ended, renewal webhook lost). Live ones always; others only if they have usage
 * waiting in that period, so a long-canceled subscription does not get empty windows.
 */
const STALE = `
  SELECT s.id FROM subscriptions s
  WHERE s.processor = 'braintree' AND s.current_period_end <= $2
    AND NOT EXISTS (SELECT 1 FROM windows w WHERE w.subscription_id = s.id
                    AND w.period_start < s.current_period_end AND w.period_end >= s.current_period_end)
    AND (s.status::text = ANY($1::text[]) OR EXISTS (
          SELECT 1 FROM meter_events e WHERE e.subscription_id = s.id AND e.status = 'recorded'
            AND e.occurred_at >= s.current_period_start AND e.occurred_at < s.current_period_end))
  ORDER BY s.current_period_end LIMIT $3`;

export async function findStaleRenewals(db: Queryable, opts: { now?: Date; limit?: number } = {}): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(STALE, [[...LIVE_SUBSCRIPTION_STATUSES], opts.now ?? new Date(), opts.limit ?? 1000]);
  return rows.map((r) => r.id);
}

export type StaleRepairResult =
  | { status: 'repaired'; window: WindowRow; close: CloseWindowResult }
  | { status: 'not_stale' };

/**
 * Repairs one stale renewal through the ordinary path: opens the period's window (flagged `staleRepaired`) and
 * closes it, with one `metered_renewal_stale_repaired` per repaired window. Re-checked under the subscription
 * lock, so two reconcilers never repair twice.
 */
export async function repairStaleRenewal(db: Queryable, subscriptionId: string, opts: { now?: Date } = {}): Promise<StaleRepairResult> {
  const now = opts.now ?? new Date();
  const sub = await db.query<{ current_period_start: Date; current_period_end: Date }>(
    `SELECT current_period_start, current_period_end FROM subscriptions WHERE id = $1 AND processor = 'braintree' FOR NO KEY UPDATE`,
    [subscriptionId],
  );
  const s = sub.rows[0];
  if (!s || s.current_period_end > now) return { status: 'not_stale' };
  const opened = await openWindow(db, subscriptionId, s.current_period_start, s.current_period_end, { staleRepaired: true, now });
  if (opened.status !== 'opened') return { status: 'not_stale' };
  const close = await closeWindow(db, opened.window.id, { now });
  await recordOpsEvents(db, [
    {
      type: 'metered_renewal_stale_repaired',
      processor: 'braintree',
      source: 'reconciler',
      subjectType: 'window',
      subjectId: opened.window.id,
      dedupeKey: `metered_renewal_stale_repaired:${opened.window.id}`,
      metadata: {
        subscription_id: subscriptionId,
        period_start: opened.window.periodStart.toISOString(),
        period_end: opened.window.periodEnd.toISOString(),
        late_by_seconds: Math.round((now.getTime() - s.current_period_end.getTime()) / 1000),
        total_minor: close.status === 'closed' ? close.invoice.totalMinor.toString() : null,
      },
    },
  ]);
  return { status: 'repaired', window: { ...opened.window, state: 'closed', closedAt: now }, close };
}

/** The actor of the crontab's repairs in the audit log. */
export const SCHEDULER: Actor = { userId: null, label: 'scheduler', role: null };

/** The audit entry of a stale-renewal repair, whoever asked for it (an operator, or the scheduler). */
export async function auditStaleRepair(
  db: Queryable,
  actor: Actor,
  subscriptionId: string,
  r: Extract<StaleRepairResult, { status: 'repaired' }>,
  reason: string | null,
): Promise<void> {
  await writeAudit(db, {
    actor,
    action: 'window.repair_stale',
    subjectType: 'window',
    subjectId: r.window.id,
    reason,
    before: { subscription_id: subscriptionId, window: null },
    after: {
      state: r.window.state,
      period_start: r.window.periodStart.toISOString(),
      period_end: r.window.periodEnd.toISOString(),
      total_minor: r.close.status === 'closed' ? r.close.invoice.totalMinor.toString() : null,
    },
  });
}

/** Crontab work: repairs every stale renewal, each in its own transaction, audited with the scheduler as actor. */
export async function reconcileStaleRenewals(db: pg.Pool | pg.ClientBase, opts: { now?: Date; limit?: number } = {}): Promise<{ repaired: string[] }> {
  const now = opts.now ?? new Date();
  return withClient(db, async (client) => {
    const repaired: string[] = [];
    for (const id of await findStaleRenewals(client, { now, limit: opts.limit })) {
      const r = await inTransaction(client, async () => {
        const result = await repairStaleRenewal(client, id, { now });
        // The scheduler's repairs are audited as an operator's are, with the scheduler as the actor.
        if (result.status === 'repaired') await auditStaleRepair(client, SCHEDULER, id, result, 'the renewal never came: repaired by the stale-renewal reconciler');
        return result;
      });
      if (r.status === 'repaired') repaired.push(r.window.id);
    }
    return { repaired };
  });
}
