// The overview (live counts, charts from the rollups) and telemetry (ops events by type, runbooks linked to the
// action that fixes them). The browser app runs no worker, so the rollups and ops events are written here with SQL
// on the served database, the way desk__rollup_events and the domain would write them.
import { expect, test } from '@playwright/test';
import type { Services } from '../../app/server/services';
import { expectAccessible, openSection, screenshot, servedServices, watchConsole } from './support';
import { OPS_EVENT_TYPES } from '../../app/billing/ops-events';

let services: Services;
const HOUR = 3_600_000;
// Minute 7 of the hour two hours back: inside the overview's 24 h and telemetry's ranges, and the same minute in
// every worker (each runs beforeAll; the upsert then writes one row).
const bucket = new Date(Math.floor((Date.now() - 2 * HOUR) / HOUR) * HOUR + 7 * 60_000);

test.beforeAll(async () => {
  services = servedServices();
  await services.pool.query(
    `INSERT INTO event_rollups (bucket_start, processor, outcome, count)
     VALUES ($1, 'stripe', 'accepted', 4321), ($1, 'stripe', 'reported', 4300), ($1, 'stripe', 'failed', 21)
     ON CONFLICT (bucket_start, processor, outcome) DO UPDATE SET count = EXCLUDED.count`,
    [bucket],
  );
  await services.pool.query(
    `INSERT INTO ops_events (id, type, occurred_at, processor, source, subject_type, subject_id, metadata)
     SELECT gen_random_uuid(), 'meter_reporting_failed', $1::timestamptz + i * interval '1 second', 'stripe', 'sync', 'meter_event', gen_random_uuid()::text,
            '{"code": "no_customer"}'::jsonb
       FROM generate_series(1, 3) AS i`,
    [bucket],
  );
});
test.afterAll(async () => {
  await services?.close();
});

const hourLabel = (d: Date) => `${String(d.getUTCHours()).padStart(2, '0')}:00`;

test('the overview shows live counts and charts of the last 24 hours', async ({ page, browser }, testInfo) => {
  test.setTimeout(90_000);
  const errors = watchConsole(page);
  await openSection(page, 'finance', '/', 'Overview');

  const counts = page.getByRole('region', { name: 'Needs attention' });
  await expect(counts.getByRole('link', { name: 'Events failed' })).toHaveAttribute('href', '/events?status=failed');
  await expect(counts.getByText(/^\d[\d,]*\+?$/).first()).toBeVisible();
  const openOps = counts.getByRole('term').filter({ hasText: 'Open ops events' }).locator('xpath=following-sibling::dd');
  expect(Number((await openOps.textContent())?.replace(/[,+]/g, ''))).toBeGreaterThanOrEqual(3);
  await expect(page.getByRole('table', { name: 'Windows by state' }).getByRole('link', { name: 'Failed, exhausted' })).toHaveAttribute(
    'href',
    '/windows?state=failed_exhausted',
  );

  // The charts draw after hydration, as SVG with the rollup's series.
  const eventsChart = page.getByRole('img', { name: /Usage events accepted, reported and failed per hour/ });
  await expect(eventsChart.locator('.recharts-wrapper > svg.recharts-surface')).toBeVisible();
  await expect(eventsChart.locator('.recharts-line')).toHaveCount(3);
  await expect(eventsChart.locator('.recharts-legend-item')).toHaveText(['Accepted', 'Reported', 'Failed']);
  await expect(eventsChart.locator('.recharts-xAxis .recharts-cartesian-axis-tick').first()).toBeVisible();
  const opsChart = page.getByRole('img', { name: /Ops events per hour/ });
  await expect(opsChart.locator('path.recharts-rectangle').first()).toBeVisible();

  // The same numbers as a table: the seeded hour shows 4,321 accepted, 4,300 reported, 21 failed.
  await page.getByText('Usage events per hour: the numbers').click();
  const row = page.getByRole('region', { name: 'Usage events per hour' }).getByRole('row', { name: new RegExp(`^${hourLabel(bucket)}`) });
  await expect(row.getByRole('cell')).toHaveText(['4,321', '4,300', '21']);
  await expectAccessible(page, 'overview');
  await screenshot(page, testInfo, '01-overview');

  // Without JavaScript the page still reads: counts and tables, and a note where the chart would be.
  const noScript = await browser.newContext({ javaScriptEnabled: false, storageState: await page.context().storageState() });
  try {
    const plain = await noScript.newPage();
    await plain.goto('/');
    await expect(plain.getByRole('heading', { level: 1, name: 'Overview' })).toBeVisible();
    await expect(plain.getByRole('link', { name: 'Events pending' })).toBeVisible();
    await expect(plain.getByText('The chart appears when JavaScript runs').first()).toBeVisible();
    await plain.getByText('Usage events per hour: the numbers').click();
    await expect(plain.getByRole('region', { name: 'Usage events per hour' }).getByRole('row', { name: new RegExp(`^${hourLabel(bucket)}`) })).toContainText('4,321');
    await screenshot(plain, testInfo, '02-overview-no-javascript');
  } finally {
    await noScript.close();
  }
  expect(errors).toEqual([]);
});

test('telemetry shows ops events by type with a runbook whose action leads to the filtered page', async ({ page }, testInfo) => {
  test.setTimeout(90_000);
  const errors = watchConsole(page);
  await openSection(page, 'operator', '/telemetry', 'Telemetry');

  const byType = page.getByRole('region', { name: 'Ops events by type' });
  const failedRow = byType.getByRole('row', { name: /meter_reporting_failed/ });
  expect(Number((await failedRow.getByRole('cell').first().textContent())?.replace(/,/g, ''))).toBeGreaterThanOrEqual(3);
  await expect(page.getByRole('img', { name: /Ops events by type, last 24 hours/ }).locator('path.recharts-rectangle').first()).toBeVisible();

  // Every ops event type has its runbook; this one's action is the failed-events retry.
  await expect(page.locator('article[id^="runbook-"]')).toHaveCount(OPS_EVENT_TYPES.length);
  const runbook = page.getByRole('article', { name: /Stripe rejected a meter event/ });
  await expect(runbook.getByRole('heading', { name: 'What to check' })).toBeVisible();
  await expectAccessible(page, 'telemetry');
  await screenshot(page, testInfo, '03-telemetry');

  await page.getByRole('navigation', { name: 'Time range' }).getByRole('link', { name: 'Last 7 days' }).click();
  await expect(page).toHaveURL('/telemetry?range=7d');
  await expect(page.getByRole('navigation', { name: 'Time range' }).getByRole('link', { name: 'Last 7 days' })).toHaveAttribute('aria-current', 'page');
  await expect(page.getByRole('img', { name: /Ops events by type, last 7 days/ }).locator('.recharts-wrapper > svg.recharts-surface')).toBeVisible();

  await page.getByRole('article', { name: /Stripe rejected a meter event/ }).getByRole('link', { name: /Retry failed events/ }).click();
  await expect(page).toHaveURL('/events?status=failed');
  await expect(page.getByRole('heading', { level: 1, name: 'Events' })).toBeVisible();
  await expect(page.getByLabel('Status', { exact: true })).toHaveValue('failed');
  await screenshot(page, testInfo, '04-runbook-action');

  const awaiting = await page.goto('/telemetry#runbook-metered_charge_awaiting_payment_method');
  expect(awaiting?.status()).toBe(200);
  await page.getByRole('article', { name: /waiting for a payment method/ }).getByRole('link', { name: /Windows awaiting a payment method/ }).click();
  await expect(page).toHaveURL('/windows?state=awaiting_payment_method');
  await expect(page.getByLabel('State', { exact: true })).toHaveValue('awaiting_payment_method');
  expect(errors).toEqual([]);
});

test('ops events are grouped by type, processor and source, each group opening to its latest events', async ({ page }) => {
  test.setTimeout(90_000);
  const errors = watchConsole(page);
  await openSection(page, 'operator', '/', 'Overview');
  const groups = page.getByRole('list', { name: 'Latest open ops events' });
  const failed = groups.getByRole('listitem').filter({ hasText: 'meter_reporting_failed · stripe · sync' }).first();
  await expect(failed.getByText(/^\d[\d,]* open, \d[\d,]* resolved · first seen .* · last seen /)).toBeVisible();
  // Closed until asked; opened, it lists the latest events, each linked to its page, and the runbook.
  const firstEvent = failed.getByRole('link', { name: /^Event [0-9a-f]{8}…$/ }).first();
  await expect(firstEvent).toBeHidden();
  await failed.locator('summary').click();
  await expect(firstEvent).toBeVisible();
  await expect(firstEvent).toHaveAttribute('href', /^\/events\/[0-9a-f-]{36}$/);
  await expect(failed.getByRole('link', { name: /Runbook: Stripe rejected a meter event/ })).toHaveAttribute('href', '/telemetry#runbook-meter_reporting_failed');

  await page.goto('/telemetry');
  const telemetryGroups = page.getByRole('list', { name: 'Ops event groups' });
  await expect(telemetryGroups.getByRole('listitem').filter({ hasText: 'meter_reporting_failed · stripe · sync' }).first()).toBeVisible();
  expect(errors).toEqual([]);
});

test('the overview and telemetry charts fit a 390 px wide screen with no horizontal scroll', async ({ browser }, testInfo) => {
  test.setTimeout(90_000);
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  try {
    const page = await context.newPage();
    const errors = watchConsole(page);
    const fits = async (path: string, charts: RegExp[]) => {
      for (const name of charts) {
        const chart = page.getByRole('img', { name });
        await expect(chart.locator('.recharts-wrapper > svg.recharts-surface')).toBeVisible();
        for (const box of [await chart.boundingBox(), await chart.locator('svg.recharts-surface').first().boundingBox()]) {
          expect(box, `${path} ${name}`).not.toBeNull();
          expect(box!.x, `${path} ${name}`).toBeGreaterThanOrEqual(0);
          expect(box!.x + box!.width, `${path} ${name}`).toBeLessThanOrEqual(390);
        }
        // Fewer hour labels than hours when narrow, none of them overlapping the next.
        const ticks = await chart.locator('.recharts-xAxis .recharts-cartesian-axis-tick-value').evaluateAll((els) =>
          els.map((el) => el.getBoundingClientRect()).map((r) => ({ left: r.left, right: r.right })),
        );
        expect(ticks.length, `${path} ${name} ticks`).toBeGreaterThan(1);
        expect(ticks.length, `${path} ${name} ticks`).toBeLessThan(24);
        for (let i = 1; i < ticks.length; i++) expect(ticks[i]!.left, `${path} ${name} tick ${i}`).toBeGreaterThanOrEqual(ticks[i - 1]!.right);
        // The legend wraps within the chart instead of running off the screen.
        for (const item of await chart.locator('.recharts-legend-item').all()) {
          const box = await item.boundingBox();
          expect(box!.x + box!.width, `${path} ${name} legend`).toBeLessThanOrEqual(390);
        }
      }
      expect(await page.evaluate(() => document.documentElement.scrollWidth), path).toBeLessThanOrEqual(390);
    };
    await openSection(page, 'operator', '/', 'Overview', { nav: false });
    await fits('/', [/Usage events accepted, reported and failed per hour/, /Ops events per hour/]);
    await screenshot(page, testInfo, '05-overview-390');
    await page.goto('/telemetry');
    await expect(page.getByRole('heading', { level: 1, name: 'Telemetry' })).toBeVisible();
    await fits('/telemetry', [/Ops events by type, last 24 hours/]);
    await page.goto('/telemetry?range=7d');
    await fits('/telemetry?range=7d', [/Ops events by type, last 7 days/]);
    await screenshot(page, testInfo, '06-telemetry-390');
    expect(errors).toEqual([]);
  } finally {
    await context.close();
  }
});
