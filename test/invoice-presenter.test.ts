// The invoice presenter's composed reads on a real PostgreSQL: the single invoice read and the CSV export give the
// columns and values the query gave before it was composed from parts (the old text is kept here as the reference),
// the list pages by keyset, and bad parts are refused with a clear error rather than sent to the database.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCursor } from '../app/presenters/cursor';
import { CSV_HEADER, CSV_LINES_HEADER, invoiceCsvLines, type CsvView } from '../app/presenters/invoice-export';
import { invoiceSelect, invoiceTotals, listInvoices, listUpcomingCharges, loadInvoice, parseInvoiceFilters, type InvoiceFilterFields, type InvoiceListItem } from '../app/presenters/invoices';
import { writeOffWindow } from '../app/billing/windows/settlement';
import { closeWindowNow, reauthorWindow } from '../app/billing/windows/invoices';
import { openWindowNow } from '../app/billing/windows/windows';
import { seedBase } from '../app/seed/base';
import { createServices, type Services } from '../app/server/services';
import { createTestDatabase, type TestDatabase } from './support/database';
import { closedWindow, seedDeskWindowFixtures, subscriber, type DeskWindowFixtures } from './support/desk-windows';

// The read as it was written before ADR 024, in the two variants it used to make by string replacement.
const REFERENCE_FROM = `
    FROM invoices i
    JOIN windows w ON w.id = i.window_id
    JOIN customers c ON c.id = i.customer_id
    LEFT JOIN charge_attempts a ON a.window_id = i.window_id`;
const REFERENCE_COLUMNS = `i.id, i.window_id, COALESCE(c.name, c.external_id) AS customer_label, c.external_id AS customer_external_id,
         w.period_start, w.period_end, i.currency, i.total_minor::text AS total_minor, i.revision, i.authored_at,
         w.state::text AS payment_state, a.status::text AS charge_status, a.transaction_id`;
const withLeadingColumn = (column: string) => `SELECT ${column}, ${REFERENCE_COLUMNS} ${REFERENCE_FROM}`;

let db: TestDatabase;
let services: Services;
let f: DeskWindowFixtures;
// An invoice of an older period (34 to 20 days ago: usage is accepted up to 35 days back), for the period filters.
let older: Awaited<ReturnType<typeof closedWindow>>;
const DAY = 86_400_000;

beforeAll(async () => {
  db = await createTestDatabase();
  services = createServices({ connectionString: db.connectionString });
  await seedBase(services.prisma);
  f = await seedDeskWindowFixtures(services);
  older = await closedWindow(services, 'Older Period AG', 700, { start: new Date(Date.now() - 34 * DAY), end: new Date(Date.now() - 20 * DAY) });
}, 120_000);
afterAll(async () => {
  await services?.close();
  await db?.drop();
});

const sorted = (row: Record<string, unknown>) => Object.keys(row).sort();

describe('invoiceSelect', () => {
  it('the single invoice read returns the columns and values of the reference query with i.subscription_id', async () => {
    const { text, values } = invoiceSelect({ extraColumns: ['subscriptionId'], where: 'i.id = $1', params: [f.exhausted.invoiceId] });
    const composed = await services.pool.query(text, values);
    const reference = await services.pool.query(`${withLeadingColumn('i.subscription_id')} WHERE i.id = $1`, [f.exhausted.invoiceId]);
    expect(composed.rows).toHaveLength(1);
    expect(composed.fields.map((c) => c.name).sort()).toEqual(reference.fields.map((c) => c.name).sort());
    expect(composed.rows).toEqual(reference.rows);
    expect(composed.rows[0]).toMatchObject({ id: f.exhausted.invoiceId, window_id: f.exhausted.windowId, payment_state: 'failed_exhausted' });
  });

  it('the export read returns the reference rows with c.name AS customer_name, newest first', async () => {
    const { text, values } = invoiceSelect({ extraColumns: ['customerName'], orderBy: 'authored_desc', limit: 500 });
    const composed = await services.pool.query(text, values);
    const reference = await services.pool.query(`${withLeadingColumn('c.name AS customer_name')} ORDER BY i.authored_at DESC, i.id DESC LIMIT 500`);
    expect(composed.rows.length).toBeGreaterThanOrEqual(3);
    expect(sorted(composed.rows[0])).toEqual(sorted(reference.rows[0]));
    expect(composed.rows).toEqual(reference.rows);
  });

  it('refuses a limit that is not a positive integer, and sends no caller text as a column', () => {
    expect(() => invoiceSelect({ limit: 0 })).toThrow(/limit must be a positive integer, got 0/);
    expect(() => invoiceSelect({ limit: 1.5 })).toThrow(RangeError);
    expect(invoiceSelect({ params: ['x'] }).text).not.toMatch(/\$1|WHERE|LIMIT|ORDER/);
  });
});

describe('the invoice presenter', () => {
  it('loadInvoice gives the invoice with its subscription, transaction and lines; a bad or unknown id is null', async () => {
    const invoice = await loadInvoice(services.pool, f.closed.invoiceId);
    expect(invoice).toMatchObject({ id: f.closed.invoiceId, windowId: f.closed.windowId, customerLabel: f.closed.customerName, paymentState: 'closed', transactionId: null });
    expect(invoice!.subscriptionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(invoice!.lines.length).toBeGreaterThan(0);
    expect(await loadInvoice(services.pool, 'not-a-uuid')).toBeNull();
    expect(await loadInvoice(services.pool, '00000000-0000-4000-8000-000000000000')).toBeNull();
  });

  it('the CSV export has the header and one line per invoice, with the same values the single read gives', async () => {
    let csv = '';
    for await (const chunk of invoiceCsvLines(services.pool, { chunkSize: 2 })) csv += chunk;
    const lines = csv.trimEnd().split('\r\n');
    expect(lines[0]).toBe(CSV_HEADER.join(','));
    const page = await listInvoices(services.pool, { direction: 'older' });
    expect(lines.slice(1).map((l) => l.split(',')[0])).toEqual(page.invoices.map((i) => i.id));
    expect(page.invoices.length).toBeGreaterThanOrEqual(4);
    const row = lines.find((l) => l.startsWith(`${f.exhausted.invoiceId},`))!.split(',');
    const invoice = (await loadInvoice(services.pool, f.exhausted.invoiceId))!;
    expect(row).toHaveLength(CSV_HEADER.length);
    const field = (name: (typeof CSV_HEADER)[number]) => row[CSV_HEADER.indexOf(name)];
    expect(field('window_id')).toBe(invoice.windowId);
    expect(field('customer_external_id')).toBe(invoice.customerExternalId);
    expect(field('total_minor')).toBe(invoice.totalMinor);
    expect(field('payment_state')).toBe(invoice.paymentState);
    expect(field('charge_status')).toBe(invoice.chargeStatus ?? '');
    expect(field('authored_at')).toBe(invoice.authoredAt);
  });

  it('listInvoices pages by keyset: the page older than the newest invoice is every invoice after it', async () => {
    const all = (await listInvoices(services.pool, { direction: 'older' })).invoices.map((i) => i.id);
    const first = await listInvoices(services.pool, { direction: 'older' });
    expect(first.newer).toBeNull();
    expect(all.length).toBeGreaterThanOrEqual(3);
    const head = first.invoices[0]!;
    const older = await listInvoices(services.pool, { direction: 'older', cursor: encodeCursor(head.authoredAt, head.id) });
    expect(older.invoices.map((i) => i.id)).toEqual(all.slice(1));
    expect(older.newer).not.toBeNull();
  });

  it('lists upcoming charges for subscriptions in a running period only, not one whose period ended', async () => {
    const running = await subscriber(services, 'Upcoming Ltd', new Date(Date.now() - 2 * 86_400_000), new Date(Date.now() + 20 * 86_400_000));
    const listed = (await listUpcomingCharges(services.pool)).map((u) => u.subscriptionId);
    expect(listed).toContain(running.subscriptionId);
    // The stale fixture: live, but its period ended two days ago with no window (the windows page's business).
    expect(listed).not.toContain(f.stale.subscriptionId);
    expect(await listUpcomingCharges(services.pool, { subscriptionId: f.stale.subscriptionId })).toEqual([]);
  });
});

/** Every invoice the filters match, by walking the list's keyset pages to the end. */
async function allListed(filters: InvoiceFilterFields): Promise<InvoiceListItem[]> {
  const out: InvoiceListItem[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await listInvoices(services.pool, { ...filters, direction: 'older', cursor });
    out.push(...page.invoices);
    if (!page.older) return out;
    cursor = page.older;
  }
}

async function csvRows(view: CsvView, filters: InvoiceFilterFields = {}, chunkSize = 2): Promise<string[][]> {
  let csv = '';
  for await (const chunk of invoiceCsvLines(services.pool, { chunkSize, filters, view })) csv += chunk;
  // No field in these fixtures holds a comma or a quote, so a plain split reads them.
  return csv.trimEnd().split('\r\n').map((l) => l.split(','));
}

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

describe('invoice filters, totals and the export of what they match', () => {
  it('filters by payment state, customer (external or processor id), processor and period end; the CSV has the same invoices', async () => {
    const ids = async (filters: InvoiceFilterFields) => (await allListed(filters)).map((i) => i.id);
    expect(await ids({ state: 'failed_exhausted' })).toEqual(expect.arrayContaining([f.exhausted.invoiceId, f.hardDeclined.invoiceId]));
    expect(await ids({ state: 'failed_exhausted' })).not.toContain(f.closed.invoiceId);
    expect(await ids({ state: 'closed' })).toEqual(expect.arrayContaining([f.closed.invoiceId, older.invoiceId]));
    expect(await ids({ customer: older.externalId })).toEqual([older.invoiceId]);
    expect(await ids({ customer: `bt_${older.externalId}` })).toEqual([older.invoiceId]);
    expect(await ids({ processor: 'stripe' })).toEqual([]);
    expect((await ids({ processor: 'braintree' })).length).toBe((await ids({})).length);
    // Period end: `older` ended 20 days ago, the others 2 days ago; both bounds are whole UTC days, inclusive.
    const olderEnd = day(Date.now() - 20 * DAY);
    expect(await ids({ periodTo: olderEnd })).toEqual([older.invoiceId]);
    expect(await ids({ periodFrom: olderEnd, periodTo: olderEnd })).toEqual([older.invoiceId]);
    expect(await ids({ periodFrom: day(Date.now() - 19 * DAY) })).not.toContain(older.invoiceId);
    expect(await ids({ periodFrom: day(Date.now() - 19 * DAY), state: 'closed' })).toEqual([f.closed.invoiceId]);

    const csv = await csvRows('invoices', { state: 'closed' });
    expect(csv.slice(1).map((r) => r[0])).toEqual(await ids({ state: 'closed' }));
  });

  it('an unknown customer is an empty set for that reason, with no totals; a value that does not parse is no filter', async () => {
    const page = await listInvoices(services.pool, { customer: 'nobody-at-all', direction: 'older' });
    expect(page).toMatchObject({ invoices: [], unknownCustomer: true });
    expect(await invoiceTotals(services.pool, { customer: 'nobody-at-all' })).toEqual([]);
    expect(await csvRows('invoices', { customer: 'nobody-at-all' })).toEqual([[...CSV_HEADER]]);
    const parsed = parseInvoiceFilters(new URL('http://x/invoices?state=bogus&processor=paypal&periodFrom=2026-02-30&periodTo=yesterday&customer=%20'));
    expect(parsed).toEqual({ direction: 'older' });
    expect(parseInvoiceFilters(new URL('http://x/invoices?state=paid&periodFrom=2026-02-28'))).toMatchObject({ state: 'paid', periodFrom: '2026-02-28' });
  });

  it('totals per currency cover every matching invoice, not one page, and split into paid, outstanding and written off', async () => {
    const sums = async (filters: InvoiceFilterFields) => {
      const listed = await allListed(filters);
      return listed.reduce((t, i) => t + BigInt(i.totalMinor), 0n).toString();
    };
    const [usd] = await invoiceTotals(services.pool, {});
    expect(usd).toMatchObject({ currency: 'usd', invoices: (await allListed({})).length, totalMinor: await sums({}) });
    expect(BigInt(usd!.paidMinor) + BigInt(usd!.outstandingMinor) + BigInt(usd!.writtenOffMinor)).toBe(BigInt(usd!.totalMinor));
    const [exhaustedOnly] = await invoiceTotals(services.pool, { state: 'failed_exhausted' });
    expect(exhaustedOnly).toMatchObject({ totalMinor: await sums({ state: 'failed_exhausted' }), paidMinor: '0', writtenOffMinor: '0' });
    expect(exhaustedOnly!.outstandingMinor).toBe(exhaustedOnly!.totalMinor);
    expect(Number(exhaustedOnly!.totalMinor)).toBeGreaterThan(0);
  });

  it('the lines export has one row per invoice line with its invoice, amounts that sum to the invoice total', async () => {
    const rows = await csvRows('lines', {}, 1);
    expect(rows[0]).toEqual([...CSV_LINES_HEADER]);
    const col = (name: (typeof CSV_LINES_HEADER)[number]) => CSV_LINES_HEADER.indexOf(name);
    const { rows: stored } = await services.pool.query<{ id: string; invoice_id: string; amount_minor: string; quantity: string; unit_amount_decimal: string }>(
      `SELECT id, invoice_id, amount_minor::text AS amount_minor, quantity::text AS quantity, trim_scale(unit_amount_decimal)::text AS unit_amount_decimal FROM invoice_lines`,
    );
    expect(rows.slice(1).map((r) => r[col('line_id')]).sort()).toEqual(stored.map((l) => l.id).sort());
    for (const r of rows.slice(1)) {
      const line = stored.find((l) => l.id === r[col('line_id')])!;
      expect(r[col('invoice_id')]).toBe(line.invoice_id);
      expect(r[col('amount_minor')]).toBe(line.amount_minor);
      expect(r[col('quantity')]).toBe(line.quantity);
      expect(r[col('unit_amount_decimal')]).toBe(line.unit_amount_decimal); // canonical, as the domain writes it (ADR 030)
    }
    const invoice = (await loadInvoice(services.pool, f.closed.invoiceId))!;
    const mine = rows.slice(1).filter((r) => r[col('invoice_id')] === invoice.id);
    expect(mine.length).toBe(invoice.lines.length);
    expect(mine.reduce((t, r) => t + BigInt(r[col('amount_minor')]!), 0n).toString()).toBe(invoice.totalMinor);
    expect(mine[0]![col('line_kind')]).toBe('usage');
    expect(mine[0]![col('event_name')]).toBe('ai_tokens');

    // The invoices view sums the same lines.
    const inv = (await csvRows('invoices')).find((r) => r[0] === invoice.id)!;
    expect(inv[CSV_HEADER.indexOf('line_count')]).toBe(String(invoice.lines.length));
    expect(inv[CSV_HEADER.indexOf('usage_minor')]).toBe(invoice.totalMinor);
    expect(inv[CSV_HEADER.indexOf('late_usage_minor')]).toBe('0');
  });

  it('a written-off invoice carries when, by whom and why, in both views; the totals move it from outstanding to written off', async () => {
    const before = (await invoiceTotals(services.pool, {}))[0]!;
    await writeOffWindow(services.pool, { windowId: f.hardDeclined.windowId, actor: { userId: null, label: 'finance@example.test', role: 'finance' }, reason: 'card closed' });
    const after = (await invoiceTotals(services.pool, {}))[0]!;
    const amount = BigInt((await loadInvoice(services.pool, f.hardDeclined.invoiceId))!.totalMinor);
    expect(BigInt(after.writtenOffMinor) - BigInt(before.writtenOffMinor)).toBe(amount);
    expect(BigInt(before.outstandingMinor) - BigInt(after.outstandingMinor)).toBe(amount);

    const inv = (await csvRows('invoices')).find((r) => r[0] === f.hardDeclined.invoiceId)!;
    const field = (name: (typeof CSV_HEADER)[number]) => inv[CSV_HEADER.indexOf(name)];
    expect(field('payment_state')).toBe('written_off');
    expect(field('written_off_by')).toBe('finance@example.test');
    expect(field('write_off_reason')).toBe('card closed');
    expect(Date.parse(field('written_off_at')!)).toBeGreaterThan(Date.now() - 60_000);
    const other = (await csvRows('invoices')).find((r) => r[0] === f.closed.invoiceId)!;
    expect(other.slice(-3)).toEqual(['', '', '']);
    const lines = (await csvRows('lines')).filter((r) => r[0] === f.hardDeclined.invoiceId);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l.slice(-2)).toEqual(['finance@example.test', 'card closed']);
  });
});

// The totals come from the rollup `invoice_totals` (kept by triggers, ADR 031) for the filters it can express, and
// from the exact aggregate otherwise. Either way they must equal the sums over the rows the list shows.
describe('the invoice totals rollup stays equal to the rows through every change of an invoice or its window', () => {
  const month = (ms: number) => new Date(ms).toISOString().slice(0, 7);
  const lastDay = (ym: string) => new Date(Date.parse(`${ym}-01T00:00:00Z`) + 32 * DAY).toISOString().slice(0, 7);
  async function expectTotalsEqualRows(): Promise<void> {
    const thisMonth = month(Date.now());
    const prevMonth = month(Date.parse(`${thisMonth}-01T00:00:00Z`) - DAY);
    const monthFilter = (ym: string): InvoiceFilterFields => ({ periodFrom: `${ym}-01`, periodTo: day(Date.parse(`${lastDay(ym)}-01T00:00:00Z`) - DAY) });
    const filterSets: InvoiceFilterFields[] = [
      {},
      { processor: 'braintree' },
      { processor: 'stripe' },
      monthFilter(thisMonth),
      monthFilter(prevMonth),
      { periodFrom: `${prevMonth}-01` },
      { ...monthFilter(thisMonth), state: 'paid' },
      ...['closed', 'settling', 'paid', 'retry_scheduled', 'failed_exhausted', 'written_off'].map((state) => ({ state })),
    ];
    for (const filters of filterSets) {
      const listed = await allListed(filters);
      const expected = new Map<string, { invoices: number; total: bigint; paid: bigint; writtenOff: bigint }>();
      for (const i of listed) {
        const t = expected.get(i.currency) ?? { invoices: 0, total: 0n, paid: 0n, writtenOff: 0n };
        const amount = BigInt(i.totalMinor);
        t.invoices += 1;
        t.total += amount;
        if (i.paymentState === 'paid') t.paid += amount;
        if (i.paymentState === 'written_off') t.writtenOff += amount;
        expected.set(i.currency, t);
      }
      const want = [...expected.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([currency, t]) => ({
        currency,
        invoices: t.invoices,
        totalMinor: t.total.toString(),
        paidMinor: t.paid.toString(),
        writtenOffMinor: t.writtenOff.toString(),
        outstandingMinor: (t.total - t.paid - t.writtenOff).toString(),
      }));
      expect(await invoiceTotals(services.pool, filters), JSON.stringify(filters)).toEqual(want);
    }
    // And the rollup itself equals the aggregate it replaces, row by row.
    const { rows: drift } = await services.pool.query(
      `(SELECT currency, state, processor, period_month, invoices::bigint, total_minor FROM invoice_totals
        EXCEPT
        SELECT i.currency, w.state, c.processor, date_trunc('month', w.period_end AT TIME ZONE 'UTC')::date, count(*), sum(i.total_minor)::bigint
          FROM invoices i JOIN windows w ON w.id = i.window_id JOIN customers c ON c.id = i.customer_id GROUP BY 1, 2, 3, 4)
       UNION ALL
       (SELECT i.currency, w.state, c.processor, date_trunc('month', w.period_end AT TIME ZONE 'UTC')::date, count(*), sum(i.total_minor)::bigint
          FROM invoices i JOIN windows w ON w.id = i.window_id JOIN customers c ON c.id = i.customer_id GROUP BY 1, 2, 3, 4
        EXCEPT
        SELECT currency, state, processor, period_month, invoices::bigint, total_minor FROM invoice_totals)`,
    );
    expect(drift).toEqual([]);
  }

  it('after authoring, settling, a payment failure, a write-off, re-authoring with more usage and a late line', async () => {
    await expectTotalsEqualRows();
    const { rows: counted } = await services.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM invoice_totals`);
    expect(counted[0]!.n).toBeGreaterThan(0);

    // Settle: the sale goes out (settling), then it is paid.
    const settled = await closedWindow(services, 'Settled Rollup SA', 900);
    await services.pool.query(`UPDATE windows SET state = 'settling' WHERE id = $1`, [settled.windowId]);
    await expectTotalsEqualRows();
    await services.pool.query(`UPDATE windows SET state = 'paid', paid_at = now() WHERE id = $1`, [settled.windowId]);
    await expectTotalsEqualRows();

    // A payment failure: retry scheduled, then exhausted, then written off by finance through the domain.
    const failing = await closedWindow(services, 'Failing Rollup BV', 400);
    await services.pool.query(`UPDATE windows SET state = 'retry_scheduled' WHERE id = $1`, [failing.windowId]);
    await expectTotalsEqualRows();
    await services.pool.query(`UPDATE windows SET state = 'failed_exhausted' WHERE id = $1`, [failing.windowId]);
    await writeOffWindow(services.pool, { windowId: failing.windowId, actor: { userId: null, label: 'finance@example.test', role: 'finance' }, reason: 'rollup test' });
    await expectTotalsEqualRows();

    // Re-authoring a closed window after more usage arrived for its period changes its total.
    const reauthored = await closedWindow(services, 'Reauthored Rollup Oy', 300);
    const before = (await loadInvoice(services.pool, reauthored.invoiceId))!.totalMinor;
    const period = (await loadInvoice(services.pool, reauthored.invoiceId))!;
    const late = await services.ledger.reportUsageBatch([
      { customer: reauthored.externalId, eventName: 'ai_tokens', value: 5000, timestamp: new Date(Date.parse(period.periodEnd) - DAY) },
    ]);
    expect(late[0]!.result).not.toBe('rejected');
    await reauthorWindow(services.pool, { windowId: reauthored.windowId, actor: { userId: null, label: 'finance@example.test', role: 'finance' }, reason: 'late usage' });
    const after = (await loadInvoice(services.pool, reauthored.invoiceId))!;
    expect(after.revision).toBe(2);
    expect(BigInt(after.totalMinor)).toBeGreaterThan(BigInt(before));
    await expectTotalsEqualRows();

    // A late line: usage for a period already invoiced and charged is carried into the customer's next window.
    await services.pool.query(`UPDATE windows SET state = 'paid', paid_at = now() WHERE id = $1`, [reauthored.windowId]);
    await services.ledger.reportUsageBatch([
      { customer: reauthored.externalId, eventName: 'ai_tokens', value: 700, timestamp: new Date(Date.parse(period.periodEnd) - 2 * DAY) },
    ]);
    const sub = (await services.pool.query<{ subscription_id: string }>(`SELECT subscription_id FROM invoices WHERE id = $1`, [reauthored.invoiceId])).rows[0]!;
    const next = await openWindowNow(services.pool, sub.subscription_id, new Date(period.periodEnd), new Date(Date.now() - DAY / 2));
    expect(next.status).toBe('opened');
    if (next.status !== 'opened') return;
    const closedNext = await closeWindowNow(services.pool, next.window.id);
    expect(closedNext.status).toBe('closed');
    const nextLines = (await loadInvoice(services.pool, (await services.pool.query<{ id: string }>(`SELECT id FROM invoices WHERE window_id = $1`, [next.window.id])).rows[0]!.id))!.lines;
    expect(nextLines.some((l) => l.kind === 'late_usage')).toBe(true);
    await expectTotalsEqualRows();
  });
});
