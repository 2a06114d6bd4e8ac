// The invoices pages' reads: newest first with keyset pagination on (authored_at, id) (index invoices(authored_at)),
// one invoice with its decomposition, the upcoming charges of live Braintree subscriptions, and the CSV export,
// which reads in keyset chunks and yields rows as they come (the table is never held in memory).
import { z } from 'zod';
import type { Queryable } from '../billing/db';
import { formatMinor } from '../billing/windows/invoice-math';
import { previewUpcomingCharges } from '../billing/windows/invoices';
import { LIVE_SUBSCRIPTION_STATUSES } from '../billing/windows/types';
import { filledParams, pageFields } from '../billing/filters';
import { decodeCursor, encodeCursor } from './cursor';
import { loadInvoiceLines, type InvoiceLineView } from './windows';

export const INVOICES_PAGE_SIZE = 50;
const UPCOMING_LIMIT = 20;

export const InvoiceFiltersSchema = z.object({
  ...pageFields,
});
export type InvoiceFilters = z.infer<typeof InvoiceFiltersSchema>;

export function parseInvoiceFilters(url: URL): InvoiceFilters {
  return InvoiceFiltersSchema.parse(filledParams(url.searchParams));
}

/** The payment state shown for an invoice: its window's state, which is what finance acts on. */
export interface InvoiceListItem {
  id: string;
  windowId: string;
  customerLabel: string;
  customerExternalId: string;
  periodStart: string;
  periodEnd: string;
  currency: string;
  totalMinor: string;
  revision: number;
  authoredAt: string;
  paymentState: string;
  chargeStatus: string | null;
}

interface InvoiceRow {
  id: string;
  window_id: string;
  customer_label: string;
  customer_external_id: string;
  period_start: Date;
  period_end: Date;
  currency: string;
  total_minor: string;
  revision: number;
  authored_at: Date;
  payment_state: string;
  charge_status: string | null;
  transaction_id: string | null;
}

// One invoice row as the desk reads it; each read adds its own columns, WHERE, ORDER and LIMIT (all parameterised).
const INVOICE_COLUMNS = [
  'i.id',
  'i.window_id',
  'COALESCE(c.name, c.external_id) AS customer_label',
  'c.external_id AS customer_external_id',
  'w.period_start',
  'w.period_end',
  'i.currency',
  'i.total_minor::text AS total_minor',
  'i.revision',
  'i.authored_at',
  'w.state::text AS payment_state',
  'a.status::text AS charge_status',
  'a.transaction_id',
] as const;

/** Columns a read may add to the invoice row; a closed list, so no caller text reaches the SQL. */
const EXTRA_COLUMNS = {
  subscriptionId: 'i.subscription_id',
  customerName: 'c.name AS customer_name',
} as const;
export type InvoiceExtraColumn = keyof typeof EXTRA_COLUMNS;

export interface InvoiceSelectParts {
  extraColumns?: readonly InvoiceExtraColumn[];
  /** A condition over `i`, `w`, `c`, `a` with `$n` placeholders for `params`. */
  where?: string;
  params?: readonly unknown[];
  orderBy?: 'authored_desc' | 'authored_asc';
  limit?: number;
}

const ORDER = { authored_desc: 'i.authored_at DESC, i.id DESC', authored_asc: 'i.authored_at ASC, i.id ASC' } as const;

/** The invoice read composed from its parts: `{ text, values }` for `db.query`. */
export function invoiceSelect(parts: InvoiceSelectParts = {}): { text: string; values: unknown[] } {
  const limit = parts.limit;
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) throw new RangeError(`invoiceSelect: limit must be a positive integer, got ${limit}`);
  const columns = [...INVOICE_COLUMNS, ...(parts.extraColumns ?? []).map((c) => EXTRA_COLUMNS[c])];
  const text = [
    `SELECT ${columns.join(', ')}`,
    `FROM invoices i`,
    `JOIN windows w ON w.id = i.window_id`,
    `JOIN customers c ON c.id = i.customer_id`,
    `LEFT JOIN charge_attempts a ON a.window_id = i.window_id`,
    parts.where ? `WHERE ${parts.where}` : '',
    parts.orderBy ? `ORDER BY ${ORDER[parts.orderBy]}` : '',
    limit !== undefined ? `LIMIT ${limit}` : '',
  ]
    .filter(Boolean)
    .join('\n');
  return { text, values: [...(parts.params ?? [])] };
}

function toItem(r: InvoiceRow): InvoiceListItem {
  return {
    id: r.id,
    windowId: r.window_id,
    customerLabel: r.customer_label,
    customerExternalId: r.customer_external_id,
    periodStart: r.period_start.toISOString(),
    periodEnd: r.period_end.toISOString(),
    currency: r.currency.trim(),
    totalMinor: r.total_minor,
    revision: r.revision,
    authoredAt: r.authored_at.toISOString(),
    paymentState: r.payment_state,
    chargeStatus: r.charge_status,
  };
}

export async function listInvoices(db: Queryable, filters: InvoiceFilters): Promise<{ invoices: InvoiceListItem[]; older: string | null; newer: string | null }> {
  const cursor = decodeCursor(filters.cursor);
  const newer = cursor !== null && filters.direction === 'newer';
  const { text, values } = invoiceSelect({
    where: cursor ? `(i.authored_at, i.id) ${newer ? '>' : '<'} ($1::timestamptz, $2::uuid)` : undefined,
    params: cursor ? [cursor.at, cursor.id] : [],
    orderBy: newer ? 'authored_asc' : 'authored_desc',
    limit: INVOICES_PAGE_SIZE + 1,
  });
  const { rows } = await db.query<InvoiceRow>(text, values);
  const more = rows.length > INVOICES_PAGE_SIZE;
  const page = rows.slice(0, INVOICES_PAGE_SIZE);
  if (newer) page.reverse();
  const invoices = page.map(toItem);
  const first = invoices[0];
  const last = invoices.at(-1);
  return {
    invoices,
    older: last && (newer ? true : more) ? encodeCursor(last.authoredAt, last.id) : null,
    newer: first && (newer ? more : cursor !== null) ? encodeCursor(first.authoredAt, first.id) : null,
  };
}

export interface InvoiceDetail extends InvoiceListItem {
  subscriptionId: string;
  transactionId: string | null;
  lines: InvoiceLineView[];
}

export async function loadInvoice(db: Queryable, invoiceId: string): Promise<InvoiceDetail | null> {
  if (!z.uuid().safeParse(invoiceId).success) return null;
  const { text, values } = invoiceSelect({ extraColumns: ['subscriptionId'], where: 'i.id = $1', params: [invoiceId] });
  const { rows } = await db.query<InvoiceRow & { subscription_id: string }>(text, values);
  const r = rows[0];
  if (!r) return null;
  return { ...toItem(r), subscriptionId: r.subscription_id, transactionId: r.transaction_id, lines: await loadInvoiceLines(db, r.id) };
}

export interface UpcomingChargesView {
  subscriptionId: string;
  customerLabel: string;
  processorSubscriptionId: string;
  windowId: string | null;
  periodStart: string;
  periodEnd: string;
  currency: string;
  totalMinor: string;
  lines: Array<{ kind: string; eventName: string; description: string; eventCount: number; quantity: string; billedUnits: string; unitAmountMinor: string; amountMinor: string }>;
  unmatchedEvents: number;
  unmatchedEventNames: string[];
  unusableEvents: number;
}

/** What each live Braintree subscription in a running period would be charged if its window closed now (nothing written). */
export async function listUpcomingCharges(db: Queryable, opts: { subscriptionId?: string; now?: Date } = {}): Promise<UpcomingChargesView[]> {
  const { rows } = await db.query<{ id: string; customer_label: string; processor_subscription_id: string }>(
    `SELECT s.id, COALESCE(c.name, c.external_id) AS customer_label, s.processor_subscription_id
       FROM subscriptions s JOIN customers c ON c.id = s.customer_id
      WHERE s.processor = 'braintree' AND s.status::text = ANY($1::text[]) AND ($2::uuid IS NULL OR s.id = $2::uuid)
        -- Upcoming: a period still running. One that ended is a window closing or a stale renewal (the windows page).
        AND s.current_period_end > $3
      ORDER BY s.current_period_end, s.id LIMIT ${UPCOMING_LIMIT}`,
    [[...LIVE_SUBSCRIPTION_STATUSES], opts.subscriptionId ?? null, opts.now ?? new Date()],
  );
  const views: UpcomingChargesView[] = [];
  // One at a time: each preview runs a few queries, and the pool is shared with every other request.
  for (const s of rows) {
    const p = await previewUpcomingCharges(db, s.id, { now: opts.now });
    views.push({
      subscriptionId: s.id,
      customerLabel: s.customer_label,
      processorSubscriptionId: s.processor_subscription_id,
      windowId: p.windowId,
      periodStart: p.periodStart.toISOString(),
      periodEnd: p.periodEnd.toISOString(),
      currency: p.currency.trim(),
      totalMinor: p.totalMinor.toString(),
      lines: p.lines.map((l) => ({
        kind: l.kind,
        eventName: l.eventName,
        description: l.description,
        eventCount: l.eventIds.length,
        quantity: l.quantity.toString(),
        billedUnits: l.billedUnits.toString(),
        unitAmountMinor: l.unitAmountMinor.toString(),
        amountMinor: l.amountMinor.toString(),
      })),
      unmatchedEvents: p.unmatchedEvents,
      unmatchedEventNames: p.unmatchedEventNames,
      unusableEvents: p.unusableEvents,
    });
  }
  return views;
}

// ───────────────────────────── CSV export ─────────────────────────────

export const CSV_HEADER = [
  'invoice_id',
  'window_id',
  'customer_external_id',
  'customer_name',
  'period_start',
  'period_end',
  'currency',
  'total_minor',
  'total',
  'revision',
  'authored_at',
  'payment_state',
  'charge_status',
  'transaction_id',
] as const;
const EXPORT_CHUNK = 500;

/**
 * RFC 4180: a field with a comma, quote, CR or LF is quoted and its quotes doubled. A field starting with = + - @
 * (or tab/CR) is prefixed with `'` so a spreadsheet opening the file never runs it as a formula (CSV injection).
 */
export function csvField(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  let s = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function csvLine(fields: ReadonlyArray<string | number | null | undefined>): string {
  return `${fields.map(csvField).join(',')}\r\n`;
}

/** Every invoice, newest first, as CSV lines (header first), read EXPORT_CHUNK rows at a time by keyset. */
export async function* invoiceCsvLines(db: Queryable, opts: { chunkSize?: number } = {}): AsyncGenerator<string> {
  const size = opts.chunkSize ?? EXPORT_CHUNK;
  yield csvLine(CSV_HEADER);
  let cursor: { at: Date; id: string } | null = null;
  for (;;) {
    const { text, values } = invoiceSelect({
      extraColumns: ['customerName'],
      where: cursor ? '(i.authored_at, i.id) < ($1::timestamptz, $2::uuid)' : undefined,
      params: cursor ? [cursor.at, cursor.id] : [],
      orderBy: 'authored_desc',
      limit: size,
    });
    const { rows }: { rows: Array<InvoiceRow & { customer_name: string | null }> } = await db.query(text, values);
    let chunk = '';
    for (const r of rows) {
      const currency = r.currency.trim();
      chunk += csvLine([
        r.id,
        r.window_id,
        r.customer_external_id,
        r.customer_name,
        r.period_start.toISOString(),
        r.period_end.toISOString(),
        currency.toUpperCase(),
        r.total_minor,
        formatMinor(BigInt(r.total_minor), currency),
        r.revision,
        r.authored_at.toISOString(),
        r.payment_state,
        r.charge_status,
        r.transaction_id,
      ]);
    }
    if (chunk) yield chunk;
    const last = rows.at(-1);
    if (!last || rows.length < size) return;
    cursor = { at: last.authored_at, id: last.id };
  }
}

/** The export as a streamed Response body; the database is read only as fast as the client takes the bytes. */
export function invoiceCsvStream(db: Queryable, opts: { chunkSize?: number } = {}): ReadableStream<Uint8Array> {
  const lines = invoiceCsvLines(db, opts);
  const encoder = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await lines.next();
        if (next.done) controller.close();
        else controller.enqueue(encoder.encode(next.value));
      } catch (error) {
        controller.error(error);
      }
    },
    async cancel() {
      await lines.return(undefined);
    },
  });
}
