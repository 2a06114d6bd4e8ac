// Operator's journey: an event name arrived with no meter and blocked a window; the operator sees it in the
// Definitions inbox, adds the meter with a price and replays, and the window's invoice now bills it. The missing
// definition is made by the domain (test/support/desk-definitions.ts) on the served database.
import { randomUUID } from 'node:crypto';
import { expect, test } from '@playwright/test';
import type { Services } from '../../app/server/services';
import { seedMissingDefinition, type MissingDefinitionFixture } from '../support/desk-definitions';
import { expectAccessible, openSection, screenshot, servedServices, watchConsole } from './support';

let services: Services;
let f: MissingDefinitionFixture;
test.beforeAll(async () => {
  services = servedServices();
  f = await seedMissingDefinition(services, randomUUID().slice(0, 6));
});
test.afterAll(async () => {
  await services?.close();
});

test('an operator adds a missing definition and replays the window', async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const errors = watchConsole(page);
  await openSection(page, 'operator', '/definitions', 'Definitions');

  const inbox = page.getByRole('region', { name: 'Missing definitions inbox' });
  const row = inbox.getByRole('row', { name: new RegExp(f.eventName) });
  await expect(row.getByRole('cell').nth(1)).toHaveText('4'); // events: 2 blocked, 1 charged, 1 in the open window
  await expect(row).toContainText(f.blocked.customerName);
  await expect(row).toContainText('1 charged window (not touched)');
  await expectAccessible(page, 'definitions inbox');
  await screenshot(page, testInfo, '01-inbox');

  await row.getByRole('link', { name: `Define ${f.eventName}` }).click();
  await expect(page).toHaveURL(new RegExp(`/definitions\\?eventName=${f.eventName}`));
  const form = page.getByRole('form', { name: 'Add definition and replay' });
  await expect(form.getByLabel('Event name')).toHaveValue(f.eventName);
  await form.getByLabel('Display name').fill('Image renders');
  await form.getByLabel('Aggregation').selectOption('sum');
  await form.getByLabel('Essential: unit price').fill('0.02');
  await form.getByLabel('Essential: per units').fill('1000');
  await form.getByLabel('Reason (optional)').fill('new product launched');
  await expectAccessible(page, 'add definition form');
  await screenshot(page, testInfo, '02-form');
  await form.getByRole('button', { name: 'Add definition and replay' }).click();

  await expect(page.getByRole('status')).toContainText(`Definition added: ${f.eventName}`);
  await expect(page.getByRole('status')).toContainText('1 window re-authored');
  await expect(page.getByRole('status')).toContainText('1 charged window left as it was');
  await expect(page.getByRole('region', { name: 'Missing definitions inbox' }).getByRole('row', { name: new RegExp(f.eventName) })).toHaveCount(0);
  const meterRow = page.getByRole('region', { name: 'Meters and prices' }).getByRole('row', { name: new RegExp(f.eventName) });
  await expect(meterRow).toContainText('Image renders');
  await expect(meterRow).toContainText('Essential: $0.02 / 1,000 units, rounded up');
  await screenshot(page, testInfo, '03-defined');

  // The blocked window's invoice now bills the renders: 3,000 units → 3 × $0.02.
  await page.goto(`/windows/${f.blocked.windowId}`);
  await expect(page.getByRole('heading', { level: 1 })).toContainText(`Window of ${f.blocked.customerName}`);
  await expect(page.getByText(/Revision 2/)).toBeVisible();
  const lines = page.getByRole('region', { name: 'Invoice lines' });
  await expect(lines.getByRole('row', { name: new RegExp(f.eventName) })).toContainText('$0.06');
  await expect(page.getByText('0 unmatched (no definition)')).toBeVisible();
  await expectAccessible(page, 'replayed window');
  await screenshot(page, testInfo, '04-window-replayed');

  // The charged window was not touched: its event is still unmatched, its invoice at revision 1.
  await page.goto(`/windows/${f.charged.windowId}`);
  await expect(page.getByText(/Revision 1/)).toBeVisible();
  await expect(page.getByText('1 unmatched (no definition)')).toBeVisible();

  // Readable on a phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto('/definitions');
  await expect(page.getByRole('heading', { level: 1, name: 'Definitions' })).toBeVisible();
  await screenshot(page, testInfo, '05-definitions-390px');
  expect(errors).toEqual([]);
});
