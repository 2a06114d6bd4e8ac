// The renewal windows pages' reads: the list by state (keyset on period_end, id, served by windows (state, period_end)),
// the stale renewals (subscriptions whose period ended with no window: the domain's own query), and one window's
// detail (snapshot, invoice lines, charge attempt). Writes go through the domain (app/billing/windows), which audits.
import { z } from 'zod';
import type { Queryable } from '../billing/db';
import { fromStoredSnapshot } from '../billing/windows/invoice-math';
import { canonicalUnitAmount } from '../billing/windows/unit-price';
import { WINDOW_STATES, type WindowState } from '../billing/windows/types';
import { findStaleRenewals } from '../billing/windows/windows';
import { filledParams, keysetPage, pageFields, placeholders } from '../billing/filters';
import { decodeCursor, encodeCursor } from './cursor';

export const WINDOWS_PAGE_SIZE = 50;
const STALE_LIMIT = 50;

export const WindowFiltersSchema = z.object({
  state: z.enum(WINDOW_STATES as [WindowState, ...WindowState[]]).optional().catch(undefined),
  ...pageFields,
});
export type WindowFilters = z.infer<typeof WindowFiltersSchema>;

export function parseWindowFilters(url: URL): WindowFilters {
  const raw = filledParams(url.searchParams);
  return WindowFiltersSchema.parse(raw);
}

export interface WindowListItem {
  id: string;
  customerId: string;
  customerLabel: string;
  periodStart: string;
  periodEnd: string;
  state: WindowState;
  staleRepaired: boolean;
  currency: string;
  totalMinor: string | null;
  chargeStatus: string | null;
  nextRetryAt: string | null;
}

export interface WindowPage {
  windows: WindowListItem[];
  older: string | null;
  newer: string | null;
}

export async function listWindows(db: Queryable, filters: WindowFilters): Promise<WindowPage> {
  const where: string[] = [];
  const params: unknown[] = [];
  const param = placeholders(params);
  // One index range per state, merged: windows (state, period_end) serves the unfiltered list too, where a plain
  // ORDER BY period_end over every window would read and sort the whole table (149 ms at 100,000 windows).
  const states = param(filters.state ? [filters.state] : WINDOW_STATES);
  const cursor = decodeCursor(filters.cursor);
  const newer = cursor !== null && filters.direction === 'newer';
  if (cursor) where.push(`(w.period_end, w.id) ${newer ? '>' : '<'} (${param(cursor.at)}::timestamptz, ${param(cursor.id)}::uuid)`);
  const order = newer ? 'w.period_end ASC, w.id ASC' : 'w.period_end DESC, w.id DESC';
  const { rows } = await db.query<{
    id: string;
    customer_id: string;
    customer_label: string;
    period_start: Date;
    period_end: Date;
    state: WindowState;
    stale_repaired: boolean;
    currency: string;
    total_minor: string | null;
    charge_status: string | null;
    next_retry_at: Date | null;
  }>(
    `SELECT w.id, w.customer_id, COALESCE(c.name, c.external_id) AS customer_label, w.period_start, w.period_end,
            w.state::text AS state, w.stale_repaired, w.currency, i.total_minor::text AS total_minor,
            a.status::text AS charge_status, a.next_retry_at
       FROM unnest(${states}::window_state[]) AS s(state)
       CROSS JOIN LATERAL (
         SELECT w.* FROM windows w
          WHERE ${['w.state = s.state', ...where].join(' AND ')}
          ORDER BY ${order} LIMIT ${WINDOWS_PAGE_SIZE + 1}
       ) w
       JOIN customers c ON c.id = w.customer_id
       LEFT JOIN invoices i ON i.window_id = w.id
       LEFT JOIN charge_attempts a ON a.window_id = w.id
      ORDER BY ${order} LIMIT ${WINDOWS_PAGE_SIZE + 1}`,
    params,
  );
  const { items, older, newer: newerCursor } = keysetPage(rows, {
    size: WINDOWS_PAGE_SIZE,
    newer,
    fromCursor: cursor !== null,
    toItem: (r) => ({
      id: r.id,
      customerId: r.customer_id,
      customerLabel: r.customer_label,
      periodStart: r.period_start.toISOString(),
      periodEnd: r.period_end.toISOString(),
      state: r.state,
      staleRepaired: r.stale_repaired,
      currency: r.currency.trim(),
      totalMinor: r.total_minor,
      chargeStatus: r.charge_status,
      nextRetryAt: r.next_retry_at?.toISOString() ?? null,
    }),
    cursorOf: (w) => encodeCursor(w.periodEnd, w.id),
  });
  return { windows: items, older, newer: newerCursor };
}

export interface StaleRenewal {
  subscriptionId: string;
  customerLabel: string;
  processorSubscriptionId: string;
  status: string;
  periodStart: string;
  periodEnd: string;
}

/** Subscriptions whose current period ended with no window covering it (what the reconciler would repair). */
export async function listStaleRenewals(db: Queryable, now = new Date()): Promise<StaleRenewal[]> {
  const ids = await findStaleRenewals(db, { now, limit: STALE_LIMIT });
  if (ids.length === 0) return [];
  const { rows } = await db.query<{
    id: string;
    customer_label: string;
    processor_subscription_id: string;
    status: string;
    current_period_start: Date;
    current_period_end: Date;
  }>(
    `SELECT s.id, COALESCE(c.name, c.external_id) AS customer_label, s.processor_subscription_id, s.status::text AS status,
            s.current_period_start, s.current_period_end
       FROM subscriptions s JOIN customers c ON c.id = s.customer_id
      WHERE s.id = ANY($1::uuid[]) ORDER BY s.current_period_end, s.id`,
    [ids],
  );
  return rows.map((r) => ({
    subscriptionId: r.id,
    customerLabel: r.customer_label,
    processorSubscriptionId: r.processor_subscription_id,
    status: r.status,
    periodStart: r.current_period_start.toISOString(),
    periodEnd: r.current_period_end.toISOString(),
  }));
}

export interface InvoiceLineView {
  id: string;
  kind: 'usage' | 'late_usage';
  eventName: string;
  description: string;
  eventCount: number;
  quantity: string;
  billedUnits: string;
  /** Minor units per billed unit, canonical decimal (ADR 030). */
  unitAmountDecimal: string;
  perUnits: string;
  rounding: string;
  amountMinor: string;
  carriedFromWindowId: string | null;
}

export interface WindowDetail {
  id: string;
  subscriptionId: string;
  processorSubscriptionId: string;
  customerId: string;
  customerLabel: string;
  periodStart: string;
  periodEnd: string;
  state: WindowState;
  staleRepaired: boolean;
  currency: string;
  closedAt: string | null;
  paidAt: string | null;
  snapshot: Array<{ eventName: string; displayName: string; aggregation: string; unitAmountDecimal: string; perUnits: string; rounding: string; currency: string }>;
  invoice: { id: string; revision: number; totalMinor: string; authoredAt: string; lines: InvoiceLineView[] } | null;
  unmatchedEvents: number;
  unusableEvents: number;
  chargeAttempt: {
    orderId: string;
    status: string;
    tries: number;
    amountMinor: string;
    transactionId: string | null;
    processorStatus: string | null;
    responseCode: string | null;
    firstFailure: { code: string | null; message: string | null; at: string | null } | null;
    lastFailure: { code: string | null; message: string | null; at: string | null } | null;
    nextRetryAt: string | null;
    lastSentAt: string | null;
  } | null;
}

export async function loadInvoiceLines(db: Queryable, invoiceId: string): Promise<InvoiceLineView[]> {
  return (await loadLinesOfInvoices(db, [invoiceId])).get(invoiceId) ?? [];
}

/** The lines of several invoices in one read, by invoice id, each invoice's lines by kind and meter. */
export async function loadLinesOfInvoices(db: Queryable, invoiceIds: readonly string[]): Promise<Map<string, InvoiceLineView[]>> {
  const { rows } = await db.query<{
    id: string;
    invoice_id: string;
    kind: 'usage' | 'late_usage';
    event_name: string;
    description: string;
    event_count: number;
    quantity: string;
    billed_units: string;
    unit_amount_decimal: string;
    per_units: string;
    rounding: string;
    amount_minor: string;
    carried_from_window_id: string | null;
  }>(
    `SELECT id, invoice_id, kind::text AS kind, event_name, description, event_count, quantity::text AS quantity, billed_units::text AS billed_units,
            unit_amount_decimal::text AS unit_amount_decimal, per_units::text AS per_units, rounding::text AS rounding,
            amount_minor::text AS amount_minor, carried_from_window_id
       FROM invoice_lines WHERE invoice_id = ANY($1::uuid[]) ORDER BY invoice_id, kind, event_name, id`,
    [invoiceIds],
  );
  const byInvoice = new Map<string, InvoiceLineView[]>();
  for (const r of rows) {
    const lines = byInvoice.get(r.invoice_id) ?? [];
    lines.push({
      id: r.id,
      kind: r.kind,
      eventName: r.event_name,
      description: r.description,
      eventCount: r.event_count,
      quantity: r.quantity,
      billedUnits: r.billed_units,
      unitAmountDecimal: canonicalUnitAmount(r.unit_amount_decimal),
      perUnits: r.per_units,
      rounding: r.rounding,
      amountMinor: r.amount_minor,
      carriedFromWindowId: r.carried_from_window_id,
    });
    byInvoice.set(r.invoice_id, lines);
  }
  return byInvoice;
}

export async function loadWindowDetail(db: Queryable, windowId: string): Promise<WindowDetail | null> {
  if (!z.uuid().safeParse(windowId).success) return null;
  const { rows } = await db.query<{
    id: string;
    subscription_id: string;
    processor_subscription_id: string;
    customer_id: string;
    customer_label: string;
    period_start: Date;
    period_end: Date;
    state: WindowState;
    stale_repaired: boolean;
    currency: string;
    closed_at: Date | null;
    paid_at: Date | null;
    price_snapshot: unknown;
    unmatched: string;
    unusable: string;
  }>(
    `SELECT w.id, w.subscription_id, s.processor_subscription_id, w.customer_id, COALESCE(c.name, c.external_id) AS customer_label,
            w.period_start, w.period_end, w.state::text AS state, w.stale_repaired, w.currency, w.closed_at, w.paid_at, w.price_snapshot,
            (SELECT count(*) FROM meter_events e WHERE e.window_id = w.id AND e.status = 'unmatched')::text AS unmatched,
            (SELECT count(*) FROM meter_events e WHERE e.window_id = w.id AND e.status = 'unusable')::text AS unusable
       FROM windows w JOIN customers c ON c.id = w.customer_id JOIN subscriptions s ON s.id = w.subscription_id
      WHERE w.id = $1`,
    [windowId],
  );
  const w = rows[0];
  if (!w) return null;
  const [inv, att] = await Promise.all([
    db.query<{ id: string; revision: number; total_minor: string; authored_at: Date }>(
      `SELECT id, revision, total_minor::text AS total_minor, authored_at FROM invoices WHERE window_id = $1`,
      [windowId],
    ),
    db.query<{
      order_id: string;
      status: string;
      tries: number;
      amount_minor: string;
      transaction_id: string | null;
      processor_status: string | null;
      response_code: string | null;
      first_failure_code: string | null;
      first_failure_message: string | null;
      first_failure_at: Date | null;
      last_failure_code: string | null;
      last_failure_message: string | null;
      last_failure_at: Date | null;
      next_retry_at: Date | null;
      last_sent_at: Date | null;
    }>(
      `SELECT order_id, status::text AS status, tries, amount_minor::text AS amount_minor, transaction_id, processor_status, response_code,
              first_failure_code, first_failure_message, first_failure_at, last_failure_code, last_failure_message, last_failure_at,
              next_retry_at, last_sent_at
         FROM charge_attempts WHERE window_id = $1`,
      [windowId],
    ),
  ]);
  const invoice = inv.rows[0];
  const a = att.rows[0];
  const failure = (code: string | null, message: string | null, at: Date | null) =>
    code || message || at ? { code, message, at: at?.toISOString() ?? null } : null;
  return {
    id: w.id,
    subscriptionId: w.subscription_id,
    processorSubscriptionId: w.processor_subscription_id,
    customerId: w.customer_id,
    customerLabel: w.customer_label,
    periodStart: w.period_start.toISOString(),
    periodEnd: w.period_end.toISOString(),
    state: w.state,
    staleRepaired: w.stale_repaired,
    currency: w.currency.trim(),
    closedAt: w.closed_at?.toISOString() ?? null,
    paidAt: w.paid_at?.toISOString() ?? null,
    snapshot: fromStoredSnapshot(w.price_snapshot).map((p) => ({
      eventName: p.eventName,
      displayName: p.displayName,
      aggregation: p.aggregation,
      unitAmountDecimal: p.unitAmountDecimal,
      perUnits: p.perUnits.toString(),
      rounding: p.rounding,
      currency: p.currency,
    })),
    invoice: invoice
      ? {
          id: invoice.id,
          revision: invoice.revision,
          totalMinor: invoice.total_minor,
          authoredAt: invoice.authored_at.toISOString(),
          lines: await loadInvoiceLines(db, invoice.id),
        }
      : null,
    unmatchedEvents: Number(w.unmatched),
    unusableEvents: Number(w.unusable),
    chargeAttempt: a
      ? {
          orderId: a.order_id,
          status: a.status,
          tries: a.tries,
          amountMinor: a.amount_minor,
          transactionId: a.transaction_id,
          processorStatus: a.processor_status,
          responseCode: a.response_code,
          firstFailure: failure(a.first_failure_code, a.first_failure_message, a.first_failure_at),
          lastFailure: failure(a.last_failure_code, a.last_failure_message, a.last_failure_at),
          nextRetryAt: a.next_retry_at?.toISOString() ?? null,
          lastSentAt: a.last_sent_at?.toISOString() ?? null,
        }
      : null,
  };
}
