// A desk form runs once per submission: the same submission key again (a double click, a resent form) answers with
// the first one's redirect and changes nothing more; a form error forgets the key so the corrected form runs.
import { beforeAll, describe, expect, it } from 'vitest';
import { useDeskTestApp } from '../support/desk';

const app = useDeskTestApp();
let admin: string;

beforeAll(async () => {
  admin = await app.sessionCookieFor('admin');
});

const keysNamed = async (name: string) =>
  Number((await app.services.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM api_keys WHERE name = $1`, [name])).rows[0]!.n);
const submissionKeys = (html: string) => [...html.matchAll(/name="submission" value="([^"]+)"/g)].map((m) => m[1]!);
const createKey = (name: string, submission?: string) =>
  app.postForm('/admin/api-keys', { intent: 'create', name, ...(submission ? { submission } : {}) }, { cookie: admin });

describe('one run per submission', () => {
  it('every form on a page carries its own key, new on every load', async () => {
    const first = submissionKeys(await (await app.request('/admin/api-keys', { cookie: admin })).text());
    const second = submissionKeys(await (await app.request('/admin/api-keys', { cookie: admin })).text());
    expect(first.length).toBeGreaterThan(0);
    expect(new Set(first).size).toBe(first.length);
    expect(second.some((k) => first.includes(k))).toBe(false);
  });

  it('the same key twice creates one API key; the second answer is the first one’s redirect', async () => {
    const [key] = submissionKeys(await (await app.request('/admin/api-keys', { cookie: admin })).text());
    const once = await createKey('double click', key);
    expect(once.status).toBe(302);
    const twice = await createKey('double click', key);
    expect(twice.status).toBe(302);
    expect(twice.headers.get('location')).toBe(once.headers.get('location'));
    expect(await keysNamed('double click')).toBe(1);
  });

  it('two clicks at once: one runs, the other waits for it and follows its redirect', async () => {
    const key = `${crypto.randomUUID()}.r1`;
    const answers = await Promise.all([createKey('two at once', key), createKey('two at once', key), createKey('two at once', key)]);
    expect(answers.map((a) => a.status)).toEqual([302, 302, 302]);
    expect(new Set(answers.map((a) => a.headers.get('location'))).size).toBe(1);
    expect(await keysNamed('two at once')).toBe(1);
  });

  it('a form error forgets the key: the corrected form with the same key runs', async () => {
    const key = `${crypto.randomUUID()}.r2`;
    const refused = await createKey('', key);
    expect(refused.status).toBe(400);
    expect((await app.services.pool.query(`SELECT 1 FROM desk_submissions WHERE key = $1`, [key])).rowCount).toBe(0);
    expect((await createKey('corrected', key)).status).toBe(302);
    expect(await keysNamed('corrected')).toBe(1);
  });

  it('a key is never replayed onto another form', async () => {
    const key = `${crypto.randomUUID()}.r3`;
    expect((await createKey('first form', key)).status).toBe(302);
    const other = await app.postForm('/admin/users', { intent: 'create', email: 'someone@desk.test', role: 'support', submission: key }, { cookie: admin });
    expect(other.status).toBe(400);
    expect((await app.services.pool.query(`SELECT 1 FROM users WHERE email = 'someone@desk.test'`)).rowCount).toBe(0);
  });

  it('the definitions and reconciliation forms carry keys too: twice the same key adds one meter and queues one run', async () => {
    const [defKey] = submissionKeys(await (await app.request('/definitions', { cookie: admin })).text());
    const meter = { intent: 'add-definition', eventName: 'double_clicked', displayName: 'Double clicked', aggregation: 'sum', currency: 'usd', rounding: 'up', submission: defKey! };
    const first = await app.postForm('/definitions', meter, { cookie: admin });
    const second = await app.postForm('/definitions', meter, { cookie: admin });
    expect([first.status, second.status]).toEqual([302, 302]);
    expect((await app.services.pool.query(`SELECT 1 FROM meters WHERE event_name = 'double_clicked'`)).rowCount).toBe(1);
    expect((await app.services.pool.query(`SELECT 1 FROM audit_log WHERE subject_type = 'meter' AND after::text LIKE '%double_clicked%'`)).rowCount).toBeLessThanOrEqual(1);

    const [runKey] = submissionKeys(await (await app.request('/reconciliation', { cookie: admin })).text());
    const runs = async () => (await app.services.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'reconciliation.run'`)).rows[0]!.n;
    const before = await runs();
    for (let i = 0; i < 2; i++) expect((await app.postForm('/reconciliation', { intent: 'run', reason: 'twice', submission: runKey! }, { cookie: admin })).status).toBe(302);
    expect(await runs()).toBe(before + 1);
  });

  it('a claim left by a process that died mid-action (no answer after 30 s) is taken over by the next send with its key', async () => {
    const key = `${crypto.randomUUID()}.dead`;
    // What a SIGKILLed web process leaves: the key claimed, the action's transaction never committed, no redirect.
    await app.services.pool.query(`INSERT INTO desk_submissions (key, path, created_at) VALUES ($1, '/admin/api-keys', now() - interval '31 seconds')`, [key]);
    const res = await createKey('after a crash', key);
    expect(res.status).toBe(302);
    expect(await keysNamed('after a crash')).toBe(1);
    // Now answered: the same key again replays that answer and creates nothing more.
    const again = await createKey('after a crash', key);
    expect(again.headers.get('location')).toBe(res.headers.get('location'));
    expect(await keysNamed('after a crash')).toBe(1);
  });

  it('without a key (a client of our own HTML would always send one) the action still runs', async () => {
    expect((await createKey('no key')).status).toBe(302);
    expect(await keysNamed('no key')).toBe(1);
  });
});
