// Operator's and support's retry journeys. The failed events are written with SQL (as a rejected Stripe report
// leaves them); the browser app runs no worker, so a retry is checked as "pending again" plus its audit row.
import { expect, test } from '@playwright/test';
import pg from 'pg';
import { insertCustomer, insertEvents } from '../support/desk-events';
import { expectAccessible, openSection, screenshot, signIn, watchConsole } from './support';

let pool: pg.Pool;
test.beforeAll(() => {
  const connectionString = process.env.MD_DATABASE_URL;
  if (!connectionString) throw new Error('MD_DATABASE_URL is not set: run through test/browser/global-setup.ts (npx playwright test)');
  pool = new pg.Pool({ connectionString, max: 2 });
});
test.afterAll(async () => {
  await pool?.end();
});

async function eventRow(id: string) {
  const { rows } = await pool.query<{ status: string }>('SELECT status::text AS status FROM meter_events WHERE id = $1', [id]);
  return rows[0];
}

async function retryAudit(id: string) {
  const { rows } = await pool.query<{ actor_label: string; actor_role: string }>(
    `SELECT actor_label, actor_role FROM audit_log WHERE action = 'meter_event.retry' AND after->'ids' ? $1`,
    [id],
  );
  return rows;
}

test('an operator finds a failed event, sees why, and retries it', async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const errors = watchConsole(page);
  const customer = await insertCustomer(pool);
  await insertEvents(pool, customer.id, 2, { status: 'reported' });
  const [id] = await insertEvents(pool, customer.id, 1, { errorCode: 'resource_missing', identifier: `order-${customer.externalId}` });

  await openSection(page, 'operator', '/events', 'Events', { nav: false });

  const filters = page.getByRole('region', { name: 'Filters' }).or(page.locator('form.filters'));
  await filters.getByLabel('Status').selectOption('failed');
  await filters.getByLabel('Customer (external id)').fill(customer.externalId);
  await filters.getByRole('button', { name: 'Apply filters' }).click();
  await expect(page).toHaveURL(new RegExp(`status=failed.*customer=${customer.externalId}|customer=${customer.externalId}.*status=failed`));

  const summary = page.getByRole('region', { name: 'Failures by error code' });
  await expect(summary.getByRole('row', { name: /resource_missing/ })).toContainText('1');
  const list = page.getByRole('region', { name: 'Events list' });
  await expect(list.getByRole('row')).toHaveCount(2); // header + the one failed event
  await expectAccessible(page, 'events filtered');
  await screenshot(page, testInfo, '01-events-failed');

  await list.getByRole('link', { name: `order-${customer.externalId}` }).click();
  await expect(page).toHaveURL(`/events/${id}`);
  const problem = page.getByTestId('event-problem');
  await expect(problem.getByRole('heading', { name: 'Why it failed' })).toBeVisible();
  await expect(problem).toContainText('resource_missing');
  await expect(problem).toContainText('No such object');
  await expect(page.getByLabel('Processor response, attempt 1')).toContainText('"invalid_request_error"');
  await expectAccessible(page, 'event detail');
  await screenshot(page, testInfo, '02-event-detail');

  await problem.getByRole('button', { name: 'Retry this event' }).click();
  await expect(page.getByRole('status')).toContainText('Event queued for reporting again');
  await expect(page.getByRole('region', { name: 'Event fields' }).getByRole('row', { name: /^Status/ })).toContainText('Pending');
  await expect(page.getByRole('button', { name: 'Retry this event' })).toHaveCount(0);
  expect((await eventRow(id!))?.status).toBe('pending');
  expect(await retryAudit(id!)).toEqual([{ actor_label: 'operator@desk.test', actor_role: 'operator' }]);
  await screenshot(page, testInfo, '03-event-retried');

  // Readable on a phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`/events?customer=${customer.externalId}`);
  await expectAccessible(page, 'events at 390 px');
  await screenshot(page, testInfo, '04-events-390');

  expect(errors).toEqual([]);
});

test("support finds a customer and retries their failed event", async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const errors = watchConsole(page);
  const customer = await insertCustomer(pool);
  const [id] = await insertEvents(pool, customer.id, 1, { errorCode: 'resource_missing' });

  await signIn(page, 'support');
  await page.getByRole('navigation', { name: 'Desk sections' }).getByRole('link', { name: 'Customers' }).click();
  await expect(page).toHaveURL('/customers');
  await page.getByLabel('Name, email or external id (the start is enough), or processor customer id').fill(customer.email);
  await page.getByRole('button', { name: 'Search' }).click();
  const results = page.getByRole('region', { name: 'Customers list' });
  await expect(results.getByRole('row')).toHaveCount(2);
  await expectAccessible(page, 'customer search');
  await screenshot(page, testInfo, '01-customer-search');

  await results.getByRole('link', { name: customer.externalId }).click();
  await expect(page).toHaveURL(`/customers/${customer.id}`);
  await expect(page.getByRole('link', { name: '1 failed event' })).toBeVisible();
  const recent = page.getByRole('region', { name: 'Recent events' });
  await expect(recent.getByRole('row', { name: /resource_missing/ })).toContainText('Failed');
  // Support retries one customer's events; forcing past the 23 h guard is not theirs to do.
  await expect(page.getByLabel('Force past the 23 h guard')).toHaveCount(0);
  await expectAccessible(page, 'customer');
  await screenshot(page, testInfo, '02-customer');

  // Keyboard: the retry button is reachable and works with Enter.
  await page.getByRole('button', { name: "Retry this customer's failed events" }).focus();
  await page.keyboard.press('Enter');
  await expect(page.getByRole('status')).toContainText('Event queued for reporting again');
  await expect(recent.getByRole('row').nth(1)).toContainText('Pending');
  await expect(page.getByText('No failed events.')).toBeVisible();
  expect((await eventRow(id!))?.status).toBe('pending');
  expect(await retryAudit(id!)).toEqual([{ actor_label: 'support@desk.test', actor_role: 'support' }]);
  await screenshot(page, testInfo, '03-customer-retried');

  expect(errors).toEqual([]);
});
