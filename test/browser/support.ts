// Helpers for the desk's browser journeys: sign in as a role, fail on console errors, check accessibility, and
// keep screenshots of each step (in the test's output directory, attached to the report).
import AxeBuilder from '@axe-core/playwright';
import { expect, type Page, type TestInfo } from '@playwright/test';
import { DESK_TEST_USERS } from '../support/desk-users';
import type { RoleName } from '../../app/billing/access/permissions';
import { createServices, type Services } from '../../app/server/services';

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

/**
 * Signs in as `role` from a desk section and checks that the section opened: its URL, its level-1 heading, and its
 * link in the section navigation marked current (`nav`: that link's name when it differs; false: no such link).
 */
export async function openSection(page: Page, role: RoleName, path: string, heading: string, options: { nav?: string | false } = {}): Promise<void> {
  await signIn(page, role, { from: path });
  await expect(page).toHaveURL(path);
  await expect(page.getByRole('heading', { level: 1, name: heading })).toBeVisible();
  if (options.nav === false) return;
  await expect(page.getByRole('navigation', { name: 'Desk sections' }).getByRole('link', { name: options.nav ?? heading })).toHaveAttribute('aria-current', 'page');
}

/** The services on the database the browser tests' app serves (test/browser/global-setup.ts sets MD_DATABASE_URL). */
export function servedServices(): Services {
  const connectionString = process.env.MD_DATABASE_URL;
  if (!connectionString) throw new Error('MD_DATABASE_URL is not set: run through test/browser/global-setup.ts (npx playwright test)');
  return createServices({ connectionString });
}
