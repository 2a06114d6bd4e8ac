// The reconciliation page in a browser: the last run and its findings, "Run reconciliation now" queuing a run (the
// browser app runs no worker, so the run shown is written here with SQL, as app/billing/reconciliation.ts writes it).
import { randomUUID } from 'node:crypto';
import { expect, test } from '@playwright/test';
import type { Services } from '../../app/server/services';
import { expectAccessible, openSection, screenshot, servedServices, signIn, watchConsole } from './support';

let services: Services;
const DAY = 86_400_000;
const day = new Date(Math.floor((Date.now() - DAY) / DAY) * DAY);

test.beforeAll(async () => {
  services = servedServices();
  const customer = await services.prisma.customer.create({
    data: { externalId: `recon-${randomUUID().slice(0, 8)}`, name: 'Reconcile Ltd', processor: 'stripe', processorCustomerId: `cus_${randomUUID().slice(0, 8)}` },
  });
  const run = await services.pool.query<{ id: string }>(
    `INSERT INTO reconciliation_runs (id, started_at, finished_at, status, trigger, period_from, period_to, stripe_checked, stripe_skipped, stripe_errors, drift_count, new_drift_count)
     VALUES (gen_random_uuid(), now() - interval '2 minutes', now() - interval '1 minute', 'succeeded', 'schedule', $1, $2, 12, 1, 0, 1, 1) RETURNING id`,
    [new Date(day.getTime() - DAY), new Date(day.getTime() + 2 * DAY)],
  );
  await services.pool.query(
    `INSERT INTO reconciliation_findings (id, run_id, processor, kind, customer_id, event_name, period_start, period_end,
                                          ledger_value, ledger_count, processor_value, processor_count, difference)
     VALUES (gen_random_uuid(), $1, 'stripe', 'missing_at_processor', $2, 'ai_tokens', $3, $4, 1500, 3, 1000, NULL, -500)`,
    [run.rows[0]!.id, customer.id, day, new Date(day.getTime() + DAY)],
  );
});
test.afterAll(async () => {
  await services?.close();
});

test('operators see the last run with its findings and queue a run; finance reads without the button', async ({ page, browser }, testInfo) => {
  test.setTimeout(90_000);
  const errors = watchConsole(page);
  await openSection(page, 'operator', '/reconciliation', 'Reconciliation');
  await expect(page.getByText('1 difference', { exact: true })).toBeVisible();
  const row = page.getByRole('region', { name: 'Reconciliation findings' }).getByRole('row', { name: /Reconcile Ltd/ });
  await expect(row.getByRole('cell')).toHaveText([
    'ai_tokens',
    `${day.toISOString().slice(0, 10)} (UTC day)`,
    /^1,500/,
    '1,000',
    '−500',
    /Stripe counted less than the ledger reported/,
    '—',
  ]);
  await expectAccessible(page, 'reconciliation');
  await screenshot(page, testInfo, '01-reconciliation');

  // The finding says what it means and what to do, and its link opens the events page filtered to the failed events
  // of that customer, meter and usage day, where they are retried.
  await expect(row.getByText(/Stripe counted less usage for this customer, meter and day/)).toBeVisible();
  await row.getByRole('link', { name: /Failed events of that day, to retry/ }).click();
  await expect(page).toHaveURL(/\/events\?status=failed&customer=recon-/);
  await expect(page.getByRole('heading', { level: 1, name: 'Events' })).toBeVisible();
  await expect(page.getByLabel('Status', { exact: true })).toHaveValue('failed');
  await expect(page.getByLabel('Event name', { exact: true })).toHaveValue('ai_tokens');
  await page.goBack();
  await expect(page.getByRole('heading', { level: 1, name: 'Reconciliation' })).toBeVisible();

  await page.getByLabel('Reason (optional)').fill('checking after the Stripe incident');
  await page.getByRole('button', { name: 'Run reconciliation now' }).click();
  await expect(page.getByText('Reconciliation queued')).toBeVisible();
  await expect(page.getByText('A run is queued and starts as soon as a worker takes it.')).toBeVisible();
  await screenshot(page, testInfo, '02-queued');

  const finance = await browser.newContext();
  try {
    const financePage = await finance.newPage();
    await signIn(financePage, 'finance', { from: '/reconciliation' });
    await expect(financePage.getByRole('heading', { level: 1, name: 'Reconciliation' })).toBeVisible();
    await expect(financePage.getByRole('button', { name: 'Run reconciliation now' })).toHaveCount(0);
    await expect(financePage.getByText('An operator or an admin can run it now')).toBeVisible();
  } finally {
    await finance.close();
  }
  expect(errors).toEqual([]);
});

test('the reconciliation page fits a 390 px wide screen', async ({ browser }) => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  try {
    const page = await context.newPage();
    await openSection(page, 'finance', '/reconciliation', 'Reconciliation', { nav: false });
    await expect(page.getByRole('link', { name: /Failed events of that day, to retry/ })).toBeVisible();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  } finally {
    await context.close();
  }
});
