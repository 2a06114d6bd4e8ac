// Helpers for the desk's browser journeys: sign in as a role, fail on console errors, check accessibility, and
// keep screenshots of each step (in the test's output directory, attached to the report).
import AxeBuilder from '@axe-core/playwright';
import { expect, type Page, type TestInfo } from '@playwright/test';
import { DESK_TEST_USERS } from '../support/desk-users';
import type { RoleName } from '../../app/billing/access/permissions';

export { DESK_TEST_USERS };

/** Collects console errors and uncaught exceptions; assert `expect(errors).toEqual([])` at the end. */
export function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`${message.text()} (${message.location().url})`);
  });
  page.on('pageerror', (error) => errors.push(`uncaught: ${error.message}`));
  return errors;
}

/** No serious or critical axe violations on the page as it is now. */
export async function expectAccessible(page: Page, label: string): Promise<void> {
  const result = await new AxeBuilder({ page }).analyze();
  const serious = result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  expect(serious, `axe on ${label}`).toEqual([]);
}

export async function screenshot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const path = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path, fullPage: true });
  await testInfo.attach(name, { path, contentType: 'image/png' });
}

/** Signs in through the login form (from wherever the page is, or /login) and waits for the desk. */
export async function signIn(page: Page, role: RoleName, options: { from?: string } = {}): Promise<void> {
  const user = DESK_TEST_USERS[role];
  await page.goto(options.from ?? '/login');
  await expect(page).toHaveURL(/\/login/);
  await page.getByLabel('Email').fill(user.email);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('navigation', { name: 'Desk sections' })).toBeVisible();
}
