// Stripe webhooks end to end: the Stripe simulator signs and POSTs real deliveries to our HTTP server, the real SDK
// verifies them, PostgreSQL stores them, and the graphile-worker task applies them.
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { runOnce } from 'graphile-worker';
import Stripe from 'stripe';
import { createWebhookHandler } from '../../app/api/webhooks';
import { addJob } from '../../app/billing/db';
import { createCustomer, upsertSubscription } from '../../app/billing/customers';
import { seedBase } from '../../app/seed/base';
import {
  SIMULATOR_SECRET_KEY,
  signatureHeader,
  startStripeSimulator,
  type StripeSimulator,
} from '../../simulators/stripe/simulator';
import { graphileLogger } from '../../app/db/prepare';
import { startHttpServer, type HttpServer } from '../../app/server/http';
import type { Services } from '../../app/server/services';
import { createProcessWebhookTask } from '../../jobs/tasks/stripe__process_webhook';
import { createTaskList, taskList } from '../../jobs/tasks';
import type { TestDatabase } from '../support/database';
import { closeTestServices, openTestServices } from '../support/services';

let db: TestDatabase;
let services: Services;
let http: HttpServer;
let sim: StripeSimulator;
let stripe: Stripe;
let endpoint: string;

const DAY = 86_400;

beforeAll(async () => {
  ({ db, services } = await openTestServices());
  await seedBase(services.prisma);
  sim = await startStripeSimulator({ errorReportDelayMs: 10_000 });
  http = await startHttpServer({ port: 0, handlers: [createWebhookHandler({ pool: services.pool, stripeWebhookSecret: sim.webhookSecret })] });
  endpoint = `${http.url}/webhooks/stripe`;
  sim.configure({ webhookUrl: endpoint });
  stripe = new Stripe(SIMULATOR_SECRET_KEY, { ...sim.clientConfig, maxNetworkRetries: 0 });

  for (const [externalId, cus] of [['acme', 'cus_acme'], ['globex', 'cus_globex']] as const) {
    await createCustomer(services.prisma, { external_id: externalId, processor: 'stripe', processor_customer_id: cus });
    sim.addCustomer(cus);
  }
  sim.addMeter('ai_tokens');
  const now = Date.now();
  await upsertSubscription(services.prisma, {
    customer: 'acme',
    plan: 'business',
    processor_subscription_id: 'sub_seed_acme',
    current_period_start: new Date(now - 5 * DAY * 1000).toISOString(),
    current_period_end: new Date(now + 25 * DAY * 1000).toISOString(),
  });
});

afterAll(async () => {
  await http?.close();
  await sim?.stop();
  await closeTestServices(db, services);
});

beforeEach(() => {
  sim.clearFaults();
  sim.configure({ webhookUrl: endpoint });
});

// ───────────────────────────── helpers ─────────────────────────────

async function count(sql: string, params: unknown[] = []): Promise<number> {
  return Number((await services.pool.query(sql, params)).rows[0].count);
}

const webhookRows = (eventId: string) => count(`SELECT count(*) FROM webhook_events WHERE processor = 'stripe' AND processor_event_id = $1`, [eventId]);
const processJobs = (eventId: string) =>
  count(
    `SELECT count(*) FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id
     JOIN webhook_events w ON w.id::text = j.payload->>'webhookEventId'
     WHERE t.identifier = 'stripe__process_webhook' AND w.processor_event_id = $1`,
    [eventId],
  );
const rejectedCount = () => count(`SELECT count(*) FROM ops_events WHERE type = 'webhook_rejected' AND source = 'endpoint'`);

/** Runs every queued webhook job once, like a worker would, with the real SDK pointed at the simulator. */
async function runWebhookJobs(): Promise<void> {
  await runOnce(
    { connectionString: db.connectionString, logger: graphileLogger, concurrency: 1 },
    { stripe__process_webhook: createProcessWebhookTask({ stripe }) },
  );
}

async function webhookRow(eventId: string) {
  const { rows } = await services.pool.query(
    `SELECT id, type, processed_at, attempts, last_error, payload FROM webhook_events WHERE processor = 'stripe' AND processor_event_id = $1`,
    [eventId],
  );
  return rows[0] as { id: string; type: string; processed_at: Date | null; attempts: number; last_error: string | null; payload: Record<string, unknown> } | undefined;
}

async function subscription(processorSubscriptionId: string) {
  const { rows } = await services.pool.query(
    `SELECT s.status::text AS status, p.code AS plan, c.external_id AS customer, s.current_period_start, s.current_period_end, s.canceled_at, s.updated_at
     FROM subscriptions s JOIN plans p ON p.id = s.plan_id JOIN customers c ON c.id = s.customer_id
     WHERE s.processor = 'stripe' AND s.processor_subscription_id = $1`,
    [processorSubscriptionId],
  );
  return rows[0] as
    | { status: string; plan: string; customer: string; current_period_start: Date; current_period_end: Date; canceled_at: Date | null; updated_at: Date }
    | undefined;
}

function post(body: string, headers: Record<string, string>, path = '/webhooks/stripe', method = 'POST') {
  return fetch(http.url + path, { method, headers: { 'content-type': 'application/json', ...headers }, body: method === 'GET' ? undefined : body });
}

/** Body and header exactly as the simulator signs them (pretty-printed JSON, `t=...,v1=...`). */
function signed(event: unknown, secret = sim.webhookSecret, timestampSec = Math.floor(Date.now() / 1000)) {
  const body = JSON.stringify(event, null, 2);
  return { body, header: signatureHeader(body, secret, timestampSec) };
}

let sequence = 0;
async function pendingEvent(customer = 'acme'): Promise<{ id: string; identifier: string }> {
  const identifier = `wh-test-${Date.now()}-${++sequence}`;
  // Other tests give acme more subscriptions: name the one this usage belongs to.
  const [result] = await services.ledger.ingest([{ customer, event_name: 'ai_tokens', value: 100, identifier, subscription: 'sub_seed_acme' }]);
  if (!result || result.result === 'rejected') throw new Error(`ingest failed: ${JSON.stringify(result)}`);
  expect(result.event.status).toBe('pending');
  return { id: result.event.id, identifier };
}

async function meterEvent(id: string) {
  const { rows } = await services.pool.query(
    `SELECT status::text AS status, last_error_code, last_error_message, last_error_source::text AS last_error_source FROM meter_events WHERE id = $1`,
    [id],
  );
  return rows[0] as { status: string; last_error_code: string | null; last_error_message: string | null; last_error_source: string | null };
}

function errorReport(errors: Array<{ code: string; identifier: string; message: string }>) {
  const byCode = new Map<string, Array<{ error_message: string; request: { identifier: string } }>>();
  for (const e of errors) {
    const list = byCode.get(e.code) ?? [];
    list.push({ error_message: e.message, request: { identifier: e.identifier } });
    byCode.set(e.code, list);
  }
  return {
    developer_message_summary: `There are ${errors.length} invalid events`,
    reason: {
      error_count: errors.length,
      error_types: [...byCode].map(([code, samples]) => ({ code, error_count: samples.length, sample_errors: samples })),
    },
    validation_start: new Date().toISOString(),
    validation_end: new Date().toISOString(),
  };
}

const nowSec = () => Math.floor(Date.now() / 1000);
const item = (start: number, end: number, price: Record<string, unknown>) => ({
  object: 'list',
  data: [{ id: `si_${++sequence}`, object: 'subscription_item', current_period_start: start, current_period_end: end, price: { id: `price_${sequence}`, object: 'price', ...price } }],
  has_more: false,
});

// ───────────────────────────── receiving ─────────────────────────────

describe('POST /webhooks/stripe', () => {
  it('stores a correctly signed event once, enqueues its job, and the job applies it', async () => {
    const start = nowSec() - DAY;
    const sent = await sim.sendWebhook('customer.subscription.created', {
      id: 'sub_first',
      customer: 'cus_acme',
      status: 'active',
      items: item(start, start + 30 * DAY, { lookup_key: 'business' }),
    });
    expect(sent.status).toBe(200);
    expect(await webhookRows(sent.event_id)).toBe(1);
    expect(await processJobs(sent.event_id)).toBe(1);
    expect((await webhookRow(sent.event_id))?.processed_at).toBeNull();

    await runWebhookJobs();
    const row = await webhookRow(sent.event_id);
    expect(row?.processed_at).toBeInstanceOf(Date);
    expect(row?.attempts).toBe(1);
    expect(row?.last_error).toBeNull();
    expect(await subscription('sub_first')).toMatchObject({ status: 'active', plan: 'business', customer: 'acme' });
  });

  it('stores an event delivered twice once and processes it once', async () => {
    const start = nowSec() - DAY;
    const sent = await sim.sendWebhook('customer.subscription.created', {
      id: 'sub_twice',
      customer: 'cus_acme',
      status: 'trialing',
      items: item(start, start + 30 * DAY, { lookup_key: 'essential' }),
    });
    expect(sent.status).toBe(200);
    // Stripe's redelivery: the same event, signed again at delivery time.
    const again = signed(sent.event);
    const res = await post(again.body, { 'stripe-signature': again.header });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ received: true, duplicate: true });
    expect(await webhookRows(sent.event_id)).toBe(1);
    expect(await processJobs(sent.event_id)).toBe(1);

    await runWebhookJobs();
    const first = await subscription('sub_twice');
    expect(first).toMatchObject({ status: 'trialing', plan: 'essential' });
    const row = await webhookRow(sent.event_id);

    // The job itself run a second time (e.g. a worker that died after committing): nothing happens.
    await addJob(services.pool, 'stripe__process_webhook', { webhookEventId: row!.id });
    await runWebhookJobs();
    const after = await webhookRow(sent.event_id);
    expect(after?.attempts).toBe(row?.attempts);
    expect(after?.processed_at?.getTime()).toBe(row?.processed_at?.getTime());
    expect((await subscription('sub_twice'))?.updated_at.getTime()).toBe(first?.updated_at.getTime());
  });

  describe('refuses deliveries it cannot trust: 400, nothing stored, one webhook_rejected', () => {
    const event = () => ({
      id: `evt_forged_${++sequence}`,
      object: 'event',
      api_version: '2026-10-28.endive',
      created: nowSec(),
      type: 'customer.subscription.created',
      data: { object: { id: 'sub_forged', object: 'subscription', customer: 'cus_acme', status: 'active', items: item(nowSec(), nowSec() + DAY, { lookup_key: 'business' }) } },
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
    });

    async function expectRejected(body: string, headers: Record<string, string>, reason: string, eventId: string) {
      const before = await rejectedCount();
      const res = await post(body, headers);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      const problem = (await res.json()) as { type: string; detail: string };
      expect(problem.type).toBe('/problems/webhook-rejected');
      expect(problem.detail).toContain(reason);
      expect(await webhookRows(eventId)).toBe(0);
      expect(await rejectedCount()).toBe(before + 1);
      const { rows } = await services.pool.query(
        `SELECT processor::text AS processor, metadata FROM ops_events WHERE type = 'webhook_rejected' AND source = 'endpoint' ORDER BY occurred_at DESC, id DESC LIMIT 1`,
      );
      expect(rows[0].processor).toBe('stripe');
      expect(rows[0].metadata.reason).toBe(reason);
      const stored = JSON.stringify(rows[0].metadata);
      expect(stored).not.toContain(sim.webhookSecret);
      const signature = /v1=([0-9a-f]+)/.exec(headers['stripe-signature'] ?? '')?.[1];
      if (signature) expect(stored).not.toContain(signature);
      return rows[0].metadata as Record<string, unknown>;
    }

    it('a signature made with another secret', async () => {
      const e = event();
      const { body, header } = signed(e, 'whsec_not_the_endpoint_secret');
      await expectRejected(body, { 'stripe-signature': header }, 'signature_mismatch', e.id);
    });

    it('a body changed after signing', async () => {
      const e = event();
      const { header } = signed(e);
      await expectRejected(JSON.stringify({ ...e, type: 'customer.subscription.deleted' }, null, 2), { 'stripe-signature': header }, 'signature_mismatch', e.id);
    });

    it('no Stripe-Signature header', async () => {
      const e = event();
      await expectRejected(signed(e).body, {}, 'missing_signature', e.id);
    });

    it('a header without a v1 signature', async () => {
      const e = event();
      await expectRejected(signed(e).body, { 'stripe-signature': `t=${nowSec()}` }, 'malformed_signature', e.id);
    });

    it('a valid signature older than 5 minutes', async () => {
      const e = event();
      const { body, header } = signed(e, sim.webhookSecret, nowSec() - 301);
      const metadata = await expectRejected(body, { 'stripe-signature': header }, 'timestamp_outside_tolerance', e.id);
      expect(metadata.signature_age_seconds).toBeGreaterThanOrEqual(301);
    });

    it('a captured delivery replayed later: old timestamp, or a fresh timestamp on the old signature', async () => {
      // The simulator's delivery is captured (not delivered), then replayed after its signature went stale.
      sim.configure({ webhookUrl: null });
      const captured = await sim.sendWebhook('customer.subscription.updated', { id: 'sub_replayed', customer: 'cus_acme', metadata: { plan: 'business' } });
      const stale = signed(captured.event, sim.webhookSecret, nowSec() - 600);
      await expectRejected(stale.body, { 'stripe-signature': stale.header }, 'timestamp_outside_tolerance', captured.event_id);
      const forged = stale.header.replace(/^t=\d+/, `t=${nowSec()}`);
      await expectRejected(stale.body, { 'stripe-signature': forged }, 'signature_mismatch', captured.event_id);
    });

    it('the same checks for thin events (meter error reports)', async () => {
      sim.configure({ webhookUrl: null });
      const captured = await sim.sendWebhook('v1.billing.meter.no_meter_found', errorReport([{ code: 'no_meter', identifier: 'x', message: 'No meter' }]));
      const bad = signed(captured.event, 'whsec_wrong');
      await expectRejected(bad.body, { 'stripe-signature': bad.header }, 'signature_mismatch', captured.event_id);
      const old = signed(captured.event, sim.webhookSecret, nowSec() - 400);
      await expectRejected(old.body, { 'stripe-signature': old.header }, 'timestamp_outside_tolerance', captured.event_id);
    });
  });

  it('answers 405 to other methods, 404 to other processors, 413 past 1 MiB', async () => {
    const get = await post('', {}, '/webhooks/stripe', 'GET');
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    expect((await post('{}', {}, '/webhooks/nowhere')).status).toBe(404);

    const huge = JSON.stringify({ id: 'evt_huge', object: 'event', type: 'customer.subscription.created', padding: 'x'.repeat(1024 * 1024) });
    const before = await rejectedCount();
    const res = await post(huge, { 'stripe-signature': signatureHeader(huge, sim.webhookSecret, nowSec()) });
    expect(res.status).toBe(413);
    expect(await webhookRows('evt_huge')).toBe(0);
    expect(await rejectedCount()).toBe(before + 1);
  });
});

// ───────────────────────────── meter error reports ─────────────────────────────

describe('meter error reports', () => {
  it('accepted then rejected: a reported event becomes failed with Stripe\'s unknown error code kept', async () => {
    const event = await pendingEvent();
    const code = 'meter_event_quantum_flux_exceeded';
    sim.addFault({ kind: 'reject_after_accept', match: { identifier: event.identifier }, errorCode: code, errorMessage: 'The flux is too high.', count: 1 });
    // What the reporter does: report through the real SDK, then mark the row reported.
    await stripe.billing.meterEvents.create({
      event_name: 'ai_tokens',
      payload: { stripe_customer_id: 'cus_acme', value: '100' },
      identifier: event.identifier,
      timestamp: nowSec(),
    });
    await services.pool.query(`UPDATE meter_events SET status = 'reported', reported_at = now() WHERE id = $1`, [event.id]);
    // The simulator rejects it asynchronously, as Stripe's pipeline does.
    await vi.waitFor(() => expect(sim.meterEvents().find((e) => e.identifier === event.identifier)?.status).toBe('rejected'));
    expect(await sim.flushErrorReports()).toBe(1);
    const delivery = sim.webhookDeliveries().at(-1)!;
    expect(delivery).toMatchObject({ type: 'v1.billing.meter.error_report_triggered', status: 200 });

    await runWebhookJobs();
    expect(await meterEvent(event.id)).toEqual({
      status: 'failed',
      last_error_code: code,
      last_error_message: 'The flux is too high.',
      last_error_source: 'webhook',
    });
    const ops = await services.pool.query(
      `SELECT source, metadata FROM ops_events WHERE type = 'meter_reporting_failed' AND subject_id = $1`,
      [event.id],
    );
    expect(ops.rows).toHaveLength(1);
    expect(ops.rows[0]).toMatchObject({ source: 'webhook', metadata: { code, previous_status: 'reported', stripe_event_id: delivery.event_id } });
    expect(await count(`SELECT count(*) FROM event_attempts WHERE meter_event_id = $1 AND source = 'webhook' AND outcome = 'rejected' AND error_code = $2`, [event.id, code])).toBe(1);
    expect((await webhookRow(delivery.event_id))?.processed_at).toBeInstanceOf(Date);
  });

  it('moves a pending event to failed; ignores but counts unknown identifiers; leaves failed ones and duplicates alone', async () => {
    const pending = await pendingEvent();
    const alreadyFailed = await pendingEvent();
    await services.pool.query(`UPDATE meter_events SET status = 'failed', last_error_code = 'earlier', last_error_source = 'sync' WHERE id = $1`, [alreadyFailed.id]);
    const duplicate = await pendingEvent();
    await services.pool.query(`UPDATE meter_events SET status = 'reported' WHERE id = $1`, [duplicate.id]);

    const sent = await sim.sendWebhook(
      'v1.billing.meter.error_report_triggered',
      errorReport([
        { code: 'meter_event_customer_not_found', identifier: pending.identifier, message: 'Customer cus_acme not found.' },
        { code: 'meter_event_customer_not_found', identifier: 'never-seen-1', message: 'Customer x not found.' },
        { code: 'meter_event_invalid_value', identifier: 'never-seen-2', message: 'Bad value.' },
        { code: 'meter_event_invalid_value', identifier: alreadyFailed.identifier, message: 'Bad value.' },
        // Stripe gives a duplicate no code of its own: the message is what says it was already counted.
        { code: 'some_future_code', identifier: duplicate.identifier, message: `An event already exists with identifier ${duplicate.identifier}.` },
      ]),
      { relatedObject: { id: 'mtr_test', type: 'billing.meter', url: '/v1/billing/meters/mtr_test' } },
    );
    expect(sent.status).toBe(200);
    const opsBefore = await count(`SELECT count(*) FROM ops_events WHERE type = 'meter_reporting_failed'`);
    await runWebhookJobs();

    expect(await meterEvent(pending.id)).toMatchObject({ status: 'failed', last_error_code: 'meter_event_customer_not_found', last_error_source: 'webhook' });
    expect(await meterEvent(alreadyFailed.id)).toMatchObject({ status: 'failed', last_error_code: 'earlier', last_error_source: 'sync' });
    expect((await meterEvent(duplicate.id)).status).toBe('reported');
    expect(await count(`SELECT count(*) FROM ops_events WHERE type = 'meter_reporting_failed'`)).toBe(opsBefore + 1);

    const row = await webhookRow(sent.event_id);
    expect(row?.processed_at).toBeInstanceOf(Date);
    expect(row?.last_error).toContain('moved 1 to failed');
    expect(row?.last_error).toContain('2 identifier(s) not in the ledger');
    expect(row?.last_error).toContain('never-seen-1');
    expect(row?.last_error).toContain('1 duplicate(s) Stripe already counted');
  });

  it('no_meter_found fails the named pending events too', async () => {
    const pending = await pendingEvent();
    const sent = await sim.sendWebhook('v1.billing.meter.no_meter_found', errorReport([{ code: 'no_meter', identifier: pending.identifier, message: 'No meter was found matching event_name ai_tokens.' }]));
    expect(sent.status).toBe(200);
    await runWebhookJobs();
    expect(await meterEvent(pending.id)).toMatchObject({ status: 'failed', last_error_code: 'no_meter', last_error_source: 'webhook' });
  });

  it('never trusts data in a notification: the job applies the event Stripe serves for its id', async () => {
    const named = await pendingEvent();
    const bystander = await pendingEvent();
    sim.configure({ webhookUrl: null });
    const captured = await sim.sendWebhook('v1.billing.meter.error_report_triggered', errorReport([{ code: 'archived_meter', identifier: named.identifier, message: 'Meter is not active.' }]), {
      relatedObject: { id: 'mtr_test', type: 'billing.meter', url: '/v1/billing/meters/mtr_test' },
    });
    // As Stripe pushes it: no data. Then the same notification with forged data naming another event.
    const pushed = (sim.webhookDeliveries().at(-1)?.event_id ?? '') === captured.event_id;
    expect(pushed).toBe(true);
    const { data: _data, ...notification } = captured.event as unknown as Record<string, unknown>;
    const forged = { ...notification, data: errorReport([{ code: 'no_meter', identifier: bystander.identifier, message: 'forged' }]) };
    const { body, header } = signed(forged);
    expect((await post(body, { 'stripe-signature': header })).status).toBe(200);
    await runWebhookJobs();
    expect(await meterEvent(named.id)).toMatchObject({ status: 'failed', last_error_code: 'archived_meter' });
    expect((await meterEvent(bystander.id)).status).toBe('pending');
  });

  it('a sample that names its request only by idempotency key fails our event (meterdesk-<identifier>)', async () => {
    const pending = await pendingEvent();
    sim.configure({ webhookUrl: null });
    const data = {
      reason: {
        error_count: 2,
        error_types: [
          {
            code: 'meter_event_invalid_value',
            error_count: 2,
            sample_errors: [
              { error_message: 'Bad value.', request: { idempotency_key: `meterdesk-${pending.identifier}` } },
              { error_message: 'Bad value.', request: {} },
            ],
          },
        ],
      },
    };
    const captured = await sim.sendWebhook('v1.billing.meter.error_report_triggered', data, { relatedObject: { id: 'mtr_test', type: 'billing.meter', url: '/v1/billing/meters/mtr_test' } });
    const { body, header } = signed(captured.event);
    expect((await post(body, { 'stripe-signature': header })).status).toBe(200);
    await runWebhookJobs();
    expect(await meterEvent(pending.id)).toMatchObject({ status: 'failed', last_error_code: 'meter_event_invalid_value' });
    expect((await webhookRow(captured.event_id))?.last_error).toContain('1 sample(s) named no request identifier');
  });

  describe('a thin event that cannot be fetched is retried, shown once on the desk, never processed', () => {
    const fetchFailures = (webhookId: string) =>
      count(`SELECT count(*) FROM ops_events WHERE type = 'webhook_rejected' AND source = 'processing' AND subject_id = $1 AND metadata->>'reason' = 'event_fetch_failed'`, [webhookId]);
    const jobsDue = () => services.pool.query(`UPDATE graphile_worker._private_jobs SET run_at = now() WHERE locked_at IS NULL`);

    async function notify(held: boolean) {
      const pending = await pendingEvent();
      sim.configure({ webhookUrl: null });
      const captured = await sim.sendWebhook('v1.billing.meter.no_meter_found', errorReport([{ code: 'no_meter', identifier: pending.identifier, message: 'No meter.' }]));
      const event = captured.event as unknown as { id: string; type: string; data: unknown };
      // A notification for an event Stripe does not serve (404): post it under a fresh id the simulator never made.
      const id = held ? event.id : `${event.id}_unknown`;
      const { data: _data, ...notification } = { ...event, id };
      const { body, header } = signed(notification);
      expect((await post(body, { 'stripe-signature': header })).status).toBe(200);
      return { pending, id, event };
    }

    it('404: not processed, last_error says it will retry, one ops event however often it runs; processed once Stripe serves it', async () => {
      const { pending, id, event } = await notify(false);
      await runWebhookJobs();
      let row = await webhookRow(id);
      expect(row?.processed_at).toBeNull();
      expect(row?.last_error).toMatch(/^transient \(will retry\): GET \/v2\/core\/events\/.* failed \(404\)/);
      expect(await fetchFailures(row!.id)).toBe(1);
      await jobsDue();
      await runWebhookJobs();
      row = await webhookRow(id);
      expect(row).toMatchObject({ processed_at: null, attempts: 2 });
      expect(await fetchFailures(row!.id)).toBe(1);
      expect((await meterEvent(pending.id)).status).toBe('pending');
      // The job was kept for graphile-worker's retry with backoff, not dropped.
      expect(await count(`SELECT count(*) FROM graphile_worker._private_jobs WHERE payload->>'webhookEventId' = $1 AND attempts = 2`, [row!.id])).toBe(1);

      sim.holdThinEvent({ id, type: 'v1.billing.meter.no_meter_found', data: event.data });
      await jobsDue();
      await runWebhookJobs();
      expect((await webhookRow(id))?.processed_at).toBeInstanceOf(Date);
      expect(await meterEvent(pending.id)).toMatchObject({ status: 'failed', last_error_code: 'no_meter' });
    });

    it('5xx and a timeout: retried, then applied', async () => {
      const { pending, id } = await notify(true);
      sim.addFault({ kind: 'server_error', status: 503, count: 1, match: { path: '/v2/core/events/' } });
      await runWebhookJobs();
      expect((await webhookRow(id))?.last_error).toMatch(/failed \(503\)/);
      sim.addFault({ kind: 'timeout_not_applied', count: 1, match: { path: '/v2/core/events/' } });
      const impatient = new Stripe(SIMULATOR_SECRET_KEY, { ...sim.clientConfig, maxNetworkRetries: 0, timeout: 300 });
      await jobsDue();
      await runOnce({ connectionString: db.connectionString, logger: graphileLogger, concurrency: 1 }, { stripe__process_webhook: createProcessWebhookTask({ stripe: impatient }) });
      const row = await webhookRow(id);
      expect(row).toMatchObject({ processed_at: null, attempts: 2 });
      expect(row?.last_error).toMatch(/^transient \(will retry\): GET \/v2\/core\/events\/.* failed:/);
      expect(await fetchFailures(row!.id)).toBe(1);
      await jobsDue();
      await runWebhookJobs();
      expect((await webhookRow(id))?.processed_at).toBeInstanceOf(Date);
      expect(await meterEvent(pending.id)).toMatchObject({ status: 'failed', last_error_code: 'no_meter' });
    });
  });

  it('no worker without a Stripe client takes these jobs: the task refuses to be built, the bare task list leaves it out', async () => {
    expect(() => createProcessWebhookTask({} as never)).toThrow(/needs a Stripe client/);
    expect(taskList).not.toHaveProperty('stripe__process_webhook');
    expect(createTaskList({})).not.toHaveProperty('stripe__process_webhook');
    expect(createTaskList({ stripeClient: stripe })).toHaveProperty('stripe__process_webhook');
  });
});

// ───────────────────────────── subscriptions ─────────────────────────────

describe('subscription events', () => {
  it('created, updated, deleted upsert one subscription', async () => {
    const start = nowSec() - 2 * DAY;
    const created = await sim.sendWebhook('customer.subscription.created', {
      id: 'sub_lifecycle',
      customer: 'cus_globex',
      status: 'active',
      items: item(start, start + 30 * DAY, { lookup_key: 'essential' }),
    });
    expect(created.status).toBe(200);
    await runWebhookJobs();
    const afterCreate = await subscription('sub_lifecycle');
    expect(afterCreate).toMatchObject({ status: 'active', plan: 'essential', customer: 'globex', canceled_at: null });
    expect(afterCreate?.current_period_start.getTime()).toBe(start * 1000);
    expect(afterCreate?.current_period_end.getTime()).toBe((start + 30 * DAY) * 1000);

    // Renewal onto a plan named in the price metadata, now past due.
    sim.advanceClock(1000);
    const next = start + 30 * DAY;
    const updated = await sim.sendWebhook(
      'customer.subscription.updated',
      { id: 'sub_lifecycle', customer: 'cus_globex', status: 'past_due', items: item(next, next + 30 * DAY, { lookup_key: null, metadata: { plan: 'enterprise' } }) },
      { previousAttributes: { status: 'active' } },
    );
    expect(updated.status).toBe(200);
    await runWebhookJobs();
    const afterUpdate = await subscription('sub_lifecycle');
    expect(afterUpdate).toMatchObject({ status: 'past_due', plan: 'enterprise' });
    expect(afterUpdate?.current_period_end.getTime()).toBe((next + 30 * DAY) * 1000);

    sim.advanceClock(1000);
    const deleted = await sim.sendWebhook('customer.subscription.deleted', {
      id: 'sub_lifecycle',
      customer: 'cus_globex',
      items: item(next, next + 30 * DAY, { metadata: { plan: 'enterprise' } }),
    });
    expect(deleted.status).toBe(200);
    await runWebhookJobs();
    const afterDelete = await subscription('sub_lifecycle');
    expect(afterDelete).toMatchObject({ status: 'canceled', plan: 'enterprise' });
    expect(afterDelete?.canceled_at).toBeInstanceOf(Date);
    expect(await count(`SELECT count(*) FROM subscriptions WHERE processor_subscription_id = 'sub_lifecycle'`)).toBe(1);

    // An older snapshot delivered late does not revive it.
    const stale = signed({ ...(updated.event as object), id: `evt_stale_${++sequence}` });
    expect((await post(stale.body, { 'stripe-signature': stale.header })).status).toBe(200);
    await runWebhookJobs();
    expect(await subscription('sub_lifecycle')).toMatchObject({ status: 'canceled', plan: 'enterprise' });
    expect((await webhookRow(JSON.parse(stale.body).id))?.last_error).toMatch(/^superseded: /);
  });

  it('reads the plan from the product or the subscription metadata, and maps incomplete_expired to canceled', async () => {
    const start = nowSec();
    await sim.sendWebhook('customer.subscription.created', {
      id: 'sub_product_plan',
      customer: 'cus_globex',
      status: 'incomplete_expired',
      items: item(start, start + 30 * DAY, { product: { id: 'prod_1', object: 'product', metadata: { plan: 'business' } } }),
    });
    await sim.sendWebhook('customer.subscription.created', {
      id: 'sub_metadata_plan',
      customer: 'cus_globex',
      status: 'active',
      metadata: { plan: 'enterprise' },
      items: item(start, start + 30 * DAY, { lookup_key: 'not_a_plan' }),
    });
    await runWebhookJobs();
    expect(await subscription('sub_product_plan')).toMatchObject({ status: 'canceled', plan: 'business' });
    expect(await subscription('sub_metadata_plan')).toMatchObject({ status: 'active', plan: 'enterprise' });
  });

  it('an unknown customer is recorded on the row and in one ops event, not retried forever', async () => {
    const start = nowSec();
    const sent = await sim.sendWebhook('customer.subscription.created', {
      id: 'sub_stranger',
      customer: 'cus_stranger',
      status: 'active',
      items: item(start, start + 30 * DAY, { lookup_key: 'business' }),
    });
    expect(sent.status).toBe(200);
    await runWebhookJobs();
    const row = await webhookRow(sent.event_id);
    expect(row?.processed_at).toBeNull();
    expect(row?.last_error).toMatch(/^unknown_customer: .*cus_stranger/);
    expect(await subscription('sub_stranger')).toBeUndefined();
    // The job finished (no retry scheduled) ...
    expect(await processJobs(sent.event_id)).toBe(0);
    // ... and running it again makes no new noise.
    await addJob(services.pool, 'stripe__process_webhook', { webhookEventId: row!.id });
    await runWebhookJobs();
    const ops = await services.pool.query(`SELECT source, metadata FROM ops_events WHERE type = 'webhook_rejected' AND subject_id = $1`, [row!.id]);
    expect(ops.rows).toHaveLength(1);
    expect(ops.rows[0]).toMatchObject({ source: 'processing', metadata: { reason: 'unknown_customer', stripe_event_id: sent.event_id } });
    expect((await webhookRow(sent.event_id))?.attempts).toBe(2);
  });

  it('a new subscription with no matching plan is not applied', async () => {
    const start = nowSec();
    const sent = await sim.sendWebhook('customer.subscription.created', {
      id: 'sub_no_plan',
      customer: 'cus_acme',
      items: item(start, start + 30 * DAY, { lookup_key: 'platinum' }),
    });
    await runWebhookJobs();
    expect((await webhookRow(sent.event_id))?.last_error).toMatch(/^unknown_plan: .*platinum/);
    expect(await subscription('sub_no_plan')).toBeUndefined();
  });
});
