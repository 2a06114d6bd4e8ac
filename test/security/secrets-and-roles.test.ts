// Security checks the other suites do not already make (session fixation, cross-site POSTs and login throttling are
// in test/desk/auth.test.ts; webhook signatures, replays and the 5-minute tolerance in test/api/stripe-webhooks.test.ts):
// an API key is never stored or logged in clear, secrets never reach logs or error pages, and crafted form fields
// never buy a role more than it has.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cookieFrom, cookies, startDeskTestApp, type DeskTestApp } from '../support/desk';
import { DESK_TEST_USERS } from '../support/desk-users';

let app: DeskTestApp;
const session = { admin: '', operator: '', finance: '', support: '' };

beforeAll(async () => {
  app = await startDeskTestApp();
  for (const role of Object.keys(session) as Array<keyof typeof session>) session[role] = await app.sessionCookieFor(role);
}, 120_000);
afterAll(() => app?.close());

/** Everything this process writes to stdout, stderr and the console while `fn` runs. */
async function captureOutput(fn: () => Promise<void>): Promise<string> {
  const chunks: string[] = [];
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  const methods = ['log', 'info', 'warn', 'error', 'debug'] as const;
  const saved = methods.map((m) => console[m]);
  const collect = (chunk: unknown) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
    return true;
  };
  process.stdout.write = collect as typeof process.stdout.write;
  process.stderr.write = collect as typeof process.stderr.write;
  for (const m of methods) console[m] = (...args: unknown[]) => void chunks.push(args.map(String).join(' '));
  try {
    await fn();
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    methods.forEach((m, i) => (console[m] = saved[i]!));
  }
  return chunks.join('\n');
}

/** Every text-like column of every table (ours and graphile_worker's) that contains `needle`, as `table.column`. */
async function columnsContaining(needle: string): Promise<string[]> {
  const { rows: columns } = await app.services.pool.query<{ schema: string; table: string; column: string }>(
    `SELECT c.table_schema AS schema, c.table_name AS table, c.column_name AS column
       FROM information_schema.columns c JOIN information_schema.tables t
         ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
      WHERE c.table_schema IN ('public', 'graphile_worker')
        AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea')`,
  );
  expect(columns.length).toBeGreaterThan(20);
  const hits: string[] = [];
  for (const { schema, table, column } of columns) {
    const { rows } = await app.services.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${schema}"."${table}" WHERE position($1 IN "${column}"::text) > 0`,
      [needle],
    );
    if (rows[0]!.n > 0) hits.push(`${schema}.${table}.${column}`);
  }
  return hits;
}

const KEY = /md_[A-Za-z0-9_-]{43}/;

describe('API keys', () => {
  it('are shown once, then never stored, logged or sent back in clear, and work only whole', async () => {
    let key = '';
    const output = await captureOutput(async () => {
      const created = await app.postForm('/admin/api-keys', { intent: 'create', name: 'security check', reason: 'test' }, { cookie: session.admin });
      expect(created.status).toBe(302);
      // The flash cookie that carries it to the next page is encrypted, not merely signed.
      const flash = cookieFrom(created, 'md_flash');
      expect(flash).toBeTruthy();
      const page = await (await app.request('/admin/api-keys', { cookie: cookies(session.admin, flash) })).text();
      key = KEY.exec(page)?.[0] ?? '';
      expect(key).not.toBe('');
      expect(flash).not.toContain(key);
      expect(flash).not.toContain(key.slice(3, 23));
      // Once: the same page again does not show it.
      expect(await (await app.request('/admin/api-keys', { cookie: session.admin })).text()).not.toContain(key);

      const post = (k: string, body: unknown) =>
        fetch(`${app.url}/api/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect((await post(key, { customer: 'nobody-here', event_name: 'ai_tokens' })).status).toBe(422);
      const near = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
      const refused = await post(near, { customer: 'nobody-here', event_name: 'ai_tokens' });
      expect(refused.status).toBe(401);
      expect(await refused.text()).not.toContain(near.slice(3));
      expect((await post(key.slice(0, 20), {})).status).toBe(401);
    });

    // Neither the key nor any 20-character run of its secret part is in any text column of the database (the scan
    // does find what is stored: the key's name).
    expect(await columnsContaining('security check')).toContain('public.api_keys.name');
    const secret = key.slice(3);
    for (const needle of [key, secret.slice(0, 20), secret.slice(-20)]) expect(await columnsContaining(needle), needle).toEqual([]);
    expect(output).not.toContain(secret.slice(0, 20));
    expect(output).not.toContain(secret.slice(-20));
  });
});

describe('secrets', () => {
  it('never reach error pages, problem documents or logs', async () => {
    const sessionSecret = `session-secret-${randomBytes(24).toString('hex')}`;
    const variant = await app.startVariant({ sessionSecret });
    const connectionString = String((app.services.pool as unknown as { options: { connectionString: string } }).options.connectionString);
    const dbPassword = new URL(connectionString).password;
    const secrets = [sessionSecret, connectionString, ...(dbPassword.length >= 6 ? [dbPassword] : []), DESK_TEST_USERS.admin.password];
    try {
      const bodies: string[] = [];
      const output = await captureOutput(async () => {
        const visit = async (path: string, init: RequestInit & { cookie?: string } = {}) => {
          const { cookie, ...rest } = init;
          const res = await fetch(variant.url + path, { redirect: 'manual', ...rest, headers: { ...(cookie ? { cookie } : {}), ...(rest.headers as Record<string, string>) } });
          bodies.push(`${res.status} ${[...res.headers].join(' ')} ${await res.text()}`);
          return res.status;
        };
        expect(await visit('/no-such-page', { cookie: session.operator })).toBe(404);
        expect(await visit('/windows/00000000-0000-0000-0000-000000000000', { cookie: session.operator })).toBe(404);
        expect(await visit('/events/not-an-id', { cookie: session.operator })).toBeGreaterThanOrEqual(400);
        expect(await visit('/admin/users', { cookie: session.support })).toBe(403);
        expect(await visit('/api/v1/events', { method: 'POST', headers: { authorization: 'Bearer nope', 'content-type': 'application/json' }, body: '{' })).toBe(401);
        // A wrong password for a real account: the page must not echo what was typed.
        expect(
          await visit('/login', {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded', origin: variant.url },
            body: new URLSearchParams({ email: DESK_TEST_USERS.admin.email, password: `${DESK_TEST_USERS.admin.password}!` }).toString(),
          }),
        ).toBeLessThan(500);
        // A tampered session cookie.
        expect(await visit('/', { cookie: `md_session=${'A'.repeat(43)}.${sessionSecret.slice(0, 10)}` })).toBeLessThan(500);
      });
      const seen = `${bodies.join('\n')}\n${output}`;
      expect(bodies).toHaveLength(7);
      for (const s of secrets) expect(seen.includes(s), `a secret (${s.slice(0, 6)}…) was shown`).toBe(false);
      expect(seen).not.toContain(`${DESK_TEST_USERS.admin.password}!`);
    } finally {
      await variant.close();
    }
  });
});

describe('role escalation through crafted form fields', () => {
  const userRoles = async () =>
    (await app.services.pool.query<{ email: string; role: string }>(`SELECT u.email, r.name AS role FROM users u JOIN roles r ON r.id = u.role_id ORDER BY u.email`)).rows;

  it('is refused at the guard, and nothing changes', async () => {
    const before = await userRoles();
    const auditBefore = Number((await app.services.pool.query(`SELECT count(*) FROM audit_log`)).rows[0].count);
    const attempts: Array<{ who: keyof typeof session; path: string; fields: Record<string, string> }> = [
      // Support and operators may not touch users, whatever the form claims.
      { who: 'support', path: '/admin/users', fields: { intent: 'create', email: 'mole@desk.test', role: 'admin', password: 'x'.repeat(20) } },
      { who: 'support', path: '/admin/users', fields: { intent: 'change-role', userId: app.userIds.support, role: 'admin', reason: 'promote me' } },
      { who: 'operator', path: '/admin/users', fields: { intent: 'change-role', userId: app.userIds.operator, role: 'admin', reason: 'promote me' } },
      { who: 'finance', path: '/admin/api-keys', fields: { intent: 'create', name: 'finance key', role: 'admin' } },
      // Extra fields that name a wider permission do not widen it: support retrying by filter across customers.
      { who: 'support', path: '/events?status=failed', fields: { intent: 'retry-filter', permission: 'retry:meter-event:any', scope: 'any', role: 'operator' } },
      // Finance may write off, not re-author, repair or settle.
      { who: 'finance', path: '/windows/00000000-0000-0000-0000-000000000000', fields: { intent: 'reauthor', role: 'operator', reason: 'x' } },
      // Support may not add definitions.
      { who: 'support', path: '/definitions', fields: { intent: 'add-definition', eventName: 'mole_events', role: 'operator' } },
      { who: 'support', path: '/reconciliation', fields: { intent: 'run', role: 'admin' } },
    ];
    for (const a of attempts) {
      const res = await app.postForm(a.path, a.fields, { cookie: session[a.who] });
      expect(res.status, `${a.who} POST ${a.path} ${JSON.stringify(a.fields)}`).toBe(403);
    }
    expect(await userRoles()).toEqual(before);
    expect(Number((await app.services.pool.query(`SELECT count(*) FROM audit_log`)).rows[0].count)).toBe(auditBefore);
    expect((await app.services.pool.query(`SELECT count(*)::int AS n FROM api_keys WHERE name = 'finance key'`)).rows[0].n).toBe(0);
    expect((await app.services.pool.query(`SELECT count(*)::int AS n FROM meters WHERE event_name = 'mole_events'`)).rows[0].n).toBe(0);
  });

  it('a role field in the session-bound forms is ignored: an admin creating a user gets exactly the role asked, once', async () => {
    const res = await app.postForm(
      '/admin/users',
      { intent: 'create', email: 'Plain.Support@desk.test', role: 'support', password: 'correct horse battery staple', actorRole: 'admin', role_id: '1' },
      { cookie: session.admin },
    );
    expect([200, 302]).toContain(res.status);
    const rows = (await userRoles()).filter((r) => r.email === 'plain.support@desk.test');
    expect(rows).toEqual([{ email: 'plain.support@desk.test', role: 'support' }]);
  });
});
