// Operator's and finance's window journeys: repair a stale renewal; review an invoice, export CSV and write off an
// exhausted charge. Windows and invoices are made by the domain (test/support/desk-windows.ts) on the served
// database; the browser app runs no worker, so no charge is sent.
import fs from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { expect, test } from '@playwright/test';
import type { Services } from '../../app/server/services';
import { seedDeskWindowFixtures, type DeskWindowFixtures } from '../support/desk-windows';
import { expectAccessible, openSection, screenshot, servedServices, watchConsole } from './support';

let services: Services;
let f: DeskWindowFixtures;
test.beforeAll(async () => {
  services = servedServices();
  f = await seedDeskWindowFixtures(services, randomUUID().slice(0, 6));
});
test.afterAll(async () => {
  await services?.close();
});

async function windowState(id: string) {
  const { rows } = await services.pool.query<{ state: string }>('SELECT state::text AS state FROM windows WHERE id = $1', [id]);
  return rows[0]?.state;
}

test('an operator repairs a stale window', async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const errors = watchConsole(page);
  await openSection(page, 'operator', '/windows', 'Windows');

  const stale = page.getByRole('region', { name: 'Stale renewals', exact: true });
  const row = stale.getByRole('row', { name: new RegExp(f.stale.customerName) });
  await expect(row).toContainText('stale');
  await expectAccessible(page, 'windows list');
  await screenshot(page, testInfo, '01-windows-stale');

  await row.getByLabel('Reason (optional)').fill('renewal webhook lost');
  // Keyboard: the Repair button is reachable and activates with Enter.
  await row.getByRole('button', { name: `Repair the stale window of ${f.stale.customerName}` }).focus();
  await page.keyboard.press('Enter');
  await expect(page.getByRole('status')).toContainText('Stale window repaired');
  await expect(page).toHaveURL(/\/windows\/[0-9a-f-]{36}$/);
  const windowId = page.url().split('/').pop()!;
  await expect(page.getByRole('heading', { level: 1 })).toContainText(`Window of ${f.stale.customerName}`);
  await expect(page.getByText('repaired stale')).toBeVisible();
  await expect(page.getByRole('region', { name: 'Invoice lines' })).toContainText('ai_tokens');
  expect(await windowState(windowId)).toBe('closed');
  await expectAccessible(page, 'repaired window');
  await screenshot(page, testInfo, '02-window-repaired');

  // The stale row is gone from the list.
  await page.getByRole('link', { name: '← Windows' }).click();
  await expect(page.getByRole('heading', { level: 1, name: 'Windows' })).toBeVisible();
  await expect(page.getByRole('region', { name: 'Stale renewals', exact: true }).getByRole('row', { name: new RegExp(f.stale.customerName) })).toHaveCount(0);

  // Readable on a phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`/windows/${windowId}`);
  await expect(page.getByRole('heading', { level: 1 })).toBeVisible();
  await screenshot(page, testInfo, '03-window-390px');
  expect(errors).toEqual([]);
});

test('finance reviews an invoice, exports CSV and writes off an exhausted charge', async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const errors = watchConsole(page);
  await openSection(page, 'finance', '/invoices', 'Invoices', { nav: false });
  const row = page.getByRole('region', { name: 'Invoices', exact: true }).getByRole('row', { name: new RegExp(f.exhausted.customerName) });
  await expect(row).toContainText('Failed, exhausted');
  await expect(row).toContainText('Soft decline');
  await expect(page.getByRole('heading', { name: 'Upcoming charges' })).toBeVisible();
  await expectAccessible(page, 'invoices list');
  await screenshot(page, testInfo, '01-invoices');

  // Export: a download whose rows include this invoice.
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Export all invoices (CSV)' }).click()]);
  expect(download.suggestedFilename()).toMatch(/^invoices-.*\.csv$/);
  const csv = await fs.readFile((await download.path())!, 'utf8');
  expect(csv.split('\r\n')[0]).toMatch(/^invoice_id,window_id,customer_external_id,customer_name,/);
  expect(csv).toContain(`${f.exhausted.invoiceId},${f.exhausted.windowId},`);

  // Filter to the exhausted charges: the totals are of what matches, and the lines export carries the filter.
  await page.getByLabel('Payment state').selectOption({ label: 'Failed, exhausted' });
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await expect(page).toHaveURL(/[?&]state=failed_exhausted/);
  await expect(page.getByRole('heading', { name: 'Totals of the invoices matching these filters' })).toBeVisible();
  const totals = page.getByRole('region', { name: 'Invoice totals per currency' });
  await expect(totals.locator('[data-total="invoices"]')).toHaveText(String(await page.getByRole('region', { name: 'Invoices', exact: true }).locator('tbody tr').count()));
  await expect(totals.locator('[data-total="paid"]')).toHaveText('$0.00');
  const [linesDownload] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Export their lines (CSV)' }).click()]);
  expect(linesDownload.suggestedFilename()).toMatch(/^invoice-lines-.*\.csv$/);
  const linesCsv = (await fs.readFile((await linesDownload.path())!, 'utf8')).trimEnd().split('\r\n');
  expect(linesCsv[0]).toContain(',line_id,line_kind,event_name,');
  expect(linesCsv.slice(1).some((l) => l.startsWith(`${f.exhausted.invoiceId},`))).toBe(true);
  expect(linesCsv.slice(1).some((l) => l.startsWith(`${f.closed.invoiceId},`))).toBe(false);
  await expectAccessible(page, 'invoices filtered');

  await row.getByRole('link', { name: /^View/ }).click();
  await expect(page).toHaveURL(`/invoices/${f.exhausted.invoiceId}`);
  await expect(page.getByRole('heading', { level: 1 })).toContainText(`Invoice for ${f.exhausted.customerName}`);
  await expect(page.getByRole('region', { name: 'Invoice lines' })).toContainText('ai_tokens');
  await expect(page.getByRole('region', { name: 'Invoice lines' })).toContainText(/\$\d+\.\d{2}/);
  await expectAccessible(page, 'invoice detail');
  await screenshot(page, testInfo, '02-invoice');

  await page.getByRole('link', { name: 'Write off this charge' }).click();
  await expect(page).toHaveURL(`/windows/${f.exhausted.windowId}/write-off`);
  await expect(page.getByRole('heading', { level: 1 })).toContainText(f.exhausted.customerName);
  await expectAccessible(page, 'write-off confirmation');
  await screenshot(page, testInfo, '03-write-off');
  await page.getByLabel('Reason').fill('customer insolvent');
  await page.getByRole('button', { name: 'Write off' }).click();
  await expect(page.getByRole('status')).toContainText('Charge written off');
  await expect(page).toHaveURL(`/windows/${f.exhausted.windowId}`);
  await expect(page.getByRole('region', { name: 'Summary', exact: true })).toContainText('Written off');
  expect(await windowState(f.exhausted.windowId)).toBe('written_off');
  await screenshot(page, testInfo, '04-written-off');

  // At 390 px the invoices page still reads (tables scroll in their own region).
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto('/invoices');
  await expect(page.getByRole('heading', { level: 1, name: 'Invoices' })).toBeVisible();
  await screenshot(page, testInfo, '05-invoices-390px');
  expect(errors).toEqual([]);
});
