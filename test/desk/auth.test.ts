// Login, sessions and throttling through the real desk (built app, real PostgreSQL).
import { createHash, randomBytes } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import { LOGIN_THROTTLE } from '../../app/utils/login.server';
import { SESSION_ABSOLUTE_MS, SESSION_IDLE_MS } from '../../app/utils/session.server';
import { cookieFrom, DESK_TEST_USERS, setCookieHeader, useDeskTestApp } from '../support/desk';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const tokenOf = (cookie: string) => cookie.slice(cookie.indexOf('=') + 1);
const { admin, operator, support, finance } = DESK_TEST_USERS;
const INVALID = 'The email or password is incorrect.';

const app = useDeskTestApp();
beforeEach(async () => {
  // Tests log in many times from one address; each starts with a clean throttle.
  await app.services.pool.query('DELETE FROM login_attempts');
});

async function status(path: string, cookie: string | null) {
  const response = await app.request(path, { cookie });
  await response.arrayBuffer();
  return response.status;
}

describe('login and sessions', () => {
  it('sets an HttpOnly, SameSite=Lax cookie holding a random token; the database keeps only its SHA-256', async () => {
    const anonymous = await app.request('/login');
    expect(anonymous.status).toBe(200);
    // No session exists before login, so there is none to fixate.
    expect(anonymous.headers.getSetCookie().filter((c) => c.startsWith('md_session='))).toEqual([]);

    const { response, cookie } = await app.login(admin.email, admin.password);
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toBe('/');
    const header = setCookieHeader(response, 'md_session')!;
    expect(header).toMatch(/; HttpOnly/);
    expect(header).toMatch(/; SameSite=Lax/);
    expect(header).toMatch(/; Path=\//);
    expect(header).not.toMatch(/Secure/);
    const token = tokenOf(cookie!);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const { rows } = await app.services.pool.query('SELECT id, ip, user_agent FROM sessions WHERE user_id = $1', [app.userIds.admin]);
    expect(rows.map((r) => r.id)).toContain(sha256(token));
    expect(rows.some((r) => r.id === token)).toBe(false);
    expect(rows.find((r) => r.id === sha256(token))?.ip).toBe('127.0.0.1');
    expect(await status('/audit', cookie)).toBe(200);
  });

  it('rotates at every login: the session the browser presented is deleted, never upgraded (fixation)', async () => {
    // An attacker plants a token of their choosing before the victim logs in...
    const planted = `md_session=${randomBytes(32).toString('base64url')}`;
    const first = await app.login(operator.email, operator.password, { cookie: planted });
    expect(first.cookie).not.toBe(planted);
    expect(await app.services.pool.query('SELECT 1 FROM sessions WHERE id = $1', [sha256(tokenOf(planted))]).then((r) => r.rowCount)).toBe(0);
    expect(await status('/audit', planted)).toBe(302);

    // ...or obtains a real session and gets the victim to log in with it: the old one dies, a new token is issued.
    const second = await app.login(operator.email, operator.password, { cookie: first.cookie });
    expect(second.cookie).toBeTruthy();
    expect(second.cookie).not.toBe(first.cookie);
    expect(await status('/audit', first.cookie)).toBe(302);
    expect(await status('/audit', second.cookie)).toBe(200);
    const rows = await app.services.pool.query('SELECT id FROM sessions WHERE id = ANY($1)', [
      [sha256(tokenOf(first.cookie!)), sha256(tokenOf(second.cookie!))],
    ]);
    expect(rows.rows.map((r) => r.id)).toEqual([sha256(tokenOf(second.cookie!))]);
  });

  it('marks the cookie Secure with the __Host- prefix when the desk is served over HTTPS', async () => {
    const secure = await app.startVariant({ secureCookies: true });
    try {
      const response = await fetch(`${secure.url}/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { origin: secure.url, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ email: finance.email, password: finance.password }),
      });
      expect(response.status).toBe(302);
      const header = setCookieHeader(response, '__Host-md_session')!;
      expect(header).toMatch(/; Secure/);
      expect(header).toMatch(/; HttpOnly/);
      expect(header).toMatch(/; SameSite=Lax/);
      expect(header).toMatch(/; Path=\//);
      expect(header).not.toMatch(/Domain=/i);
    } finally {
      await secure.close();
    }
  });

  it('redirects back to the page asked for, but never to another site', async () => {
    const anonymous = await app.request('/audit?action=user.create');
    expect(anonymous.status).toBe(302);
    expect(anonymous.headers.get('location')).toBe('/login?redirectTo=%2Faudit%3Faction%3Duser.create');

    const back = await app.login(admin.email, admin.password, { redirectTo: '/audit?action=user.create' });
    expect(back.response.headers.get('location')).toBe('/audit?action=user.create');
    for (const evil of ['//evil.test/x', 'https://evil.test', '/\\evil.test', 'javascript:alert(1)']) {
      const { response } = await app.login(admin.email, admin.password, { redirectTo: evil });
      expect(response.headers.get('location'), evil).toBe('/');
    }
  });

  it('logs out this session, or every session of the user (audited), and leaves other users alone', async () => {
    const laptop = (await app.login(admin.email, admin.password)).cookie;
    const phone = (await app.login(admin.email, admin.password)).cookie;
    const colleague = (await app.login(support.email, support.password)).cookie;
    expect(await status('/', laptop)).toBe(200);

    // A GET never logs anyone out (an <img src="/logout"> on another site must do nothing).
    expect(await status('/logout', phone)).toBe(302);
    expect(await status('/', phone)).toBe(200);

    const single = await app.postForm('/logout', { intent: 'logout' }, { cookie: phone });
    expect(single.status).toBe(302);
    expect(single.headers.get('location')).toBe('/login');
    expect(setCookieHeader(single, 'md_session')).toMatch(/Max-Age=0/);
    expect(await status('/', phone)).toBe(302);
    expect(await status('/', laptop)).toBe(200);

    const tablet = (await app.login(admin.email, admin.password)).cookie;
    const everywhere = await app.postForm('/logout', { intent: 'everywhere' }, { cookie: laptop });
    expect(everywhere.status).toBe(302);
    expect(await status('/', laptop)).toBe(302);
    expect(await status('/', tablet)).toBe(302);
    expect(await status('/', colleague)).toBe(200);
    const left = await app.services.pool.query('SELECT count(*)::int AS n FROM sessions WHERE user_id = $1', [app.userIds.admin]);
    expect(left.rows[0].n).toBe(0);

    const audit = await app.services.pool.query(
      `SELECT actor_user_id, actor_label, actor_role, subject_id, after FROM audit_log WHERE action = 'session.logout_everywhere'`,
    );
    expect(audit.rows).toHaveLength(1);
    expect(audit.rows[0]).toMatchObject({
      actor_user_id: app.userIds.admin,
      actor_label: admin.email,
      actor_role: 'admin',
      subject_id: app.userIds.admin,
    });
    expect(audit.rows[0].after.sessionsEnded).toBeGreaterThanOrEqual(2);
  });

  it(`ends a session after ${SESSION_IDLE_MS / 3600_000} h idle, slides it while used, and never past ${SESSION_ABSOLUTE_MS / 86_400_000} days`, async () => {
    const cookie = (await app.login(finance.email, finance.password)).cookie!;
    const id = sha256(tokenOf(cookie));
    const expiry = async () =>
      (await app.services.pool.query<{ expires_at: Date; created_at: Date }>('SELECT expires_at, created_at FROM sessions WHERE id = $1', [id])).rows[0]!;

    // Used an hour before its idle expiry: pushed to 12 h from now.
    await app.services.pool.query(`UPDATE sessions SET expires_at = now() + interval '1 hour' WHERE id = $1`, [id]);
    expect(await status('/', cookie)).toBe(200);
    const slid = (await expiry()).expires_at.getTime() - Date.now();
    expect(slid).toBeGreaterThan(SESSION_IDLE_MS - 60_000);
    expect(slid).toBeLessThanOrEqual(SESSION_IDLE_MS + 1_000);

    // Near its absolute end, it slides no further than created_at + 7 days.
    await app.services.pool.query(
      `UPDATE sessions SET created_at = now() - interval '7 days' + interval '30 minutes', expires_at = now() + interval '10 minutes' WHERE id = $1`,
      [id],
    );
    expect(await status('/', cookie)).toBe(200);
    const capped = await expiry();
    expect(capped.expires_at.getTime()).toBeLessThanOrEqual(capped.created_at.getTime() + SESSION_ABSOLUTE_MS);
    expect(capped.expires_at.getTime() - Date.now()).toBeLessThan(31 * 60_000);

    // Expired: refused, sent to login, and the dead cookie is cleared.
    await app.services.pool.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, [id]);
    const response = await app.request('/', { cookie });
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toBe('/login?redirectTo=%2F');
    expect(setCookieHeader(response, 'md_session')).toMatch(/Max-Age=0/);
  });
});

describe('login throttling', () => {
  it(`refuses an email after ${LOGIN_THROTTLE.perEmail} failures, with the same message whether or not the account exists`, async () => {
    const failures: string[] = [];
    for (let i = 0; i < LOGIN_THROTTLE.perEmail; i++) {
      const { response } = await app.login(operator.email, `wrong password ${i}`);
      expect(response.status).toBe(400);
      failures.push(await response.text());
    }
    const unknown = await app.login('nobody@desk.test', 'wrong password');
    expect(unknown.response.status).toBe(400);
    const unknownBody = await unknown.response.text();
    for (const body of [...failures, unknownBody]) expect(body).toContain(INVALID);

    // The right password no longer helps: guessing has stopped.
    const blocked = await app.login(operator.email, operator.password);
    expect(blocked.response.status).toBe(429);
    expect(blocked.cookie).toBeNull();
    const retryAfter = Number(blocked.response.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(LOGIN_THROTTLE.windowMs / 1000 - 60);
    expect(retryAfter).toBeLessThanOrEqual(LOGIN_THROTTLE.windowMs / 1000);
    expect(await blocked.response.text()).toContain('Too many failed sign-in attempts');

    // Refused attempts are not recorded, so hammering a locked email does not extend the lock.
    const recorded = await app.services.pool.query(`SELECT count(*)::int AS n FROM login_attempts WHERE email = $1`, [operator.email]);
    expect(recorded.rows[0].n).toBe(LOGIN_THROTTLE.perEmail);

    // Other accounts from elsewhere are unaffected; once the window has passed, the right password works.
    expect((await app.login(finance.email, finance.password)).response.status).toBe(302);
    await app.services.pool.query(`UPDATE login_attempts SET at = at - make_interval(secs => $1)`, [LOGIN_THROTTLE.windowMs / 1000 + 1]);
    expect((await app.login(operator.email, operator.password)).response.status).toBe(302);
  });

  it('cannot be outrun by a burst of parallel guesses', async () => {
    const responses = await Promise.all(
      Array.from({ length: 12 }, (_, i) => app.login(support.email, `parallel guess ${i}`).then((r) => r.response)),
    );
    const statuses = responses.map((r) => r.status);
    // At most perEmail guesses were checked against the password; the rest were refused unchecked.
    expect(statuses.filter((s) => s === 400).length).toBeLessThanOrEqual(LOGIN_THROTTLE.perEmail);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(12 - LOGIN_THROTTLE.perEmail);
    expect(statuses.every((s) => s === 400 || s === 429)).toBe(true);
  });

  it(`refuses an address after ${LOGIN_THROTTLE.perAddress} failures across any emails (password spraying)`, async () => {
    for (let i = 0; i < LOGIN_THROTTLE.perAddress; i++) {
      const { response } = await app.login(`spray-${i}@desk.test`, 'Winter2026!');
      expect(response.status).toBe(400);
    }
    const blocked = await app.login(finance.email, finance.password);
    expect(blocked.response.status).toBe(429);
  });
});

describe('disabled users', () => {
  it('are refused at login even with the right password, and disabling ends their sessions at once', async () => {
    const supportSession = (await app.login(support.email, support.password)).cookie;
    expect(await status('/', supportSession)).toBe(200);
    const adminSession = await app.sessionCookieFor('admin');

    const disabled = await app.postForm(
      '/admin/users',
      { intent: 'disable', userId: app.userIds.support, reason: 'left the company' },
      { cookie: adminSession },
    );
    expect(disabled.status).toBe(302);
    expect(await status('/', supportSession)).toBe(302);

    const refused = await app.login(support.email, support.password);
    expect(refused.response.status).toBe(403);
    expect(refused.cookie).toBeNull();
    expect(await refused.response.text()).toContain('This account is disabled');
    // A wrong password for a disabled account says only what it says for everyone.
    const wrong = await app.login(support.email, 'not the password');
    expect(wrong.response.status).toBe(400);
    expect(await wrong.response.text()).toContain(INVALID);

    const enabled = await app.postForm('/admin/users', { intent: 'enable', userId: app.userIds.support }, { cookie: adminSession });
    expect(enabled.status).toBe(302);
    expect((await app.login(support.email, support.password)).response.status).toBe(302);
  });
});

describe('cross-site requests', () => {
  it('refuses state-changing requests whose Origin or Sec-Fetch-Site is not this site, before any action runs', async () => {
    const adminSession = await app.sessionCookieFor('admin');
    const attempts: Array<{ name: string; origin?: string | null; headers?: Record<string, string> }> = [
      { name: 'foreign Origin', origin: 'https://evil.test' },
      { name: 'sibling host Origin', origin: `${app.url.replace('127.0.0.1', 'localhost')}` },
      { name: 'no Origin, no Sec-Fetch-Site', origin: null },
      { name: 'Origin: null (sandboxed frame)', origin: 'null' },
      { name: 'Sec-Fetch-Site cross-site', headers: { 'sec-fetch-site': 'cross-site' } },
      { name: 'Sec-Fetch-Site same-site', headers: { 'sec-fetch-site': 'same-site' } },
    ];
    for (const attempt of attempts) {
      for (const path of ['/admin/api-keys', '/admin/api-keys.data', '/logout']) {
        const response = await app.postForm(path, { intent: 'create', name: `csrf ${attempt.name}` }, {
          cookie: adminSession,
          origin: attempt.origin,
          headers: attempt.headers,
        });
        expect(response.status, `${attempt.name} → ${path}`).toBe(403);
        await response.arrayBuffer();
      }
    }
    const created = await app.services.pool.query(`SELECT count(*)::int AS n FROM api_keys WHERE name LIKE 'csrf %'`);
    expect(created.rows[0].n).toBe(0);
    expect(await status('/', adminSession)).toBe(200);

    // The same request from the desk's own pages goes through.
    const sameOrigin = await app.postForm('/admin/api-keys', { intent: 'create', name: 'csrf control' }, {
      cookie: adminSession,
      headers: { 'sec-fetch-site': 'same-origin' },
    });
    expect(sameOrigin.status).toBe(302);
    const login = await app.postForm('/login', { email: admin.email, password: admin.password }, { origin: 'https://evil.test' });
    expect(login.status).toBe(403);
    expect(cookieFrom(login, 'md_session')).toBeNull();
  });
});
