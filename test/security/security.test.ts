// Security checks beyond test/desk/auth.test.ts (session rotation, the basic cross-site refusal, throttling from
// one address) and test/security/secrets-and-roles.test.ts: every intent of every desk action refused cross-site
// with nothing changed; login throttling per account across client addresses, per address across accounts, and
// not fooled by X-Forwarded-For; a pre-login session cookie dead after login; an admin cannot change their own
// role or disable themselves; a real 500 error page shows no secret, SQL or stack.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RoleName } from '../../app/billing/access/permissions';
import { LOGIN_THROTTLE } from '../../app/utils/login.server';
import { DESK_TEST_USERS, startDeskTestApp, type DeskTestApp } from '../support/desk';

let app: DeskTestApp;
const session = {} as Record<RoleName, string>;
const sessionSecret = `security-test-session-secret-${randomBytes(16).toString('hex')}`;

beforeAll(async () => {
  app = await startDeskTestApp({ sessionSecret });
  for (const role of ['admin', 'operator', 'finance', 'support'] as const) session[role] = await app.sessionCookieFor(role);
}, 120_000);
afterAll(() => app?.close());
beforeEach(async () => {
  await app.services.pool.query('DELETE FROM login_attempts');
});

const WATCHED = ['users', 'api_keys', 'meters', 'meter_prices', 'meter_events', 'windows', 'invoices', 'charge_attempts', 'ops_events', 'audit_log', 'sessions'];
async function fingerprint(): Promise<string> {
  const parts = WATCHED.map((t) => `(SELECT count(*)::text || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM ${t} x)`);
  const { rows } = await app.services.pool.query(`SELECT concat_ws('|', ${parts.join(', ')}, (SELECT count(*)::text FROM graphile_worker._private_jobs)) AS f`);
  return rows[0].f as string;
}

describe('cross-site requests', () => {
  const ID = '00000000-0000-4000-8000-000000000000';
  // Every action the desk has, with each intent it understands; each as the role allowed to run it.
  const actions: Array<{ role: RoleName; path: string; fields: Record<string, string> }> = [
    { role: 'admin', path: '/admin/users', fields: { intent: 'create', email: 'csrf-new@desk.test', role: 'admin', password: 'correct horse battery staple' } },
    { role: 'admin', path: '/admin/users', fields: { intent: 'change-role', userId: '', role: 'admin' } },
    { role: 'admin', path: '/admin/users', fields: { intent: 'disable', userId: '' } },
    { role: 'admin', path: '/admin/users', fields: { intent: 'enable', userId: '' } },
    { role: 'admin', path: '/admin/api-keys', fields: { intent: 'create', name: 'csrf key' } },
    { role: 'admin', path: '/admin/api-keys', fields: { intent: 'revoke', apiKeyId: ID } },
    { role: 'operator', path: '/events?status=failed', fields: { intent: 'retry-filter', force: 'on', reason: 'csrf' } },
    { role: 'operator', path: '/events', fields: { intent: 'retry-selection', ids: ID } },
    { role: 'operator', path: '/events', fields: { intent: 'retry-one', id: ID } },
    { role: 'operator', path: '/events', fields: { intent: 'retry-customer', customerId: ID } },
    { role: 'operator', path: `/events/${ID}`, fields: { intent: 'retry-one' } },
    { role: 'operator', path: `/customers/${ID}`, fields: { intent: 'retry-customer' } },
    { role: 'operator', path: '/windows', fields: { intent: 'repair-stale', subscriptionId: ID } },
    { role: 'operator', path: `/windows/${ID}`, fields: { intent: 'reauthor', reason: 'csrf' } },
    { role: 'operator', path: `/windows/${ID}`, fields: { intent: 'settle-again', overrideHardDecline: 'on' } },
    { role: 'finance', path: `/windows/${ID}/write-off`, fields: { intent: 'write-off', reason: 'csrf' } },
    { role: 'operator', path: '/definitions', fields: { intent: 'add-definition', eventName: 'csrf_meter', displayName: 'CSRF', aggregation: 'sum' } },
    { role: 'operator', path: '/definitions', fields: { intent: 'replay', eventName: 'ai_tokens' } },
    { role: 'operator', path: '/reconciliation', fields: { intent: 'run' } },
    { role: 'operator', path: '/logout', fields: { intent: 'everywhere' } },
  ];
  const attacks: Array<{ name: string; origin: string | null; headers?: Record<string, string> }> = [
    { name: 'Origin of another site', origin: 'https://evil.test' },
    { name: 'no Origin, Sec-Fetch-Site cross-site', origin: null, headers: { 'sec-fetch-site': 'cross-site' } },
    { name: 'no Origin, Sec-Fetch-Site same-site (a sibling subdomain)', origin: null, headers: { 'sec-fetch-site': 'same-site' } },
    { name: 'our Origin spoofed, but the browser says cross-site', origin: 'SELF', headers: { 'sec-fetch-site': 'cross-site' } },
    { name: 'no Origin and no Sec-Fetch-Site', origin: null },
    { name: 'Origin with our host as a prefix', origin: 'PREFIX' },
  ];

  it('refuses every intent of every desk action, as document and as .data, and changes nothing', async () => {
    for (const a of actions) if (a.fields.userId === '') a.fields.userId = app.userIds.support;
    const before = await fingerprint();
    for (const attack of attacks) {
      const origin = attack.origin === 'SELF' ? app.url : attack.origin === 'PREFIX' ? app.url.replace(/\/\/([^:/]+)/, '//$1.evil.test') : attack.origin;
      for (const a of actions) {
        const [path, query] = a.path.split('?');
        for (const url of [a.path, `${path}.data${query ? `?${query}` : ''}`]) {
          const res = await app.postForm(url, a.fields, { cookie: session[a.role], origin, headers: attack.headers });
          await res.arrayBuffer();
          expect(res.status, `${attack.name}: ${a.role} POST ${url} ${a.fields.intent}`).toBe(403);
        }
      }
    }
    expect(await fingerprint()).toBe(before);
    // The same sessions still work from the desk's own pages.
    const own = await app.postForm('/admin/api-keys', { intent: 'create', name: 'same-origin key' }, { cookie: session.admin, headers: { 'sec-fetch-site': 'same-origin' } });
    expect(own.status).toBe(302);
  });
});

/** A login POST from a chosen loopback address (the whole 127/8 reaches the server on 127.0.0.1). */
function loginFrom(address: string, email: string, password: string, headers: Record<string, string> = {}): Promise<{ status: number; cookie: string | null }> {
  const url = new URL(`${app.url}/login`);
  const body = new URLSearchParams({ email, password }).toString();
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: '/login',
        method: 'POST',
        localAddress: address,
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), origin: app.url, ...headers },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          const set = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
          const session = set.map((c) => c.split(';')[0]!).find((c) => c.startsWith('md_session=') && c.length > 'md_session='.length) ?? null;
          resolve({ status: res.statusCode ?? 0, cookie: session });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('login throttling', () => {
  const { operator, finance, support } = DESK_TEST_USERS;

  it(`locks an account after ${LOGIN_THROTTLE.perEmail} failures spread over as many addresses, even for the right password from a new one`, async () => {
    for (let i = 0; i < LOGIN_THROTTLE.perEmail; i++) {
      expect((await loginFrom(`127.0.1.${i + 1}`, operator.email, `guess ${i}`)).status).toBe(400);
    }
    const recorded = await app.services.pool.query(`SELECT count(DISTINCT ip)::int AS n FROM login_attempts WHERE email = $1`, [operator.email]);
    expect(recorded.rows[0].n, 'the server saw the distinct addresses').toBe(LOGIN_THROTTLE.perEmail);
    const blocked = await loginFrom('127.0.1.200', operator.email, operator.password);
    expect(blocked.status).toBe(429);
    expect(blocked.cookie).toBeNull();
    // The email is matched as the login form normalises it: case and spaces do not open a second counter.
    expect((await loginFrom('127.0.1.201', `  ${operator.email.toUpperCase()} `, operator.password)).status).toBe(429);
    // Another account is unaffected.
    expect((await loginFrom('127.0.1.202', finance.email, finance.password)).status).toBe(302);
  });

  it(`locks an address after ${LOGIN_THROTTLE.perAddress} failures across accounts, not other addresses, and X-Forwarded-For does not move it`, async () => {
    const sprayer = '127.0.2.1';
    for (let i = 0; i < LOGIN_THROTTLE.perAddress; i++) {
      // A client claiming to be elsewhere through X-Forwarded-For is still counted at its socket address.
      const r = await loginFrom(sprayer, `spray-${i}@desk.test`, 'Winter2026!', { 'x-forwarded-for': `10.0.${i}.1`, 'x-real-ip': `10.1.${i}.1` });
      expect(r.status).toBe(400);
    }
    expect((await loginFrom(sprayer, support.email, support.password, { 'x-forwarded-for': '10.9.9.9' })).status).toBe(429);
    expect((await loginFrom('127.0.2.2', support.email, support.password)).status).toBe(302);
  });
});

describe('sessions', () => {
  it('a cookie set before login (planted, or left by another session) is useless after it', async () => {
    const sha = (s: string) => createHash('sha256').update(s).digest('hex');
    const planted = `md_session=${randomBytes(32).toString('base64url')}`;
    const stolen = await app.sessionCookieFor('finance');
    for (const before of [planted, stolen]) {
      const { response, cookie } = await app.login(DESK_TEST_USERS.finance.email, DESK_TEST_USERS.finance.password, { cookie: before });
      expect(response.status).toBe(302);
      expect(cookie).not.toBeNull();
      expect(cookie).not.toBe(before);
      const old = await app.request('/', { cookie: before });
      await old.arrayBuffer();
      expect(old.status, 'the pre-login cookie must not be signed in').toBe(302);
      expect(old.headers.get('location')).toMatch(/^\/login/);
      const rows = await app.services.pool.query(`SELECT 1 FROM sessions WHERE id = $1`, [sha(before.slice('md_session='.length))]);
      expect(rows.rowCount).toBe(0);
    }
  });
});

describe('role changes', () => {
  it('an admin cannot change their own role or disable themselves, and nothing changes', async () => {
    const before = await fingerprint();
    const attempts: Array<Record<string, string>> = [
      { intent: 'change-role', userId: app.userIds.admin, role: 'support', reason: 'step down' },
      { intent: 'change-role', userId: app.userIds.admin, role: 'admin' },
      { intent: 'disable', userId: app.userIds.admin, reason: 'leaving' },
    ];
    for (const fields of attempts) {
      const res = await app.postForm('/admin/users', fields, { cookie: session.admin });
      await res.arrayBuffer();
      expect(res.status, JSON.stringify(fields)).toBe(400);
    }
    expect(await fingerprint()).toBe(before);
  });

  it('a role that loses a permission loses it on its next request, whatever its open pages post', async () => {
    // A support user demoted to finance while signed in: the same session may no longer retry.
    const victim = await app.sessionCookieFor('support');
    const demote = await app.postForm('/admin/users', { intent: 'change-role', userId: app.userIds.support, role: 'finance', reason: 'moved team' }, { cookie: session.admin });
    expect(demote.status).toBe(302);
    try {
      const res = await app.postForm(`/customers/00000000-0000-4000-8000-000000000000`, { intent: 'retry-customer', role: 'support' }, { cookie: victim });
      await res.arrayBuffer();
      expect(res.status).toBe(403);
    } finally {
      const back = await app.postForm('/admin/users', { intent: 'change-role', userId: app.userIds.support, role: 'support', reason: 'back' }, { cookie: session.admin });
      expect(back.status).toBe(302);
    }
  });
});

describe('error pages', () => {
  it('a real server error shows a generic page: no SQL, no stack, no secret, no connection string', async () => {
    const connectionString = app.services.connectionString;
    const secrets = [sessionSecret, connectionString, new URL(connectionString).password, DESK_TEST_USERS.admin.password].filter((s) => s.length >= 6);
    // Break the audit page's table for a moment: its loader fails inside PostgreSQL.
    await app.services.pool.query('ALTER TABLE audit_log RENAME TO audit_log_hidden');
    let pages: string[];
    try {
      pages = [];
      for (const url of ['/audit', '/audit.data']) {
        const res = await app.request(url, { cookie: session.admin });
        const body = await res.text();
        expect(res.status, url).toBe(500);
        pages.push(`${[...res.headers].join('\n')}\n${body}`);
      }
    } finally {
      await app.services.pool.query('ALTER TABLE audit_log_hidden RENAME TO audit_log');
    }
    for (const page of pages) {
      for (const s of secrets) expect(page.includes(s), `a secret (${s.slice(0, 6)}…) was shown`).toBe(false);
      expect(page).not.toMatch(/audit_log|relation .* does not exist|SELECT |\bat [\w.<>]+ \(|node_modules|\/work\//);
    }
    const after = await app.request('/audit', { cookie: session.admin });
    await after.arrayBuffer();
    expect(after.status).toBe(200);
  });

  it('a 404 page shows no secret either, and never echoes the path as markup', async () => {
    const res = await app.request(`/nope/%3Cscript%3Ealert(1)%3C%2Fscript%3E?${new URLSearchParams({ q: '<img src=x onerror=alert(1)>' })}`, { cookie: session.operator });
    const body = await res.text();
    expect(res.status).toBe(404);
    expect(body).not.toContain('<script>alert(1)</script>');
    expect(body).not.toContain('<img src=x');
    expect(body).not.toContain(sessionSecret);
    expect(body).not.toContain(new URL(app.services.connectionString).password);
  });
});

