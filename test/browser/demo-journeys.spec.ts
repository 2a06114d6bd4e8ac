// Each role's main job on the demo that `npm start` makes (app/seed/demo.ts): the same command a newcomer runs, its
// own embedded PostgreSQL, the simulated processors and the worker, and the trouble the demo shows made by the real
// path; the operator, finance, support and the admin each do their main job. The overview's numbers agree with the
// pages they link to, states read in words, and no page offers a button its server would refuse. With
// UPDATE_SCREENSHOTS=1 the steps' screenshots are written to docs/screenshots/ at 1280 and 390 px (the README shows
// them); otherwise they go to the test's output like every journey's.
import { mkdtemp, chmod, mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect, test, type Page, type TestInfo } from '@playwright/test';
import type pg from 'pg';
import { demoCredentials, demoDatabase, DEMO_TROUBLE_LINES, startDemo, stopDemo, waitForDemoTrouble, type DemoCredentials, type StartedDemo } from '../support/demo';
import { expectAccessible, watchConsole } from './support';

test.describe.configure({ mode: 'serial' });

let dataDir: string;
let demo: StartedDemo;
let creds: DemoCredentials;
let db: pg.Client;

test.beforeAll(async () => {
  // The demo's first start (initdb, migrations, a week of usage) and its first crontab minutes.
  test.setTimeout(300_000);
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'meterdesk-demo-e2e-'));
  await chmod(dataDir, 0o755);
  demo = await startDemo(dataDir);
  creds = await demoCredentials(dataDir);
  db = await demoDatabase(dataDir);
  expect(await waitForDemoTrouble(db)).toEqual(expect.arrayContaining(DEMO_TROUBLE_LINES));
});
test.afterAll(async () => {
  await db?.end();
  if (demo) expect(await stopDemo(demo.child)).toBe(0);
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const at = (p: string) => `${demo.url}${p}`;

async function signInAs(page: Page, role: string): Promise<void> {
  const user = creds.users.find((u) => u.role === role)!;
  await page.goto(at('/login'));
  await page.getByLabel('Email').fill(user.email);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('navigation', { name: 'Desk sections' })).toBeVisible();
}

/** The step's screenshot at 1280 and 390 px: into docs/screenshots/ when asked, else the test's output. */
async function screenshots(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const dir = process.env.UPDATE_SCREENSHOTS === '1' ? path.resolve('docs/screenshots') : testInfo.outputPath('screenshots');
  await mkdir(dir, { recursive: true });
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 800 });
    // Nothing wider than the screen: wide tables scroll inside their own region. The charts follow their box through
    // a ResizeObserver, a frame or two after the viewport changes: polled, not read once.
    await expect.poll(() => page.evaluate(() => document.documentElement.scrollWidth), { message: `${name} at ${width} px` }).toBeLessThanOrEqual(width);
    const file = path.join(dir, `${name}-${width}.png`);
    await page.screenshot({ path: file, fullPage: true });
    await testInfo.attach(`${name}-${width}`, { path: file, contentType: 'image/png' });
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

/** The `data-count` values on the page now, by key. */
const countsOnPage = (page: Page) =>
  page.evaluate(() => Object.fromEntries([...document.querySelectorAll('[data-count]')].map((e) => [e.getAttribute('data-count')!, e.textContent!.trim()])));

test('operator: the overview’s numbers are the numbers of the pages they link to', async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const errors = watchConsole(page);
  await signInAs(page, 'operator');
  await page.goto(at('/'));
  const shown = await countsOnPage(page);
  // The demo's trouble is on the overview: failed events, events without a meter, windows that need someone.
  expect(Number(shown['events:failed'])).toBeGreaterThanOrEqual(59);
  expect(Number(shown['events:without-meter'])).toBeGreaterThan(0);
  expect(shown['windows:failed_exhausted']).toBe('1');
  expect(shown['windows:awaiting_payment_method']).toBe('1');
  const links = await page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll('[data-count]')].map((e) => [e.getAttribute('data-count')!, e.closest('div, tr')!.querySelector('a')!.getAttribute('href')!]),
    ),
  );
  expect(Object.keys(links).sort()).toEqual(Object.keys(shown).sort());
  // States in words with a tone, never colour alone.
  const awaiting = page.getByRole('table', { name: 'Windows by state' }).getByRole('link', { name: /Awaiting payment method/ });
  await expect(awaiting.locator('.badge')).toHaveAttribute('data-tone', 'attention');
  await expect(awaiting).toContainText('(needs attention)');
  await screenshots(page, testInfo, 'overview');

  for (const [key, href] of Object.entries(links)) {
    await page.goto(at(href));
    // Counted again on the linked page, by the same function: the demo's worker may move a number between the two
    // reads (an event reported), so the pending count alone is read as "close"; every other count is settled.
    const there = (await countsOnPage(page))[key];
    if (key === 'events:pending') expect(there, key).toBeDefined();
    else expect(there, `${key} on ${href}`).toBe(shown[key]);
  }
  expect(errors).toEqual([]);
});

test('operator: a window offers only what it allows, and says why in a sentence', async ({ page }, testInfo) => {
  test.setTimeout(90_000);
  const errors = watchConsole(page);
  const { rows } = await db.query<{ id: string }>(
    `SELECT w.id FROM windows w JOIN customers c ON c.id = w.customer_id WHERE c.external_id = 'stark' AND w.state = 'failed_exhausted'`,
  );
  await signInAs(page, 'operator');
  await page.goto(at(`/windows/${rows[0]!.id}`));
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Stark Industries');
  const summary = page.getByRole('region', { name: 'Summary' });
  await expect(summary).toContainText('Failed, exhausted');
  await expect(page.getByRole('region', { name: 'Charge attempt' })).toContainText('Hard decline');
  // The sale was sent: re-authoring is not offered; the page says why, in words, with no id in it.
  await expect(page.getByRole('button', { name: 'Re-author invoice' })).toHaveCount(0);
  const refusal = page.getByRole('region', { name: 'Re-author the invoice' });
  await expect(refusal).toContainText(/re-authored only before any sale|can no longer change/);
  await expect(refusal).not.toContainText(/[0-9a-f]{8}-[0-9a-f]{4}-/);
  // Settling again is offered, with the hard decline's override spelled out.
  await expect(page.getByLabel(/Charge again despite the hard decline/)).toBeVisible();
  await expectAccessible(page, 'window');
  await screenshots(page, testInfo, 'window');
  expect(errors).toEqual([]);
});

test('finance: writes off the hard-declined charge, and the audit log says who did what, where and why', async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const errors = watchConsole(page);
  await signInAs(page, 'finance');
  await page.goto(at('/invoices'));
  await expect(page.getByRole('heading', { level: 1, name: 'Invoices' })).toBeVisible();
  const stark = page.getByRole('row', { name: /Stark Industries/ });
  await expect(stark).toContainText('Failed, exhausted');
  await expect(stark).toContainText('Hard decline');
  await expectAccessible(page, 'invoices');
  await screenshots(page, testInfo, 'invoices');

  const { rows } = await db.query<{ id: string }>(
    `SELECT w.id FROM windows w JOIN customers c ON c.id = w.customer_id WHERE c.external_id = 'stark' AND w.state = 'failed_exhausted'`,
  );
  const windowId = rows[0]!.id;
  await page.goto(at(`/windows/${windowId}`));
  await page.getByRole('link', { name: 'Write off this charge' }).click();
  await expect(page).toHaveURL(at(`/windows/${windowId}/write-off`));
  await page.getByLabel('Reason').fill('card closed; the customer pays by bank transfer');
  // A double click: the write-off runs once, and both clicks land on the window.
  await page.getByRole('button', { name: 'Write off' }).dblclick();
  await expect(page).toHaveURL(at(`/windows/${windowId}`));
  await expect(page.getByRole('region', { name: 'Summary' })).toContainText('Written off');
  const audits = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'window.write_off' AND subject_id = $1`, [windowId]);
  expect(audits.rows[0]!.n).toBe(1);

  await page.goto(at('/audit?action=window.write_off'));
  const entry = page.getByRole('region', { name: 'Audit entries' }).locator('table.audit-table > tbody > tr').first();
  await expect(entry).toContainText('Wrote off a window');
  await expect(entry).toContainText(creds.users.find((u) => u.role === 'finance')!.email);
  await expect(entry).toContainText('card closed; the customer pays by bank transfer');
  await expect(entry.getByRole('link', { name: /window/ })).toHaveAttribute('href', `/windows/${windowId}`);
  await expectAccessible(page, 'audit');
  await screenshots(page, testInfo, 'audit');
  expect(errors).toEqual([]);
});

/** The demo's Stripe simulator, from the start banner (the README's "provoke a failure" reads it there too). */
function stripeSimulatorUrl(): string {
  const m = /Stripe\s+simulator in this process at (http:\/\/\S+)/.exec(demo.output());
  if (!m) throw new Error(`no Stripe simulator in the start banner:\n${demo.output()}`);
  return m[1]!;
}

const failedCount = async (externalId: string, errorCode: string) =>
  (
    await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM meter_events e JOIN customers c ON c.id = e.customer_id WHERE c.external_id = $1 AND e.status = 'failed' AND e.last_error_code = $2`,
      [externalId, errorCode],
    )
  ).rows[0]!.n;

test('operator: triages failures by cause, and resolves the missing meter: define it, then the retry sends those events', async ({ page }, testInfo) => {
  test.setTimeout(180_000);
  const errors = watchConsole(page);
  await signInAs(page, 'operator');
  await page.goto(at('/events?status=failed'));
  // Stripe's synchronous answer is resource_missing for both a missing meter and an unknown customer: two rows, two
  // causes, each in words.
  const causes = page.getByRole('table').filter({ has: page.getByRole('columnheader', { name: 'Cause' }) });
  const noMeter = causes.getByRole('row', { name: /No meter/ });
  await expect(noMeter).toContainText('3');
  await expect(causes.getByRole('row', { name: /Unknown customer/ })).toContainText('56');
  await expectAccessible(page, 'triage');
  await screenshots(page, testInfo, 'triage');

  // Before the fix, retrying would only fail again: the preview says so, and sends none of them.
  await noMeter.getByRole('link').click();
  await expect(page).toHaveURL(/cause=missing_definition/);
  const noMeterList = page.url();
  await page.getByRole('link', { name: 'Preview retry of all matching…' }).click();
  await expect(page.getByTestId('retry-preview-causes')).toContainText('No meter: 0 will be sent again, 3 skipped as the cause looks unchanged.');
  await expect(page.getByTestId('retry-preview-causes')).not.toContainText('Unknown customer');

  // The fix: the definition, from the inbox's "Define" link (the demo's Stripe learns the meter as Stripe would).
  await page.goto(at('/definitions'));
  await page.getByRole('region', { name: 'Missing definitions inbox' }).getByRole('link', { name: 'Define api_calls' }).click();
  const form = page.getByRole('form', { name: 'Add definition and replay' });
  await expect(form.getByLabel('Event name')).toHaveValue('api_calls');
  await form.getByLabel('Display name').fill('API calls');
  await form.getByLabel('Aggregation').selectOption('count');
  await form.getByLabel('Reason (optional)').fill('Acme calls the API; the meter was never defined');
  await form.getByRole('button', { name: 'Add definition and replay' }).click();
  await expect(page.getByRole('status')).toContainText('Definition added: api_calls');
  await expect
    .poll(async () => {
      const res = await fetch(`${stripeSimulatorUrl()}/v1/billing/meters`, { headers: { authorization: 'Bearer sk_test_meterdesk_simulator' } });
      return ((await res.json()) as { data: Array<{ event_name: string }> }).data.map((m) => m.event_name);
    }, { timeout: 30_000 })
    .toContain('api_calls');

  // Now the preview sends them, and the retry's progress ends with all three reported.
  await page.goto(`${noMeterList}&confirm=retry-all`);
  await expect(page.getByTestId('retry-preview-causes')).toContainText('No meter: 3 will be sent again.');
  await page.getByRole('button', { name: 'Confirm: retry 3 events' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'queued for reporting again' })).toContainText('3 events queued for reporting again');
  await expect(page.getByTestId('retry-progress')).toContainText('3 reported, 0 pending, 0 failed again', { timeout: 60_000 });
  expect(await failedCount('acme', 'resource_missing')).toBe(0);
  expect(errors).toEqual([]);
});

test('support: finds a customer by the start of their name, reads why their events failed, and retries them once Stripe knows the customer', async ({ page }, testInfo) => {
  test.setTimeout(180_000);
  const errors = watchConsole(page);
  const before = await failedCount('wayne', 'resource_missing');
  expect(before).toBeGreaterThan(0);
  await signInAs(page, 'support');

  // Support sees one customer at a time: the unfiltered list offers no selection across customers.
  await page.goto(at('/events?status=failed'));
  await expect(page.getByRole('checkbox', { name: /^Select event/ })).toHaveCount(0);

  await page.goto(at('/customers'));
  await page.getByLabel(/^Name, email or external id/).fill('Way');
  await page.getByRole('button', { name: 'Search' }).click();
  const found = page.getByRole('region', { name: 'Customers list' }).getByRole('row', { name: /Wayne Enterprises/ });
  await expect(found).toHaveCount(1);
  await found.getByRole('link', { name: 'wayne' }).click();
  await expect(page).toHaveURL(/\/customers\/[0-9a-f-]{36}$/);
  const customerPage = page.url();
  await expect(page.getByRole('heading', { level: 1 })).toContainText(/wayne|Wayne Enterprises/);
  await expect(page.getByRole('link', { name: new RegExp(`${before} failed events`) })).toBeVisible();

  // The event page says why, in words: Stripe does not know this customer.
  await page.goto(at('/events?customer=wayne&status=failed'));
  await page.getByRole('region', { name: 'Events list' }).getByRole('link').first().click();
  await expect(page.getByText('Unknown customer').first()).toBeVisible();
  await expect(page.getByText(/create the customer in Stripe/).first()).toBeVisible();
  await expectAccessible(page, 'failed event');
  await screenshots(page, testInfo, 'event');

  // The customer is created in Stripe (the simulator's control API stands in for the Stripe dashboard); the retry
  // asks Stripe before sending, so now every one of them goes, and is reported.
  const created = await fetch(`${stripeSimulatorUrl()}/__simulator/customers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: 'cus_demo_wayne' }) });
  expect(created.status).toBe(200);
  await page.goto(customerPage);
  await page.getByRole('button', { name: "Retry this customer's failed events" }).click();
  await expect(page.getByRole('status').filter({ hasText: 'queued for reporting again' })).toContainText(`${before} events queued for reporting again`);
  await expect.poll(() => failedCount('wayne', 'resource_missing'), { timeout: 60_000 }).toBe(0);
  // No longer failed is pending again, not yet reported: wait for the worker to report them.
  const reported = async () =>
    (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM meter_events e JOIN customers c ON c.id = e.customer_id WHERE c.external_id = 'wayne' AND e.status = 'reported'`)).rows[0]!.n;
  await expect.poll(reported, { timeout: 60_000 }).toBeGreaterThanOrEqual(before);
  expect(errors).toEqual([]);
});

test('admin: gives a host app its API key, and the first event sent with it is in the ledger', async ({ page }) => {
  test.setTimeout(120_000);
  const errors = watchConsole(page);
  await signInAs(page, 'admin');
  await page.goto(at('/admin/api-keys'));
  const createKey = page.getByRole('region', { name: 'Create an API key' });
  await createKey.getByLabel('Name').fill('billing-service production');
  await createKey.getByRole('button', { name: 'Create API key' }).click();
  await expect(page.getByRole('status')).toContainText('API key "billing-service production" created');
  const secret = (await page.getByTestId('one-time-secret').textContent())!.trim();
  expect(secret).toMatch(/^md_[A-Za-z0-9_-]{43}$/);
  await expectAccessible(page, 'api keys');

  // The host app sends usage with it: accepted, and the event is in the ledger for the customer it named.
  const identifier = `admin-journey-${Date.now()}`;
  const sent = await fetch(at('/api/v1/events'), {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ customer: 'acme', event_name: 'ai_tokens', value: 42, identifier }),
  });
  expect(sent.status).toBe(202);
  await page.goto(at(`/events?q=${identifier}`));
  await expect(page.getByRole('region', { name: 'Events list' })).toContainText('acme');
  // Shown once: the page does not show the secret again.
  await page.goto(at('/admin/api-keys'));
  await expect(page.getByTestId('one-time-secret')).toHaveCount(0);
  await expect(page.getByRole('main')).not.toContainText(secret);
  expect(errors).toEqual([]);
});
