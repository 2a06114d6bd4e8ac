// Hostile deliveries to the two webhook endpoints: random bodies and headers, forged or absent signatures, and
// correctly signed but hostile JSON. Properties: never a 5xx, every refusal a problem document, a refusal stores
// no webhook event (only its `webhook_rejected` ops event), and a signed delivery is stored at most once.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createBraintreeWebhookHandler } from '../../app/api/braintree-webhooks';
import { createWebhookHandler } from '../../app/api/webhooks';
import { signatureHeader } from '../../app/billing/processors/stripe/simulator';
import { startHttpServer, type HttpServer } from '../../app/server/http';
import { startBraintreeHarness, type BraintreeHarness } from '../support/braintree';
import { deepJson, hostileString, INJECTION_STRINGS } from './arbitraries';

const SECRET = 'whsec_hostile_webhooks_test_secret';
let h: BraintreeHarness;
let http: HttpServer;

beforeAll(async () => {
  h = await startBraintreeHarness();
  http = await startHttpServer({
    port: 0,
    handlers: [createWebhookHandler({ pool: h.services.pool, stripeWebhookSecret: SECRET }), createBraintreeWebhookHandler({ pool: h.services.pool, parser: h.processor })],
  });
}, 120_000);
afterAll(async () => {
  await http?.close();
  await h?.close();
});

const stored = () => h.count(`SELECT count(*) FROM webhook_events`);

async function expectRefusal(res: Response, label: string) {
  const text = await res.text();
  expect(res.status, `${label}: ${text}`).toBeGreaterThanOrEqual(400);
  expect(res.status, `${label}: ${text}`).toBeLessThan(500);
  expect(res.headers.get('content-type'), label).toBe('application/problem+json');
  const body = JSON.parse(text) as Record<string, unknown>;
  for (const k of ['type', 'title', 'status', 'detail']) expect(body, label).toHaveProperty(k);
}

const header = fc.oneof(
  fc.constant(undefined),
  hostileString.map((s) => s.replace(/[^\x20-\x7e]/g, '')),
  fc.constantFrom('t=1,v1=abc', 't=,v1=', 'v1=' + 'a'.repeat(64), 't=9999999999,v1=' + '0'.repeat(64), 't=1700000000,v0=x,v1='),
);
const body = fc.oneof(
  hostileString,
  deepJson.map((j) => JSON.stringify(j)),
  fc.constantFrom('', '{', 'null', '[]', '{"id":"evt_1","type":"customer.subscription.updated"}', ...INJECTION_STRINGS),
);

it('Stripe: unsigned or forged deliveries are refused with a problem and nothing is stored', async () => {
  const before = await stored();
  await fc.assert(
    fc.asyncProperty(body, header, fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded'), async (payload, signature, type) => {
      const headers: Record<string, string> = { 'content-type': type };
      if (signature !== undefined) headers['stripe-signature'] = signature;
      const res = await fetch(`${http.url}/webhooks/stripe`, { method: 'POST', headers, body: payload });
      await expectRefusal(res, `${signature} ${payload.slice(0, 80)}`);
    }),
    { numRuns: 80 },
  );
  expect(await stored()).toBe(before);
});

it('Stripe: correctly signed hostile JSON is never a 5xx, and each event id is stored at most once', async () => {
  const event = fc.record({
    id: fc.oneof(fc.constant('evt_hostile_fixed'), hostileString, fc.integer(), fc.constant(null)),
    object: fc.constantFrom('event', 'nope'),
    type: fc.oneof(fc.constantFrom('customer.subscription.updated', 'v1.billing.meter.error_report_triggered', 'invoice.paid'), hostileString),
    created: fc.oneof(fc.integer(), hostileString),
    data: fc.oneof(deepJson, fc.record({ object: deepJson })),
  });
  await fc.assert(
    fc.asyncProperty(event, async (e) => {
      const payload = JSON.stringify(e);
      const res = await fetch(`${http.url}/webhooks/stripe`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'stripe-signature': signatureHeader(payload, SECRET, Math.floor(Date.now() / 1000)) },
        body: payload,
      });
      const text = await res.text();
      expect(res.status, text).toBeLessThan(500);
      if (res.status >= 400) expect(res.headers.get('content-type')).toBe('application/problem+json');
    }),
    { numRuns: 80 },
  );
  const dupes = await h.count(`SELECT count(*) FROM (SELECT 1 FROM webhook_events GROUP BY processor, processor_event_id HAVING count(*) > 1) d`);
  expect(dupes).toBe(0);
});

it('Braintree: forged bt_signature / bt_payload pairs are refused with a problem and nothing is stored', async () => {
  const before = await stored();
  const field = fc.oneof(hostileString, fc.base64String({ maxLength: 200 }), fc.constantFrom('', 'abc|def', `${h.sim.publicKey}|${'0'.repeat(40)}`));
  await fc.assert(
    fc.asyncProperty(field, field, fc.boolean(), async (signature, payload, asJson) => {
      const res = asJson
        ? await fetch(`${http.url}/webhooks/braintree`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ bt_signature: signature, bt_payload: payload }) })
        : await fetch(`${http.url}/webhooks/braintree`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({ bt_signature: signature, bt_payload: payload }).toString(),
          });
      await expectRefusal(res, `${signature.slice(0, 40)} ${payload.slice(0, 40)}`);
    }),
    { numRuns: 80 },
  );
  expect(await stored()).toBe(before);
});

it('Stripe: a signed event holding U+0000 or a lone surrogate is a 400, not a 503 the sender would retry forever (regression)', async () => {
  const before = await stored();
  for (const event of [
    { id: '\u0000', object: 'event', type: 'customer.subscription.updated', created: 0, data: {} },
    { id: 'evt_nul_in_data', object: 'event', type: 'customer.subscription.updated', created: 0, data: { object: { note: 'a\u0000b' } } },
    { id: 'evt_lone_surrogate', object: 'event', type: 'customer.subscription.updated', created: 0, data: { object: { ['k\ud800']: 1 } } },
  ]) {
    const payload = JSON.stringify(event);
    const res = await fetch(`${http.url}/webhooks/stripe`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'stripe-signature': signatureHeader(payload, SECRET, Math.floor(Date.now() / 1000)) },
      body: payload,
    });
    expect(res.status).toBe(400);
    await expectRefusal(res, event.id);
  }
  expect(await stored()).toBe(before);
});
