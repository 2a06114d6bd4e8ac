// What authoring reads and writes, in the caller's transaction: the window locks (subscription first), the window's
// own events and the late events carried into it, and the invoice lines with the guarded moves of their events.
import { randomUUID } from 'node:crypto';
import type { Queryable } from '../db';
import { fromStoredSnapshot, type BillableEvent, type DraftInvoice, type LateGroup } from './invoice-math';
import { WINDOW_COLUMNS, type WindowRow } from './types';

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
export async function lockWindow(db: Queryable, windowId: string): Promise<WindowRow | null> {
  return (await lockWindows(db, [windowId]))[0] ?? null;
}

/**
 * Locks the windows' subscriptions, then the windows, each set in id order: every author takes subscription locks
 * before window locks and in the same order, so concurrent authors (one window or many) never deadlock.
 */
export async function lockWindows(db: Queryable, windowIds: readonly string[]): Promise<WindowRow[]> {
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

export type AuthoringWindow = Pick<WindowRow, 'id' | 'subscriptionId' | 'periodStart' | 'periodEnd'>;
export type AuthoringInput = { events: BillableEvent[]; late: LateGroup[] };

/**
 * The events each window bills: its subscription's `recorded` events in [periodStart, until), and the `recorded`
 * ones before its period that no still-open window will bill (late usage, grouped by the window whose period they
 * fall in, or by none for usage in a gap between windows). Two queries whatever the number of windows; the windows
 * must belong to distinct subscriptions (a subscription's windows are authored one after another).
 *
 * No row locks on the events: every writer of a Braintree event's status (authoring, re-authoring) holds its
 * subscription's lock, and the guarded moves in writeLines refuse any event that left `recorded` meanwhile.
 */
export async function loadAuthoringInputs(db: Queryable, windows: readonly AuthoringWindow[], opts: { until?: Date } = {}): Promise<Map<string, AuthoringInput>> {
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
        fromLabel: origin ? `${day(origin.periodStart)} – ${day(origin.periodEnd)}` : 'usage outside any renewal window',
        originSnapshot: origin ? fromStoredSnapshot(origin.priceSnapshot) : null,
        events: rows.map(toEvent),
      };
    });
  }
  return inputs;
}

export interface Authored {
  window: WindowRow;
  invoiceId: string;
  draft: DraftInvoice;
}

/** Writes the drafts' lines and moves every event they name out of `recorded`, all guarded; one statement each. */
export async function writeLines(db: Queryable, authored: readonly Authored[]): Promise<void> {
  const lines = authored.flatMap((a) => a.draft.lines.map((line) => ({ a, line, id: randomUUID() })));
  if (lines.length > 0) {
    await db.query(
      `INSERT INTO invoice_lines (id, invoice_id, kind, meter_id, event_name, description, event_count, quantity, billed_units,
                                  unit_amount_decimal, per_units, rounding, amount_minor, carried_from_window_id)
       SELECT u.id, u.invoice_id, u.kind::invoice_line_kind, u.meter_id, u.event_name, u.description, u.event_count, u.quantity, u.billed_units,
              u.unit_amount_decimal, u.per_units, u.rounding::rounding, u.amount_minor, u.carried_from
       FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::int[], $8::bigint[], $9::bigint[],
                   $10::numeric[], $11::bigint[], $12::text[], $13::bigint[], $14::uuid[])
            AS u(id, invoice_id, kind, meter_id, event_name, description, event_count, quantity, billed_units, unit_amount_decimal, per_units,
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
        lines.map((l) => l.line.unitAmountDecimal),
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
