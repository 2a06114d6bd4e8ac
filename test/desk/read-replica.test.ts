// The desk on a real streaming replica (ADR 027): a cluster of its own, a replica made from it with PostgreSQL's
// low-level base backup API (test/support/replica.ts), the desk wired with DATABASE_READ_URL's read pool.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../app/db/embedded-postgres';
import { prepareSchema } from '../../app/db/prepare';
import { EnvError, readEnv } from '../../app/env';
import { configureLogging } from '../../app/log';
import { cookieFrom, cookies, startDeskTestApp, type DeskTestApp } from '../support/desk';
import { adminQuery } from '../support/pg-admin';
import { startStreamingReplica, type Replica } from '../support/replica';

// Every page a desk user can open without an id; none may write through the read pool.
const DESK_PAGES = ['/', '/events', '/customers', '/windows', '/definitions', '/invoices', '/invoices/export', '/telemetry', '/reconciliation', '/audit', '/admin/users', '/admin/api-keys'];

describe('desk reads on a streaming replica', () => {
  let dir: string;
  let primary: EmbeddedPostgresHandle;
  let replica: Replica;
  let app: DeskTestApp;
  let admin: string;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meterdesk-replica-'));
    primary = await startEmbeddedPostgres({ dataDir: path.join(dir, 'primary'), ephemeral: true, database: 'meterdesk' });
    await prepareSchema(primary.connectionString);
    replica = await startStreamingReplica(primary, { dataDir: path.join(dir, 'replica'), database: 'meterdesk' });
    app = await startDeskTestApp({}, { database: { connectionString: primary.connectionString, drop: async () => {} }, readConnectionString: replica.connectionString });
    admin = await app.sessionCookieFor('admin');
    await replica.caughtUp();
  }, 180_000);

  afterAll(async () => {
    await app?.close();
    await replica?.stop();
    await primary?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  }, 60_000);

  const usersPage = async (...extra: Array<string | null>) => {
    const response = await app.request('/admin/users', { cookie: cookies(admin, ...extra) });
    expect(response.status).toBe(200);
    return response.text();
  };

  it('is a real streaming replica, and the read pool is on it with read-only sessions', async () => {
    expect(await adminQuery(primary.connectionString, `SELECT application_name, state FROM pg_stat_replication`)).toEqual([
      { application_name: 'replica', state: 'streaming' },
    ]);
    expect(await adminQuery(replica.connectionString, `SELECT pg_is_in_recovery() AS standby`)).toEqual([{ standby: true }]);
    const { rows } = await app.services.readPool!.query(`SELECT inet_server_port() AS port, current_setting('default_transaction_read_only') AS ro`);
    expect(rows).toEqual([{ port: replica.port, ro: 'on' }]);
  });

  it("reads pages from the replica, and an action's redirect page from the primary (read your writes)", async () => {
    await replica.pause();
    const created = await app.postForm('/admin/users', { intent: 'create', email: 'paused.replay@desk.test', role: 'support', reason: 'replica test' }, { cookie: admin });
    expect(created.status).toBe(302);
    const fresh = cookieFrom(created, 'md_fresh');
    expect(fresh).not.toBeNull();
    const [{ n }] = (await adminQuery<{ n: number }>(primary.connectionString, `SELECT count(*)::int AS n FROM users WHERE email = 'paused.replay@desk.test'`)) as [{ n: number }];
    expect(n).toBe(1);

    // The redirect, with the cookie the action set (not the flash: its toast would name the user on its own).
    const location = created.headers.get('location')!;
    const redirected = await app.request(location, { cookie: cookies(admin, fresh) });
    expect(redirected.status).toBe(200);
    expect(await redirected.text()).toContain('paused.replay@desk.test');

    // Without the cookie, or with one past its end, the page is the replica's, which has not replayed the insert.
    expect(await usersPage()).not.toContain('paused.replay@desk.test');
    expect(await usersPage(`md_fresh=${Date.now() - 1}`)).not.toContain('paused.replay@desk.test');

    await replica.resume();
    await replica.caughtUp();
    expect(await usersPage()).toContain('paused.replay@desk.test');
  });

  it('answers every desk page from the replica, whose read-only sessions no GET writes through', async () => {
    for (const page of DESK_PAGES) {
      const response = await app.request(page, { cookie: admin });
      expect(response.status, page).toBe(200);
      await response.arrayBuffer();
    }
    await expect(app.services.readPool!.query(`INSERT INTO desk_submissions (key, path) VALUES ('through-the-read-pool', '/')`)).rejects.toMatchObject({ code: '25006' });
  });

  it('stays up on the primary when the replica is down, saying so once', async () => {
    const lines: Array<{ msg?: string }> = [];
    configureLogging({ role: 'web', destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
    await replica.stop();
    const created = await app.postForm('/admin/users', { intent: 'create', email: 'replica.down@desk.test', role: 'support', reason: 'replica test' }, { cookie: admin });
    expect(created.status).toBe(302);
    // No read-your-writes cookie: only the primary (the replica is stopped) can show this user.
    expect(await usersPage()).toContain('replica.down@desk.test');
    for (const page of DESK_PAGES) {
      const response = await app.request(page, { cookie: admin });
      expect(response.status, page).toBe(200);
      await response.arrayBuffer();
    }
    configureLogging({ role: 'cli' });
    expect(lines.filter((l) => l.msg === 'read replica unreachable; desk reads go to the primary')).toHaveLength(1);
  });
});

describe('DATABASE_READ_URL', () => {
  const primary = 'postgresql://meterdesk@db.internal:5432/meterdesk';
  it('is a URL, needs DATABASE_URL, and is unset when empty', () => {
    expect(readEnv({ DATABASE_URL: primary, DATABASE_READ_URL: 'postgresql://meterdesk@replica.internal:5432/meterdesk' }).DATABASE_READ_URL).toBe(
      'postgresql://meterdesk@replica.internal:5432/meterdesk',
    );
    expect(readEnv({ DATABASE_URL: primary, DATABASE_READ_URL: ' ' }).DATABASE_READ_URL).toBeUndefined();
    expect(() => readEnv({ DATABASE_URL: primary, DATABASE_READ_URL: 'replica.internal' })).toThrow(/DATABASE_READ_URL/);
    expect(() => readEnv({ DATABASE_READ_URL: 'postgresql://meterdesk@replica.internal:5432/meterdesk' })).toThrow(EnvError);
  });
});

describe('a read pool on the primary itself (DATABASE_READ_URL = DATABASE_URL)', () => {
  let app: DeskTestApp;
  beforeAll(async () => {
    app = await startDeskTestApp({}, { readConnectionString: 'primary' });
  });
  afterAll(() => app?.close());

  it('refuses every write through the read pool, yet every desk page answers and the session still slides', async () => {
    await expect(app.services.readPool!.query(`INSERT INTO desk_submissions (key, path) VALUES ('through-the-read-pool', '/')`)).rejects.toMatchObject({ code: '25006' });
    const admin = await app.sessionCookieFor('admin');
    // Due for renewal: the lookup on the page's request writes the new expiry (through the primary, or it would fail).
    await app.services.pool.query(`UPDATE sessions SET expires_at = now() + interval '1 hour'`);
    for (const page of DESK_PAGES) {
      const response = await app.request(page, { cookie: admin });
      expect(response.status, page).toBe(200);
      await response.arrayBuffer();
    }
    const { rows } = await app.services.pool.query<{ hours: number }>(`SELECT extract(epoch FROM expires_at - now()) / 3600 AS hours FROM sessions`);
    expect(Number(rows[0]!.hours)).toBeGreaterThan(11);
  });

  it("answers an action with the read-your-writes cookie, its end in its value", async () => {
    const admin = await app.sessionCookieFor('admin');
    const withPool = await app.postForm('/admin/users', { intent: 'create', email: 'cookie.check@desk.test', role: 'support', reason: 'replica test' }, { cookie: admin });
    expect(withPool.status).toBe(302);
    expect(cookieFrom(withPool, 'md_fresh')).toMatch(/^md_fresh=\d+$/);
    // The same action as the browser's router sends it (single fetch): the revalidation after it carries the cookie.
    const viaFetch = await app.postForm('/admin/users.data', { intent: 'create', email: 'cookie.fetch@desk.test', role: 'support', reason: 'replica test' }, { cookie: admin });
    expect(viaFetch.status).toBeLessThan(400);
    expect(cookieFrom(viaFetch, 'md_fresh')).toMatch(/^md_fresh=\d+$/);
    // A read changes nothing, so it sets nothing.
    expect(cookieFrom(await app.request('/admin/users', { cookie: admin }), 'md_fresh')).toBeNull();
  });
});
