// Property test: random and hostile payloads never produce a 5xx, and never a partial write — a refused request
// stores nothing, an accepted one stores exactly what it says it accepted.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { seedCustomers, startTestApp, type TestApp } from '../support/app';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
  await seedCustomers(app);
});
afterAll(() => app?.close());

const hostileString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 120 }),
  fc.constantFrom(
    "'; DROP TABLE meter_events; --",
    'acme\u0000',
    '\u0000',
    '𝕬𝖈𝖒𝖊',
    '‮evil',
    '../../etc/passwd',
    '<script>alert(1)</script>',
    'a'.repeat(101),
    'ai_tokens',
    'acme',
    'cus_acme',
    'umbrella',
    '',
    ' ',
    '1e400',
    'NaN',
  ),
);
const hostileNumber = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -0, 1, 2 ** 53 - 1, 2 ** 53, 2 ** 63, -1, 1e308, Number.MIN_VALUE),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((b) => Number(b)),
);
const deepJson = fc.letrec((tie) => ({
  node: fc.oneof({ depthSize: 'small' }, fc.jsonValue(), fc.array(tie('node'), { maxLength: 3 }), fc.dictionary(hostileString, tie('node'), { maxKeys: 3 })),
})).node;
const field = fc.oneof(hostileString, hostileNumber, fc.boolean(), fc.constant(null), deepJson);
const nowSec = () => Math.floor(Date.now() / 1000);
const timestamp = fc.oneof(
  field,
  fc.integer({ min: -40 * 86400, max: 600 }).map((d) => nowSec() + d),
  fc.integer({ min: -40 * 86400, max: 600 }).map((d) => new Date((nowSec() + d) * 1000).toISOString()),
);
// Each field is mostly valid and sometimes hostile, so a payload is often accepted, often refused for one reason.
const mostly = <T, U>(valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<U>) =>
  fc.oneof({ arbitrary: valid, weight: 5 }, { arbitrary: hostile, weight: 1 });
const event = fc.record(
  {
    customer: mostly(fc.constantFrom('acme', 'cus_acme', 'umbrella', 'twosubs', 'nosub_bt'), field),
    event_name: mostly(fc.constantFrom('ai_tokens', 'image_renders', 'x'), field),
    value: mostly(fc.nat(), fc.oneof(hostileNumber, field)),
    identifier: mostly(fc.uuid(), fc.oneof(hostileString, field)),
    timestamp: mostly(fc.integer({ min: -30 * 86400, max: 200 }).map((d) => nowSec() + d), timestamp),
    subscription: fc.oneof({ arbitrary: fc.constant(undefined), weight: 5 }, { arbitrary: fc.constantFrom('sub_two_a', 'sub_acme', 'nope'), weight: 2 }, { arbitrary: field, weight: 1 }),
    properties: mostly(fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }), fc.oneof(deepJson, field)),
  },
  { requiredKeys: ['customer', 'event_name'] },
);
const extra = fc.dictionary(hostileString, field, { maxKeys: 2 });
const payload = fc.oneof(
  event,
  fc.tuple(event, extra).map(([e, x]) => ({ ...x, ...e })),
  fc.array(event, { maxLength: 8 }).map((events) => ({ events })),
  field,
);

const count = () => app.count('SELECT count(*) FROM meter_events');

it('never answers 5xx and never writes partially', async () => {
  const seen = { accepted: 0, refused: 0 };
  await fc.assert(
    fc.asyncProperty(payload, async (body) => {
      const before = await count();
      const res = await app.post('/api/v1/events', body);
      const text = await res.text();
      expect(res.status, text).toBeLessThan(500);
      const after = await count();
      if (after > before) seen.accepted++;
      if (res.status >= 400) {
        seen.refused++;
        expect(res.headers.get('content-type')).toBe('application/problem+json');
        expect(after).toBe(before);
      } else if (res.status === 202) {
        expect(after).toBe(before + 1);
      } else {
        const parsed = JSON.parse(text);
        if (Array.isArray(parsed.results)) expect(after).toBe(before + parsed.accepted);
        else {
          expect(parsed.duplicate).toBe(true);
          expect(after).toBe(before);
        }
      }
    }),
    { numRuns: 300 },
  );
  // The generators must reach both sides of the rules, or the property proves nothing.
  expect(seen.accepted).toBeGreaterThan(10);
  expect(seen.refused).toBeGreaterThan(10);
});

it('refuses raw hostile bodies with a 4xx', async () => {
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 300 }), async (raw) => {
      const before = await count();
      const res = await app.post('/api/v1/events', null, { raw });
      expect(res.status).toBeLessThan(500);
      if (res.status >= 400) expect(await count()).toBe(before);
      await res.arrayBuffer();
    }),
    { numRuns: 150 },
  );
});
