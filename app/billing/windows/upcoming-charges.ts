// The upcoming charges of a subscription: the invoice its open window would get if it closed now (read only).
import type { Queryable } from '../db';
import { NotFoundError } from '../errors';
import { draftInvoice, fromStoredSnapshot, type DraftLine, type SnapshotPrice } from './invoice-math';
import { loadAuthoringInput } from './invoice-store';
import { loadPriceSnapshot } from './snapshot';
import { WINDOW_COLUMNS, type WindowRow } from './types';

export interface UpcomingCharges {
  subscriptionId: string;
  /** The open window previewed, or null when none is open (the current period is previewed at today's prices). */
  windowId: string | null;
  periodStart: Date;
  periodEnd: Date;
  currency: string;
  asOf: Date;
  lines: DraftLine[];
  totalMinor: bigint;
  unmatchedEvents: number;
  unmatchedEventNames: string[];
  unusableEvents: number;
}

/**
 * The invoice the subscription's open window would get if it closed now: same classification, aggregation and
 * rounding as authoring, nothing written or locked.
 */
export async function previewUpcomingCharges(db: Queryable, subscriptionId: string, opts: { now?: Date } = {}): Promise<UpcomingCharges> {
  const now = opts.now ?? new Date();
  const sub = await db.query<{ id: string; customer_id: string; plan_id: string; current_period_start: Date; current_period_end: Date }>(
    `SELECT id, customer_id, plan_id, current_period_start, current_period_end FROM subscriptions WHERE id = $1`,
    [subscriptionId],
  );
  const s = sub.rows[0];
  if (!s) throw new NotFoundError('subscription', subscriptionId);
  const open = await db.query<WindowRow>(
    `SELECT ${WINDOW_COLUMNS} FROM windows WHERE subscription_id = $1 AND state = 'open' ORDER BY period_start DESC LIMIT 1`,
    [subscriptionId],
  );
  let window: Pick<WindowRow, 'id' | 'subscriptionId' | 'periodStart' | 'periodEnd' | 'currency'>;
  let snapshot: SnapshotPrice[];
  if (open.rows[0]) {
    window = open.rows[0];
    snapshot = fromStoredSnapshot(open.rows[0].priceSnapshot);
  } else {
    const loaded = await loadPriceSnapshot(db, s.plan_id, s.current_period_start, now);
    window = { id: '00000000-0000-0000-0000-000000000000', subscriptionId, periodStart: s.current_period_start, periodEnd: s.current_period_end, currency: loaded.currency };
    snapshot = loaded.prices;
  }
  const input = await loadAuthoringInput(db, window);
  const draft = draftInvoice({ snapshot, events: input.events, late: input.late });
  return {
    subscriptionId,
    windowId: open.rows[0]?.id ?? null,
    periodStart: window.periodStart,
    periodEnd: window.periodEnd,
    currency: window.currency,
    asOf: now,
    lines: draft.lines,
    totalMinor: draft.totalMinor,
    unmatchedEvents: draft.unmatched.length,
    unmatchedEventNames: [...new Set(draft.unmatched.map((u) => u.eventName))].sort(),
    unusableEvents: draft.unusable.length,
  };
}
