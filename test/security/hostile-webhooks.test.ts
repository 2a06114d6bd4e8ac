// Hostile deliveries to POST /webhooks/stripe and POST /webhooks/braintree, through the real SDK verifiers and real
// PostgreSQL. Unsigned garbage is refused with a 4xx problem, stores nothing and records one webhook_rejected; a
// correctly signed but hostile payload is never a 5xx (a 5xx makes the processor redeliver for days) and is either
// stored exactly once with its job, or refused with nothing stored. Every stored hostile event is then processed by
// the job's code, which must settle it (processed or not_applied), never throw: a throw is a job retried forever.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createBraintreeWebhookHandler } from '../../app/api/braintree-webhooks';
import { createWebhookHandler } from '../../app/api/webhooks';
import { createCustomer, upsertSubscription } from '../../app/billing/customers';
import { seedBase } from '../../app/seed/base';
import { BraintreeProcessor } from '../../app/billing/processors/braintree/processor';
import { encodePayload, signPayload, subscriptionXml } from '../../simulators/braintree/simulator';
import { processBraintreeWebhook } from '../../app/billing/processors/braintree/webhooks';
import Stripe from 'stripe';
import { SIMULATOR_SECRET_KEY, signatureHeader, startStripeSimulator, type StripeSimulator } from '../../simulators/stripe/simulator';
import { stripeClientConfig } from '../../app/billing/processors/stripe/processor';
import { processStripeWebhookEvent } from '../../app/billing/processors/stripe/webhooks';
import { startHttpServer, type HttpServer } from '../../app/server/http';
import { check, deepJson, hostileField, hostileNumber, hostileString, mostly, nested } from './arbitraries';
import { useTestServices } from '../support/services';

const STRIPE_SECRET = `whsec_${randomBytes(24).toString('base64url')}`;
const BT_KEYS = { publicKey: 'hostile_public_key', privateKey: `hostile_private_${randomBytes(12).toString('hex')}` };
const DAY = 86_400;

const t = useTestServices();
let http: HttpServer;
/** Serves the thin events the job fetches (GET /v2/core/events/:id): the hostile data reaches the job that way. */
let stripeSim: StripeSimulator;
let stripe: Stripe;

beforeAll(async () => {
  await seedBase(t.services.prisma);
  stripeSim = await startStripeSimulator();
  stripe = new Stripe(SIMULATOR_SECRET_KEY, { ...stripeClientConfig(stripeSim.url), maxNetworkRetries: 0 });
  // Parsing a webhook makes no request: the gateway address only has to be well formed.
  const processor = new BraintreeProcessor({ merchantId: 'hostile_merchant', ...BT_KEYS, apiBase: 'http://127.0.0.1:9' });
  http = await startHttpServer({
    port: 0,
    handlers: [
      createBraintreeWebhookHandler({ pool: t.services.pool, parser: processor }),
      createWebhookHandler({ pool: t.services.pool, stripeWebhookSecret: STRIPE_SECRET }),
    ],
  });
  const now = Date.now();
  const period = { current_period_start: new Date(now - 5 * DAY * 1000).toISOString(), current_period_end: new Date(now + 25 * DAY * 1000).toISOString() };
  await createCustomer(t.services.prisma, { external_id: 'acme', processor: 'stripe', processor_customer_id: 'cus_acme' });
  await upsertSubscription(t.services.prisma, { customer: 'acme', plan: 'business', processor_subscription_id: 'sub_acme', ...period });
  await createCustomer(t.services.prisma, { external_id: 'umbrella', processor: 'braintree', processor_customer_id: 'bt_umbrella', default_payment_method_token: 'tok_u' });
  await upsertSubscription(t.services.prisma, { customer: 'umbrella', plan: 'essential', processor_subscription_id: 'bt_sub_umbrella', ...period });
});

afterAll(async () => {
  await http?.close();
  await stripeSim?.stop();
});

/** Everything a delivery may write: stored webhooks and their jobs, with a checksum of the rows. */
async function stored(): Promise<{ webhooks: number; jobs: number; sum: string }> {
  const { rows } = await t.services.pool.query(
    `SELECT (SELECT count(*)::int FROM webhook_events) AS webhooks,
            (SELECT count(*)::int FROM graphile_worker._private_jobs) AS jobs,
            (SELECT coalesce(md5(string_agg(w.id::text || w.processor_event_id || w.payload::text, ',' ORDER BY w.id)), '') FROM webhook_events w) AS sum`,
  );
  return rows[0];
}
const rejections = async () => Number((await t.services.pool.query(`SELECT count(*) FROM ops_events WHERE type = 'webhook_rejected' AND source = 'endpoint'`)).rows[0].count);

async function expectProblem(res: Response, text: string) {
  expect(res.headers.get('content-type'), text).toBe('application/problem+json');
  const body = JSON.parse(text) as Record<string, unknown>;
  for (const k of ['type', 'title', 'detail']) expect(typeof body[k], text).toBe('string');
  expect(body.status, text).toBe(res.status);
}

function post(path: string, body: string, headers: Record<string, string>) {
  return fetch(http.url + path, { method: 'POST', headers, body });
}

async function withClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await t.services.pool.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}

const hex = (maxLength: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), maxLength });
const nowSec = () => Math.floor(Date.now() / 1000);
let seq = 0;
const uniqueId = (prefix: string) => fc.constant(null).map(() => `${prefix}_${Date.now().toString(36)}_${++seq}`);

// ───────────────────────────── Stripe ─────────────────────────────

const rawBody = fc.oneof(
  hostileString,
  deepJson.map((v) => JSON.stringify(v) ?? ''),
  fc.constantFrom('{}', '{"id":"evt_1","object":"event","type":"x"}', nested(20_000), nested(5_000, 'object'), '\u0000', ''),
);
const signatureHeaderValue = (body: string) =>
  fc.oneof(
    fc.constant<string | null>(null),
    hostileString.map((s) => s.slice(0, 4_000)),
    fc.tuple(fc.integer({ min: -1, max: 2 ** 40 }), hex(80)).map(([t, sig]) => `t=${t},v1=${sig}`),
    // Right format, wrong secret; right secret, another body; several v1 of which none match.
    fc.constant(signatureHeader(body, 'whsec_wrong', nowSec())),
    fc.constant(signatureHeader(`${body} `, STRIPE_SECRET, nowSec())),
    fc.constant(`t=${nowSec()},v1=${'0'.repeat(64)},v1=${'f'.repeat(64)},v0=${'a'.repeat(64)}`),
    fc.constant(`${signatureHeader(body, STRIPE_SECRET, nowSec()).replace('v1=', 'v2=')}`),
  );

it('Stripe: unsigned or mis-signed deliveries are refused with a 4xx problem, store nothing and are recorded once', async () => {
  await check(
    fc.asyncProperty(
      rawBody.chain((body) => fc.tuple(fc.constant(body), signatureHeaderValue(body), fc.constantFrom('application/json', 'text/plain', ''))),
      async ([body, signature, type]) => {
        const before = await stored();
        const rejected = await rejections();
        const headers: Record<string, string> = {};
        if (type) headers['content-type'] = type;
        if (signature !== null) headers['stripe-signature'] = signature;
        let res: Response;
        try {
          res = await post('/webhooks/stripe', body, headers);
        } catch {
          return; // a header value no HTTP client can send (control characters)
        }
        const text = await res.text();
        expect(res.status, text).toBeGreaterThanOrEqual(400);
        expect(res.status, text).toBeLessThan(500);
        await expectProblem(res, text);
        expect(await stored()).toEqual(before);
        expect(await rejections()).toBe(rejected + 1);
      },
    ),
    120,
  );
});

const stripeStatus = fc.constantFrom('active', 'trialing', 'past_due', 'canceled', 'incomplete_expired', 'unpaid', 'paused', 'weird');
const epoch = (offsetDays: [number, number]) => fc.integer({ min: offsetDays[0], max: offsetDays[1] }).map((d) => nowSec() + d * DAY);
const subscriptionObject = fc.record({
  object: mostly(fc.constant('subscription'), hostileField, 8),
  id: mostly(fc.constantFrom('sub_acme', 'sub_hostile_new'), hostileString),
  customer: mostly(fc.constantFrom('cus_acme', 'cus_nobody'), fc.oneof(hostileField, fc.record({ id: hostileString }))),
  status: mostly(stripeStatus, hostileField),
  metadata: mostly(fc.constant({ plan: 'business' }), fc.oneof(fc.dictionary(hostileString, hostileField, { maxKeys: 3 }), hostileField)),
  items: mostly(
    fc.record({
      data: fc.array(
        fc.record({
          current_period_start: mostly(epoch([-10, 0]), hostileNumber),
          current_period_end: mostly(epoch([1, 40]), hostileNumber),
          price: mostly(fc.record({ lookup_key: mostly(fc.constantFrom('business', 'essential', 'nope'), hostileField) }), hostileField),
        }),
        { maxLength: 3 },
      ),
    }),
    hostileField,
  ),
  canceled_at: fc.option(hostileNumber),
  current_period_start: fc.option(hostileNumber),
  current_period_end: fc.option(hostileNumber),
});
const meterErrorData = fc.record({
  reason: mostly(
    fc.record({
      error_count: mostly(fc.nat(10), hostileNumber),
      error_types: fc.array(
        fc.record({
          code: mostly(fc.constantFrom('meter_event_customer_not_found', 'timestamp_too_far_in_past'), hostileString),
          sample_errors: fc.array(fc.record({ error_message: fc.option(hostileString), request: fc.record({ identifier: hostileString }) }), { maxLength: 3 }),
        }),
        { maxLength: 3 },
      ),
    }),
    hostileField,
  ),
});
const stripeEvent = fc.oneof(
  fc.record({
    id: mostly(uniqueId('evt_hostile'), hostileField),
    object: mostly(fc.constant('event'), hostileField, 8),
    type: mostly(fc.constantFrom('customer.subscription.updated', 'customer.subscription.created', 'customer.subscription.deleted'), hostileField),
    created: mostly(fc.constant(nowSec()), hostileNumber),
    data: mostly(fc.record({ object: subscriptionObject }), hostileField),
  }),
  fc.record({
    id: mostly(uniqueId('evt_hostile_meter'), hostileField),
    object: mostly(fc.constant('v2.core.event'), hostileField, 8),
    type: mostly(fc.constantFrom('v1.billing.meter.error_report_triggered', 'v1.billing.meter.no_meter_found'), hostileField),
    data: meterErrorData,
  }),
  fc.tuple(uniqueId('evt_hostile_extra'), fc.dictionary(hostileString, hostileField, { maxKeys: 4 })).map(([id, extra]) => ({ ...extra, id, object: 'event', type: 'invoice.paid' })),
  fc.tuple(uniqueId('evt_hostile_deep'), fc.integer({ min: 50, max: 30_000 })).map(([id, depth]) => `{"id":"${id}","object":"event","type":"x.y","data":${nested(depth)}}`),
  hostileField,
);

it('Stripe: a correctly signed hostile payload is stored once or refused, never a 5xx, and its job never throws', async () => {
  const seen = { stored: 0, refused: 0 };
  await check(
    fc.asyncProperty(stripeEvent, fc.boolean(), async (event, pretty) => {
      const body = typeof event === 'string' ? event : (JSON.stringify(event, null, pretty ? 2 : 0) ?? 'null');
      const before = await stored();
      const res = await post('/webhooks/stripe', body, { 'content-type': 'application/json', 'stripe-signature': signatureHeader(body, STRIPE_SECRET, nowSec()) });
      const text = await res.text();
      expect(res.status, `${body.slice(0, 300)} → ${text.slice(0, 300)}`).toBeLessThan(500);
      const after = await stored();
      if (res.status !== 200) {
        seen.refused++;
        await expectProblem(res, text);
        expect(after).toEqual(before);
        return;
      }
      const { duplicate } = JSON.parse(text) as { duplicate: boolean };
      if (duplicate) {
        expect(after).toEqual(before);
        return;
      }
      seen.stored++;
      expect(after.webhooks).toBe(before.webhooks + 1);
      expect(after.jobs).toBe(before.jobs + 1);
      const id = (JSON.parse(body) as { id: string }).id;
      const row = await t.services.pool.query(`SELECT id FROM webhook_events WHERE processor = 'stripe' AND processor_event_id = $1`, [id]);
      expect(row.rows, `stored under ${JSON.stringify(id)}`).toHaveLength(1);
      // The job's work: a definitive outcome for any payload. A meter error report's data comes from the event Stripe
      // serves for its id, so the hostile data is put there, not in the notification.
      const parsed = JSON.parse(body) as { id: string; type: unknown; data?: unknown };
      if (typeof parsed.type === 'string' && parsed.type.startsWith('v1.billing.meter.')) stripeSim.holdThinEvent({ id: parsed.id, type: parsed.type, data: parsed.data });
      const outcome = await withClient((client) => processStripeWebhookEvent(client, row.rows[0].id, { stripe }));
      expect(['processed', 'not_applied'], JSON.stringify(outcome)).toContain(outcome.status);
    }),
    150,
  );
  expect(seen.stored).toBeGreaterThan(10);
  expect(seen.refused).toBeGreaterThan(5);
});

// ───────────────────────────── Braintree ─────────────────────────────

const btPayloadGarbage = fc.oneof(
  hostileString,
  fc.base64String({ maxLength: 400 }),
  hostileString.map((s) => Buffer.from(s.toWellFormed()).toString('base64')),
  fc.constant(encodePayload('<notification><kind>check</kind></notification>')),
);
const btSignatureGarbage = fc.oneof(
  hostileString,
  fc.constantFrom(`${BT_KEYS.publicKey}|${'0'.repeat(40)}`, `other_key|${'a'.repeat(40)}`, '|', `${BT_KEYS.publicKey}|`, `${BT_KEYS.publicKey}|zz&`),
  hex(40).map((h) => `${BT_KEYS.publicKey}|${h}`),
);

/** A form value as a client would send it (fast-check's dictionaries have no prototype, so no String()). */
const asText = (v: unknown): string => (typeof v === 'string' ? v : (JSON.stringify(v) ?? '')).toWellFormed();

function btRequest(kind: 'form' | 'json' | 'raw', signature: unknown, payload: unknown): { body: string; type: string } {
  if (kind === 'json') return { body: JSON.stringify({ bt_signature: signature, bt_payload: payload }), type: 'application/json' };
  if (kind === 'raw') return { body: `${asText(signature)}&${asText(payload)}`, type: 'text/plain' };
  return { body: new URLSearchParams({ bt_signature: asText(signature), bt_payload: asText(payload) }).toString(), type: 'application/x-www-form-urlencoded' };
}

it('Braintree: garbage bt_signature/bt_payload is refused with a 4xx problem, stores nothing and is recorded once', async () => {
  await check(
    fc.asyncProperty(
      fc.constantFrom('form', 'json', 'raw') as fc.Arbitrary<'form' | 'json' | 'raw'>,
      fc.oneof(btSignatureGarbage, hostileField),
      fc.oneof(btPayloadGarbage, hostileField),
      async (kind, signature, payload) => {
        const before = await stored();
        const rejected = await rejections();
        const { body, type } = btRequest(kind, signature, payload);
        const res = await post('/webhooks/braintree', body, { 'content-type': type });
        const text = await res.text();
        expect(res.status, `${body.slice(0, 200)} → ${text.slice(0, 300)}`).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        await expectProblem(res, text);
        expect(await stored()).toEqual(before);
        expect(await rejections()).toBe(rejected + 1);
      },
    ),
    120,
  );
});

const xmlText = hostileString.map((s) => s.toWellFormed().replace(/[<&]/g, (c) => (c === '<' ? '&lt;' : '&amp;')));
const btDate = fc.oneof(
  fc.integer({ min: -40, max: 40 }).map((d) => new Date(Date.now() + d * DAY * 1000).toISOString().slice(0, 10)),
  fc.constantFrom('2026-13-45', '2026-02-30', '0000-00-00', '9999-99-99', '1970-01-01', '275760-09-13', '2026-01-01T99:99'),
  xmlText,
);
const btKinds = fc.constantFrom('subscription_charged_successfully', 'subscription_went_active', 'subscription_canceled', 'subscription_went_past_due', 'check', 'disbursement');
const btNotification = fc.oneof(
  // A well-formed subscription notification with hostile field values.
  fc
    .record({
      kind: mostly(btKinds, xmlText),
      id: mostly(fc.constantFrom('bt_sub_umbrella', 'bt_sub_unknown'), xmlText),
      status: fc.constantFrom('Active', 'Canceled', 'Past Due', 'Expired', 'Pending', 'Weird'),
      start: btDate,
      end: btDate,
      next: fc.option(btDate),
    })
    .map(({ kind, id, status, start, end, next }) => {
      const sub = subscriptionXml({ id: 'ID', status: status as 'Active', billingPeriodStartDate: '2026-01-01', billingPeriodEndDate: '2026-01-31', nextBillingDate: '2026-02-01' }, kind, Date.now())
        .replace('<id>ID</id>', `<id>${id}</id>`)
        .replace(/(<billing-period-start-date type="date">)[^<]*/, `$1${start}`)
        .replace(/(<billing-period-end-date type="date">)[^<]*/, `$1${end}`)
        .replace(/(<next-billing-date type="date">)[^<]*/, `$1${next ?? ''}`);
      return `<?xml version="1.0" encoding="UTF-8"?>\n<notification><timestamp type="datetime">${new Date().toISOString()}</timestamp><kind>${kind}</kind><subject>${sub}</subject></notification>`;
    }),
  // Arbitrary text and XML-ish fragments, including NUL and entity tricks.
  fc.oneof(hostileString, fc.constantFrom('<notification/>', '<notification><kind>\u0000</kind></notification>', '<notification><kind>a&#0;b</kind></notification>', '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><notification><kind>&a;&a;&a;</kind></notification>', `<notification><kind>deep</kind><subject>${'<a>'.repeat(5_000)}${'</a>'.repeat(5_000)}</subject></notification>`)),
);

it('Braintree: a correctly signed hostile notification is stored once or refused, never a 5xx, and its job never throws', async () => {
  const seen = { stored: 0, refused: 0 };
  await check(
    fc.asyncProperty(btNotification, fc.constantFrom('form', 'json') as fc.Arbitrary<'form' | 'json'>, async (xml, kind) => {
      const payload = encodePayload(xml);
      const { body, type } = btRequest(kind, signPayload(BT_KEYS, payload), payload);
      const before = await stored();
      const res = await post('/webhooks/braintree', body, { 'content-type': type });
      const text = await res.text();
      expect(res.status, `${xml.slice(0, 300)} → ${text.slice(0, 300)}`).toBeLessThan(500);
      const after = await stored();
      if (res.status !== 200) {
        seen.refused++;
        await expectProblem(res, text);
        expect(after).toEqual(before);
        return;
      }
      if ((JSON.parse(text) as { duplicate: boolean }).duplicate) {
        expect(after).toEqual(before);
        return;
      }
      seen.stored++;
      expect(after.webhooks).toBe(before.webhooks + 1);
      expect(after.jobs).toBe(before.jobs + 1);
      const row = await t.services.pool.query(`SELECT id FROM webhook_events WHERE processor = 'braintree' ORDER BY received_at DESC, id LIMIT 1`);
      const outcome = await processBraintreeWebhook(t.services.pool, row.rows[0].id);
      expect(['processed', 'not_applied'], JSON.stringify(outcome)).toContain(outcome.status);
    }),
    120,
  );
  expect(seen.stored).toBeGreaterThan(10);
});

it('Stripe: a signed event holding U+0000 or a lone surrogate is a 400, not a 503 the sender would retry forever (regression)', async () => {
  const before = await stored();
  for (const event of [
    { id: '\u0000', object: 'event', type: 'customer.subscription.updated', created: 0, data: {} },
    { id: 'evt_nul_in_data', object: 'event', type: 'customer.subscription.updated', created: 0, data: { object: { note: 'a\u0000b' } } },
    { id: 'evt_lone_surrogate', object: 'event', type: 'customer.subscription.updated', created: 0, data: { object: { ['k\ud800']: 1 } } },
  ]) {
    const body = JSON.stringify(event);
    const res = await post('/webhooks/stripe', body, { 'content-type': 'application/json', 'stripe-signature': signatureHeader(body, STRIPE_SECRET, nowSec()) });
    const text = await res.text();
    expect(res.status, text).toBe(400);
    await expectProblem(res, text);
  }
  expect(await stored()).toEqual(before);
});

it('Stripe: a subscription event whose period PostgreSQL cannot hold is not applied, not retried forever (regression)', async () => {
  for (const [start, end] of [[nowSec(), 2 ** 53 - 1], [nowSec(), 1e13], [-1, nowSec()], [0, 253_402_300_800]] as const) {
    const event = {
      id: `evt_far_period_${end}_${start}`,
      object: 'event',
      type: 'customer.subscription.updated',
      created: nowSec(),
      data: { object: { object: 'subscription', id: 'sub_acme', customer: 'cus_acme', status: 'active', items: { data: [{ current_period_start: start, current_period_end: end, price: { lookup_key: 'business' } }] } } },
    };
    const body = JSON.stringify(event);
    const res = await post('/webhooks/stripe', body, { 'content-type': 'application/json', 'stripe-signature': signatureHeader(body, STRIPE_SECRET, nowSec()) });
    expect(res.status, await res.text()).toBe(200);
    const row = await t.services.pool.query(`SELECT id FROM webhook_events WHERE processor_event_id = $1`, [event.id]);
    const outcome = await withClient((client) => processStripeWebhookEvent(client, row.rows[0].id, { stripe }));
    expect(outcome.status, JSON.stringify(outcome)).toBe('not_applied');
  }
  const sub = await t.services.pool.query(`SELECT current_period_end FROM subscriptions WHERE processor_subscription_id = 'sub_acme'`);
  expect(sub.rows[0].current_period_end.getTime()).toBeLessThan(Date.now() + 60 * DAY * 1000);
});

it('Braintree: a signed notification holding U+0000 is a 400; an impossible calendar date is not applied, not retried forever (regression)', async () => {
  const notification = (kind: string, start: string) =>
    `<notification><timestamp type="datetime">${new Date().toISOString()}</timestamp><kind>${kind}</kind><subject>${subscriptionXml(
      { id: 'bt_sub_umbrella', billingPeriodStartDate: start, billingPeriodEndDate: '2026-03-31', nextBillingDate: '2026-04-01' },
      'subscription_charged_successfully',
      Date.now(),
    )}</subject></notification>`;
  const send = (xml: string) => {
    const payload = encodePayload(xml);
    const { body, type } = btRequest('form', signPayload(BT_KEYS, payload), payload);
    return post('/webhooks/braintree', body, { 'content-type': type });
  };

  const before = await stored();
  const nul = await send(notification('subscription_\u0000charged_successfully', '2026-03-01'));
  const text = await nul.text();
  expect(nul.status, text).toBe(400);
  await expectProblem(nul, text);
  expect(await stored()).toEqual(before);

  const impossible = await send(notification('subscription_charged_successfully', '2026-02-30'));
  expect(impossible.status, await impossible.text()).toBe(200);
  const row = await t.services.pool.query(`SELECT id FROM webhook_events WHERE processor = 'braintree' ORDER BY received_at DESC, id LIMIT 1`);
  const outcome = await processBraintreeWebhook(t.services.pool, row.rows[0].id);
  expect(outcome).toMatchObject({ status: 'not_applied', code: 'no_billing_period' });
});
