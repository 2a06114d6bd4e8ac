// Sub-cent unit prices on the desk (ADR 030), through the built app and real PostgreSQL: the definitions form takes
// $0.00015 and stores 0.015 minor units; the definitions page, window snapshot table, invoice lines and CSV export
// show the exact price; the invoice bills the rounded integer amount.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeWindowNow } from '../../app/billing/windows/invoices';
import { openWindowNow } from '../../app/billing/windows/windows';
import { startDeskTestApp, type DeskTestApp } from '../support/desk';
import { subscriber } from '../support/desk-windows';

const DAY = 86_400_000;
let app: DeskTestApp;
const cookie: Record<string, string> = {};
const eventName = 'subcent_desk_calls';

beforeAll(async () => {
  app = await startDeskTestApp();
  for (const role of ['operator', 'finance'] as const) cookie[role] = await app.sessionCookieFor(role);
}, 120_000);
afterAll(async () => {
  await app?.close();
});

const q = async <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) => (await app.services.pool.query<T>(sql, params)).rows;

describe('sub-cent prices on the desk', () => {
  let windowId: string;
  let invoiceId: string;

  it('the definitions form takes a price in dollars with sub-cent digits and stores the exact minor-unit decimal', async () => {
    const [plan] = await q<{ id: string }>(`SELECT id FROM plans WHERE code = 'essential'`);
    const res = await app.postForm(
      '/definitions',
      { intent: 'add-definition', eventName, displayName: 'Sub-cent calls', aggregation: 'sum', currency: 'usd', rounding: 'up', [`price:${plan!.id}`]: '0.00015', [`perUnits:${plan!.id}`]: '1' },
      { cookie: cookie.operator },
    );
    expect(res.status).toBe(302);
    expect(await q(`SELECT mp.unit_amount_decimal::text AS price FROM meter_prices mp JOIN meters m ON m.id = mp.meter_id WHERE m.event_name = $1`, [eventName])).toEqual([
      { price: '0.015000000000' },
    ]);
    const page = await (await app.request('/definitions', { cookie: cookie.operator })).text();
    expect(page).toContain('$0.00015 / unit, rounded up');
  });

  it('a window priced at 0.015 cents shows the price in its snapshot and invoice, and bills 1,234,567 units as $185.19', async () => {
    const now = Date.now();
    const [start, end] = [new Date(now - 12 * DAY), new Date(now - 2 * DAY)];
    const sub = await subscriber(app.services, 'Sub Cent Co', start, end);
    const opened = await openWindowNow(app.services.pool, sub.subscriptionId, start, end);
    if (opened.status !== 'opened') throw new Error(opened.status);
    const results = await app.services.ledger.reportUsageBatch([
      { customer: sub.externalId, eventName, value: 1_000_000, timestamp: new Date(now - 10 * DAY) },
      { customer: sub.externalId, eventName, value: 234_567, timestamp: new Date(now - 5 * DAY) },
    ]);
    expect(results.map((r) => r.result)).not.toContain('rejected');
    const closed = await closeWindowNow(app.services.pool, opened.window.id);
    if (closed.status !== 'closed') throw new Error(closed.status);
    // Settlement is not under test here (test/braintree-sub-cent.test.ts charges such a window).
    await q(`DELETE FROM graphile_worker._private_jobs WHERE key = $1`, [`braintree_settle:${opened.window.id}`]);
    windowId = opened.window.id;
    invoiceId = closed.invoice.invoiceId;
    expect(closed.invoice.totalMinor).toBe(18_519n);

    const windowPage = await (await app.request(`/windows/${windowId}`, { cookie: cookie.finance })).text();
    expect(windowPage).toContain('$0.00015 / unit');
    const invoicePage = await (await app.request(`/invoices/${invoiceId}`, { cookie: cookie.finance })).text();
    expect(invoicePage).toContain('$0.00015 / unit');
    expect(invoicePage).toContain('$185.19');
  });

  it('the lines CSV export carries the exact price of the line', async () => {
    const csv = await (await app.request('/invoices/export?view=lines', { cookie: cookie.finance })).text();
    const [header, ...rows] = csv.trimEnd().split('\r\n').map((r) => r.split(','));
    const col = (name: string) => header!.indexOf(name);
    const row = rows.find((r) => r[col('invoice_id')] === invoiceId);
    expect(row).toBeDefined();
    expect([row![col('event_name')], row![col('billed_units')], row![col('unit_amount_decimal')], row![col('per_units')], row![col('amount_minor')], row![col('amount')]]).toEqual([
      eventName,
      '1234567',
      '0.015',
      '1',
      '18519',
      '185.19',
    ]);
  });
});
