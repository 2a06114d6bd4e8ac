// Every action of the desk, posted by a signed-in admin or operator with hostile field values: oversized strings,
// wrong types, unicode, control characters, NUL bytes, injection strings, huge numbers, deep JSON, repeated and
// unknown fields, multipart bodies, garbage ids in the path and hostile filters in the query. Properties: never a
// 5xx; a refused action changes nothing (a checksum of every table an action can write, graphile jobs included);
// an accepted one (a redirect that is not to the login page) that changed anything wrote its audit entry.
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RoleName } from '../../app/billing/access/permissions';
import { createApiKey } from '../../app/billing/access/api-keys';
import { createUser } from '../../app/billing/access/users';
import { startDeskTestApp, type DeskTestApp } from '../support/desk';
import { insertCustomer, insertEvents } from '../support/desk-events';
import { seedDeskWindowFixtures, type DeskWindowFixtures } from '../support/desk-windows';
import { seedMissingDefinition, type MissingDefinitionFixture } from '../support/desk-definitions';
import { check, hostileFormValue, INJECTION_STRINGS, nested } from './arbitraries';

let app: DeskTestApp;
const session = {} as Record<RoleName, string>;
let windows: DeskWindowFixtures;
let missing: MissingDefinitionFixture;
let victims: string[];
let victimKeys: string[];
let customer: { id: string; externalId: string };
let failedEvents: string[];
let planIds: string[];

beforeAll(async () => {
  app = await startDeskTestApp();
  for (const role of ['admin', 'operator', 'finance', 'support'] as const) session[role] = await app.sessionCookieFor(role);
  const s = app.services;
  windows = await seedDeskWindowFixtures(s);
  missing = await seedMissingDefinition(s);
  // Users and keys the property may change or revoke: never the ones whose sessions drive the test.
  victims = [];
  for (const role of ['support', 'finance', 'operator'] as const) {
    victims.push((await createUser(s.prisma, { email: `victim-${role}-${randomUUID().slice(0, 6)}@desk.test`, role, password: 'victim password 123' })).user.id);
  }
  victimKeys = [];
  for (let i = 0; i < 3; i++) victimKeys.push((await createApiKey(s.prisma, { name: `victim key ${i}` })).apiKey.id);
  customer = await insertCustomer(s.pool);
  failedEvents = await insertEvents(s.pool, customer.id, 30, { status: 'failed' });
  planIds = (await s.pool.query<{ id: string }>(`SELECT id FROM plans ORDER BY code`)).rows.map((r) => r.id);
}, 180_000);
afterAll(() => app?.close());

// Every table an action of the desk can write, except sessions and login_attempts (signing in writes those).
const WATCHED = [
  'users', 'api_keys', 'customers', 'subscriptions', 'meters', 'meter_prices', 'meter_events', 'event_attempts', 'windows',
  'invoices', 'invoice_lines', 'charge_attempts', 'ops_events', 'audit_log',
];

async function snapshot(): Promise<{ audit: number; sum: string }> {
  const parts = WATCHED.map((t) => `(SELECT count(*)::text || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM ${t} x)`);
  const { rows } = await app.services.pool.query(
    `SELECT (SELECT count(*)::int FROM audit_log) AS audit,
            concat_ws('|', ${parts.join(', ')}, (SELECT count(*)::text FROM graphile_worker._private_jobs)) AS sum`,
  );
  return rows[0];
}

type Fields = Array<[string, string]>;
interface Action {
  name: string;
  role: RoleName;
  path: string;
  fields: Fields;
}

const pick = <T,>(values: readonly T[]) => fc.constantFrom(...values);
const reason = fc.oneof(fc.constant('routine fix'), fc.constant(''), hostileFormValue);
const uuidish = (valid: readonly string[]) => fc.oneof({ arbitrary: pick(valid), weight: 4 }, { arbitrary: fc.uuid(), weight: 1 }, { arbitrary: hostileFormValue, weight: 1 });
const emailish = fc.oneof(
  fc.uuid().map((u) => `new-${u.slice(0, 8)}@desk.test`),
  fc.constantFrom('ADMIN@DESK.TEST', 'admin@desk.test', 'a@b', '"quoted"@desk.test', 'x@desk.test\u0000', 'u\u0301ser@desk.test'),
  hostileFormValue,
);
const eventNameish = fc.oneof(fc.uuid().map((u) => `hostile_${u.slice(0, 8)}`), fc.constantFrom('ai_tokens', 'UPPER', 'a b', 'x'.repeat(101)), hostileFormValue);
const amountish = fc.oneof(fc.constantFrom('0.05', '1', '', '0', '-1', '1e3', '0.001', '999999999999999', '9999999999999999', '1.5.5', ' 2 '), hostileFormValue);

/** One action with plausible fields, each swapped for a hostile value now and then. */
function actions(): fc.Arbitrary<Action> {
  const f = <T extends string>(valid: fc.Arbitrary<T>) => fc.oneof({ arbitrary: valid as fc.Arbitrary<string>, weight: 3 }, { arbitrary: hostileFormValue, weight: 1 });
  const w = windows;
  return fc.oneof(
    fc.record({ intent: pick(['create']), email: f(emailish), name: f(fc.string({ maxLength: 30 })), role: f(pick(['support', 'finance', 'operator', 'admin'])), password: f(fc.constantFrom('correct horse battery staple', '', 'short')), reason })
      .map((v) => ({ name: 'user create', role: 'admin' as const, path: '/admin/users', fields: Object.entries(v) })),
    fc.record({ intent: pick(['change-role', 'disable', 'enable']), userId: uuidish(victims), role: f(pick(['support', 'finance', 'operator'])), reason })
      .map((v) => ({ name: 'user change-role/disable/enable', role: 'admin' as const, path: '/admin/users', fields: Object.entries(v) })),
    fc.record({ intent: pick(['create']), name: f(fc.string({ minLength: 1, maxLength: 30 })), reason })
      .map((v) => ({ name: 'api key create', role: 'admin' as const, path: '/admin/api-keys', fields: Object.entries(v) })),
    fc.record({ intent: pick(['revoke']), apiKeyId: uuidish(victimKeys), reason })
      .map((v) => ({ name: 'api key revoke', role: 'admin' as const, path: '/admin/api-keys', fields: Object.entries(v) })),
    fc.record({ intent: f(pick(['retry-one', 'retry-selection', 'retry-filter', 'retry-customer'])), id: uuidish(failedEvents), ids: fc.array(uuidish(failedEvents), { maxLength: 4 }), customerId: uuidish([customer.id]), force: f(pick(['', 'on'])), reason })
      .map(({ ids, ...v }) => ({ name: 'events retry', role: 'operator' as const, path: '/events', fields: [...Object.entries(v), ...ids.map((id): [string, string] => ['ids', id])] })),
    // The events page's action reads its filters from the query string.
    fc.record({ customer: f(pick([customer.externalId, 'nobody'])), eventName: f(pick(['ai_tokens'])), errorCode: f(pick(['resource_missing'])), from: f(pick(['2026-01-01T00:00', '2026-13-01T00:00'])), q: f(pick(['', 'evt-'])), reason })
      .map(({ reason: r, ...q }) => ({ name: 'events retry-filter (query)', role: 'operator' as const, path: `/events?${new URLSearchParams({ status: 'failed', ...q }).toString()}`, fields: [['intent', 'retry-filter'], ['reason', r]] as Fields })),
    fc.record({ id: fc.oneof(pick(failedEvents), fc.uuid(), fc.constantFrom('not-an-id', '%00', '%zz', '%25', 'x'.repeat(3_000), '..%2F..%2Fadmin')), force: f(pick(['', 'on'])), reason, intent: f(pick(['retry-all'])) })
      .map(({ id, ...v }) => ({ name: 'event detail retry', role: 'operator' as const, path: `/events/${id}`, fields: Object.entries(v) })),
    fc.record({ id: fc.oneof(pick([customer.id]), fc.uuid(), fc.constantFrom('%00', 'not-an-id', '%E0%A4%A')), reason })
      .map(({ id, ...v }) => ({ name: 'customer retry', role: 'operator' as const, path: `/customers/${id}`, fields: [['intent', 'retry-customer'], ...Object.entries(v)] as Fields })),
    fc.record({ intent: f(pick(['repair-stale'])), subscriptionId: uuidish([w.stale.subscriptionId]), reason })
      .map((v) => ({ name: 'window repair', role: 'operator' as const, path: '/windows', fields: Object.entries(v) })),
    fc.record({ windowId: fc.oneof(pick([w.closed.windowId, w.exhausted.windowId, w.hardDeclined.windowId, missing.blocked.windowId]), fc.uuid(), fc.constantFrom('%00', 'nope', '%')), intent: f(pick(['reauthor', 'settle-again'])), reason, overrideHardDecline: f(pick(['', 'on'])) })
      .map(({ windowId, ...v }) => ({ name: 'window reauthor/settle-again', role: 'operator' as const, path: `/windows/${windowId}`, fields: Object.entries(v) })),
    fc.record({ windowId: fc.oneof(pick([w.exhausted.windowId, w.closed.windowId]), fc.uuid(), fc.constantFrom('%00', 'nope')), intent: f(pick(['write-off'])), reason })
      .map(({ windowId, ...v }) => ({ name: 'window write-off', role: 'admin' as const, path: `/windows/${windowId}/write-off`, fields: Object.entries(v) })),
    fc.record({ eventName: f(eventNameish), displayName: f(fc.string({ minLength: 1, maxLength: 30 })), aggregation: f(pick(['sum', 'count', 'max', 'last'])), currency: f(pick(['usd', 'eur', 'gbp', 'jpy'])), rounding: f(pick(['up', 'down'])), reason, prices: fc.array(fc.tuple(fc.oneof(pick(planIds), hostileFormValue), amountish, fc.oneof(fc.constantFrom('1', '1000', '', '0'), hostileFormValue)), { maxLength: 3 }) })
      .map(({ prices, ...v }) => ({
        name: 'definition add',
        role: 'operator' as const,
        path: '/definitions',
        fields: [['intent', 'add-definition'], ...Object.entries(v), ...prices.flatMap(([plan, amount, per]): Fields => [[`price:${plan}`, amount], [`perUnits:${plan}`, per]])] as Fields,
      })),
    fc.record({ intent: pick(['replay']), eventName: f(pick([missing.eventName, 'ai_tokens', 'never_defined'])) })
      .map((v) => ({ name: 'definition replay', role: 'operator' as const, path: '/definitions', fields: Object.entries(v) })),
    fc.record({ intent: f(pick(['run'])), reason })
      .map((v) => ({ name: 'reconciliation run', role: 'operator' as const, path: '/reconciliation', fields: Object.entries(v) })),
  );
}

/** Extra hostility on top of the action's own fields: repeats, unknown fields, a NUL after a valid value. */
const sometimes = <T,>(arb: fc.Arbitrary<T>, oneIn: number) => fc.oneof({ arbitrary: fc.constant(null), weight: oneIn - 1 }, { arbitrary: arb, weight: 1 });
const mangle = fc.record({
  repeat: sometimes(fc.tuple(fc.nat(20), hostileFormValue), 6),
  unknown: fc.oneof(
    { arbitrary: fc.constant([] as Array<[string, string]>), weight: 4 },
    { arbitrary: fc.array(fc.tuple(fc.oneof(fc.constantFrom('role', 'userId', 'permission', 'actor', '__proto__', 'constructor', 'intent[]', ''), fc.string({ maxLength: 10 })), hostileFormValue), { minLength: 1, maxLength: 2 }), weight: 1 },
  ),
  nulSuffix: sometimes(fc.nat(20), 6),
  multipart: sometimes(fc.boolean(), 4).map((withFile) => (withFile === null ? null : { withFile })),
  dataRoute: fc.boolean(),
});

type Mangle = { repeat: [number, string] | null; unknown: Array<[string, string]>; nulSuffix: number | null; multipart: { withFile: boolean } | null; dataRoute: boolean };

async function send(action: Action, m: Mangle) {
  const fields = applyMangle(action.fields, m);
  const [path, query = ''] = action.path.split('?');
  // React Router's own transport (what <Form> and fetchers use) is `<path>.data`; a document POST is the path itself.
  const url = m.dataRoute ? `${path}.data${query ? `?${query}` : ''}` : action.path;
  if (m.multipart) {
    const form = new FormData();
    for (const [k, v] of fields) form.append(k, v);
    // A file (with NUL bytes) where text is expected.
    if (m.multipart.withFile) form.append('reason', new Blob([new Uint8Array([0, 255, 0xfe])]), 'evil.bin');
    return app.request(url, { method: 'POST', body: form, cookie: session[action.role] });
  }
  const body = new URLSearchParams();
  for (const [k, v] of fields) body.append(k, v);
  return app.request(url, { method: 'POST', body: body.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' }, cookie: session[action.role] });
}

function applyMangle(fields: Fields, m: Mangle): Fields {
  const out: Fields = fields.map(([k, v]) => [k, v]);
  if (m.nulSuffix !== null && out.length) {
    const i = m.nulSuffix % out.length;
    out[i] = [out[i]![0], `${out[i]![1]}\u0000`];
  }
  if (m.repeat && out.length) out.push([out[m.repeat[0] % out.length]![0], m.repeat[1]]);
  return [...out, ...m.unknown];
}

/** Accepted = redirected somewhere other than the login page (document: 302; single fetch: 202 with a redirect). */
async function outcome(res: Response): Promise<{ accepted: boolean; status: number; text: string }> {
  const text = await res.text();
  const location = res.headers.get('location') ?? res.headers.get('x-remix-redirect') ?? '';
  if (res.status >= 300 && res.status < 400) return { accepted: !location.startsWith('/login'), status: res.status, text };
  // Single fetch answers a redirect as a 202 whose turbo-stream body names it.
  if (res.status === 202 && /"redirect"/.test(text) && !text.includes('/login?redirectTo=')) return { accepted: true, status: res.status, text };
  return { accepted: false, status: res.status, text };
}

it('every desk action, hostile fields: never a 5xx, nothing written when refused, the audit log grows only when accepted', async () => {
  const seen: Record<string, { accepted: number; refused: number }> = {};
  await check(
    fc.asyncProperty(actions(), mangle, async (action, m) => {
      const before = await snapshot();
      const res = await send(action, m);
      const { accepted, status, text } = await outcome(res);
      const label = `${action.name} POST ${action.path.slice(0, 120)}${m.dataRoute ? ' (.data)' : ''}${m.multipart ? ' multipart' : ''} → ${status}`;
      expect(status, `${label}: ${text.slice(0, 400)}`).toBeLessThan(500);
      // A valid session is never thrown out by what a form says.
      expect(res.headers.get('location') ?? '', label).not.toMatch(/^\/login/);
      const after = await snapshot();
      (seen[action.name] ??= { accepted: 0, refused: 0 })[accepted ? 'accepted' : 'refused']++;
      // An accepted action that changed anything left an audit entry (a no-op, e.g. replaying nothing, need not).
      if (accepted && after.sum !== before.sum) expect(after.audit, `${label}: a change without an audit entry`).toBeGreaterThan(before.audit);
      if (!accepted) expect(after.sum, `${label}: refused, yet something was written`).toBe(before.sum);
    }),
    150,
  );
  // Both sides of the rules must be reached overall, or the property proves little.
  const totals = Object.values(seen).reduce((a, b) => ({ accepted: a.accepted + b.accepted, refused: a.refused + b.refused }), { accepted: 0, refused: 0 });
  expect(totals.accepted, JSON.stringify(seen)).toBeGreaterThan(10);
  expect(totals.refused, JSON.stringify(seen)).toBeGreaterThan(30);
});

it('NUL bytes, injection strings and oversized text in every free-text field are refused or stored verbatim, never a 5xx (regression)', async () => {
  const w = windows;
  const texts = ['a\u0000b', '\u0000', "'; DROP TABLE users; --", '<script>alert(1)</script>', 'x'.repeat(10_000), nested(3_000, 'object'), ...INJECTION_STRINGS.slice(0, 3)];
  for (const text of texts) {
    const attempts: Action[] = [
      { name: 'user create name', role: 'admin', path: '/admin/users', fields: [['intent', 'create'], ['email', `n-${randomUUID().slice(0, 8)}@desk.test`], ['name', text], ['role', 'support']] },
      { name: 'user create password', role: 'admin', path: '/admin/users', fields: [['intent', 'create'], ['email', `p-${randomUUID().slice(0, 8)}@desk.test`], ['password', `long enough ${text}`], ['role', 'support']] },
      { name: 'change-role reason', role: 'admin', path: '/admin/users', fields: [['intent', 'change-role'], ['userId', victims[0]!], ['role', 'finance'], ['reason', text]] },
      { name: 'api key name', role: 'admin', path: '/admin/api-keys', fields: [['intent', 'create'], ['name', text]] },
      { name: 'api key reason', role: 'admin', path: '/admin/api-keys', fields: [['intent', 'create'], ['name', 'ok'], ['reason', text]] },
      { name: 'retry reason', role: 'operator', path: '/events', fields: [['intent', 'retry-one'], ['id', failedEvents[failedEvents.length - 1]!], ['reason', text]] },
      { name: 'retry filter customer', role: 'operator', path: `/events?${new URLSearchParams({ status: 'failed', customer: text })}`, fields: [['intent', 'retry-filter']] },
      { name: 'repair reason', role: 'operator', path: '/windows', fields: [['intent', 'repair-stale'], ['subscriptionId', w.stale.subscriptionId], ['reason', text]] },
      { name: 'reauthor reason', role: 'operator', path: `/windows/${w.closed.windowId}`, fields: [['intent', 'reauthor'], ['reason', text]] },
      { name: 'write-off reason', role: 'admin', path: `/windows/${w.exhausted.windowId}/write-off`, fields: [['intent', 'write-off'], ['reason', text]] },
      { name: 'definition display name', role: 'operator', path: '/definitions', fields: [['intent', 'add-definition'], ['eventName', `nul_${randomUUID().slice(0, 8)}`], ['displayName', text], ['aggregation', 'sum']] },
      { name: 'definition reason', role: 'operator', path: '/definitions', fields: [['intent', 'add-definition'], ['eventName', `nul_${randomUUID().slice(0, 8)}`], ['displayName', 'ok'], ['aggregation', 'sum'], ['reason', text]] },
      { name: 'replay event name', role: 'operator', path: '/definitions', fields: [['intent', 'replay'], ['eventName', text]] },
      { name: 'reconciliation reason', role: 'operator', path: '/reconciliation', fields: [['intent', 'run'], ['reason', text]] },
    ];
    for (const a of attempts) {
      const before = await snapshot();
      const res = await send(a, { repeat: null, unknown: [], nulSuffix: null, multipart: null, dataRoute: false });
      const { accepted, status, text: body } = await outcome(res);
      const label = `${a.name} = ${JSON.stringify(text.slice(0, 30))} → ${status}`;
      expect(status, `${label}: ${body.slice(0, 300)}`).toBeLessThan(500);
      const after = await snapshot();
      if (accepted && after.sum !== before.sum) expect(after.audit, label).toBeGreaterThan(before.audit);
      if (!accepted) expect(after.sum, label).toBe(before.sum);
    }
  }
  // Accepted text is stored as typed: the injection string is an API key's name, and the tables are all still there.
  const named = await app.services.pool.query(`SELECT count(*)::int AS n FROM api_keys WHERE name = $1`, ["'; DROP TABLE users; --"]);
  expect(named.rows[0].n).toBe(1);
  expect((await app.services.pool.query(`SELECT count(*)::int AS n FROM users`)).rows[0].n).toBeGreaterThan(4);
});

it('a window action on something that is not a window id is a 404, not a 500 (regression)', async () => {
  for (const [role, path, fields] of [
    ['operator', '/windows/nope', { intent: 'reauthor', reason: 'x' }],
    ['operator', '/windows/nope', { intent: 'settle-again' }],
    ['admin', '/windows/nope/write-off', { intent: 'write-off', reason: 'x' }],
    ['operator', `/windows/${'9'.repeat(40)}`, { intent: 'reauthor', reason: 'x' }],
  ] as const) {
    const before = await snapshot();
    const res = await app.postForm(path, fields, { cookie: session[role] });
    await res.arrayBuffer();
    expect(res.status, `${path} ${fields.intent}`).toBe(404);
    expect((await snapshot()).sum).toBe(before.sum);
  }
});

it('replaying a definition that attaches stored events writes its audit entry (regression)', async () => {
  const c = await insertCustomer(app.services.pool);
  // Events stored under ai_tokens before anything attached them to the meter (as a definition added from the CLI leaves them).
  await insertEvents(app.services.pool, c.id, 3, { status: 'recorded', processor: 'braintree' });
  const before = await snapshot();
  const res = await app.postForm('/definitions', { intent: 'replay', eventName: 'ai_tokens' }, { cookie: session.operator });
  await res.arrayBuffer();
  expect(res.status).toBe(302);
  const entry = await app.services.pool.query(`SELECT after, reason FROM audit_log WHERE action = 'meter.replay' ORDER BY id DESC LIMIT 1`);
  expect(entry.rows[0]).toMatchObject({ after: { event_name: 'ai_tokens' } });
  expect(entry.rows[0].after.events_attached).toBeGreaterThanOrEqual(3);
  expect((await snapshot()).audit).toBe(before.audit + 1);
});

it('hostile query strings on every page never make a 5xx; a NUL anywhere in the URL is a 400 (regression)', async () => {
  const pages = ['/', '/events', '/customers', '/windows', '/definitions', '/invoices', '/invoices/export', '/telemetry', '/audit', '/admin/users', '/admin/api-keys', '/reconciliation'];
  const keys = ['status', 'customer', 'eventName', 'processor', 'errorCode', 'from', 'to', 'q', 'cursor', 'direction', 'state', 'action', 'actor', 'subjectType', 'type', 'retry', 'confirm', 'page', 'range'];
  await check(
    fc.asyncProperty(pick(pages), fc.array(fc.tuple(pick(keys), hostileFormValue.map((v) => v.replaceAll('\u0000', '').slice(0, 2_000))), { maxLength: 4 }), fc.boolean(), async (page, params, data) => {
      const query = new URLSearchParams(params).toString();
      const url = data ? `${page === '/' ? '/_' : page}.data?${query}` : `${page}?${query}`;
      const res = await app.request(url, { cookie: session.admin });
      const body = await res.text();
      expect(res.status, `GET ${url.slice(0, 200)}: ${body.slice(0, 300)}`).toBeLessThan(500);
    }),
    80,
  );
  for (const url of ['/events?customer=%00', '/events?q=a%00b', '/audit?action=%00', '/customers?q=%00', '/windows?cursor=%00', '/events/%00', '/invoices/export?from=%00']) {
    const res = await app.request(url, { cookie: session.admin });
    await res.arrayBuffer();
    expect(res.status, url).toBe(400);
  }
});
