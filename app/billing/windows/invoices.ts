// Invoice authoring for Braintree windows: classify the window's events, aggregate, round, price, and write the
// invoice with its lines in the caller's transaction, with the window (and its subscription) locked. Late events
// (their period's window already invoiced) are carried into the window being authored. The arithmetic lives in
// invoice-math.ts; this module only reads and writes. Decisions: docs/decisions (Braintree windows ADR).
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { writeAudit, type Actor } from '../audit';
import { addJob, type Queryable } from '../db';
import { NotFoundError, StateError } from '../errors';
import { recordOpsEvents, type OpsEventInput } from '../ops-events';
import {
  draftInvoice,
  fromStoredSnapshot,
  toStoredSnapshot,
  type BillableEvent,
  type DraftInvoice,
  type DraftLine,
  type LateGroup,
  type SnapshotPrice,
} from './invoice-math';
import { loadPriceSnapshot } from './snapshot';
import { inTransaction, withClient } from './transaction';
import { SETTLE_WINDOW_TASK, WINDOW_COLUMNS, settleJobKey, type WindowRow, type WindowState } from './types';

/** States in which no sale can have been sent for the window, so its invoice may still change (ADR). */
export const REAUTHOR_STATES: readonly WindowState[] = ['closed', 'awaiting_payment_method'];

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

interface EventRow {
  id: string;
  event_name: string;
  value: string;
  occurred_at: Date;
}

interface LateRow extends EventRow {
  origin_id: string | null;
}

const day = (d: Date) => d.toISOString().slice(0, 10);

/** Locks the window's subscription, then the window (always in this order, so authors never deadlock). */
async function lockWindow(db: Queryable, windowId: string): Promise<WindowRow | null> {
  return (await lockWindows(db, [windowId]))[0] ?? null;
}

/**
 * Locks the windows' subscriptions, then the windows, each set in id order: every author takes subscription locks
 * before window locks and in the same order, so concurrent authors (one window or many) never deadlock.
 */
async function lockWindows(db: Queryable, windowIds: readonly string[]): Promise<WindowRow[]> {
  // NO KEY UPDATE: serialises authors of one subscription without blocking ingest's foreign-key checks.
  await db.query(
    `SELECT 1 FROM subscriptions WHERE id IN (SELECT subscription_id FROM windows WHERE id = ANY($1::uuid[]))
     ORDER BY id FOR NO KEY UPDATE`,
    [windowIds],
  );
  const locked = await db.query<WindowRow>(`SELECT ${WINDOW_COLUMNS} FROM windows WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE`, [windowIds]);
  return locked.rows;
}

const toEvent = (r: EventRow): BillableEvent => ({ id: r.id, eventName: r.event_name, value: BigInt(r.value), occurredAt: r.occurred_at });

type AuthoringWindow = Pick<WindowRow, 'id' | 'subscriptionId' | 'periodStart' | 'periodEnd'>;
type AuthoringInput = { events: BillableEvent[]; late: LateGroup[] };

/**
 * The events each window bills: its subscription's `recorded` events in [periodStart, until), and the `recorded`
 * ones before its period that no still-open window will bill (late usage, grouped by the window whose period they
 * fall in, or by none for usage in a gap between windows). Two queries whatever the number of windows; the windows
 * must belong to distinct subscriptions (a subscription's windows are authored one after another).
 *
 * No row locks on the events: every writer of a Braintree event's status (authoring, re-authoring) holds its
 * subscription's lock, and the guarded moves in writeLines refuse any event that left `recorded` meanwhile.
 */
async function loadAuthoringInputs(db: Queryable, windows: readonly AuthoringWindow[], opts: { until?: Date } = {}): Promise<Map<string, AuthoringInput>> {
  const inputs = new Map<string, AuthoringInput>(windows.map((w) => [w.id, { events: [], late: [] }]));
  if (windows.length === 0) return inputs;
  const ids = windows.map((w) => w.id);
  const subs = windows.map((w) => w.subscriptionId);
  const starts = windows.map((w) => w.periodStart);
  const untils = windows.map((w) => (opts.until && opts.until < w.periodEnd ? opts.until : w.periodEnd));
  const own = await db.query<EventRow & { window_id: string }>(
    `SELECT w.window_id, e.id, e.event_name, e.value::text AS value, e.occurred_at
     FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[]) AS w(window_id, subscription_id, period_start, until)
     JOIN meter_events e ON e.subscription_id = w.subscription_id AND e.status = 'recorded'
                        AND e.occurred_at >= w.period_start AND e.occurred_at < w.until`,
    [ids, subs, starts, untils],
  );
  for (const r of own.rows) inputs.get(r.window_id)!.events.push(toEvent(r));
  const lateRows = await db.query<LateRow & { window_id: string }>(
    `SELECT w.window_id, e.id, e.event_name, e.value::text AS value, e.occurred_at, o.id AS origin_id
     FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS w(window_id, subscription_id, period_start)
     JOIN meter_events e ON e.subscription_id = w.subscription_id AND e.status = 'recorded' AND e.occurred_at < w.period_start
     LEFT JOIN LATERAL (
       SELECT w2.id, w2.state FROM windows w2
       WHERE w2.subscription_id = e.subscription_id AND w2.period_start <= e.occurred_at AND e.occurred_at < w2.period_end
       ORDER BY w2.period_start DESC LIMIT 1
     ) o ON true
     WHERE o.id IS NULL OR o.state <> 'open'`,
    [ids, subs, starts],
  );
  if (lateRows.rows.length === 0) return inputs;
  const originIds = [...new Set(lateRows.rows.map((r) => r.origin_id).filter((k): k is string => k !== null))];
  const origins = new Map<string, { periodStart: Date; periodEnd: Date; priceSnapshot: unknown }>();
  if (originIds.length > 0) {
    const { rows } = await db.query<{ id: string; period_start: Date; period_end: Date; price_snapshot: unknown }>(
      `SELECT id, period_start, period_end, price_snapshot FROM windows WHERE id = ANY($1::uuid[])`,
      [originIds],
    );
    for (const r of rows) origins.set(r.id, { periodStart: r.period_start, periodEnd: r.period_end, priceSnapshot: r.price_snapshot });
  }
  const byWindow = new Map<string, Map<string | null, LateRow[]>>();
  for (const r of lateRows.rows) {
    const byOrigin = byWindow.get(r.window_id) ?? new Map<string | null, LateRow[]>();
    byWindow.set(r.window_id, byOrigin);
    const list = byOrigin.get(r.origin_id) ?? [];
    list.push(r);
    byOrigin.set(r.origin_id, list);
  }
  for (const [windowId, byOrigin] of byWindow) {
    inputs.get(windowId)!.late = [...byOrigin].map(([originId, rows]) => {
      const origin = originId ? origins.get(originId) : undefined;
      return {
        fromWindowId: originId,
        fromLabel: origin ? `${day(origin.periodStart)} – ${day(origin.periodEnd)}` : 'usage outside any billing period',
        originSnapshot: origin ? fromStoredSnapshot(origin.priceSnapshot) : null,
        events: rows.map(toEvent),
      };
    });
  }
  return inputs;
}

async function loadAuthoringInput(db: Queryable, window: AuthoringWindow, opts: { until?: Date } = {}): Promise<AuthoringInput> {
  return (await loadAuthoringInputs(db, [window], opts)).get(window.id)!;
}

interface Authored {
  window: WindowRow;
  invoiceId: string;
  draft: DraftInvoice;
}

/** Writes the drafts' lines and moves every event they name out of `recorded`, all guarded; one statement each. */
async function writeLines(db: Queryable, authored: readonly Authored[]): Promise<void> {
  const lines = authored.flatMap((a) => a.draft.lines.map((line) => ({ a, line, id: randomUUID() })));
  if (lines.length > 0) {
    await db.query(
      `INSERT INTO invoice_lines (id, invoice_id, kind, meter_id, event_name, description, event_count, quantity, billed_units,
                                  unit_amount_minor, per_units, rounding, amount_minor, carried_from_window_id)
       SELECT u.id, u.invoice_id, u.kind::invoice_line_kind, u.meter_id, u.event_name, u.description, u.event_count, u.quantity, u.billed_units,
              u.unit_amount_minor, u.per_units, u.rounding::rounding, u.amount_minor, u.carried_from
       FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::int[], $8::bigint[], $9::bigint[],
                   $10::bigint[], $11::bigint[], $12::text[], $13::bigint[], $14::uuid[])
            AS u(id, invoice_id, kind, meter_id, event_name, description, event_count, quantity, billed_units, unit_amount_minor, per_units,
                 rounding, amount_minor, carried_from)`,
      [
        lines.map((l) => l.id),
        lines.map((l) => l.a.invoiceId),
        lines.map((l) => l.line.kind),
        lines.map((l) => l.line.meterId),
        lines.map((l) => l.line.eventName),
        lines.map((l) => l.line.description),
        lines.map((l) => l.line.eventIds.length),
        lines.map((l) => l.line.quantity.toString()),
        lines.map((l) => l.line.billedUnits.toString()),
        lines.map((l) => l.line.unitAmountMinor.toString()),
        lines.map((l) => l.line.perUnits.toString()),
        lines.map((l) => l.line.rounding),
        lines.map((l) => l.line.amountMinor.toString()),
        lines.map((l) => l.line.carriedFromWindowId),
      ],
    );
  }
  const matched = lines.flatMap((l) => l.line.eventIds.map((id) => ({ id, windowId: l.a.window.id, lineId: l.id, late: l.line.late })));
  const flagged = authored.flatMap((a) => [
    ...a.draft.unmatched.map((u) => ({ id: u.id, windowId: a.window.id, status: 'unmatched', late: u.late, code: 'missing_definition', message: `no price for "${u.eventName}" in the window's snapshot` })),
    ...a.draft.unusable.map((u) => ({ id: u.id, windowId: a.window.id, status: 'unusable', late: u.late, code: u.reason, message: unusableMessage(u.reason) })),
  ]);
  // `m.id = ANY(...)` beside the join: without it the planner hashes the whole ledger to join a few thousand ids.
  let moved = 0;
  if (matched.length > 0) {
    const r = await db.query(
      `UPDATE meter_events m SET status = 'matched', window_id = u.window_id, invoice_line_id = u.line_id, late = u.late,
              last_error_code = NULL, last_error_message = NULL
       FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bool[]) AS u(id, window_id, line_id, late)
       WHERE m.id = ANY($1::uuid[]) AND m.id = u.id AND m.status = 'recorded'`,
      [matched.map((m) => m.id), matched.map((m) => m.windowId), matched.map((m) => m.lineId), matched.map((m) => m.late)],
    );
    moved += r.rowCount ?? 0;
  }
  if (flagged.length > 0) {
    const r = await db.query(
      `UPDATE meter_events m SET status = u.status::meter_event_status, window_id = u.window_id, invoice_line_id = NULL, late = u.late,
              last_error_code = u.code, last_error_message = u.message
       FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bool[], $5::text[], $6::text[]) AS u(id, window_id, status, late, code, message)
       WHERE m.id = ANY($1::uuid[]) AND m.id = u.id AND m.status = 'recorded'`,
      [flagged.map((f) => f.id), flagged.map((f) => f.windowId), flagged.map((f) => f.status), flagged.map((f) => f.late), flagged.map((f) => f.code), flagged.map((f) => f.message)],
    );
    moved += r.rowCount ?? 0;
  }
  // Every writer of these rows holds the subscription's lock, so anything else means a bug: never write an
  // invoice that misstates its events (the transaction rolls back and the job is retried).
  const expected = matched.length + flagged.length;
  if (moved !== expected) throw new Error(`windows ${authored.map((a) => a.window.id).join(', ')}: classified ${expected} events but moved ${moved}`);
}

function unusableMessage(reason: string): string {
  switch (reason) {
    case 'line_overflow':
      return 'billing this value would overflow its invoice line (quantity or amount above 2^63 - 1)';
    case 'invoice_overflow':
      return 'billing this value would overflow the invoice total (above 2^63 - 1 minor units)';
    default:
      return 'the value is outside 0 .. 2^53 - 1';
  }
}

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
      if (!REAUTHOR_STATES.includes(window.state)) {
        throw new StateError(
          window.state === 'open'
            ? `window ${window.id} is still open: its invoice is authored when the period ends`
            : `window ${window.id} is ${window.state}: a window can be re-authored only before any sale (states ${REAUTHOR_STATES.join(', ')})`,
        );
      }
      const attempt = await client.query<{ tries: number }>(`SELECT tries FROM charge_attempts WHERE window_id = $1 FOR UPDATE`, [window.id]);
      if ((attempt.rows[0]?.tries ?? 0) > 0) {
        throw new StateError(`window ${window.id} already had a sale sent (${attempt.rows[0]!.tries}); its invoice can no longer change`);
      }
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

// ───────────────────────────── upcoming charges ─────────────────────────────

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
