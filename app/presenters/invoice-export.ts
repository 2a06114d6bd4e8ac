// The invoice CSV export for finance, of the same filtered set the invoices page lists (ADR 031), in one of two
// shapes:
// - `invoices`: one row per invoice, with its line count, its usage and late-usage amounts (late usage is the
//   adjustment an invoice can carry today: events of an earlier, already invoiced period), and, for a written-off
//   window, when, by whom and why (from the audit entry of the write-off);
// - `lines`: one row per invoice line, each with its invoice's columns, so a spreadsheet can pivot by meter.
// Read in keyset chunks (each chunk's lines and write-offs in one query each) and yielded as they come: the table
// is never held in memory, and the database is read only as fast as the client takes the bytes.
import type { Queryable } from '../billing/db';
import { formatMinor } from '../billing/windows/invoice-math';
import { invoiceConditions, invoiceSelect, type InvoiceFilterFields, type InvoiceRow } from './invoices';
import { loadLinesOfInvoices } from './windows';

export const CSV_VIEWS = ['invoices', 'lines'] as const;
export type CsvView = (typeof CSV_VIEWS)[number];

const INVOICE_FIELDS = [
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
  'processor',
] as const;
const WRITE_OFF_FIELDS = ['written_off_at', 'written_off_by', 'write_off_reason'] as const;

export const CSV_HEADER = [...INVOICE_FIELDS, 'line_count', 'usage_minor', 'late_usage_minor', ...WRITE_OFF_FIELDS] as const;
export const CSV_LINES_HEADER = [
  ...INVOICE_FIELDS,
  'line_id',
  'line_kind',
  'event_name',
  'description',
  'event_count',
  'quantity',
  'billed_units',
  'unit_amount_decimal',
  'per_units',
  'rounding',
  'amount_minor',
  'amount',
  'carried_from_window_id',
  ...WRITE_OFF_FIELDS,
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

type ExportRow = InvoiceRow & { customer_name: string | null; processor: string };
interface WriteOff {
  at: Date;
  by: string;
  reason: string | null;
}

/** The write-off of each written-off window among `rows`, from its audit entry (the newest, should there be two). */
async function writeOffsOf(db: Queryable, rows: readonly ExportRow[]): Promise<Map<string, WriteOff>> {
  const ids = rows.filter((r) => r.payment_state === 'written_off').map((r) => r.window_id);
  if (ids.length === 0) return new Map();
  const { rows: entries } = await db.query<{ subject_id: string; at: Date; actor_label: string; reason: string | null }>(
    `SELECT DISTINCT ON (subject_id) subject_id, at, actor_label, reason
       FROM audit_log WHERE subject_type = 'window' AND subject_id = ANY($1::text[]) AND action = 'window.write_off'
      ORDER BY subject_id, at DESC, id DESC`,
    [ids],
  );
  return new Map(entries.map((e) => [e.subject_id, { at: e.at, by: e.actor_label, reason: e.reason }]));
}

function invoiceFields(r: ExportRow): Array<string | number | null> {
  const currency = r.currency.trim();
  return [
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
    r.processor,
  ];
}

const writeOffFields = (w: WriteOff | undefined) => [w?.at.toISOString() ?? null, w?.by ?? null, w?.reason ?? null];

/** The filtered invoices, newest first, as CSV lines (header first), read `chunkSize` invoices at a time by keyset. */
export async function* invoiceCsvLines(
  db: Queryable,
  opts: { chunkSize?: number; filters?: InvoiceFilterFields; view?: CsvView } = {},
): AsyncGenerator<string> {
  const size = opts.chunkSize ?? EXPORT_CHUNK;
  const view = opts.view ?? 'invoices';
  yield csvLine(view === 'lines' ? CSV_LINES_HEADER : CSV_HEADER);
  const filterParams: unknown[] = [];
  const conditions = await invoiceConditions(db, opts.filters ?? {}, filterParams);
  if (conditions === null) return;
  let cursor: { at: Date; id: string } | null = null;
  for (;;) {
    const params = [...filterParams];
    const where = [...conditions];
    if (cursor) {
      params.push(cursor.at, cursor.id);
      where.push(`(i.authored_at, i.id) < ($${params.length - 1}::timestamptz, $${params.length}::uuid)`);
    }
    const { text, values } = invoiceSelect({
      extraColumns: ['customerName', 'processor'],
      where: where.length > 0 ? where.join(' AND ') : undefined,
      params,
      orderBy: 'authored_desc',
      limit: size,
    });
    const { rows }: { rows: ExportRow[] } = await db.query(text, values);
    const [lines, writeOffs] = await Promise.all([loadLinesOfInvoices(db, rows.map((r) => r.id)), writeOffsOf(db, rows)]);
    let chunk = '';
    for (const r of rows) {
      const invoiceLines = lines.get(r.id) ?? [];
      const writeOff = writeOffFields(writeOffs.get(r.window_id));
      if (view === 'invoices') {
        const sum = (kind: 'usage' | 'late_usage') => invoiceLines.filter((l) => l.kind === kind).reduce((t, l) => t + BigInt(l.amountMinor), 0n).toString();
        chunk += csvLine([...invoiceFields(r), invoiceLines.length, sum('usage'), sum('late_usage'), ...writeOff]);
        continue;
      }
      const currency = r.currency.trim();
      for (const l of invoiceLines) {
        chunk += csvLine([
          ...invoiceFields(r),
          l.id,
          l.kind,
          l.eventName,
          l.description,
          l.eventCount,
          l.quantity,
          l.billedUnits,
          l.unitAmountDecimal,
          l.perUnits,
          l.rounding,
          l.amountMinor,
          formatMinor(BigInt(l.amountMinor), currency),
          l.carriedFromWindowId,
          ...writeOff,
        ]);
      }
    }
    if (chunk) yield chunk;
    const last = rows.at(-1);
    if (!last || rows.length < size) return;
    cursor = { at: last.authored_at, id: last.id };
  }
}

/** The export as a streamed Response body; the database is read only as fast as the client takes the bytes. */
export function invoiceCsvStream(db: Queryable, opts: { chunkSize?: number; filters?: InvoiceFilterFields; view?: CsvView } = {}): ReadableStream<Uint8Array> {
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
