// Read your own writes with a read replica (docs/decisions/027-read-replica.md). A desk request that may have written
// (anything but GET and HEAD) answers with a short-lived cookie; while the browser carries it, the desk's loaders read
// from the primary, so the page an action redirects to shows what the action did even when the replica has not
// replayed it yet. app/server/desk-context.ts chooses the pool and holds the root middleware that sets the cookie;
// without a replica (no DATABASE_READ_URL) no cookie is set.
import { cookieName, readCookie, serializeCookie } from './cookies.server';

/** Longer than a healthy replica's lag (milliseconds); a replica further behind shows the older page until it catches up. */
export const READ_YOUR_WRITES_MS = 5_000;

const BASE_NAME = 'md_fresh';

export function freshCookieName(secureCookies: boolean): string {
  return cookieName(BASE_NAME, secureCookies);
}

/**
 * True while the request carries an unexpired cookie. The cookie holds its own end (epoch milliseconds) so a client
 * that ignores Max-Age cannot keep the desk off the replica; a forged one only costs the primary a read.
 */
export function readsOwnWrites(request: Request, secureCookies: boolean, now = Date.now()): boolean {
  const until = Number(readCookie(request, freshCookieName(secureCookies)));
  return Number.isFinite(until) && until > now && until - now <= READ_YOUR_WRITES_MS;
}

export function freshCookie(secureCookies: boolean, now = Date.now()): string {
  return serializeCookie(freshCookieName(secureCookies), String(now + READ_YOUR_WRITES_MS), {
    secure: secureCookies,
    maxAge: READ_YOUR_WRITES_MS / 1000,
  });
}
