// The permission matrix, generated from the built app's route manifest (`react-router build` output, served by
// startHttpServer): every loader and every action, for every role and for an anonymous visitor, is allowed or
// refused exactly as the table below says, and every action refuses cross-site requests.
//
// ADDING A ROUTE: give it a row in EXPECTED, keyed by its route id (its file under app/ without the extension,
// e.g. `routes/_desk.events`), saying who may run its loader and its action:
//   'public'      anyone, signed in or not (login, logout, the root's flash)
//   'signed-in'   any signed-in user; anonymous visitors are sent to /login
//   a permission  (app/billing/access/permissions.ts) the roles holding it (ROLE_PERMISSIONS = PRODUCT.md's table);
//                 anonymous visitors are sent to /login, other roles get a 403
// A route with a loader or an action and no row fails here: that is the point ("a new route without a guard").
// Dynamic segments get a placeholder UUID; give the row a `url` when the route needs something else.
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ROLE_PERMISSIONS, ROLES, type PermissionString, type RoleName } from '../../app/billing/access/permissions';
import { userHasPermission } from '../../app/utils/permissions';
import { ensureFreshBuild, SERVER_BUILD } from '../support/desk-build';
import { useDeskTestApp } from '../support/desk';

type Access = 'public' | 'signed-in' | PermissionString;

const EXPECTED: Record<string, { loader?: Access; action?: Access; url?: string }> = {
  root: { loader: 'public' },
  'routes/login': { loader: 'public', action: 'public' },
  'routes/logout': { loader: 'public', action: 'public' },
  'routes/_desk': { loader: 'signed-in' },
  'routes/_desk.events': { loader: 'read:meter-event:any', action: 'retry:meter-event:own' },
  'routes/_desk.events.$id': { loader: 'read:meter-event:any', action: 'retry:meter-event:own' },
  'routes/_desk.customers': { loader: 'read:meter-event:any' },
  'routes/_desk.customers.$id': { loader: 'read:meter-event:any', action: 'retry:meter-event:own' },
  'routes/_desk.audit': { loader: 'read:audit:any' },
  'routes/_desk.alerts': { loader: 'read:alert:any', action: 'manage:alert:any' },
  'routes/_desk.windows': { loader: 'read:meter-event:any', action: 'repair:window:any' },
  'routes/_desk.windows.$windowId': { loader: 'read:meter-event:any', action: 'repair:window:any' },
  'routes/_desk.windows.$windowId.write-off': { loader: 'write-off:charge:any', action: 'write-off:charge:any' },
  'routes/_desk.definitions': { loader: 'read:meter-event:any', action: 'write:definition:any' },
  'routes/_desk.invoices': { loader: 'read:invoice:any' },
  'routes/_desk.invoices.export': { loader: 'read:invoice:any' },
  'routes/_desk.invoices.$invoiceId': { loader: 'read:invoice:any' },
  'routes/_index': { loader: 'read:meter-event:any' },
  'routes/_desk.telemetry': { loader: 'read:meter-event:any' },
  'routes/_desk.reconciliation': { loader: 'read:invoice:any', action: 'run:reconciliation:any' },
  'routes/_desk.admin.users': { loader: 'manage:user:any', action: 'manage:user:any' },
  'routes/_desk.admin.api-keys': { loader: 'manage:api-key:any', action: 'manage:api-key:any' },
};

const PLACEHOLDER_ID = '00000000-0000-4000-8000-000000000000';
type Visitor = RoleName | 'anonymous';
const VISITORS: Visitor[] = ['anonymous', ...ROLES];
type Outcome = 'allowed' | 'login' | 'forbidden';

interface ManifestRoute {
  id: string;
  parentId?: string;
  path?: string;
  index?: boolean;
  module: { loader?: unknown; action?: unknown; default?: unknown };
}

await ensureFreshBuild();
const build = (await import(/* @vite-ignore */ pathToFileURL(SERVER_BUILD).href)) as { routes: Record<string, ManifestRoute> };
const routes = Object.values(build.routes);
const guarded = routes.filter((r) => r.module.loader || r.module.action);

function expected(access: Access, visitor: Visitor): Outcome {
  if (access === 'public') return 'allowed';
  if (visitor === 'anonymous') return 'login';
  if (access === 'signed-in') return 'allowed';
  return userHasPermission({ permissions: ROLE_PERMISSIONS[visitor] }, access) ? 'allowed' : 'forbidden';
}

/** The chain root → route, to build its URL and to know every loader a page request runs. */
function branch(route: ManifestRoute): ManifestRoute[] {
  const chain = [route];
  while (chain[0]!.parentId) chain.unshift(build.routes[chain[0]!.parentId!]!);
  return chain;
}

/** A URL the route matches: its path, or for a pathless layout, that of a child (its index route first). */
function urlFor(route: ManifestRoute): string {
  if (EXPECTED[route.id]?.url) return EXPECTED[route.id]!.url!;
  let leaf = route;
  while (!leaf.path && !leaf.index && leaf.id !== 'root') {
    const children = routes.filter((r) => r.parentId === leaf.id);
    const next = children.find((r) => r.index) ?? children[0];
    if (!next) break;
    leaf = next;
  }
  const segments = branch(leaf).flatMap((r) => (r.path ? r.path.split('/') : []));
  const path = segments
    .map((s) => (s.startsWith(':') ? PLACEHOLDER_ID : s === '*' ? 'x' : s.replace(/\?$/, '')))
    .filter(Boolean)
    .join('/');
  return `/${path}`;
}

function classify(response: Response, body: string): Outcome | `unexpected ${number}` {
  if (response.status === 403) return 'forbidden';
  const location = response.headers.get('location') ?? '';
  if (location.startsWith('/login?redirectTo=')) return 'login';
  // Single-fetch (.data) answers a redirect with a 202 whose body carries the target.
  if (response.status === 202 && body.includes('/login?redirectTo=')) return 'login';
  if (response.status >= 500) return `unexpected ${response.status}`;
  return 'allowed';
}

const app = useDeskTestApp();

async function sessionFor(visitor: Visitor): Promise<string | null> {
  return visitor === 'anonymous' ? null : app.sessionCookieFor(visitor);
}

it('has a row for every route with a loader or an action, and none for routes that are gone', () => {
  const missing = guarded.map((r) => r.id).filter((id) => !EXPECTED[id]);
  expect(missing, 'new route(s) without a row in EXPECTED: decide who may load and act, then add them').toEqual([]);
  const stale = Object.keys(EXPECTED).filter((id) => !build.routes[id]);
  expect(stale, 'rows for routes that no longer exist').toEqual([]);
  for (const route of guarded) {
    const row = EXPECTED[route.id]!;
    expect(Boolean(row.loader), `${route.id}: loader in the table vs in the route`).toBe(Boolean(route.module.loader));
    expect(Boolean(row.action), `${route.id}: action in the table vs in the route`).toBe(Boolean(route.module.action));
  }
});

describe.each(guarded.map((r) => [r.id, r] as const))('%s', (id, route) => {
  const row = EXPECTED[id];

  if (route.module.loader) {
    // `_routes=<id>` runs this loader alone, without its parents': each loader must guard itself.
    it.each(VISITORS)('loader, run on its own, for %s', async (visitor) => {
      expect(row?.loader, `${id} has no row in EXPECTED (a new route without a guard?)`).toBeDefined();
      const url = urlFor(route);
      const dataUrl = `${url === '/' ? '/_' : url}.data?_routes=${encodeURIComponent(id)}`;
      const response = await app.request(dataUrl, { cookie: await sessionFor(visitor) });
      const body = await response.text();
      expect(classify(response, body), `GET ${dataUrl} as ${visitor} → ${response.status}`).toBe(expected(row!.loader!, visitor));
    });
  }

  if (route.module.action) {
    const target = () => `${urlFor(route)}${route.index ? '?index' : ''}`;

    // An empty form: allowed visitors get a validation error (400) or a harmless redirect, never a change.
    it.each(VISITORS)('action for %s', async (visitor) => {
      expect(row?.action, `${id} has no row in EXPECTED (a new route without a guard?)`).toBeDefined();
      const response = await app.postForm(target(), {}, { cookie: await sessionFor(visitor) });
      const body = await response.text();
      expect(classify(response, body), `POST ${target()} as ${visitor} → ${response.status}`).toBe(expected(row!.action!, visitor));
    });

    it.each(VISITORS)('action refuses a cross-site POST for %s', async (visitor) => {
      for (const path of [target(), `${urlFor(route) === '/' ? '/_' : urlFor(route)}.data${route.index ? '?index' : ''}`]) {
        const response = await app.postForm(path, { intent: 'create' }, { cookie: await sessionFor(visitor), origin: 'https://evil.test' });
        await response.arrayBuffer();
        expect(response.status, `cross-site POST ${path} as ${visitor}`).toBe(403);
      }
    });
  }
});

// Pages as a browser gets them: every loader on the branch runs, and the strictest rule decides.
const pages = routes.filter((r) => r.module.default && !routes.some((child) => child.parentId === r.id));
describe.each(pages.map((r) => [r.id, r] as const))('page %s', (_id, route) => {
  it.each(VISITORS)('for %s', async (visitor) => {
    const url = urlFor(route);
    const outcomes = branch(route)
      .map((r) => EXPECTED[r.id]?.loader)
      .filter((a): a is Access => a !== undefined)
      .map((a) => expected(a, visitor));
    const want = outcomes.includes('login') ? 'login' : outcomes.includes('forbidden') ? 'forbidden' : 'allowed';
    const response = await app.request(url, { cookie: await sessionFor(visitor) });
    const body = await response.text();
    expect(classify(response, body), `GET ${url} as ${visitor} → ${response.status}`).toBe(want);
  });
});
