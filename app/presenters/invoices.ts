// The invoices pages' reads: newest first with keyset pagination on (authored_at, id) (index invoices(authored_at)),
// filtered by payment state, customer, processor and period end, with totals per currency over the whole filtered
// set; one invoice with its decomposition; the upcoming charges of live Braintree subscriptions. The CSV export of
// the same filtered set is invoice-export.ts.
import { z } from 'zod';
import type { Queryable } from '../billing/db';
import { previewUpcomingChargesOf } from '../billing/windows/invoices';
import { LIVE_SUBSCRIPTION_STATUSES } from '../billing/windows/types';
import { filledParams, filterText, pageFields, placeholders } from '../billing/filters';
import { customerCondition } from '../billing/ledger/event-list';
import { STATES } from '../billing/states';
import { decodeCursor, encodeCursor } from './cursor';
import { loadInvoiceLines, type InvoiceLineView } from './windows';

export const INVOICES_PAGE_SIZE = 50;
const UPCOMING_LIMIT = 20;

const WINDOW_STATES = Object.keys(STATES.window) as [string, ...string[]];
// A calendar day, UTC, as an <input type="date"> sends it.
const utcDay = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/)
  .refine((v) => !Number.isNaN(Date.parse(`${v}T00:00:00Z`)) && new Date(`${v}T00:00:00Z`).toISOString().startsWith(v));

/** What finance filters invoices by; a value that does not parse is no filter (the form shows it empty). */
export const InvoiceFilterFieldsSchema = z.object({
  /** The payment state: the invoice's window state. */
  state: z.enum(WINDOW_STATES).optional().catch(undefined),
  /** The customer's external id, or its processor customer id. */
  customer: filterText(200).optional().catch(undefined),
  processor: z.enum(['stripe', 'braintree']).optional().catch(undefined),
  /** Invoices whose period ends on or after this day (UTC)... */
  periodFrom: utcDay.optional().catch(undefined),
  /** ...and on or before this day (UTC). */
  periodTo: utcDay.optional().catch(undefined),
});
export const InvoiceFiltersSchema = InvoiceFilterFieldsSchema.extend(pageFields);
export type InvoiceFilterFields = z.infer<typeof InvoiceFilterFieldsSchema>;
export type InvoiceFilters = z.infer<typeof InvoiceFiltersSchema>;
export const INVOICE_FILTER_KEYS = ['state', 'customer', 'processor', 'periodFrom', 'periodTo'] as const;

export function parseInvoiceFilters(url: URL): InvoiceFilters {
  return InvoiceFiltersSchema.parse(filledParams(url.searchParams));
}

/** The filters as the form and the pager links carry them (blank for none). */
export function invoiceFilterValues(filters: InvoiceFilterFields): Record<(typeof INVOICE_FILTER_KEYS)[number], string> {
  return Object.fromEntries(INVOICE_FILTER_KEYS.map((k) => [k, filters[k] ?? ''])) as Record<(typeof INVOICE_FILTER_KEYS)[number], string>;
}

export function isFiltered(filters: InvoiceFilterFields): boolean {
  return INVOICE_FILTER_KEYS.some((k) => filters[k] !== undefined);
}

const nextDay = (day: string) => new Date(Date.parse(`${day}T00:00:00Z`) + 86_400_000);

/**
 * The filters as conditions over `i`, `w`, `c` (each value a placeholder appended to `params`); null when the
 * customer filter names no customer, so the set is empty for that reason.
 */
export async function invoiceConditions(db: Queryable, filters: InvoiceFilterFields, params: unknown[]): Promise<string[] | null> {
  const param = placeholders(params);
  const where: string[] = [];
  if (filters.customer) {
    const customer = await customerCondition(db, filters.customer, 'i.customer_id', param);
    if (!customer) return null;
    where.push(customer);
  }
  // The invoice's copy of its window's state (kept by triggers): the page's keyset order within one state is the
  // index invoices(window_state, authored_at, id) (ADR 034).
  if (filters.state) where.push(`i.window_state = ${param(filters.state)}::window_state`);
  if (filters.processor) where.push(`c.processor = ${param(filters.processor)}::processor`);
  if (filters.periodFrom) where.push(`w.period_end >= ${param(new Date(`${filters.periodFrom}T00:00:00Z`))}`);
  if (filters.periodTo) where.push(`w.period_end < ${param(nextDay(filters.periodTo))}`);
  return where;
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

export interface InvoiceRow {
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
  'i.window_state::text AS payment_state',
  'a.status::text AS charge_status',
  'a.transaction_id',
] as const;

/** Columns a read may add to the invoice row; a closed list, so no caller text reaches the SQL. */
const EXTRA_COLUMNS = {
  subscriptionId: 'i.subscription_id',
  customerName: 'c.name AS customer_name',
  processor: 'c.processor::text AS processor',
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

export interface InvoicePage {
  invoices: InvoiceListItem[];
  older: string | null;
  newer: string | null;
  /** The customer filter named no customer. */
  unknownCustomer: boolean;
}

export async function listInvoices(db: Queryable, filters: InvoiceFilters): Promise<InvoicePage> {
  const cursor = decodeCursor(filters.cursor);
  const newer = cursor !== null && filters.direction === 'newer';
  const params: unknown[] = [];
  const where = await invoiceConditions(db, filters, params);
  if (where === null) return { invoices: [], older: null, newer: null, unknownCustomer: true };
  if (cursor) {
    params.push(cursor.at, cursor.id);
    where.push(`(i.authored_at, i.id) ${newer ? '>' : '<'} ($${params.length - 1}::timestamptz, $${params.length}::uuid)`);
  }
  const { text, values } = invoiceSelect({
    where: where.length > 0 ? where.join(' AND ') : undefined,
    params,
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
    unknownCustomer: false,
  };
}

/** One currency's sums over the filtered invoices (minor units as exact decimal strings). */
export interface InvoiceTotals {
  currency: string;
  invoices: number;
  totalMinor: string;
  /** Invoices whose window is paid. */
  paidMinor: string;
  /** Invoices whose window was written off: billed, never to be collected. */
  writtenOffMinor: string;
  /** The rest: closed, settling, retrying, exhausted or waiting for a payment method. */
  outstandingMinor: string;
}

/**
 * The month range [from, to) of the rollup `invoice_totals` the filters select, or null when they cannot be answered
 * from it: a customer filter, or a period day that is not a month boundary (from the 1st, to the last day).
 */
export function rollupMonths(filters: InvoiceFilterFields): { from: string | null; to: string | null } | null {
  if (filters.customer) return null;
  if (filters.periodFrom && !filters.periodFrom.endsWith('-01')) return null;
  let to: string | null = null;
  if (filters.periodTo) {
    const next = nextDay(filters.periodTo).toISOString().slice(0, 10);
    if (!next.endsWith('-01')) return null;
    to = next;
  }
  return { from: filters.periodFrom ?? null, to };
}

type TotalsRow = { currency: string; invoices: number; total: string; paid: string; written_off: string };
// The totals' columns over rows carrying an invoice count, an amount and a payment state.
const totalsColumns = (count: string, amount: string, state: string) =>
  `${count} AS invoices, sum(${amount})::text AS total,
   COALESCE(sum(${amount}) FILTER (WHERE ${state} = 'paid'), 0)::text AS paid,
   COALESCE(sum(${amount}) FILTER (WHERE ${state} = 'written_off'), 0)::text AS written_off`;

/**
 * Totals per currency over every invoice the filters match (not only the page shown), currency order. Filters the
 * rollup can express (state, processor, whole months) sum its rows, a few per currency and month; a customer or a
 * day-precise period is the exact aggregate over the invoices it selects (ADR 031).
 */
export async function invoiceTotals(db: Queryable, filters: InvoiceFilterFields): Promise<InvoiceTotals[]> {
  const params: unknown[] = [];
  const param = placeholders(params);
  let rows: TotalsRow[];
  const months = rollupMonths(filters);
  if (months) {
    const where: string[] = [];
    if (filters.state) where.push(`t.state = ${param(filters.state)}::window_state`);
    if (filters.processor) where.push(`t.processor = ${param(filters.processor)}::processor`);
    if (months.from) where.push(`t.period_month >= ${param(months.from)}::date`);
    if (months.to) where.push(`t.period_month < ${param(months.to)}::date`);
    ({ rows } = await db.query<TotalsRow>(
      `SELECT t.currency, ${totalsColumns('sum(t.invoices)::int', 't.total_minor', 't.state')}
         FROM invoice_totals t
        ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
        GROUP BY t.currency HAVING sum(t.invoices) > 0 ORDER BY t.currency`,
      params,
    ));
  } else {
    const where = await invoiceConditions(db, filters, params);
    if (where === null) return [];
    ({ rows } = await db.query<TotalsRow>(
      `SELECT i.currency, ${totalsColumns('count(*)::int', 'i.total_minor', 'i.window_state')}
         FROM invoices i
         JOIN windows w ON w.id = i.window_id
         JOIN customers c ON c.id = i.customer_id
        ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
        GROUP BY i.currency ORDER BY i.currency`,
      params,
    ));
  }
  return rows.map((r) => ({
    currency: r.currency.trim(),
    invoices: r.invoices,
    totalMinor: r.total,
    paidMinor: r.paid,
    writtenOffMinor: r.written_off,
    outstandingMinor: (BigInt(r.total) - BigInt(r.paid) - BigInt(r.written_off)).toString(),
  }));
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
  lines: Array<{ kind: string; eventName: string; description: string; eventCount: number; quantity: string; billedUnits: string; unitAmountDecimal: string; perUnits: string; amountMinor: string }>;
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
  // One read for all of them (a fixed number of statements): the pool is shared with every other request.
  const previews = await previewUpcomingChargesOf(db, rows.map((s) => s.id), { now: opts.now });
  const subscriptionOf = new Map(rows.map((s) => [s.id, s]));
  return previews.map((p) => {
    const s = subscriptionOf.get(p.subscriptionId)!;
    return {
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
        unitAmountDecimal: l.unitAmountDecimal,
        perUnits: l.perUnits.toString(),
        amountMinor: l.amountMinor.toString(),
      })),
      unmatchedEvents: p.unmatchedEvents,
      unmatchedEventNames: p.unmatchedEventNames,
      unusableEvents: p.unusableEvents,
    };
  });
}
