// Users and API keys pages, and the audit log they write (real desk, real PostgreSQL).
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { writeAudit } from '../../app/billing/audit';
import { listAuditEntries, PAGE_SIZE, parseAuditFilters } from '../../app/presenters/audit';
import { cookieFrom, cookies, DESK_TEST_USERS, useDeskTestApp } from '../support/desk';

const app = useDeskTestApp();
let adminSession: string;

beforeAll(async () => {
  adminSession = await app.sessionCookieFor('admin');
});

/** Follows an action's redirect the way a browser does, carrying the flash cookie it set. */
async function followWithFlash(response: Response, session: string) {
  expect(response.status).toBe(302);
  const flash = cookieFrom(response, 'md_flash');
  expect(flash).toBeTruthy();
  const page = await app.request(response.headers.get('location')!, { cookie: cookies(session, flash) });
  expect(page.status).toBe(200);
  return { html: await page.text(), clearsFlash: page.headers.getSetCookie().some((c) => /^md_flash=;.*Max-Age=0/.test(c)) };
}

async function auditRows(action: string) {
  const { rows } = await app.services.pool.query(
    `SELECT actor_user_id, actor_label, actor_role, action, subject_type, subject_id, reason, before, after
       FROM audit_log WHERE action = $1 ORDER BY id`,
    [action],
  );
  return rows;
}

const secretIn = (html: string) => /data-testid="one-time-secret">([^<]+)</.exec(html)?.[1] ?? null;

describe('users', () => {
  it('creates a user with a generated password shown once, audited with actor, role and reason', async () => {
    const response = await app.postForm(
      '/admin/users',
      { intent: 'create', email: ' New.Person@Desk.TEST ', role: 'finance', reason: 'joined finance' },
      { cookie: adminSession },
    );
    const { html, clearsFlash } = await followWithFlash(response, adminSession);
    expect(html).toContain('User new.person@desk.test created');
    const password = secretIn(html);
    expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(clearsFlash).toBe(true);
    // Shown once: the next view of the page has no secret.
    const again = await app.request('/admin/users', { cookie: adminSession });
    expect(secretIn(await again.text())).toBeNull();

    const { rows } = await app.services.pool.query(
      `SELECT u.id, r.name AS role, u.password_hash FROM users u JOIN roles r ON r.id = u.role_id WHERE email = 'new.person@desk.test'`,
    );
    expect(rows[0]?.role).toBe('finance');
    expect(rows[0]?.password_hash).toMatch(/^\$argon2id\$/);

    const audit = await auditRows('user.create');
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      actor_user_id: app.userIds.admin,
      actor_label: DESK_TEST_USERS.admin.email,
      actor_role: 'admin',
      subject_type: 'user',
      subject_id: rows[0]!.id,
      reason: 'joined finance',
      before: null,
      after: { email: 'new.person@desk.test', name: null, role: 'finance', disabledAt: null, passwordGenerated: true },
    });
    expect(JSON.stringify(audit)).not.toContain(password!);
    expect(JSON.stringify(audit)).not.toContain('argon2');

    // The generated password works.
    const login = await app.login('new.person@desk.test', password!);
    expect(login.response.status).toBe(302);
  });

  it('refuses invalid input and duplicates without writing anything', async () => {
    const before = await app.services.pool.query('SELECT count(*)::int AS n FROM audit_log');
    const invalid = await app.postForm('/admin/users', { intent: 'create', email: 'not-an-email', role: 'wizard' }, { cookie: adminSession });
    expect(invalid.status).toBe(400);
    const body = await invalid.text();
    expect(body).toContain('Enter a valid email address');
    expect(body).toContain('Choose a role');

    const duplicate = await app.postForm(
      '/admin/users',
      { intent: 'create', email: DESK_TEST_USERS.operator.email, role: 'support', password: 'a long enough password' },
      { cookie: adminSession },
    );
    expect(duplicate.status).toBe(400);
    expect(await duplicate.text()).toContain(`A user with the email ${DESK_TEST_USERS.operator.email} already exists.`);

    const noIntent = await app.postForm('/admin/users', {}, { cookie: adminSession });
    expect(noIntent.status).toBe(400);
    const after = await app.services.pool.query('SELECT count(*)::int AS n FROM audit_log');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it('changes a role (taking effect on the next request) and records before and after', async () => {
    const supportSession = await app.sessionCookieFor('support');
    expect((await app.request('/audit', { cookie: supportSession })).status).toBe(403);

    const response = await app.postForm(
      '/admin/users',
      { intent: 'change-role', userId: app.userIds.support, role: 'operator', reason: 'covering the on-call week' },
      { cookie: adminSession },
    );
    const { html } = await followWithFlash(response, adminSession);
    expect(html).toContain(`${DESK_TEST_USERS.support.email} is now operator`);
    expect((await app.request('/audit', { cookie: supportSession })).status).toBe(200);

    const [entry] = await auditRows('user.change_role');
    expect(entry).toMatchObject({
      actor_user_id: app.userIds.admin,
      subject_id: app.userIds.support,
      reason: 'covering the on-call week',
      before: { role: 'support' },
      after: { role: 'operator' },
    });

    await app.postForm('/admin/users', { intent: 'change-role', userId: app.userIds.support, role: 'support' }, { cookie: adminSession });
    expect((await app.request('/audit', { cookie: supportSession })).status).toBe(403);
  });

  it('disables and enables a user, ending their sessions, audited', async () => {
    const financeSession = await app.sessionCookieFor('finance');
    const disable = await app.postForm(
      '/admin/users',
      { intent: 'disable', userId: app.userIds.finance, reason: 'laptop stolen' },
      { cookie: adminSession },
    );
    const { html } = await followWithFlash(disable, adminSession);
    expect(html).toContain(`${DESK_TEST_USERS.finance.email} disabled`);
    expect((await app.request('/', { cookie: financeSession })).status).toBe(302);
    const [disabled] = await auditRows('user.disable');
    expect(disabled).toMatchObject({ subject_id: app.userIds.finance, reason: 'laptop stolen', before: { disabledAt: null } });
    expect(disabled.after.disabledAt).toEqual(expect.any(String));
    expect(disabled.after.sessionsEnded).toBe(1);

    const enable = await app.postForm('/admin/users', { intent: 'enable', userId: app.userIds.finance }, { cookie: adminSession });
    expect(enable.status).toBe(302);
    const [enabled] = await auditRows('user.enable');
    expect(enabled).toMatchObject({ subject_id: app.userIds.finance, after: { disabledAt: null } });
  });

  it('never lets an admin lock the desk out: no self-disable, no self-demotion', async () => {
    const self = await app.postForm('/admin/users', { intent: 'disable', userId: app.userIds.admin }, { cookie: adminSession });
    expect(self.status).toBe(400);
    expect(await self.text()).toContain('You cannot disable your own account.');
    const demote = await app.postForm(
      '/admin/users',
      { intent: 'change-role', userId: app.userIds.admin, role: 'support' },
      { cookie: adminSession },
    );
    expect(demote.status).toBe(400);
    const { rows } = await app.services.pool.query(
      `SELECT r.name FROM users u JOIN roles r ON r.id = u.role_id WHERE u.id = $1 AND u.disabled_at IS NULL`,
      [app.userIds.admin],
    );
    expect(rows[0]?.name).toBe('admin');
  });
});

describe('API keys', () => {
  it('creates a key shown once that the API accepts, and a revoked key is refused', async () => {
    const response = await app.postForm('/admin/api-keys', { intent: 'create', name: 'billing-service', reason: 'new integration' }, { cookie: adminSession });
    const { html } = await followWithFlash(response, adminSession);
    const key = secretIn(html);
    expect(key).toMatch(/^md_[A-Za-z0-9_-]{43}$/);
    expect(html).toContain('API key &quot;billing-service&quot; created');
    const again = await (await app.request('/admin/api-keys', { cookie: adminSession })).text();
    expect(secretIn(again)).toBeNull();
    expect(again).toContain(key!.slice(0, 9));
    expect(again).not.toContain(key!);

    // Authenticated (404 for an unknown event) rather than 401.
    const api = await fetch(`${app.url}/api/v1/events/${randomUUID()}`, { headers: { authorization: `Bearer ${key}` } });
    expect(api.status).toBe(404);

    const { rows } = await app.services.pool.query(`SELECT id, prefix, created_by_id FROM api_keys WHERE name = 'billing-service'`);
    expect(rows[0]).toMatchObject({ prefix: key!.slice(0, 9), created_by_id: app.userIds.admin });
    const [created] = await auditRows('api_key.create');
    expect(created).toMatchObject({
      actor_user_id: app.userIds.admin,
      actor_role: 'admin',
      subject_type: 'api_key',
      subject_id: rows[0]!.id,
      reason: 'new integration',
      after: { name: 'billing-service', prefix: key!.slice(0, 9) },
    });
    expect(JSON.stringify(created)).not.toContain(key!);

    // A second key, revoked before first use (the verifier caches accepted keys for a few seconds).
    const second = await app.postForm('/admin/api-keys', { intent: 'create', name: 'to revoke' }, { cookie: adminSession });
    const secondKey = secretIn((await followWithFlash(second, adminSession)).html)!;
    const { rows: secondRows } = await app.services.pool.query(`SELECT id FROM api_keys WHERE name = 'to revoke'`);
    const revoke = await app.postForm(
      '/admin/api-keys',
      { intent: 'revoke', apiKeyId: secondRows[0]!.id, reason: 'leaked in a log' },
      { cookie: adminSession },
    );
    expect((await followWithFlash(revoke, adminSession)).html).toContain('API key &quot;to revoke&quot; revoked');
    const refused = await fetch(`${app.url}/api/v1/events/${randomUUID()}`, { headers: { authorization: `Bearer ${secondKey}` } });
    expect(refused.status).toBe(401);
    const [revoked] = await auditRows('api_key.revoke');
    expect(revoked).toMatchObject({
      subject_id: secondRows[0]!.id,
      reason: 'leaked in a log',
      before: { revokedAt: null },
    });
    expect(revoked.after.revokedAt).toEqual(expect.any(String));

    const twice = await app.postForm('/admin/api-keys', { intent: 'revoke', apiKeyId: secondRows[0]!.id }, { cookie: adminSession });
    expect(twice.status).toBe(400);
    expect(await auditRows('api_key.revoke')).toHaveLength(1);
  });

  it('writes the change and its audit row in one transaction: if the audit insert fails, the key is not created', async () => {
    await app.services.pool.query(
      `ALTER TABLE audit_log ADD CONSTRAINT test_refuse_key_audit CHECK (action <> 'api_key.create' OR reason IS DISTINCT FROM 'refuse me') NOT VALID`,
    );
    // The server logs the failed action; expected here.
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const response = await app.postForm('/admin/api-keys', { intent: 'create', name: 'half-written', reason: 'refuse me' }, { cookie: adminSession });
      expect(response.status).toBe(500);
      expect(String(logged.mock.calls[0]?.[0])).toContain('test_refuse_key_audit');
      await response.arrayBuffer();
      const { rows } = await app.services.pool.query(`SELECT 1 FROM api_keys WHERE name = 'half-written'`);
      expect(rows).toHaveLength(0);
    } finally {
      logged.mockRestore();
      await app.services.pool.query('ALTER TABLE audit_log DROP CONSTRAINT test_refuse_key_audit');
    }
  });
});

describe('the audit log', () => {
  it('refuses UPDATE, DELETE and TRUNCATE at the database', async () => {
    await writeAudit(app.services.pool, {
      actor: { userId: null, label: 'vitest', role: null },
      action: 'test.append_only',
      subjectType: 'test',
      after: { n: 1 },
    });
    for (const sql of [
      `UPDATE audit_log SET reason = 'rewritten' WHERE action = 'test.append_only'`,
      `DELETE FROM audit_log WHERE action = 'test.append_only'`,
      'TRUNCATE audit_log',
    ]) {
      await expect(app.services.pool.query(sql), sql).rejects.toThrow(/append-only/);
    }
    expect(await auditRows('test.append_only')).toHaveLength(1);
  });

  it('pages newest first by keyset, both ways, with no gaps or repeats, and filters by action, actor, subject and time', async () => {
    const base = Date.parse('2030-01-01T00:00:00Z');
    const client = await app.services.pool.connect();
    try {
      // 130 entries in three actions, some sharing a timestamp (the id breaks ties).
      for (let i = 0; i < 130; i++) {
        await client.query(
          `INSERT INTO audit_log (at, actor_user_id, actor_label, actor_role, action, subject_type, subject_id, after)
           VALUES ($1, $2, $3, $4, $5, 'window', $6, $7::jsonb)`,
          [
            new Date(base + Math.floor(i / 2) * 60_000),
            i % 3 === 0 ? app.userIds.operator : null,
            i % 3 === 0 ? DESK_TEST_USERS.operator.email : 'job:windows__settle',
            i % 3 === 0 ? 'operator' : null,
            `paging.${i % 3}`,
            `w-${i % 5}`,
            JSON.stringify({ i }),
          ],
        );
      }
    } finally {
      client.release();
    }
    const filters = (query: string) => parseAuditFilters(new URL(`http://desk.test/audit?${query}`));
    const from = 'from=2030-01-01T00:00';

    const seen: number[] = [];
    let page = await listAuditEntries(app.services.pool, filters(from));
    expect(page.newer).toBeNull();
    const pages = [page];
    while (page.older) {
      page = await listAuditEntries(app.services.pool, filters(`${from}&cursor=${page.older}&direction=older`));
      pages.push(page);
    }
    for (const p of pages) seen.push(...p.entries.map((e) => (e.after as { i: number }).i));
    expect(pages.map((p) => p.entries.length)).toEqual([PAGE_SIZE, PAGE_SIZE, 130 - 2 * PAGE_SIZE]);
    expect([...seen].sort((a, b) => b - a)).toEqual(seen);
    expect(new Set(seen).size).toBe(130);

    // Back from the last page to the first, through the "newer" links.
    let back = pages.at(-1)!;
    const reversed = [back];
    while (back.newer) {
      back = await listAuditEntries(app.services.pool, filters(`${from}&cursor=${back.newer}&direction=newer`));
      reversed.unshift(back);
    }
    expect(reversed.map((p) => p.entries.map((e) => e.id))).toEqual(pages.map((p) => p.entries.map((e) => e.id)));

    const byAction = await listAuditEntries(app.services.pool, filters('action=paging.1'));
    expect(byAction.entries.length).toBe(43);
    expect(byAction.entries.every((e) => e.action === 'paging.1')).toBe(true);

    const byActor = await listAuditEntries(app.services.pool, filters(`actor=${DESK_TEST_USERS.operator.email}&${from}`));
    expect(byActor.entries.length).toBe(44);
    expect(byActor.entries.every((e) => e.actorUserId === app.userIds.operator)).toBe(true);
    const bySystemActor = await listAuditEntries(app.services.pool, filters('actor=job:windows__settle'));
    expect(bySystemActor.entries.length).toBe(PAGE_SIZE);
    expect(bySystemActor.older).not.toBeNull();

    const bySubject = await listAuditEntries(app.services.pool, filters('subjectType=window&subjectId=w-3'));
    expect(bySubject.entries.length).toBe(26);

    const byTime = await listAuditEntries(app.services.pool, filters('from=2030-01-01T00:10&to=2030-01-01T00:20'));
    expect(byTime.entries.map((e) => (e.after as { i: number }).i).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 20 }, (_, k) => 20 + k),
    );

    // Garbage in the query string is ignored, not an error.
    const junk = await listAuditEntries(app.services.pool, filters('from=yesterday&cursor=%%%&direction=sideways'));
    expect(junk.entries.length).toBe(PAGE_SIZE);
  });

  it('shows entries with readable before/after and working filters on the page', async () => {
    const operatorSession = await app.sessionCookieFor('operator');
    const page = await app.request('/audit?action=user.change_role', { cookie: operatorSession });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('<h1>Audit log</h1>');
    expect(html).toContain('user.change_role');
    expect(html).not.toContain('<code>api_key.create</code>');
    // The change is a field-by-field table: role, support → operator.
    expect(html).toMatch(/<th scope="row">role<span class="visually-hidden"> \(changed\)<\/span><\/th><td>support<\/td><td>operator<\/td>/);
    expect(html).toContain('covering the on-call week');
  });
});
