import { expect, test } from '@playwright/test';
import { expectAccessible, watchConsole } from './support';

test('an anonymous visitor is sent to sign in; the login page hydrates cleanly and is accessible', async ({ page }) => {
  const errors = watchConsole(page);

  const response = await page.goto('/');
  expect(response?.status()).toBe(200);
  await expect(page).toHaveURL('/login?redirectTo=%2F');
  await expect(page.getByRole('heading', { level: 1, name: 'Sign in to Meterdesk' })).toBeVisible();
  await expect(page).toHaveTitle('Sign in · Meterdesk');
  // Hydration errors and failed asset loads surface only after the scripts have run.
  await page.waitForLoadState('networkidle');

  // Client-side validation (Conform) once hydrated: nothing is sent for an empty form.
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByText('Enter your email address')).toBeVisible();

  await expectAccessible(page, 'login');
  expect(errors).toEqual([]);
});
