// Hostile input for the HTTP API beyond POST /api/v1/events (test/api/hostile-input.test.ts covers that one):
// customers, subscriptions and event lookups. Properties: never a 5xx; every error is application/problem+json
// with type, title, status and detail; a refused request changes nothing (row counts and a checksum of the
// table), an accepted one changes exactly what it says.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { seedCustomers, startTestApp, type TestApp } from '../support/app';
import { check, deepJson, hostileField, hostileNumber, hostileString, INJECTION_STRINGS, mostly } from './arbitraries';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
  await seedCustomers(app);
  // One event to find, so lookups are sometimes hits.
  const r = await app.post('/api/v1/events', { customer: 'acme', event_name: 'ai_tokens', value: 5, identifier: 'hostile-api-known' });
  expect(r.status).toBe(202);
});
afterAll(() => app?.close());

/** Row count and an md5 over every row of `table`: equal before and after means nothing was written. */
async function fingerprint(table: 'customers' | 'subscriptions' | 'meter_events'): Promise<string> {
  const { rows } = await app.services.pool.query(`SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t.id)), '') AS f FROM ${table} t`);
  return rows[0].f as string;
}

async function expectProblem(res: Response, text: string) {
  expect(res.headers.get('content-type'), text).toBe('application/problem+json');
  const body = JSON.parse(text) as Record<string, unknown>;
  expect(typeof body.type, text).toBe('string');
  expect(typeof body.title, text).toBe('string');
  expect(body.status, text).toBe(res.status);
  expect(typeof body.detail, text).toBe('string');
}

let seq = 0;
const unique = (p: string) => fc.constant(null).map(() => `${p}_${Date.now().toString(36)}_${++seq}`);
const extraFields = fc.dictionary(hostileString, hostileField, { minKeys: 1, maxKeys: 2 });

const customer = fc.record(
  {
    external_id: mostly(unique('ext'), fc.oneof(hostileString, hostileField)),
    name: mostly(fc.string({ maxLength: 40 }), hostileField),
    email: mostly(fc.constantFrom('a@b.test', 'x.y+z@example.com', null), hostileField),
    processor: mostly(fc.constantFrom('stripe', 'braintree'), hostileField),
    processor_customer_id: mostly(unique('cus'), fc.oneof(hostileString, hostileField)),
    default_payment_method_token: mostly(fc.constantFrom('tok_1', null), hostileField, 6),
  },
  { requiredKeys: ['external_id', 'processor', 'processor_customer_id'] },
);

const nowSec = () => Math.floor(Date.now() / 1000);
const instant = fc.oneof(
  hostileNumber,
  hostileString,
  fc.constantFrom('2026-01-01', '0000-01-01', '9999-12-31T23:59:59Z', '2026-02-30', '2026-01-01T25:00:00Z', '2026-01-01T00:00:00+99:99', -1e13, -2e11, 1e13, 2.5e11),
  deepJson,
);
const subscription = fc.record(
  {
    customer: mostly(fc.constantFrom('acme', 'umbrella', 'cus_acme', 'bt_umbrella'), fc.oneof(hostileString, hostileField)),
    plan: mostly(fc.constantFrom('essential', 'business', 'enterprise'), fc.oneof(hostileString, hostileField)),
    processor_subscription_id: mostly(unique('sub'), fc.oneof(hostileString, hostileField)),
    current_period_start: mostly(fc.integer({ min: -60, max: 0 }).map((d) => nowSec() + d * 86_400), fc.oneof(instant, fc.constantFrom(-3e11, -1e12, -62_135_596_800 * 2, '0001-01-01'))),
    current_period_end: mostly(fc.integer({ min: 1, max: 60 }).map((d) => nowSec() + d * 86_400), instant),
    status: mostly(fc.constantFrom('active', 'trialing', 'canceled', undefined), hostileField),
  },
  { requiredKeys: ['customer', 'plan', 'processor_subscription_id', 'current_period_start', 'current_period_end'] },
);

function writeProperty(path: string, table: 'customers' | 'subscriptions', payload: fc.Arbitrary<unknown>) {
  return async () => {
    const seen = { created: 0, refused: 0 };
    await check(
      fc.asyncProperty(payload, async (body) => {
        const before = await fingerprint(table);
        const res = await app.post(path, body);
        const text = await res.text();
        expect(res.status, `${JSON.stringify(body)?.slice(0, 300)} → ${text.slice(0, 300)}`).toBeLessThan(500);
        const after = await fingerprint(table);
        if (res.status >= 400) {
          seen.refused++;
          await expectProblem(res, text);
          expect(after, 'a refused request wrote something').toBe(before);
        } else if (res.status === 201) {
          seen.created++;
          expect(Number(after.split(':')[0])).toBe(Number(before.split(':')[0]) + 1);
        } else {
          expect(res.status).toBe(200);
          // 200 = the same request again (customers) or a renewal (subscriptions): never a new row.
          expect(after.split(':')[0]).toBe(before.split(':')[0]);
        }
      }),
      150,
    );
    expect(seen.created, 'the generator must produce accepted requests').toBeGreaterThan(5);
    expect(seen.refused, 'the generator must produce refused requests').toBeGreaterThan(5);
  };
}

it('POST /api/v1/customers: never 5xx, problem+json errors, nothing half-written', writeProperty('/api/v1/customers', 'customers', fc.oneof(
  { arbitrary: customer, weight: 6 },
  { arbitrary: fc.tuple(customer, extraFields).map(([c, x]) => ({ ...x, ...c })), weight: 1 },
  { arbitrary: hostileField, weight: 1 },
)));

it('POST /api/v1/subscriptions: never 5xx, problem+json errors, nothing half-written', writeProperty('/api/v1/subscriptions', 'subscriptions', fc.oneof(
  { arbitrary: subscription, weight: 6 },
  { arbitrary: fc.tuple(subscription, extraFields).map(([s, x]) => ({ ...x, ...s })), weight: 1 },
  { arbitrary: hostileField, weight: 1 },
)));

it('refuses raw hostile bodies and wrong media types on customers and subscriptions with a 4xx problem', async () => {
  const raw = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.constantFrom('{"external_id":"x"', '{"a":1}{"b":2}', '\u0000', '[]', 'null', '"s"', `${'['.repeat(5000)}${']'.repeat(5000)}`, `${'{"a":'.repeat(3000)}1${'}'.repeat(3000)}`),
  );
  await check(
    fc.asyncProperty(fc.constantFrom('/api/v1/customers', '/api/v1/subscriptions'), raw, fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/merge-patch+json', ''), async (path, body, type) => {
      const table = path.endsWith('customers') ? 'customers' : 'subscriptions';
      const before = await fingerprint(table);
      const res = await app.post(path, null, { raw: body, headers: { 'content-type': type } });
      const text = await res.text();
      expect(res.status, text).toBeGreaterThanOrEqual(400);
      expect(res.status, text).toBeLessThan(500);
      await expectProblem(res, text);
      expect(await fingerprint(table)).toBe(before);
    }),
    80,
  );
});

it('GET /api/v1/events?identifier= with hostile identifiers: 200 for a hit, a 4xx problem otherwise, never a 5xx', async () => {
  const before = await fingerprint('meter_events');
  const identifiers = fc.oneof(hostileString.map((s) => s.slice(0, 5_000)), fc.constantFrom('hostile-api-known', ...INJECTION_STRINGS));
  await check(
    fc.asyncProperty(identifiers, fc.boolean(), async (identifier, repeat) => {
      const params = new URLSearchParams({ identifier });
      if (repeat) params.append('identifier', 'hostile-api-known');
      const res = await app.get(`/api/v1/events?${params}`);
      const text = await res.text();
      expect(res.status, `${JSON.stringify(identifier)} → ${text.slice(0, 200)}`).toBeLessThan(500);
      if (res.status === 200) expect(JSON.parse(text).identifier).toBe('hostile-api-known');
      else await expectProblem(res, text);
    }),
    120,
  );
  // Raw query strings the URLSearchParams encoder would never produce.
  for (const query of ['identifier=%', 'identifier=%zz', 'identifier=%E0%A4%A', 'identifier=%00', 'identifier=%ud800', 'identifier', '=', '&&&', 'identifier=a&identifier=b', `identifier=${'%41'.repeat(5000)}`]) {
    const res = await app.get(`/api/v1/events?${query}`);
    const text = await res.text();
    expect(res.status, `${query} → ${text.slice(0, 200)}`).toBeLessThan(500);
    if (res.status !== 200) await expectProblem(res, text);
  }
  expect(await fingerprint('meter_events')).toBe(before);
});

it('GET /api/v1/events/:id with garbage ids: a 404 (or 4xx) problem, never a 5xx', async () => {
  const known = await app.get('/api/v1/events?identifier=hostile-api-known');
  const knownId = (await known.json()).id as string;
  const segment = fc.oneof(
    hostileString.map((s) => encodeURIComponent(s.toWellFormed())),
    fc.constantFrom('%', '%zz', '%E0%A4%A', '%00', '%2F', '%2e%2e', '..%2F..%2Fetc', '%C0%AF', '%ED%A0%80', knownId.toUpperCase(), `${knownId}%00`, `${knownId} `, '00000000-0000-0000-0000-000000000000', 'x'.repeat(10_000)),
    fc.uuid().map((u) => u),
  );
  await check(
    fc.asyncProperty(segment, fc.constantFrom('GET', 'POST', 'DELETE', 'PUT'), async (id, method) => {
      const res = await fetch(`${app.url}/api/v1/events/${id}`, { method, headers: { authorization: `Bearer ${app.apiKey}` } });
      const text = await res.text();
      expect(res.status, `${method} ${id.slice(0, 100)} → ${text.slice(0, 200)}`).toBeLessThan(500);
      if (res.status === 200) expect(JSON.parse(text).id).toBe(knownId);
      else await expectProblem(res, text);
    }),
    120,
  );
});

it('refuses hostile Authorization headers with a 401 problem and never answers with data', async () => {
  const header = fc.oneof(
    hostileString.map((s) => `Bearer ${s.slice(0, 8_000)}`),
    fc.constantFrom('Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', `bearer ${'a'.repeat(8_000)}`, `Bearer ${'md_'.padEnd(46, 'A')}`, 'Bearer md_\t', 'Token x'),
    fc.string({ unit: 'binary-ascii', maxLength: 80 }),
  );
  await check(
    fc.asyncProperty(header, async (value) => {
      let res: Response;
      try {
        res = await fetch(`${app.url}/api/v1/events?identifier=hostile-api-known`, { headers: { authorization: value } });
      } catch {
        return; // not a valid header value: the client refuses to send it
      }
      const text = await res.text();
      expect(res.status, `${JSON.stringify(value).slice(0, 80)} → ${text.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      await expectProblem(res, text);
    }),
    80,
  );
});

it('never stores a different text than the caller sent: lone surrogates are refused, so distinct identifiers never collide', async () => {
  // A lone surrogate has no UTF-8 form: stored, it would become U+FFFD, and "\ud800" and "\udbff" one identifier.
  const lone = fc.constantFrom('\ud800', '\udbff', '\udc00', 'evt-\ud83d', 'evt-\ude00-x');
  await check(
    fc.asyncProperty(lone, fc.constantFrom('identifier', 'customer', 'event_name', 'subscription', 'properties'), async (text, field) => {
      const before = await fingerprint('meter_events');
      const event: Record<string, unknown> = { customer: 'acme', event_name: 'ai_tokens', value: 1, identifier: `lone-${Date.now()}-${++seq}` };
      event[field] = field === 'properties' ? { note: text, [text]: 1 } : text;
      const res = await app.post('/api/v1/events', event);
      const body = await res.text();
      expect(res.status, `${field}=${JSON.stringify(text)} → ${body.slice(0, 300)}`).toBe(422);
      await expectProblem(res, body);
      expect(await fingerprint('meter_events')).toBe(before);
    }),
    40,
  );
});
