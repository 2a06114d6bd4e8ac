// A desk action the database cannot finish (its connection terminated mid-transaction, as a restart or a failover
// does) answers 503 with a sentence, not a 500; nothing was changed, and sending the same form again runs it once.
// The termination is real: the action is held on a row lock, and its backend is terminated by pg_terminate_backend.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { databaseUnavailable } from '../../app/db/read-pool';
import { startDeskTestApp, type DeskTestApp } from '../support/desk';
import { seedDeskWindowFixtures, type DeskWindowFixtures } from '../support/desk-windows';

let app: DeskTestApp;
let f: DeskWindowFixtures;
let finance: string;
let locker: pg.Client;

beforeAll(async () => {
  app = await startDeskTestApp();
  f = await seedDeskWindowFixtures(app.services);
  finance = await app.sessionCookieFor('finance');
  locker = new pg.Client({ connectionString: app.services.pool.options.connectionString });
  await locker.connect();
}, 120_000);
afterAll(async () => {
  await locker?.end();
  await app?.close();
});

const state = async (id: string) => (await app.services.pool.query<{ state: string }>(`SELECT state::text AS state FROM windows WHERE id = $1`, [id])).rows[0]!.state;
const writeOffs = async (id: string) =>
  (await app.services.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'window.write_off' AND subject_id = $1`, [id])).rows[0]!.n;

/** The backend of ours waiting on a lock, once there is one. */
async function waitingBackend(): Promise<number> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 25))) {
    const { rows } = await locker.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
    );
    if (rows[0]) return rows[0].pid;
  }
  throw new Error('no backend waited on the lock');
}

describe('an action whose database connection is terminated', () => {
  it('answers 503 with a sentence; the window is untouched; the same form sent again writes it off once', async () => {
    const page = await (await app.request(`/windows/${f.exhausted.windowId}/write-off`, { cookie: finance })).text();
    const submission = /name="submission" value="([^"]+)"/.exec(page)![1]!;
    const form = { intent: 'write-off', reason: 'customer insolvent', submission };

    await locker.query('BEGIN');
    await locker.query('SELECT id FROM windows WHERE id = $1 FOR UPDATE', [f.exhausted.windowId]);
    const pending = app.postForm(`/windows/${f.exhausted.windowId}/write-off`, form, { cookie: finance });
    const pid = await waitingBackend();
    expect((await locker.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [pid])).rows[0]!.ok).toBe(true);
    await locker.query('ROLLBACK');

    const res = await pending;
    expect(res.status).toBe(503);
    expect(await res.text()).toContain('The database did not answer (it may be restarting), so nothing was changed.');
    expect(await state(f.exhausted.windowId)).toBe('failed_exhausted');
    expect(await writeOffs(f.exhausted.windowId)).toBe(0);

    const again = await app.postForm(`/windows/${f.exhausted.windowId}/write-off`, form, { cookie: finance });
    expect(again.status).toBe(302);
    expect(await state(f.exhausted.windowId)).toBe('written_off');
    expect(await writeOffs(f.exhausted.windowId)).toBe(1);
  });

  it('tells a lost database from an answer: termination, refused and cut connections are unavailable; a bad query is not', async () => {
    const victim = new pg.Client({ connectionString: app.services.pool.options.connectionString });
    await victim.connect();
    victim.on('error', () => undefined);
    const pid = (await victim.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const terminated = victim.query('SELECT pg_sleep(5)').catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    await locker.query('SELECT pg_terminate_backend($1)', [pid]);
    const error = await terminated;
    expect(databaseUnavailable(error), String(error)).toBe(true);
    await victim.end().catch(() => undefined);

    const refused = await new pg.Client({ host: '127.0.0.1', port: 1, connectionTimeoutMillis: 2000 }).connect().catch((e: unknown) => e);
    expect(databaseUnavailable(refused), String(refused)).toBe(true);

    const bad = await app.services.pool.query('SELECT * FROM no_such_table').catch((e: unknown) => e);
    expect(databaseUnavailable(bad)).toBe(false);
    const unique = await app.services.pool.query(`INSERT INTO desk_submissions (key, path) VALUES ('dup-key-1', '/x'), ('dup-key-1', '/x')`).catch((e: unknown) => e);
    expect(databaseUnavailable(unique)).toBe(false);
  });
});
