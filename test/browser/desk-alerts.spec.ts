// Operator's journey on the alerts page: a rule with impossible numbers is refused beside its field, a rule and a
// signed webhook channel are created (the secret shown once), an evaluation pass fires the rule, and the firing and
// its delivery (checked for its signature at the receiver) show on the page. Support reads the page and gets no forms.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { expect, test } from '@playwright/test';
import { verifyAlertSignature } from '../../app/billing/alerts/channels';
import { deliverAlert } from '../../app/billing/alerts/deliveries';
import { evaluateAlerts } from '../../app/billing/alerts/evaluate';
import { expectAccessible, openSection, screenshot, servedServices, signIn, watchConsole } from './support';

test('operator creates a rule and a channel, sees a firing and its signed delivery', async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const errors = watchConsole(page);
  const services = servedServices();
  const received: { body: string; signature: string }[] = [];
  const receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ body, signature: String(req.headers['meterdesk-signature'] ?? '') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const ruleName = `e2e silence ${randomUUID().slice(0, 8)}`;
  const channelName = `e2e on-call ${randomUUID().slice(0, 8)}`;
  try {
    await openSection(page, 'operator', '/alerts', 'Alerts');
    await expect(page.getByRole('region', { name: 'Firing now' })).toBeVisible();
    await expectAccessible(page, 'alerts');
    await screenshot(page, testInfo, '01-alerts');

    // Impossible numbers: refused beside the field, nothing created.
    const create = page.getByRole('region', { name: 'Create a rule' });
    await create.getByLabel('Name', { exact: true }).fill(ruleName);
    await create.getByLabel('Kind').selectOption('silence');
    await create.getByLabel('Minutes').fill('0');
    await create.getByRole('button', { name: 'Create rule' }).click();
    await expect(create.getByText('must be at least 1 minute')).toBeVisible();
    await expect(page.getByRole('region', { name: 'Rules' }).getByRole('row', { name: new RegExp(ruleName) })).toHaveCount(0);
    await screenshot(page, testInfo, '02-rule-refused');

    await create.getByLabel('Minutes').fill('1');
    await create.getByRole('button', { name: 'Create rule' }).click();
    await expect(page.getByRole('status')).toContainText(`Rule "${ruleName}" created`);
    await expect(page.getByRole('region', { name: 'Rules' }).getByRole('row', { name: new RegExp(ruleName) })).toContainText('ok');

    const channel = page.getByRole('region', { name: 'Add a channel' });
    await channel.getByLabel('Name').fill(channelName);
    await channel.getByLabel('Kind').selectOption('webhook');
    await channel.getByLabel('URL').fill(url);
    await channel.getByRole('button', { name: 'Add channel' }).click();
    await expect(page.getByRole('status')).toContainText(`Channel "${channelName}" created`);
    const secretBox = page.getByTestId('one-time-secret');
    await expect(secretBox).toHaveText(/^whsec_[A-Za-z0-9_-]{32}$/);
    const secret = (await secretBox.textContent())!;
    await screenshot(page, testInfo, '03-channel-created');
    await page.reload();
    await expect(page.getByTestId('one-time-secret')).toHaveCount(0);
    const channelRow = page.getByRole('region', { name: 'Channels' }).getByRole('row', { name: new RegExp(channelName) });
    await expect(channelRow).toContainText(secret.slice(0, 10));
    await expect(channelRow).not.toContainText(secret);

    // The crontab's pass, as if it ran two days from now: nothing was received for far more than a minute.
    const pass = await evaluateAlerts(services.pool, { now: new Date(Date.now() + 2 * 86_400_000) });
    expect(pass.fired.length).toBeGreaterThanOrEqual(1);
    const { rows } = await services.pool.query<{ id: string }>(
      `SELECT d.id FROM alert_deliveries d JOIN alert_channels c ON c.id = d.channel_id WHERE c.name = $1`,
      [channelName],
    );
    expect(rows).toHaveLength(pass.fired.length);
    for (const d of rows) await deliverAlert((fn) => fn(services.pool), d.id, { attempt: 1, maxAttempts: 8 });
    const mine = received.map((r) => ({ ...r, json: JSON.parse(r.body) })).find((r) => r.json.alert?.rule?.name === ruleName)!;
    expect(mine.json.type).toBe('alert.firing');
    expect(verifyAlertSignature(secret, mine.body, mine.signature)).toBe(true);

    await page.reload();
    const firing = page.getByRole('region', { name: 'Firing now' }).getByRole('row', { name: new RegExp(ruleName) });
    await expect(firing).toContainText('No usage event');
    await expect(page.getByRole('region', { name: 'Rules' }).getByRole('row', { name: new RegExp(ruleName) })).toContainText('firing');
    await expect(page.getByRole('region', { name: 'Recent deliveries' }).getByRole('row', { name: new RegExp(channelName) }).first()).toContainText('delivered');
    await expectAccessible(page, 'alerts firing');
    await screenshot(page, testInfo, '04-firing');

    // The overview lists it too, linked to this page.
    await page.getByRole('navigation', { name: 'Desk sections' }).getByRole('link', { name: 'Overview' }).click();
    await expect(page.getByRole('region', { name: 'Alerts firing' }).getByRole('row', { name: new RegExp(ruleName) })).toBeVisible();
    await page.getByRole('navigation', { name: 'Desk sections' }).getByRole('link', { name: 'Alerts' }).click();
    await expect(page).toHaveURL('/alerts');

    // Turned off, the rule's firing resolves at the next pass.
    await page.getByRole('region', { name: 'Rules' }).getByRole('button', { name: `Turn off ${ruleName}` }).click();
    await expect(page.getByRole('status')).toContainText(`Rule "${ruleName}" turned off`);

    // Support reads alerts, and gets none of the forms.
    await page.context().clearCookies();
    await signIn(page, 'support', { from: '/alerts' });
    await expect(page.getByRole('heading', { level: 1, name: 'Alerts' })).toBeVisible();
    await expect(page.getByRole('region', { name: 'Create a rule' })).toHaveCount(0);
    await expect(page.getByRole('region', { name: 'Add a channel' })).toHaveCount(0);
    await expect(page.getByRole('button', { name: /Send test/ })).toHaveCount(0);
    // The one refusal above is the server's (400 with the field's error, by design); nothing else may be logged.
    expect(errors.filter((e) => !/status of 400 .*\/alerts\.data/.test(e))).toEqual([]);
    expect(errors).toHaveLength(1);
  } finally {
    await new Promise((r) => receiver.close(r));
    await services.close();
  }
});
