// Small helpers shared by routes on the server and in the browser.
import { data } from 'react-router';

/** Throws a Response (rendered by the nearest ErrorBoundary) unless `condition` holds: `invariantResponse(user, 'Not found', { status: 404 })`. */
export function invariantResponse(condition: unknown, message: string, init?: ResponseInit): asserts condition {
  if (!condition) throw data(message, { status: 400, ...init });
}

/**
 * A `redirectTo` from a query string or form, made safe: only a path on this site (`/audit?x=1`), never another
 * origin (`//evil.test`, `/\evil.test`, `https://...`), which would make login an open redirect.
 */
export function safeRedirectPath(to: FormDataEntryValue | string | null | undefined, fallback = '/'): string {
  if (typeof to !== 'string' || !to.startsWith('/') || to.startsWith('//') || to.startsWith('/\\')) return fallback;
  // Control characters and backslashes are never part of a path we generate; browsers may treat `\` as `/`.
  if (/[\u0000-\u001f\\]/.test(to)) return fallback;
  return to;
}

/** `2026-11-22 14:03:07 UTC`: the desk shows every time in UTC, to the second, so operators compare like with like. */
export function formatTimestamp(value: string | Date | null | undefined): string {
  if (!value) return '—';
  const date = typeof value === 'string' ? new Date(value) : value;
  if (Number.isNaN(date.getTime())) return '—';
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}
