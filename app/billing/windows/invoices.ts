// Invoice authoring for Braintree windows: classify the window's events, aggregate, round, price, and write the
// invoice with its lines in the caller's transaction, with the window (and its subscription) locked. Late events
// (their period's window already invoiced) are carried into the window being authored. The arithmetic lives in
// invoice-math.ts, the locks, event reads and line writes in invoice-store.ts, the read-only preview in
// upcoming-charges.ts; this module closes and re-authors. Decisions: docs/decisions (Braintree windows ADR).
import type pg from 'pg';
import { writeAudit, type Actor } from '../audit';
import { addJob, type Queryable } from '../db';
import { NotFoundError, StateError } from '../errors';
import { recordOpsEvents, type OpsEventInput } from '../ops-events';
import {
  draftInvoice,
  fromStoredSnapshot,
  toStoredSnapshot,
  type DraftInvoice,
  type DraftLine,
  type LateGroup,
  type SnapshotPrice,
} from './invoice-math';
import { loadAuthoringInputs, lockWindow, lockWindows, writeLines } from './invoice-store';
import { loadPriceSnapshot } from './snapshot';
import { inTransaction, withClient } from './transaction';
import { SETTLE_WINDOW_TASK, settleJobKey, type WindowRow, type WindowState } from './types';
import { reauthorVerdict } from './actions';

export { REAUTHOR_STATES } from './actions';

/** States in which no sale can have been sent for the window, so its invoice may still change (ADR). */

export interface AuthoredInvoice {
  invoiceId: string;
  windowId: string;
  revision: number;
  totalMinor: bigint;
  currency: string;
  lines: DraftLine[];
  unmatched: number;
  unusable: number;
  lateEvents: number;
}

export type CloseWindowResult =
  | { status: 'closed'; invoice: AuthoredInvoice }
  | { status: 'not_open'; state: WindowState }
  | { status: 'not_found' };


function opsEventsFor(window: WindowRow, draft: DraftInvoice, late: LateGroup[]): OpsEventInput[] {
  const events: OpsEventInput[] = [];
  if (draft.unmatched.length > 0) {
    events.push({
      type: 'metered_missing_definition',
      processor: 'braintree',
      source: 'authoring',
      subjectType: 'window',
      subjectId: window.id,
      dedupeKey: `metered_missing_definition:${window.id}`,
      metadata: {
        event_names: [...new Set(draft.unmatched.map((u) => u.eventName))].sort(),
        events: draft.unmatched.length,
        subscription_id: window.subscriptionId,
      },
    });
  }
  for (const group of late) {
    const lines = draft.lines.filter((l) => l.late && l.carriedFromWindowId === group.fromWindowId);
    events.push({
      type: 'metered_late_usage',
      processor: 'braintree',
      source: 'authoring',
      subjectType: 'window',
      subjectId: window.id,
      dedupeKey: `metered_late_usage:${window.id}:${group.fromWindowId ?? 'gap'}`,
      metadata: {
        carried_from_window_id: group.fromWindowId,
        events: group.events.length,
        billed_events: lines.reduce((n, l) => n + l.eventIds.length, 0),
        amount_minor: lines.reduce((n, l) => n + l.amountMinor, 0n).toString(),
        subscription_id: window.subscriptionId,
      },
    });
  }
  return events;
}

/**
 * Authors the invoices of windows of distinct subscriptions, locked by the caller: `close` inserts each window's
 * invoice, `reauthor` replaces the lines of the existing one (revision + 1). A fixed number of statements whatever
 * the number of windows.
 */
async function author(
  db: Queryable,
  items: ReadonlyArray<{ window: WindowRow; snapshot: SnapshotPrice[] }>,
  now: Date,
  mode: 'close' | 'reauthor',
): Promise<AuthoredInvoice[]> {
  const inputs = await loadAuthoringInputs(db, items.map((i) => i.window));
  const drafts = items.map(({ window, snapshot }) => {
    const input = inputs.get(window.id)!;
    return { window, input, draft: draftInvoice({ snapshot, events: input.events, late: input.late }) };
  });
  const invoices = new Map<string, { id: string; revision: number }>();
  if (mode === 'close') {
    const inserted = await db.query<{ id: string; window_id: string; revision: number }>(
      `INSERT INTO invoices (id, window_id, customer_id, subscription_id, currency, total_minor, revision, authored_at)
       SELECT gen_random_uuid(), u.window_id, u.customer_id, u.subscription_id, u.currency, u.total_minor, 1, $6
       FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[]) AS u(window_id, customer_id, subscription_id, currency, total_minor)
       RETURNING id, window_id, revision`,
      [
        drafts.map((d) => d.window.id),
        drafts.map((d) => d.window.customerId),
        drafts.map((d) => d.window.subscriptionId),
        drafts.map((d) => d.window.currency),
        drafts.map((d) => d.draft.totalMinor.toString()),
        now,
      ],
    );
    for (const r of inserted.rows) invoices.set(r.window_id, { id: r.id, revision: r.revision });
  } else {
    for (const d of drafts) {
      const updated = await db.query<{ id: string; revision: number }>(
        `UPDATE invoices SET total_minor = $2, revision = revision + 1, authored_at = $3 WHERE window_id = $1 RETURNING id, revision`,
        [d.window.id, d.draft.totalMinor.toString(), now],
      );
      if (!updated.rows[0]) throw new StateError(`window ${d.window.id} has no invoice to re-author`);
      invoices.set(d.window.id, updated.rows[0]);
    }
  }
  await writeLines(db, drafts.map((d) => ({ window: d.window, invoiceId: invoices.get(d.window.id)!.id, draft: d.draft })));
  await recordOpsEvents(db, drafts.flatMap((d) => opsEventsFor(d.window, d.draft, d.input.late)));
  return drafts.map(({ window, input, draft }) => ({
    invoiceId: invoices.get(window.id)!.id,
    windowId: window.id,
    revision: invoices.get(window.id)!.revision,
    totalMinor: draft.totalMinor,
    currency: window.currency,
    lines: draft.lines,
    unmatched: draft.unmatched.length,
    unusable: draft.unusable.length,
    lateEvents: input.late.reduce((n, g) => n + g.events.length, 0),
  }));
}

/**
 * Closes an open window: authors its invoice, moves it `open` -> `closed` and enqueues its settlement, all in the
 * caller's transaction. A window that is no longer open is left as it is (a second close is a no-op).
 */
export async function closeWindow(db: Queryable, windowId: string, opts: { now?: Date; enqueueSettlement?: boolean } = {}): Promise<CloseWindowResult> {
  return (await closeWindows(db, [windowId], opts))[0]!;
}

/** Windows closed in one transaction by the batch path: enough to amortise its statements, small enough to retry. */
export const CLOSE_BATCH_SIZE = 50;

/**
 * Closes open windows in the caller's transaction, as closeWindow does for each, with a fixed number of statements
 * per round however many windows: a round authors at most one window per subscription (the earliest), so a
 * subscription's windows are authored in period order exactly as one by one. One settlement job covers the windows
 * closed (a single window gets its own job key, as before). Results are in the order of `windowIds`.
 */
export async function closeWindows(
  db: Queryable,
  windowIds: readonly string[],
  opts: { now?: Date; enqueueSettlement?: boolean } = {},
): Promise<CloseWindowResult[]> {
  const now = opts.now ?? new Date();
  const unique = [...new Set(windowIds)];
  const locked = await lockWindows(db, unique);
  const results = new Map<string, CloseWindowResult>();
  for (const w of locked) if (w.state !== 'open') results.set(w.id, { status: 'not_open', state: w.state });
  let pending = locked.filter((w) => w.state === 'open').sort((a, b) => a.periodStart.getTime() - b.periodStart.getTime());
  const closed: string[] = [];
  while (pending.length > 0) {
    const round: WindowRow[] = [];
    const later: WindowRow[] = [];
    const taken = new Set<string>();
    for (const w of pending) {
      if (taken.has(w.subscriptionId)) later.push(w);
      else {
        taken.add(w.subscriptionId);
        round.push(w);
      }
    }
    const invoices = await author(db, round.map((window) => ({ window, snapshot: fromStoredSnapshot(window.priceSnapshot) })), now, 'close');
    const moved = await db.query(`UPDATE windows SET state = 'closed', closed_at = $2, updated_at = $2 WHERE id = ANY($1::uuid[]) AND state = 'open'`, [round.map((w) => w.id), now]);
    if (moved.rowCount !== round.length) throw new Error(`windows ${round.map((w) => w.id).join(', ')} left the open state while locked`);
    for (const invoice of invoices) {
      results.set(invoice.windowId, { status: 'closed', invoice });
      closed.push(invoice.windowId);
    }
    pending = later;
  }
  if (opts.enqueueSettlement !== false && closed.length > 0) {
    if (closed.length === 1) await addJob(db, SETTLE_WINDOW_TASK, { windowId: closed[0]! }, { jobKey: settleJobKey(closed[0]!) });
    else await addJob(db, SETTLE_WINDOW_TASK, { windowIds: closed });
  }
  return windowIds.map((id) => results.get(id) ?? { status: 'not_found' });
}

/** `closeWindow` in its own transaction. */
export async function closeWindowNow(db: pg.Pool | pg.ClientBase, windowId: string, opts: { now?: Date } = {}): Promise<CloseWindowResult> {
  return withClient(db, (client) => inTransaction(client, () => closeWindow(client, windowId, opts)));
}

/** `closeWindows` in its own transaction. */
export async function closeWindowsNow(db: pg.Pool | pg.ClientBase, windowIds: readonly string[], opts: { now?: Date } = {}): Promise<CloseWindowResult[]> {
  return withClient(db, (client) => inTransaction(client, () => closeWindows(client, windowIds, opts)));
}

export interface ReauthorResult {
  before: { revision: number; totalMinor: bigint; lines: number; unmatched: number; unusable: number };
  invoice: AuthoredInvoice;
  /** Event names whose prices were added to the snapshot by this re-author. */
  addedPrices: string[];
}

/**
 * Re-authors a window's invoice (typically after an operator added a missing definition): allowed only while no
 * sale can have been sent (state `closed` or `awaiting_payment_method`, no sale tried); a charged window throws
 * StateError. The window's events are released and classified again; prices for event names the snapshot lacked
 * are added (those it had stay frozen); the invoice keeps its id with revision + 1; audited.
 */
export async function reauthorWindow(
  db: pg.Pool | pg.ClientBase,
  input: { windowId: string; actor: Actor; reason?: string | null; now?: Date },
): Promise<ReauthorResult> {
  const now = input.now ?? new Date();
  return withClient(db, (client) =>
    inTransaction(client, async () => {
      const window = await lockWindow(client, input.windowId);
      if (!window) throw new NotFoundError('window', input.windowId);
      const attempt = await client.query<{ tries: number }>(`SELECT tries FROM charge_attempts WHERE window_id = $1 FOR UPDATE`, [window.id]);
      const verdict = reauthorVerdict({ state: window.state, saleTries: attempt.rows[0]?.tries ?? 0, chargeStatus: null });
      if (!verdict.allowed) throw new StateError(verdict.reason);
      const beforeRow = await client.query<{ revision: number; total_minor: string; lines: string; unmatched: string; unusable: string }>(
        `SELECT i.revision, i.total_minor::text,
                (SELECT count(*) FROM invoice_lines l WHERE l.invoice_id = i.id)::text AS lines,
                (SELECT count(*) FROM meter_events e WHERE e.window_id = i.window_id AND e.status = 'unmatched')::text AS unmatched,
                (SELECT count(*) FROM meter_events e WHERE e.window_id = i.window_id AND e.status = 'unusable')::text AS unusable
         FROM invoices i WHERE i.window_id = $1`,
        [window.id],
      );
      const b = beforeRow.rows[0];
      if (!b) throw new StateError(`window ${window.id} has no invoice to re-author`);
      const before = { revision: b.revision, totalMinor: BigInt(b.total_minor), lines: Number(b.lines), unmatched: Number(b.unmatched), unusable: Number(b.unusable) };

      // Release: the events go back to `recorded`, then are classified again exactly as at closing.
      await client.query(
        `UPDATE meter_events SET status = 'recorded', window_id = NULL, invoice_line_id = NULL, late = false,
                last_error_code = NULL, last_error_message = NULL
         WHERE window_id = $1 AND status IN ('matched', 'unmatched', 'unusable')`,
        [window.id],
      );
      await client.query(`DELETE FROM invoice_lines WHERE invoice_id = (SELECT id FROM invoices WHERE window_id = $1)`, [window.id]);

      const frozen = fromStoredSnapshot(window.priceSnapshot);
      const known = new Set(frozen.map((p) => p.eventName));
      const plan = await client.query<{ plan_id: string }>(`SELECT plan_id FROM subscriptions WHERE id = $1`, [window.subscriptionId]);
      const current = await loadPriceSnapshot(client, plan.rows[0]!.plan_id, window.periodStart, now, { currency: window.currency });
      const added = current.prices.filter((p) => !known.has(p.eventName));
      const snapshot = [...frozen, ...added].sort((x, y) => x.eventName.localeCompare(y.eventName));
      if (added.length > 0) {
        await client.query(`UPDATE windows SET price_snapshot = $2::jsonb, updated_at = $3 WHERE id = $1`, [window.id, JSON.stringify(toStoredSnapshot(snapshot)), now]);
      }
      const invoice = (await author(client, [{ window: { ...window, priceSnapshot: snapshot }, snapshot }], now, 'reauthor'))[0]!;
      await client.query(`UPDATE charge_attempts SET amount_minor = $2, updated_at = $3 WHERE window_id = $1 AND tries = 0`, [window.id, invoice.totalMinor.toString(), now]);
      await writeAudit(client, {
        actor: input.actor,
        action: 'window.reauthor',
        subjectType: 'window',
        subjectId: window.id,
        reason: input.reason ?? null,
        before: { state: window.state, revision: before.revision, total_minor: before.totalMinor.toString(), lines: before.lines, unmatched: before.unmatched, unusable: before.unusable },
        after: {
          state: window.state,
          revision: invoice.revision,
          total_minor: invoice.totalMinor.toString(),
          lines: invoice.lines.length,
          unmatched: invoice.unmatched,
          unusable: invoice.unusable,
          added_prices: added.map((p) => p.eventName),
        },
      });
      return { before, invoice, addedPrices: added.map((p) => p.eventName) };
    }),
  );
}

// The upcoming charges preview reads what authoring reads (upcoming-charges.ts).
export { previewUpcomingCharges, previewUpcomingChargesOf, type UpcomingCharges } from './upcoming-charges';
