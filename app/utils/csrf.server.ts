// Cross-site request refusal for every state-changing request React Router handles. It runs as the root route's
// middleware, so it wraps every action (page, fetcher, resource route) and no route can forget it. Together with
// SameSite=Lax cookies (a cross-site POST carries no session) it is the desk's CSRF defence; see
// docs/decisions/007-desk-sessions-csrf-throttling.md for why no tokens.
import { data, type MiddlewareFunction } from 'react-router';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * True when the browser says the request comes from a page of this same site:
 * - `Sec-Fetch-Site` (sent by every current browser, and not settable by page script) must be `same-origin`,
 *   or `none` (the user typed the address or used a bookmark);
 * - otherwise, `Origin` must name this host. Browsers send Origin on every POST.
 * A request with neither header is refused: it is not from a browser we can reason about.
 * Only the host is compared (not the scheme), so a TLS-terminating proxy in front does not break the desk.
 */
export function isSameOriginRequest(request: Request): boolean {
  const fetchSite = request.headers.get('sec-fetch-site');
  if (fetchSite) return fetchSite === 'same-origin' || fetchSite === 'none';
  const origin = request.headers.get('origin');
  if (!origin || origin === 'null') return false;
  const originHost = URL.parse(origin)?.host;
  return originHost !== undefined && originHost.toLowerCase() === new URL(request.url).host.toLowerCase();
}

export const csrfMiddleware: MiddlewareFunction<Response> = async ({ request }, next) => {
  if (!SAFE_METHODS.has(request.method.toUpperCase()) && !isSameOriginRequest(request)) {
    throw data(
      { message: 'This request came from another site and was refused. Reload the desk and try again from its own pages.' },
      { status: 403, statusText: 'Cross-site request refused' },
    );
  }
  return next();
};
