// Admin's journey: sign in, create a user and an API key (each secret shown once), find both in the audit log.
import { randomUUID } from 'node:crypto';
import { expect, test } from '@playwright/test';
import { DESK_TEST_USERS, expectAccessible, screenshot, signIn, watchConsole } from './support';

test('admin creates a user and an API key, and sees both in the audit log', async ({ page, request }, testInfo) => {
  // A long journey with six axe runs on a 2-core machine shared with the server.
  test.setTimeout(120_000);
  const errors = watchConsole(page);
  const email = `e2e-${randomUUID().slice(0, 8)}@desk.test`;
  const keyName = `e2e ingest ${randomUUID().slice(0, 8)}`;

  // Asked for a page while signed out: sign in, then land on it.
  await page.goto('/admin/users');
  await expect(page).toHaveURL('/login?redirectTo=%2Fadmin%2Fusers');
  await page.waitForLoadState('networkidle');
  await screenshot(page, testInfo, '01-login');
  await page.getByLabel('Email').fill(DESK_TEST_USERS.admin.email);
  await page.getByLabel('Password').fill(DESK_TEST_USERS.admin.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL('/admin/users');
  await expect(page.getByRole('heading', { level: 1, name: 'Users and API keys' })).toBeVisible();

  const nav = page.getByRole('navigation', { name: 'Desk sections' });
  await expect(nav.getByRole('link')).toHaveText(['Overview', 'Events', 'Windows', 'Definitions', 'Invoices', 'Telemetry', 'Reconciliation', 'Customers', 'Alerts', 'Audit', 'Users & keys']);
  await expect(nav.getByRole('link', { name: 'Users & keys' })).toHaveAttribute('aria-current', 'page');
  await expect(page.getByRole('banner')).toContainText(DESK_TEST_USERS.admin.email);
  await expect(page.getByRole('note')).toContainText('Simulated processors');
  await expectAccessible(page, 'users');
  await screenshot(page, testInfo, '02-users');

  // Create a user without a password: one is generated and shown once.
  const createUser = page.getByRole('region', { name: 'Create a user' });
  await createUser.getByLabel('Email').fill(email);
  await createUser.getByLabel('Role').selectOption('operator');
  await createUser.getByLabel('Reason (optional)').fill('new on-call operator');
  await createUser.getByRole('button', { name: 'Create user' }).click();
  await expect(page.getByRole('status')).toContainText(`User ${email} created`);
  const password = page.getByRole('region', { name: `Generated password for ${email}` }).getByTestId('one-time-secret');
  await expect(password).toHaveText(/^[A-Za-z0-9_-]{24}$/);
  const usersTable = page.getByRole('region', { name: 'Users' });
  await expect(usersTable.getByRole('row', { name: new RegExp(email) })).toContainText('operator');
  await expectAccessible(page, 'users after create');
  await screenshot(page, testInfo, '03-user-created');

  await page.reload();
  await expect(page.getByTestId('one-time-secret')).toHaveCount(0);

  // Create an API key: shown once, and it works against the API.
  await page.getByRole('navigation', { name: 'Admin pages' }).getByRole('link', { name: 'API keys' }).click();
  await expect(page).toHaveURL('/admin/api-keys');
  const createKey = page.getByRole('region', { name: 'Create an API key' });
  await createKey.getByLabel('Name').fill(keyName);
  await createKey.getByRole('button', { name: 'Create API key' }).click();
  await expect(page.getByRole('status')).toContainText(`API key "${keyName}" created`);
  const secret = page.getByTestId('one-time-secret');
  await expect(secret).toHaveText(/^md_[A-Za-z0-9_-]{43}$/);
  const key = (await secret.textContent())!;
  await expectAccessible(page, 'api keys after create');
  await screenshot(page, testInfo, '04-api-key-created');

  const api = await request.get(`/api/v1/events/${randomUUID()}`, { headers: { authorization: `Bearer ${key}` } });
  expect(api.status()).toBe(404); // authenticated; the event just does not exist
  const wrong = await request.get(`/api/v1/events/${randomUUID()}`, { headers: { authorization: `Bearer ${key}x` } });
  expect(wrong.status()).toBe(401);

  // Moving on inside the desk (client-side navigation), the toast and the key are gone for good.
  const adminTabs = page.getByRole('navigation', { name: 'Admin pages' });
  await adminTabs.getByRole('link', { name: 'Users' }).click();
  await expect(page).toHaveURL('/admin/users');
  await expect(page.getByRole('status')).toHaveCount(0);
  await adminTabs.getByRole('link', { name: 'API keys' }).click();
  await expect(page).toHaveURL('/admin/api-keys');
  await expect(page.getByTestId('one-time-secret')).toHaveCount(0);
  await expect(page.getByRole('status')).toHaveCount(0);
  const keyRow = page.getByRole('row', { name: new RegExp(keyName) });
  await expect(keyRow).toContainText(key.slice(0, 9));
  await expect(keyRow).not.toContainText(key);

  // Both changes are in the audit log, newest first, with who did them.
  await nav.getByRole('link', { name: 'Audit' }).click();
  await expect(page).toHaveURL('/audit');
  await expect(page.getByRole('heading', { level: 1, name: 'Audit log' })).toBeVisible();
  // Other journeys share this database and write audit rows at the same time: look at the admin's own.
  await page.getByLabel('Actor').fill(DESK_TEST_USERS.admin.email);
  await page.getByLabel('Actor').press('Enter');
  await expect(page).toHaveURL(/actor=/);
  // Direct rows only: each entry's before/after is a small table of its own.
  const entries = page.getByRole('region', { name: 'Audit entries' }).locator('table.audit-table > tbody > tr');
  await expect(entries.nth(0)).toContainText('api_key.create');
  await expect(entries.nth(0)).toContainText('Created an API key');
  await expect(entries.nth(0).getByRole('link', { name: /api key/ })).toHaveAttribute('href', '/admin/api-keys');
  await expect(entries.nth(0)).toContainText(keyName);
  await expect(entries.nth(1)).toContainText('user.create');
  await expect(entries.nth(1)).toContainText(email);
  await expect(entries.nth(1)).toContainText('new on-call operator');
  await expect(entries.nth(1)).toContainText(DESK_TEST_USERS.admin.email);
  await expectAccessible(page, 'audit');
  await screenshot(page, testInfo, '05-audit');

  await page.getByLabel('Action').selectOption('user.create');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await expect(page).toHaveURL(/action=user\.create/);
  await expect(page.getByRole('region', { name: 'Audit entries' })).not.toContainText('api_key.create');
  await expect(page.getByRole('region', { name: 'Audit entries' })).toContainText(email);

  // Phone width: nothing overflows the viewport; wide tables scroll inside their own region.
  await page.setViewportSize({ width: 390, height: 844 });
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await expect(nav.getByRole('link', { name: 'Audit' })).toBeVisible();
  await expectAccessible(page, 'audit at 390 px');
  await screenshot(page, testInfo, '06-audit-390px');
  await page.setViewportSize({ width: 1280, height: 800 });

  // Log out: the desk is closed again.
  await page.getByRole('button', { name: 'Log out', exact: true }).click();
  await expect(page).toHaveURL('/login');
  await expect(page.getByRole('status')).toContainText('Logged out');
  await page.goto('/audit');
  await expect(page).toHaveURL('/login?redirectTo=%2Faudit');

  expect(errors).toEqual([]);
});

test('support sees only the sections their role allows, and is refused the rest', async ({ page, baseURL }, testInfo) => {
  test.setTimeout(60_000);
  const errors = watchConsole(page);
  await signIn(page, 'support');
  const nav = page.getByRole('navigation', { name: 'Desk sections' });
  await expect(nav.getByRole('link')).toHaveText(['Overview', 'Events', 'Windows', 'Definitions', 'Telemetry', 'Customers', 'Alerts']);
  await expect(page.getByRole('banner')).toContainText('support');

  const refused = await page.goto('/audit');
  expect(refused?.status()).toBe(403);
  await expect(page.getByRole('heading', { level: 1, name: 'Not allowed' })).toBeVisible();
  await expect(page.getByText('read:audit:any')).toBeVisible();
  // The desk around the refusal still works: header, navigation, logout.
  await expect(nav).toBeVisible();
  await expectAccessible(page, '403 page');
  await screenshot(page, testInfo, '01-support-refused');

  expect((await page.goto('/admin/api-keys'))?.status()).toBe(403);
  // Chromium logs every 4xx document as a console error: exactly the two refusals asked for, nothing else.
  const refusal = (path: string) => `Failed to load resource: the server responded with a status of 403 () (${baseURL}${path})`;
  expect(errors).toEqual([refusal('/audit'), refusal('/admin/api-keys')]);
});
