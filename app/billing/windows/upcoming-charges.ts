// The upcoming charges of a subscription: the invoice its open window would get if it closed now (read only).
import type { Queryable } from '../db';
import { NotFoundError } from '../errors';
import { draftInvoice, fromStoredSnapshot, type DraftLine, type SnapshotPrice } from './invoice-math';
import { loadAuthoringInputs, type AuthoringWindow } from './invoice-store';
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
  const [preview] = await previewUpcomingChargesOf(db, [subscriptionId], opts);
  if (!preview) throw new NotFoundError('subscription', subscriptionId);
  return preview;
}

/**
 * The upcoming charges of several subscriptions, in the order given (an unknown id is left out), read in a fixed
 * number of statements whatever their count: the subscriptions, their open windows, then the events of all of them
 * at once (loadAuthoringInputs). The invoices page previews twenty; one preview at a time was four statements each.
 */
export async function previewUpcomingChargesOf(db: Queryable, subscriptionIds: readonly string[], opts: { now?: Date } = {}): Promise<UpcomingCharges[]> {
  const now = opts.now ?? new Date();
  if (subscriptionIds.length === 0) return [];
  const subs = await db.query<{ id: string; plan_id: string; current_period_start: Date; current_period_end: Date }>(
    `SELECT id, plan_id, current_period_start, current_period_end FROM subscriptions WHERE id = ANY($1::uuid[])`,
    [subscriptionIds],
  );
  const open = await db.query<WindowRow>(
    `SELECT DISTINCT ON (subscription_id) ${WINDOW_COLUMNS} FROM windows
      WHERE subscription_id = ANY($1::uuid[]) AND state = 'open' ORDER BY subscription_id, period_start DESC`,
    [subscriptionIds],
  );
  const openOf = new Map(open.rows.map((w) => [w.subscriptionId, w]));
  const byId = new Map(subs.rows.map((s) => [s.id, s]));
  // Each preview's window: the open one, or the current period at today's prices, keyed by the subscription's id
  // (a uuid like a window's) so that two subscriptions without an open window do not share a key.
  const previews: Array<{ subscriptionId: string; open: WindowRow | undefined; window: AuthoringWindow & { currency: string }; snapshot: SnapshotPrice[] }> = [];
  for (const id of subscriptionIds) {
    const s = byId.get(id);
    if (!s) continue;
    const w = openOf.get(id);
    if (w) {
      previews.push({ subscriptionId: id, open: w, window: w, snapshot: fromStoredSnapshot(w.priceSnapshot) });
    } else {
      const loaded = await loadPriceSnapshot(db, s.plan_id, s.current_period_start, now);
      previews.push({
        subscriptionId: id,
        open: undefined,
        window: { id, subscriptionId: id, periodStart: s.current_period_start, periodEnd: s.current_period_end, currency: loaded.currency },
        snapshot: loaded.prices,
      });
    }
  }
  const inputs = await loadAuthoringInputs(db, previews.map((p) => p.window));
  return previews.map(({ subscriptionId, open: w, window, snapshot }) => {
    const input = inputs.get(window.id)!;
    const draft = draftInvoice({ snapshot, events: input.events, late: input.late });
    return {
      subscriptionId,
      windowId: w?.id ?? null,
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
  });
}
