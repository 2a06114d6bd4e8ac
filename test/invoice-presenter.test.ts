// The invoice presenter's composed reads on a real PostgreSQL: the single invoice read and the CSV export give the
// columns and values the query gave before it was composed from parts (the old text is kept here as the reference),
// the list pages by keyset, and bad parts are refused with a clear error rather than sent to the database.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCursor } from '../app/presenters/cursor';
import { CSV_HEADER, invoiceCsvLines, invoiceSelect, listInvoices, listUpcomingCharges, loadInvoice } from '../app/presenters/invoices';
import { seedBase } from '../app/seed/base';
import { createServices, type Services } from '../app/server/services';
import { createTestDatabase, type TestDatabase } from './support/database';
import { seedDeskWindowFixtures, subscriber, type DeskWindowFixtures } from './support/desk-windows';

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

beforeAll(async () => {
  db = await createTestDatabase();
  services = createServices({ connectionString: db.connectionString });
  await seedBase(services.prisma);
  f = await seedDeskWindowFixtures(services);
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
