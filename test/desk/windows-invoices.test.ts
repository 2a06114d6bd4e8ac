// The windows and invoices pages through the real app (built desk, real PostgreSQL): repair a stale renewal,
// re-author, settle again (hard-decline override), write off (finance only), domain refusals as form errors, and
// the streamed CSV export.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csvField, csvLine, invoiceCsvLines } from '../../app/presenters/invoice-export';
import { startDeskTestApp, type DeskTestApp } from '../support/desk';
import { seedDeskWindowFixtures, type DeskWindowFixtures } from '../support/desk-windows';

let app: DeskTestApp;
let f: DeskWindowFixtures;
const cookie: Record<string, string> = {};

beforeAll(async () => {
  app = await startDeskTestApp();
  f = await seedDeskWindowFixtures(app.services);
  for (const role of ['operator', 'finance', 'support', 'admin'] as const) cookie[role] = await app.sessionCookieFor(role);
}, 120_000);
afterAll(async () => {
  await app?.close();
});

const windowState = async (id: string) =>
  (await app.services.pool.query<{ state: string }>(`SELECT state::text AS state FROM windows WHERE id = $1`, [id])).rows[0]?.state;
const audits = async (action: string, subjectId: string) =>
  (await app.services.pool.query<{ actor_label: string; reason: string | null }>(`SELECT actor_label, reason FROM audit_log WHERE action = $1 AND subject_id = $2`, [action, subjectId])).rows;

describe('windows list', () => {
  it('shows the stale renewal with a Repair action to an operator, and windows by state', async () => {
    const res = await app.request('/windows', { cookie: cookie.operator });
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain(f.stale.customerName);
    expect(html).toContain('stale');
    expect(html).toContain('Repair');
    const filtered = await (await app.request('/windows?state=failed_exhausted', { cookie: cookie.operator })).text();
    expect(filtered).toContain(f.exhausted.customerName);
    expect(filtered).not.toContain(f.closed.customerName);
  });

  it('an operator repairs the stale window: opened, invoiced, audited, redirected with a toast', async () => {
    const res = await app.postForm('/windows', { intent: 'repair-stale', subscriptionId: f.stale.subscriptionId, reason: 'renewal webhook lost' }, { cookie: cookie.operator });
    expect(res.status).toBe(302);
    const location = res.headers.get('location')!;
    expect(location).toMatch(/^\/windows\/[0-9a-f-]{36}$/);
    const windowId = location.split('/').pop()!;
    expect(await windowState(windowId)).toBe('closed');
    const { rows } = await app.services.pool.query<{ stale_repaired: boolean; total_minor: string }>(
      `SELECT w.stale_repaired, i.total_minor::text AS total_minor FROM windows w JOIN invoices i ON i.window_id = w.id WHERE w.id = $1`,
      [windowId],
    );
    expect(rows[0]).toMatchObject({ stale_repaired: true });
    expect(BigInt(rows[0]!.total_minor)).toBeGreaterThan(0n);
    expect(await audits('window.repair_stale', windowId)).toEqual([{ actor_label: 'operator@desk.test', reason: 'renewal webhook lost' }]);
    // A second repair finds nothing stale: a readable 400, not a 500.
    const again = await app.postForm('/windows', { intent: 'repair-stale', subscriptionId: f.stale.subscriptionId }, { cookie: cookie.operator });
    expect(again.status).toBe(400);
    expect(await again.text()).toContain('no longer stale');
    // The detail page shows the repaired flag and the authored lines.
    const detail = await (await app.request(location, { cookie: cookie.operator })).text();
    expect(detail).toContain('repaired stale');
    expect(detail).toContain('ai_tokens');
  });

  it('refuses the repair to finance (403) and changes nothing', async () => {
    const res = await app.postForm('/windows', { intent: 'repair-stale', subscriptionId: f.closed.windowId }, { cookie: cookie.finance });
    expect(res.status).toBe(403);
  });
});

describe('window detail actions', () => {
  it('shows the charge attempt: status, tries, original and latest failure, order id', async () => {
    const html = await (await app.request(`/windows/${f.exhausted.windowId}`, { cookie: cookie.finance })).text();
    for (const text of ['soft_declined', 'Insufficient Funds', '2001', `mdw-${f.exhausted.windowId}`, 'Write off this charge']) expect(html).toContain(text);
    expect(html).not.toContain('Re-author invoice'); // finance cannot repair
  });

  it('offers each action only where the server would allow it, and says why not elsewhere', async () => {
    // Exhausted after soft declines: sales were sent, so no re-author; settle again and write off are offered.
    const exhausted = await (await app.request(`/windows/${f.exhausted.windowId}`, { cookie: cookie.operator })).text();
    expect(exhausted).not.toContain('Re-author invoice');
    expect(exhausted).toContain('This window is failed with its retries used up; a window can be re-authored only before any sale is sent.');
    expect(exhausted).toContain('>Settle again</button>');
    // Closed, no sale sent: re-author is offered; settle again is not, with the reason.
    const closed = await (await app.request(`/windows/${f.closed.windowId}`, { cookie: cookie.operator })).text();
    expect(closed).toContain('Re-author invoice');
    expect(closed).not.toContain('>Settle again</button>');
    expect(closed).toContain('This window is closed and not yet charged; only a window waiting for a retry, a payment method, or with its retries used up can be settled again.');
    // Write off: only the exhausted one, for finance.
    const closedForFinance = await (await app.request(`/windows/${f.closed.windowId}`, { cookie: cookie.finance })).text();
    expect(closedForFinance).not.toContain('Write off this charge');
    expect(closedForFinance).toContain('only a window whose retries are used up can be written off.');
    // Hard declined: settle again is offered with the override checkbox the server requires.
    const hard = await (await app.request(`/windows/${f.hardDeclined.windowId}`, { cookie: cookie.operator })).text();
    expect(hard).toContain('>Settle again</button>');
    expect(hard).toContain('Charge again despite the hard decline');
  });

  it('a StateError from the domain is a form error (400) with its message, not a 500', async () => {
    const res = await app.postForm(`/windows/${f.exhausted.windowId}`, { intent: 'reauthor', reason: 'try it' }, { cookie: cookie.operator });
    expect(res.status).toBe(400);
    const html = await res.text();
    // The domain's sentence (app/billing/windows/actions.ts), with no id in it: the page says which window it is.
    expect(html).toContain('This window is failed with its retries used up; a window can be re-authored only before any sale is sent.');
    expect(await windowState(f.exhausted.windowId)).toBe('failed_exhausted');
  });

  it('re-author needs a reason, then re-authors the closed window (revision 2, audited)', async () => {
    const missing = await app.postForm(`/windows/${f.closed.windowId}`, { intent: 'reauthor', reason: ' ' }, { cookie: cookie.operator });
    expect(missing.status).toBe(400);
    expect(await missing.text()).toContain('Say why the invoice is re-authored');
    const res = await app.postForm(`/windows/${f.closed.windowId}`, { intent: 'reauthor', reason: 'definition added' }, { cookie: cookie.operator });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(`/windows/${f.closed.windowId}`);
    const { rows } = await app.services.pool.query<{ revision: number }>(`SELECT revision FROM invoices WHERE window_id = $1`, [f.closed.windowId]);
    expect(rows[0]!.revision).toBe(2);
    expect(await audits('window.reauthor', f.closed.windowId)).toHaveLength(1);
  });

  it('settle again after a hard decline needs the explicit checkbox', async () => {
    const refused = await app.postForm(`/windows/${f.hardDeclined.windowId}`, { intent: 'settle-again' }, { cookie: cookie.operator });
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain('The last sale was hard declined (2004); charging again needs the explicit override.');
    expect(await windowState(f.hardDeclined.windowId)).toBe('failed_exhausted');
    const html = await (await app.request(`/windows/${f.hardDeclined.windowId}`, { cookie: cookie.operator })).text();
    expect(html).toContain('Charge again despite the hard decline');
    expect(html).toContain('name="overrideHardDecline"');
    const res = await app.postForm(`/windows/${f.hardDeclined.windowId}`, { intent: 'settle-again', overrideHardDecline: 'on', reason: 'new card on file' }, { cookie: cookie.operator });
    expect(res.status).toBe(302);
    expect(await windowState(f.hardDeclined.windowId)).toBe('retry_scheduled');
    expect(await audits('window.settle_again', f.hardDeclined.windowId)).toEqual([{ actor_label: 'operator@desk.test', reason: 'new card on file' }]);
  });

  it('an unknown window is a 404', async () => {
    const res = await app.request('/windows/00000000-0000-4000-8000-000000000000', { cookie: cookie.operator });
    expect(res.status).toBe(404);
  });
});

describe('write off', () => {
  it('is refused to an operator (403), page and action, and the window is untouched', async () => {
    expect((await app.request(`/windows/${f.exhausted.windowId}/write-off`, { cookie: cookie.operator })).status).toBe(403);
    const res = await app.postForm(`/windows/${f.exhausted.windowId}/write-off`, { intent: 'write-off', reason: 'x' }, { cookie: cookie.operator });
    expect(res.status).toBe(403);
    expect(await windowState(f.exhausted.windowId)).toBe('failed_exhausted');
  });

  it('finance writes off the exhausted charge (audited); a second write-off is a form error', async () => {
    const res = await app.postForm(`/windows/${f.exhausted.windowId}/write-off`, { intent: 'write-off', reason: 'customer insolvent' }, { cookie: cookie.finance });
    expect(res.status).toBe(302);
    expect(await windowState(f.exhausted.windowId)).toBe('written_off');
    expect(await audits('window.write_off', f.exhausted.windowId)).toEqual([{ actor_label: 'finance@desk.test', reason: 'customer insolvent' }]);
    const again = await app.postForm(`/windows/${f.exhausted.windowId}/write-off`, { intent: 'write-off', reason: 'again' }, { cookie: cookie.finance });
    expect(again.status).toBe(400);
    expect(await again.text()).toContain('This window is written off; only a window whose retries are used up can be written off.');
  });
});

describe('invoices', () => {
  it('lists invoices newest first for finance, shows the decomposition and upcoming charges; support is refused', async () => {
    const list = await (await app.request('/invoices', { cookie: cookie.finance })).text();
    expect(list).toContain(f.closed.customerName);
    expect(list).toContain('Upcoming charges');
    const detail = await (await app.request(`/invoices/${f.exhausted.invoiceId}`, { cookie: cookie.finance })).text();
    expect(detail).toContain('Decomposition');
    expect(detail).toContain('ai_tokens');
    expect(detail).toMatch(/\$\d[\d,]*\.\d{2}/);
    expect((await app.request('/invoices', { cookie: cookie.support })).status).toBe(403);
  });

  it('exports every invoice as CSV, streamed in chunks, with RFC 4180 quoting', async () => {
    const res = await app.request('/invoices/export', { cookie: cookie.finance });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="invoices-.*\.csv"$/);
    const text = await res.text();
    const rows = text.trimEnd().split('\r\n');
    expect(rows[0]).toBe(
      'invoice_id,window_id,customer_external_id,customer_name,period_start,period_end,currency,total_minor,total,revision,authored_at,payment_state,charge_status,transaction_id,processor,' +
        'line_count,usage_minor,late_usage_minor,written_off_at,written_off_by,write_off_reason',
    );
    const count = Number((await app.services.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM invoices')).rows[0]!.n);
    expect(rows).toHaveLength(count + 1);
    const exhausted = rows.find((r) => r.startsWith(f.exhausted.invoiceId))!;
    expect(exhausted).toContain(`,${f.exhausted.customerName},`);
    expect(exhausted).toContain(',written_off,written_off,');
    // The write-off this file made earlier: who and why, at the end of the row.
    expect(exhausted).toMatch(/,finance@desk\.test,customer insolvent$/);
    expect((await app.request('/invoices/export', { cookie: cookie.support })).status).toBe(403);

    // Chunked reads return the same rows as one read, in the same order.
    const chunks: string[] = [];
    for await (const c of invoiceCsvLines(app.services.pool, { chunkSize: 1 })) chunks.push(c);
    expect(chunks.length).toBe(count + 1);
    expect(chunks.join('')).toBe(text);
  });

  it('filters the list, totals what matches, and the export links carry the filters; a bad export view is a 400 problem', async () => {
    const html = await (await app.request('/invoices?state=written_off', { cookie: cookie.finance })).text();
    // Earlier tests here wrote off the exhausted window and settled the hard decline again.
    expect(html).toContain(f.exhausted.customerName);
    expect(html).not.toContain(f.hardDeclined.customerName);
    expect(html).not.toContain(f.closed.customerName);
    expect(html).toContain('Totals of the invoices matching these filters');
    expect(html).toContain('href="/invoices/export?state=written_off&amp;view=lines"');
    // Upcoming charges are the unfiltered first page's: a filtered page does not recompute them.
    expect(html).not.toContain('Upcoming charges');
    const unknown = await (await app.request('/invoices?customer=nobody-here', { cookie: cookie.finance })).text();
    expect(unknown).toContain('No customer &quot;nobody-here&quot;');
    const stripe = await (await app.request('/invoices?processor=stripe', { cookie: cookie.finance })).text();
    expect(stripe).toContain('Stripe authors the invoices of Stripe customers');

    const lines = await app.request('/invoices/export?state=written_off&view=lines', { cookie: cookie.finance });
    expect(lines.status).toBe(200);
    expect(lines.headers.get('content-disposition')).toMatch(/^attachment; filename="invoice-lines-.*\.csv"$/);
    const rows = (await lines.text()).trimEnd().split('\r\n').slice(1);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.startsWith(`${f.exhausted.invoiceId},`))).toBe(true);

    const bad = await app.request('/invoices/export?view=everything', { cookie: cookie.finance });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toBe('application/problem+json');
    expect((await bad.json()).detail).toContain('view=lines');
  });

  it('quotes fields as RFC 4180 says and defuses spreadsheet formulas', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField('=HYPERLINK("x")')).toBe(`"'=HYPERLINK(""x"")"`);
    expect(csvField(null)).toBe('');
    expect(csvLine(['a', 1, null])).toBe('a,1,\r\n');
  });
});
