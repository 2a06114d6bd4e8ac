// The real stripe SDK against the simulator: wire formats, limits, faults and signed webhooks.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { METER_ERROR_CODES, SIMULATOR_API_VERSION, SIMULATOR_SECRET_KEY, startStripeSimulator, type StripeSimulator } from './simulator';

const WEBHOOK_SECRET = 'whsec_simulator_test_secret';

interface ReceivedWebhook {
  body: string;
  headers: IncomingHttpHeaders;
}

let sim: StripeSimulator;
let receiver: Server;
let received: ReceivedWebhook[] = [];
let receiverStatus = 200;
let customer: string;
const METER = 'ai_tokens';

function client(opts: { timeout?: number; maxNetworkRetries?: number } = {}): Stripe {
  return new Stripe(SIMULATOR_SECRET_KEY, { ...sim.clientConfig, maxNetworkRetries: opts.maxNetworkRetries ?? 0, timeout: opts.timeout ?? 5000 });
}

function meterEvent(identifier: string, extra: Partial<Stripe.Billing.MeterEventCreateParams> = {}): Stripe.Billing.MeterEventCreateParams {
  return { event_name: METER, payload: { stripe_customer_id: customer, value: '7' }, identifier, ...extra };
}

async function rejection(p: Promise<unknown>): Promise<Stripe.errors.StripeError> {
  try {
    await p;
  } catch (err) {
    return err as Stripe.errors.StripeError;
  }
  throw new Error('expected the call to fail');
}

async function waitFor<T>(find: () => T | undefined, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function webhookOfType(type: string): ReceivedWebhook | undefined {
  return received.find((w) => (JSON.parse(w.body) as { type: string }).type === type);
}

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers });
      res.writeHead(receiverStatus, { 'content-type': 'application/json' });
      res.end('{"received":true}');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as AddressInfo).port;
  sim = await startStripeSimulator({ webhookUrl: `http://127.0.0.1:${port}/webhooks/stripe`, webhookSecret: WEBHOOK_SECRET, errorReportDelayMs: 20 });
});

afterAll(async () => {
  await sim.stop();
  await new Promise<void>((r) => receiver.close(() => r()));
});

beforeEach(() => {
  sim.reset();
  received = [];
  receiverStatus = 200;
  customer = sim.addCustomer();
  sim.addMeter(METER);
});

describe('v1 meter events', () => {
  it('accepts an event, answers in Stripe shape and records it once', async () => {
    const ts = Math.floor(Date.now() / 1000) - 60;
    const event = await client().billing.meterEvents.create(meterEvent('evt-1', { timestamp: ts }));
    expect(event).toMatchObject({ object: 'billing.meter_event', event_name: METER, identifier: 'evt-1', timestamp: ts, livemode: false });
    expect(event.payload).toEqual({ stripe_customer_id: customer, value: '7' });
    const recorded = sim.meterEvents();
    expect(recorded).toHaveLength(1);
    expect(recorded[0]).toMatchObject({ identifier: 'evt-1', customer, event_name: METER, value: 7, timestamp: ts, accepted: 1, status: 'accepted' });
    expect(sim.countsByIdentifier().get('evt-1')).toBe(1);
    expect(sim.usageTotal(customer, METER)).toBe(7);
  });

  it("refuses a reused identifier with Stripe's message and keeps one count", async () => {
    const stripe = client();
    await stripe.billing.meterEvents.create(meterEvent('dup-1'));
    const err = await rejection(stripe.billing.meterEvents.create(meterEvent('dup-1', { payload: { stripe_customer_id: customer, value: '99' } })));
    expect(err).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(err.statusCode).toBe(400);
    expect(err.message).toBe('An event already exists with identifier dup-1.');
    expect(sim.countsByIdentifier().get('dup-1')).toBe(1);
    expect(sim.usageTotal(customer, METER)).toBe(7);
  });

  it('lets an identifier be reused after the 24 h window (and then counts it twice)', async () => {
    const stripe = client();
    await stripe.billing.meterEvents.create(meterEvent('window-1'));
    sim.advanceClock(24 * 3600_000 + 1000);
    await stripe.billing.meterEvents.create(meterEvent('window-1'));
    expect(sim.countsByIdentifier().get('window-1')).toBe(2);
  });

  it('replays the stored response for a reused Idempotency-Key without counting again', async () => {
    const stripe = client();
    const first = await stripe.billing.meterEvents.create(meterEvent('idem-1'), { idempotencyKey: 'key-1' });
    const second = await stripe.billing.meterEvents.create(meterEvent('idem-1'), { idempotencyKey: 'key-1' });
    expect(second).toEqual(first);
    expect(second.lastResponse.headers['idempotent-replayed']).toBe('true');
    expect(first.lastResponse.headers['idempotent-replayed']).toBeUndefined();
    expect(sim.countsByIdentifier().get('idem-1')).toBe(1);
    expect(sim.stats().idempotentReplays).toBe(1);

    const mismatch = await rejection(stripe.billing.meterEvents.create(meterEvent('idem-2'), { idempotencyKey: 'key-1' }));
    expect(mismatch).toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
    expect(sim.countsByIdentifier().has('idem-2')).toBe(false);
  });

  it('refuses an unknown customer', async () => {
    const err = await rejection(client().billing.meterEvents.create(meterEvent('c-1', { payload: { stripe_customer_id: 'cus_missing', value: '1' } })));
    expect(err).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(err.statusCode).toBe(400);
    expect(err.message).toBe("No such customer: 'cus_missing'");
    expect(err.code).toBe('resource_missing');
    expect(sim.meterEvents()).toHaveLength(0);
  });

  it('refuses an event name without an active meter', async () => {
    const err = await rejection(client().billing.meterEvents.create(meterEvent('m-1', { event_name: 'no_such_meter' })));
    expect(err).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(err.statusCode).toBe(400);
    expect(err.message).toBe('No active meter found for event name "no_such_meter".');
    expect(err.param).toBe('event_name');

    const meterId = sim.addMeter('archived_one', { status: 'inactive' });
    expect(meterId).toMatch(/^mtr_/);
    const archived = await rejection(client().billing.meterEvents.create(meterEvent('m-2', { event_name: 'archived_one' })));
    expect(archived.message).toContain('No active meter found');
  });

  it('enforces the timestamp window, a numeric value and the identifier length', async () => {
    const stripe = client();
    const now = Math.floor(Date.now() / 1000);
    const old = await rejection(stripe.billing.meterEvents.create(meterEvent('t-1', { timestamp: now - 36 * 86400 })));
    expect(old.statusCode).toBe(400);
    expect(old.param).toBe('timestamp');
    expect(old.message).toMatch(/35 calendar days/);
    const future = await rejection(stripe.billing.meterEvents.create(meterEvent('t-2', { timestamp: now + 10 * 60 })));
    expect(future.message).toMatch(/5 minutes in the future/);
    await expect(stripe.billing.meterEvents.create(meterEvent('t-3', { timestamp: now - 34 * 86400 }))).resolves.toBeTruthy();
    await expect(stripe.billing.meterEvents.create(meterEvent('t-4', { timestamp: now + 4 * 60 }))).resolves.toBeTruthy();

    const nan = await rejection(stripe.billing.meterEvents.create(meterEvent('v-1', { payload: { stripe_customer_id: customer, value: 'lots' } })));
    expect(nan.param).toBe('payload[value]');
    const long = await rejection(stripe.billing.meterEvents.create(meterEvent('x'.repeat(101))));
    expect(long.param).toBe('identifier');
    await expect(stripe.billing.meterEvents.create(meterEvent('y'.repeat(100)))).resolves.toBeTruthy();
    expect([...sim.countsByIdentifier().keys()].sort()).toEqual(['t-3', 't-4', 'y'.repeat(100)]);
  });

  it('answers 401 with Stripe error JSON for a missing or malformed key', async () => {
    const bad = new Stripe('pk_test_not_a_secret', { ...sim.clientConfig, maxNetworkRetries: 0 });
    const err = await rejection(bad.billing.meterEvents.create(meterEvent('a-1')));
    expect(err).toBeInstanceOf(Stripe.errors.StripeAuthenticationError);
    expect(err.statusCode).toBe(401);
    expect(err.message).toMatch(/^Invalid API Key provided/);

    const raw = await fetch(`${sim.url}/v1/billing/meter_events`, { method: 'POST', body: 'event_name=x' });
    expect(raw.status).toBe(401);
    const body = (await raw.json()) as { error: { type: string; message: string } };
    expect(body.error.type).toBe('invalid_request_error');
    expect(body.error.message).toMatch(/You did not provide an API key/);
    expect(sim.meterEvents()).toHaveLength(0);
  });

  it('creates customers and meters through the API', async () => {
    const stripe = client();
    const created = await stripe.customers.create({ email: 'ops@example.com', name: 'Ops' });
    expect(created.id).toMatch(/^cus_/);
    expect(created.email).toBe('ops@example.com');
    const meter = await stripe.billing.meters.create({
      display_name: 'Requests',
      event_name: 'requests',
      default_aggregation: { formula: 'sum' },
      customer_mapping: { event_payload_key: 'account', type: 'by_id' },
    });
    expect(meter).toMatchObject({ object: 'billing.meter', event_name: 'requests', status: 'active' });
    expect(meter.customer_mapping.event_payload_key).toBe('account');
    await stripe.billing.meterEvents.create({ event_name: 'requests', payload: { account: created.id, value: '3' }, identifier: 'r-1' });
    expect(sim.usageTotal(created.id, 'requests')).toBe(3);
    expect((await stripe.billing.meters.retrieve(meter.id)).id).toBe(meter.id);
    const missing = await rejection(stripe.customers.retrieve('cus_nope'));
    expect(missing.statusCode).toBe(404);
  });

  it('cancels a recorded event with a v1 adjustment', async () => {
    const stripe = client();
    await stripe.billing.meterEvents.create(meterEvent('adj-1'));
    const adj = await stripe.billing.meterEventAdjustments.create({ event_name: METER, type: 'cancel', cancel: { identifier: 'adj-1' } });
    expect(adj).toMatchObject({ object: 'billing.meter_event_adjustment', status: 'pending', type: 'cancel' });
    expect(sim.meterEvents()[0]?.status).toBe('cancelled');
    expect(sim.usageTotal(customer, METER)).toBe(0);
    expect(sim.adjustments()[0]).toMatchObject({ identifier: 'adj-1', applied: true });
  });
});

describe('built-in limits', () => {
  it('answers 429 to a second concurrent call for the same customer and meter', async () => {
    const stripe = client();
    sim.addFault({ kind: 'slow', delayMs: 300, match: { identifier: 'slow-1' } });
    const other = sim.addCustomer();
    const first = stripe.billing.meterEvents.create(meterEvent('slow-1'));
    await new Promise((r) => setTimeout(r, 50));
    const err = await rejection(stripe.billing.meterEvents.create(meterEvent('conc-2')));
    expect(err).toBeInstanceOf(Stripe.errors.StripeRateLimitError);
    expect(err.statusCode).toBe(429);
    expect(err.code).toBe('rate_limit');
    // Another customer on the same meter is not blocked.
    await expect(stripe.billing.meterEvents.create(meterEvent('conc-3', { payload: { stripe_customer_id: other, value: '1' } }))).resolves.toBeTruthy();
    await expect(first).resolves.toMatchObject({ identifier: 'slow-1' });
    expect(sim.stats().concurrencyRejected).toBe(1);
    expect(sim.countsByIdentifier().has('conc-2')).toBe(false);
  });

  it('answers 429 above the per-second rate', async () => {
    sim.configure({ v1RatePerSecond: 5 });
    try {
      const stripe = client();
      const customers = Array.from({ length: 15 }, () => sim.addCustomer());
      const results = await Promise.allSettled(
        customers.map((c, i) => stripe.billing.meterEvents.create(meterEvent(`rate-${i}`, { payload: { stripe_customer_id: c, value: '1' } }))),
      );
      const limited = results.filter((r) => r.status === 'rejected' && (r.reason as Stripe.errors.StripeError).statusCode === 429);
      const ok = results.filter((r) => r.status === 'fulfilled');
      expect(ok.length).toBeGreaterThanOrEqual(5);
      expect(limited.length).toBeGreaterThanOrEqual(5);
      expect(ok.length + limited.length).toBe(15);
      expect(sim.countsByIdentifier().size).toBe(ok.length);
      expect(sim.stats().bucketRejected).toBe(limited.length);
    } finally {
      sim.configure({ v1RatePerSecond: 1000 });
    }
  });
});

describe('faults', () => {
  it('rate_limit: 429 with the rate-limit error, then normal', async () => {
    sim.addFault({ kind: 'rate_limit', count: 1, match: { path: '/v1/billing/meter_events' } });
    const stripe = client();
    const err = await rejection(stripe.billing.meterEvents.create(meterEvent('rl-1')));
    expect(err).toBeInstanceOf(Stripe.errors.StripeRateLimitError);
    expect(err.message).toMatch(/Request rate limit exceeded/);
    await expect(stripe.billing.meterEvents.create(meterEvent('rl-1'))).resolves.toBeTruthy();
    expect(sim.countsByIdentifier().get('rl-1')).toBe(1);
    expect(sim.faults()).toHaveLength(0);
  });

  it('server_error: 503 with api_error JSON, nothing recorded', async () => {
    sim.addFault({ kind: 'server_error', status: 503, count: 1 });
    const err = await rejection(client().billing.meterEvents.create(meterEvent('se-1')));
    expect(err).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(err.statusCode).toBe(503);
    expect(sim.meterEvents()).toHaveLength(0);
    expect(sim.stats().serverErrors).toBe(1);
  });

  it('slow: delays, then answers normally', async () => {
    sim.addFault({ kind: 'slow', delayMs: 200, count: 1 });
    const started = Date.now();
    await client().billing.meterEvents.create(meterEvent('slow-2'));
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(sim.countsByIdentifier().get('slow-2')).toBe(1);
  });

  it('timeout_applied: the client times out yet the event is counted once; a retry with the same key replays', async () => {
    sim.addFault({ kind: 'timeout_applied', count: 1, match: { identifier: 'to-1' } });
    const stripe = client({ timeout: 300 });
    const err = await rejection(stripe.billing.meterEvents.create(meterEvent('to-1'), { idempotencyKey: 'to-key' }));
    expect(err).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(err.message).toMatch(/timeout/);
    expect(sim.countsByIdentifier().get('to-1')).toBe(1);

    const retried = await stripe.billing.meterEvents.create(meterEvent('to-1'), { idempotencyKey: 'to-key' });
    expect(retried.lastResponse.headers['idempotent-replayed']).toBe('true');
    const fresh = await rejection(stripe.billing.meterEvents.create(meterEvent('to-1'), { idempotencyKey: 'other-key' }));
    expect(fresh.message).toBe('An event already exists with identifier to-1.');
    expect(sim.countsByIdentifier().get('to-1')).toBe(1);
  });

  it('timeout_not_applied: the client times out and nothing is counted', async () => {
    sim.addFault({ kind: 'timeout_not_applied', count: 1 });
    const err = await rejection(client({ timeout: 200 }).billing.meterEvents.create(meterEvent('tn-1')));
    expect(err).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(sim.meterEvents()).toHaveLength(0);
  });

  it('reset_applied: the connection drops after the event is counted', async () => {
    // stripe-node retries a reset connection once even with maxNetworkRetries 0, reusing its idempotency key.
    sim.addFault({ kind: 'reset_applied', count: 1, match: { identifier: 'ra-1' } });
    const stripe = client();
    const replayed = await stripe.billing.meterEvents.create(meterEvent('ra-1'));
    expect(replayed.lastResponse.headers['idempotent-replayed']).toBe('true');
    expect(sim.countsByIdentifier().get('ra-1')).toBe(1);

    sim.addFault({ kind: 'reset_applied', count: 2, match: { identifier: 'ra-2' } });
    const err = await rejection(stripe.billing.meterEvents.create(meterEvent('ra-2')));
    expect(err).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(sim.countsByIdentifier().get('ra-2')).toBe(1);
    expect(sim.stats().connectionsReset).toBe(3);
  });

  it('reset_not_applied: the connection drops before anything happens', async () => {
    sim.addFault({ kind: 'reset_not_applied', count: 2 });
    const err = await rejection(client().billing.meterEvents.create(meterEvent('rn-1')));
    expect(err).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(sim.meterEvents()).toHaveLength(0);
  });

  it('probability 0 never fires, probability 1 always does', async () => {
    sim.addFault({ kind: 'server_error', probability: 0 });
    await client().billing.meterEvents.create(meterEvent('p-0'));
    sim.clearFaults();
    sim.addFault({ kind: 'server_error', probability: 1, match: { customer } });
    await rejection(client().billing.meterEvents.create(meterEvent('p-1')));
    expect(sim.countsByIdentifier().has('p-1')).toBe(false);
  });

  it('reject_after_accept: 200, then a signed error report naming the identifier with an unknown code', async () => {
    const stripe = client();
    const meterId = sim.addMeter(METER);
    sim.addFault({ kind: 'reject_after_accept', errorCode: 'some_future_code', errorMessage: 'A future reason.', match: { identifier: 'raa-1' } });
    await expect(stripe.billing.meterEvents.create(meterEvent('raa-1'))).resolves.toMatchObject({ identifier: 'raa-1' });

    const hook = await waitFor(() => webhookOfType('v1.billing.meter.error_report_triggered'));
    const notification = stripe.parseEventNotification(hook.body, hook.headers['stripe-signature'] as string, WEBHOOK_SECRET);
    expect(notification.type).toBe('v1.billing.meter.error_report_triggered');
    // Pushed thin: no data in the notification (Stripe's thin payloads carry none); the receiver fetches the event.
    const pushed = JSON.parse(hook.body) as Record<string, unknown>;
    expect(Object.keys(pushed).sort()).toEqual(['context', 'created', 'id', 'livemode', 'object', 'related_object', 'type']);
    const fetched = (await notification.fetchEvent()) as unknown as {
      id: string;
      data: { reason: { error_types: Array<{ code: string; sample_errors: Array<{ error_message: string; request: { identifier: string } }> }> } };
    };
    expect(fetched.id).toBe(notification.id);
    const [errorType] = fetched.data.reason.error_types;
    expect(errorType?.code).toBe('some_future_code');
    expect(errorType?.sample_errors[0]).toEqual({ error_message: 'A future reason.', request: { identifier: 'raa-1' } });
    if (notification.type === 'v1.billing.meter.error_report_triggered') {
      expect((await notification.fetchRelatedObject()).id).toBe(meterId);
    }
    expect(sim.countsByIdentifier().has('raa-1')).toBe(false);
    expect(sim.meterEvents()[0]).toMatchObject({ status: 'rejected', error_code: 'some_future_code' });
    expect(sim.webhookDeliveries().at(-1)).toMatchObject({ status: 200, ok: true });
  });
});

describe('v2 meter event sessions and streams', () => {
  async function streamClient(): Promise<{ stripe: Stripe; session: Stripe.V2.Billing.MeterEventSession }> {
    const session = await client().v2.billing.meterEventSession.create();
    return { stripe: new Stripe(session.authentication_token, { ...sim.clientConfig, maxNetworkRetries: 0 }), session };
  }

  it('creates a 15-minute session and accepts a stream batch, validating asynchronously', async () => {
    const { stripe, session } = await streamClient();
    expect(session.object).toBe('v2.billing.meter_event_session');
    expect(Date.parse(session.expires_at) - Date.parse(session.created)).toBe(15 * 60_000);
    const ts = new Date().toISOString();
    const event = (identifier: string, cus: string, eventName = METER) => ({
      event_name: eventName,
      identifier,
      payload: { stripe_customer_id: cus, value: '2' },
      timestamp: ts,
    });
    const result = await stripe.v2.billing.meterEventStream.create({
      events: [event('s-1', customer), event('s-2', customer), event('s-bad-cus', 'cus_unknown'), event('s-1', customer), event('s-no-meter', customer, 'ghost_meter')],
    });
    expect(result).toEqual({});
    expect(sim.countsByIdentifier()).toEqual(new Map([['s-1', 1], ['s-2', 1]]));
    expect(sim.usageTotal(customer, METER)).toBe(4);

    await sim.flushErrorReports();
    const report = await waitFor(() => webhookOfType('v1.billing.meter.error_report_triggered'));
    const verifier = client();
    const parsed = verifier.parseEventNotification(report.body, report.headers['stripe-signature'] as string, WEBHOOK_SECRET);
    expect(parsed.type).toBe('v1.billing.meter.error_report_triggered');
    if (parsed.type === 'v1.billing.meter.error_report_triggered') expect(parsed.related_object).toMatchObject({ type: 'billing.meter' });
    expect(JSON.parse(report.body)).not.toHaveProperty('data');
    const data = ((await parsed.fetchEvent()) as unknown as { data: { reason: { error_count: number; error_types: Array<{ code: string; sample_errors: Array<{ request: { identifier: string } }> }> } } }).data;
    // The second s-1 within 24 h is dropped without a report: Stripe documents no error code for a duplicate.
    expect(data.reason.error_count).toBe(1);
    const byCode = new Map(data.reason.error_types.map((t) => [t.code, t.sample_errors.map((s) => s.request.identifier)]));
    expect([...byCode]).toEqual([['meter_event_customer_not_found', ['s-bad-cus']]]);
    expect(sim.stats().duplicateIdentifiers).toBe(1);

    const noMeter = await waitFor(() => webhookOfType('v1.billing.meter.no_meter_found'));
    const noMeterNotification = verifier.parseEventNotification(noMeter.body, noMeter.headers['stripe-signature'] as string, WEBHOOK_SECRET);
    // An event about no object: no related_object in the notification.
    expect(JSON.parse(noMeter.body)).not.toHaveProperty('related_object');
    const noMeterData = ((await noMeterNotification.fetchEvent()) as unknown as { data: { reason: { error_types: Array<{ code: string; sample_errors: Array<{ error_message: string; request: { identifier: string } }> }> } } }).data;
    expect(noMeterData.reason.error_types[0]?.code).toBe('no_meter');
    expect(noMeterData.reason.error_types[0]?.sample_errors[0]).toEqual({
      error_message: 'No meter was found matching event_name ghost_meter.',
      request: { identifier: 's-no-meter' },
    });
    // Thin events are not snapshot events: constructEvent refuses them, as it does for real Stripe payloads.
    expect(() => Stripe.webhooks.constructEvent(report.body, report.headers['stripe-signature'] as string, WEBHOOK_SECRET)).toThrow(/thin event/);
  });

  it('refuses more than 100 events, expired and unknown tokens', async () => {
    const { stripe } = await streamClient();
    const events = Array.from({ length: 101 }, (_, i) => ({ event_name: METER, identifier: `big-${i}`, payload: { stripe_customer_id: customer, value: '1' } }));
    const tooMany = await rejection(stripe.v2.billing.meterEventStream.create({ events }));
    expect(tooMany.statusCode).toBe(400);
    await expect(stripe.v2.billing.meterEventStream.create({ events: events.slice(0, 100) })).resolves.toEqual({});
    expect(sim.countsByIdentifier().size).toBe(100);

    sim.advanceClock(15 * 60_000 + 1);
    const expired = await rejection(stripe.v2.billing.meterEventStream.create({ events: events.slice(100) }));
    expect(expired).toBeInstanceOf(Stripe.errors.TemporarySessionExpiredError);
    // As Stripe answers it (stripe-node generated_examples_test.spec.js, test_temporary_session_expired_error).
    expect(expired.statusCode).toBe(400);
    expect(expired.code).toBe('billing_meter_event_session_expired');

    const unknown = new Stripe('mes_tok_test_unknown', { ...sim.clientConfig, maxNetworkRetries: 0 });
    const err = await rejection(unknown.v2.billing.meterEventStream.create({ events: events.slice(100) }));
    expect(err.statusCode).toBe(401);
    expect(sim.countsByIdentifier().size).toBe(100);
  });

  it('rate-limits the stream in events per second', async () => {
    sim.configure({ v2EventsPerSecond: 150 });
    try {
      const { stripe } = await streamClient();
      const batch = (n: number) =>
        Array.from({ length: 100 }, (_, i) => ({ event_name: METER, identifier: `r${n}-${i}`, payload: { stripe_customer_id: customer, value: '1' } }));
      await stripe.v2.billing.meterEventStream.create({ events: batch(1) });
      const err = await rejection(stripe.v2.billing.meterEventStream.create({ events: batch(2) }));
      expect(err.statusCode).toBe(429);
      expect(sim.countsByIdentifier().size).toBe(100);
    } finally {
      sim.configure({ v2EventsPerSecond: 10_000 });
    }
  });

  it('timeout_applied on the stream: the events count though the client gave up', async () => {
    const { session } = await streamClient();
    sim.addFault({ kind: 'timeout_applied', count: 1, match: { path: '/v2/billing/meter_event_stream' } });
    const short = new Stripe(session.authentication_token, { ...sim.clientConfig, maxNetworkRetries: 0, timeout: 250 });
    const err = await rejection(short.v2.billing.meterEventStream.create({ events: [{ event_name: METER, identifier: 'st-1', payload: { stripe_customer_id: customer, value: '1' } }] }));
    expect(err).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(sim.countsByIdentifier().get('st-1')).toBe(1);
  });

  it('v2 meter events and adjustments', async () => {
    const stripe = client();
    const created = await stripe.v2.billing.meterEvents.create({ event_name: METER, identifier: 'v2-1', payload: { stripe_customer_id: customer, value: '4' } });
    expect(created).toMatchObject({ object: 'v2.billing.meter_event', identifier: 'v2-1' });
    const dup = await rejection(stripe.v2.billing.meterEvents.create({ event_name: METER, identifier: 'v2-1', payload: { stripe_customer_id: customer, value: '4' } }));
    expect(dup.message).toBe('An event already exists with identifier v2-1.');
    const adj = await stripe.v2.billing.meterEventAdjustments.create({ event_name: METER, type: 'cancel', cancel: { identifier: 'v2-1' } });
    expect(adj).toMatchObject({ object: 'v2.billing.meter_event_adjustment', status: 'pending' });
    expect(adj.id).toMatch(/^mea_/);
    expect(sim.meterEvents()[0]?.status).toBe('cancelled');
  });
});

describe('webhooks', () => {
  it('sends subscription events signed so that constructEvent accepts them, and records delivery', async () => {
    const result = await sim.sendWebhook('customer.subscription.updated', { customer, status: 'past_due' }, { previousAttributes: { status: 'active' } });
    expect(result).toMatchObject({ status: 200, ok: true });
    const hook = await waitFor(() => webhookOfType('customer.subscription.updated'));
    expect(hook.headers['stripe-signature']).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    const event = Stripe.webhooks.constructEvent(hook.body, hook.headers['stripe-signature'] as string, WEBHOOK_SECRET);
    expect(event).toMatchObject({ id: result.event_id, object: 'event', type: 'customer.subscription.updated', livemode: false });
    expect(event.api_version).toBe('2026-10-28.endive');
    const sub = event.data.object as Stripe.Subscription;
    expect(sub).toMatchObject({ object: 'subscription', customer, status: 'past_due' });
    expect(sub.id).toMatch(/^sub_/);
    expect(sub.items.data[0]?.current_period_end).toBeGreaterThan(sub.items.data[0]?.current_period_start ?? 0);
    expect(event.data.previous_attributes).toEqual({ status: 'active' });
    expect(() => Stripe.webhooks.constructEvent(hook.body, hook.headers['stripe-signature'] as string, 'whsec_wrong')).toThrow();

    const deleted = await sim.sendWebhook('customer.subscription.deleted', { id: sub.id, customer });
    const deletedHook = await waitFor(() => webhookOfType('customer.subscription.deleted'));
    const deletedEvent = Stripe.webhooks.constructEvent(deletedHook.body, deletedHook.headers['stripe-signature'] as string, WEBHOOK_SECRET);
    expect((deletedEvent.data.object as Stripe.Subscription).status).toBe('canceled');
    expect(deleted.ok).toBe(true);
  });

  it('records failed deliveries', async () => {
    receiverStatus = 500;
    const result = await sim.sendWebhook('customer.subscription.created', { customer });
    expect(result).toMatchObject({ status: 500, ok: false });
    expect(sim.webhookDeliveries()).toEqual([expect.objectContaining({ event_id: result.event_id, status: 500, ok: false })]);
    expect(sim.stats().webhooksFailed).toBe(1);
  });
});

describe('HTTP control API', () => {
  async function control<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${sim.url}/__simulator/${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as T;
  }

  it('drives customers, meters, faults, events, webhooks, stats and reset over HTTP', async () => {
    const { id: cus } = await control<{ id: string }>('POST', 'customers', { id: 'cus_http_1' });
    expect(cus).toBe('cus_http_1');
    const { id: meterId } = await control<{ id: string }>('POST', 'meters', { event_name: 'http_meter' });
    expect(meterId).toMatch(/^mtr_/);
    const { data: rules } = await control<{ data: Array<{ id: string; kind: string }> }>('POST', 'faults', {
      kind: 'server_error',
      count: 1,
      match: { customer: cus },
    });
    expect(rules[0]?.kind).toBe('server_error');

    const stripe = client();
    const params = { event_name: 'http_meter', payload: { stripe_customer_id: cus, value: '5' }, identifier: 'h-1' };
    await rejection(stripe.billing.meterEvents.create(params));
    await stripe.billing.meterEvents.create(params);

    const events = await control<{ data: Array<{ identifier: string; event_name: string; customer: string; value: number; timestamp: number; accepted: number }> }>(
      'GET',
      'meter_events',
    );
    expect(events.data).toEqual([expect.objectContaining({ identifier: 'h-1', event_name: 'http_meter', customer: cus, value: 5, accepted: 1 })]);
    expect(typeof events.data[0]?.timestamp).toBe('number');

    await control('POST', 'faults', { kind: 'rate_limit' });
    expect((await control<{ data: unknown[] }>('GET', 'faults')).data).toHaveLength(1);
    await control('DELETE', 'faults');
    expect((await control<{ data: unknown[] }>('GET', 'faults')).data).toHaveLength(0);

    const sent = await control<{ status: number; event_id: string }>('POST', 'webhooks', { type: 'customer.subscription.created', object: { customer: cus } });
    expect(sent.status).toBe(200);
    const hook = await waitFor(() => webhookOfType('customer.subscription.created'));
    expect(Stripe.webhooks.constructEvent(hook.body, hook.headers['stripe-signature'] as string, WEBHOOK_SECRET).id).toBe(sent.event_id);

    const stats = await control<{ serverErrors: number; byStatus: Record<string, number>; faultsApplied: Record<string, number> }>('GET', 'stats');
    expect(stats.serverErrors).toBe(1);
    expect(stats.faultsApplied.server_error).toBe(1);
    expect(stats.byStatus['200']).toBe(1);

    const bad = await fetch(`${sim.url}/__simulator/faults`, { method: 'POST', body: JSON.stringify({ kind: 'meteor_strike' }) });
    expect(bad.status).toBe(400);

    await control('POST', 'reset');
    expect((await control<{ data: unknown[] }>('GET', 'meter_events')).data).toHaveLength(0);
    // Known objects survive a plain reset.
    await expect(stripe.billing.meterEvents.create({ ...params, identifier: 'h-2' })).resolves.toBeTruthy();
  });
});

describe('throughput', () => {
  it('takes 5,000 stream events and 500 v1 calls quickly, each identifier counted once', async () => {
    const { stripe } = await (async () => {
      const session = await client().v2.billing.meterEventSession.create();
      return { stripe: new Stripe(session.authentication_token, { ...sim.clientConfig, maxNetworkRetries: 0 }) };
    })();
    const customers = Array.from({ length: 50 }, () => sim.addCustomer());
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 50 }, (_, b) =>
        stripe.v2.billing.meterEventStream.create({
          events: Array.from({ length: 100 }, (_, i) => ({
            event_name: METER,
            identifier: `tp-${b}-${i}`,
            payload: { stripe_customer_id: customers[i % 50]!, value: '1' },
          })),
        }),
      ),
    );
    const v1 = client();
    await Promise.all(customers.map(async (c, i) => {
      for (let k = 0; k < 10; k++) await v1.billing.meterEvents.create({ event_name: METER, identifier: `tp1-${i}-${k}`, payload: { stripe_customer_id: c, value: '1' } });
    }));
    const elapsed = performance.now() - started;
    const counts = sim.countsByIdentifier();
    expect(counts.size).toBe(5500);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(elapsed).toBeLessThan(5000);
  });
});

describe('documented codes and headers', () => {
  it('a value with more than 15 significant digits is refused as meter_event_value_too_many_digits (v1 400, stream error report)', async () => {
    const stripe = client();
    const err = await rejection(stripe.billing.meterEvents.create(meterEvent('digits-v1', { payload: { stripe_customer_id: customer, value: '1234567890.123456' } })));
    expect(err).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(err.message).toBe('The value in the event payload can have at most 15 digits. Received 1234567890.123456.');
    // 15 significant digits (leading and trailing zeros do not count) are fine.
    await stripe.billing.meterEvents.create(meterEvent('digits-ok', { payload: { stripe_customer_id: customer, value: '000123456789012345.000' } }));

    const session = await stripe.v2.billing.meterEventSession.create();
    const stream = new Stripe(session.authentication_token, { ...sim.clientConfig, maxNetworkRetries: 0 });
    await stream.v2.billing.meterEventStream.create({
      events: [{ event_name: METER, identifier: 'digits-stream', payload: { stripe_customer_id: customer, value: '1e-20' } }, { event_name: METER, identifier: 'digits-stream-2', payload: { stripe_customer_id: customer, value: '0.1234567890123456' } }],
    });
    await sim.flushErrorReports();
    const hook = await waitFor(() => webhookOfType('v1.billing.meter.error_report_triggered'));
    const event = (await stripe.parseEventNotification(hook.body, hook.headers['stripe-signature'] as string, WEBHOOK_SECRET).fetchEvent()) as unknown as {
      data: { reason: { error_types: Array<{ code: string; sample_errors: Array<{ request: { identifier: string } }> }> } };
    };
    expect(event.data.reason.error_types.map((t) => [t.code, t.sample_errors.map((s) => s.request.identifier)])).toEqual([['meter_event_value_too_many_digits', ['digits-stream-2']]]);
    expect(sim.countsByIdentifier().has('digits-stream')).toBe(true);
  });

  it('every documented meter error code can be produced by a reject_after_accept fault and arrives in a fetched report', async () => {
    const stripe = client();
    const codes = METER_ERROR_CODES.filter((c) => c !== 'no_meter');
    for (const code of codes) sim.addFault({ kind: 'reject_after_accept', count: 1, errorCode: code, match: { identifier: `code-${code}` } });
    for (const code of codes) await stripe.billing.meterEvents.create(meterEvent(`code-${code}`));
    await waitFor(() => (sim.meterEvents().every((e) => e.status === 'rejected') ? true : undefined));
    await sim.flushErrorReports();
    // Reports go out 100 ms after their first error: on a busy machine the rejections span more than one report,
    // as Stripe's span its reporting windows. Every report received counts.
    const reported = async () => {
      const found: string[] = [];
      for (const hook of received.filter((w) => (JSON.parse(w.body) as { type: string }).type === 'v1.billing.meter.error_report_triggered')) {
        const event = (await stripe.parseEventNotification(hook.body, hook.headers['stripe-signature'] as string, WEBHOOK_SECRET).fetchEvent()) as unknown as {
          data: { reason: { error_types: Array<{ code: string }> } };
        };
        found.push(...event.data.reason.error_types.map((t) => t.code));
      }
      return found.sort();
    };
    for (const deadline = Date.now() + 3000; (await reported()).length < codes.length && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    expect(await reported()).toEqual([...codes].sort());
  });

  it('answers in the Stripe-Version the request asked for, else its own', async () => {
    const res = await fetch(`${sim.url}/v1/billing/meters`, { headers: { authorization: `Bearer ${SIMULATOR_SECRET_KEY}`, 'stripe-version': '2025-03-31.basil' } });
    expect(res.headers.get('stripe-version')).toBe('2025-03-31.basil');
    const bare = await fetch(`${sim.url}/v1/billing/meters`, { headers: { authorization: `Bearer ${SIMULATOR_SECRET_KEY}` } });
    expect(bare.headers.get('stripe-version')).toBe(SIMULATOR_API_VERSION);
  });

  it('a v2 event that does not exist is a 404 StripeInvalidRequestError, as for v1', async () => {
    const err = await rejection(client().v2.core.events.retrieve('evt_test_missing'));
    expect(err).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(err.statusCode).toBe(404);
    expect(err.code).toBe('resource_missing');
  });
});
