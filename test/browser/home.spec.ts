import AxeBuilder from '@axe-core/playwright';
import { expect, test } from '@playwright/test';

test('the home page renders, hydrates without console errors and has no serious accessibility violations', async ({
  page,
}) => {
  const consoleErrors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(`${message.text()} (${message.location().url})`);
  });
  page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));

  const response = await page.goto('/');
  expect(response?.status()).toBe(200);
  await expect(page.getByRole('heading', { level: 1, name: 'Meterdesk' })).toBeVisible();
  await expect(page).toHaveTitle('Meterdesk');
  await expect(page.getByRole('link', { name: 'Service health' })).toHaveAttribute('href', '/healthz');
  // Hydration errors and failed asset loads surface only after the scripts have run.
  await page.waitForLoadState('networkidle');

  const axe = await new AxeBuilder({ page }).analyze();
  const serious = axe.violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map((violation) => `${violation.id}: ${violation.help} (${violation.nodes.length} nodes)`);
  expect(serious).toEqual([]);
  expect(consoleErrors).toEqual([]);
});
