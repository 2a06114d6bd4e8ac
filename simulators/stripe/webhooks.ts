// Webhook envelopes and signing, as Stripe sends them. Snapshot events (`object: 'event'`, verified with
// `stripe.webhooks.constructEvent`) carry `data.object`. Thin events (`object: 'v2.core.event'`, parsed with
// `stripe.parseEventNotification`) are pushed as notifications without `data`: the receiver fetches the event,
// `data` and all, from `GET /v2/core/events/:id` (stripe-node's EventNotification types and
// StripeEventNotificationHandler spec; docs.stripe.com/api/v2/core/events/event-types: thin payloads are
// unversioned, "you must fetch the versioned event from the API").
import { createHmac } from 'node:crypto';
import type { PendingError } from './meter-events';
import { randomId } from './wire';

export const SIMULATOR_API_VERSION = '2026-10-28.endive';

/** `Stripe-Signature` header value: `t=<unix>,v1=<hex hmac-sha256 of "t.payload">`. */
export function signatureHeader(payload: string, secret: string, timestampSec: number): string {
  // Whole seconds, as Stripe sends them (and as the SDK reads them: a fractional t would never verify).
  const t = Math.floor(timestampSec);
  const signature = createHmac('sha256', secret).update(`${t}.${payload}`, 'utf8').digest('hex');
  return `t=${t},v1=${signature}`;
}

export interface SnapshotEvent {
  id: string;
  object: 'event';
  api_version: string;
  created: number;
  data: { object: Record<string, unknown>; previous_attributes?: Record<string, unknown> };
  livemode: boolean;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  type: string;
}

export interface RelatedObject {
  id: string;
  type: string;
  url: string;
}

/** A thin event as `GET /v2/core/events/:id` serves it. */
export interface ThinEvent {
  id: string;
  object: 'v2.core.event';
  type: string;
  created: string;
  livemode: boolean;
  context: string | null;
  reason: null;
  /** Absent for events about no object (v1.billing.meter.no_meter_found): the SDK's fetchRelatedObject() is then null. */
  related_object?: RelatedObject;
  data?: Record<string, unknown>;
}

/** What Stripe pushes for a thin event: the envelope without `data` (and without `reason`). */
export type ThinEventNotification = Pick<ThinEvent, 'id' | 'object' | 'type' | 'created' | 'livemode' | 'context' | 'related_object'>;

export type SimulatedEvent = SnapshotEvent | ThinEvent;

/** The body pushed to the webhook endpoint for an event. */
export function pushedBody(event: SimulatedEvent): SnapshotEvent | ThinEventNotification {
  if (event.object === 'event') return event;
  const { id, object, type, created, livemode, context, related_object } = event;
  return related_object ? { id, object, type, created, livemode, context, related_object } : { id, object, type, created, livemode, context };
}

/** v1./v2.-prefixed types are thin events (event destinations); the rest are snapshot events. */
export function isThinEventType(type: string): boolean {
  return /^v\d+\./.test(type);
}

export function snapshotEvent(
  type: string,
  object: Record<string, unknown>,
  nowMs: number,
  previousAttributes?: Record<string, unknown>,
): SnapshotEvent {
  const data: SnapshotEvent['data'] = { object };
  if (previousAttributes) data.previous_attributes = previousAttributes;
  return {
    id: randomId('evt_', 24),
    object: 'event',
    api_version: SIMULATOR_API_VERSION,
    created: Math.floor(nowMs / 1000),
    data,
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
  };
}

export function thinEvent(
  type: string,
  data: Record<string, unknown> | undefined,
  nowMs: number,
  relatedObject?: RelatedObject,
): ThinEvent {
  const event: ThinEvent = {
    id: randomId('evt_test_', 52),
    object: 'v2.core.event',
    type,
    created: new Date(nowMs).toISOString(),
    livemode: false,
    context: null,
    reason: null,
  };
  if (relatedObject) event.related_object = relatedObject;
  if (data) event.data = data;
  return event;
}

/**
 * The meter error report events for a batch of asynchronous rejections: one per meter
 * (`v1.billing.meter.error_report_triggered`, related to the meter) and one for events that named no meter
 * (`v1.billing.meter.no_meter_found`), each with at most `maxSamples` sample errors per code.
 */
export function meterErrorReports(batch: readonly PendingError[], maxSamples: number, nowMs: number): ThinEvent[] {
  const byMeter = new Map<string, PendingError[]>();
  for (const e of batch) {
    const key = e.meterId ?? '';
    const list = byMeter.get(key);
    if (list) list.push(e);
    else byMeter.set(key, [e]);
  }
  const iso = (ms: number) => new Date(ms).toISOString();
  const reports: ThinEvent[] = [];
  for (const [meterId, errors] of byMeter) {
    const byCode = new Map<string, { count: number; samples: Array<{ error_message: string; request: { identifier: string } }> }>();
    let start = Number.POSITIVE_INFINITY;
    let end = 0;
    for (const e of errors) {
      start = Math.min(start, e.at);
      end = Math.max(end, e.at);
      let entry = byCode.get(e.code);
      if (!entry) {
        entry = { count: 0, samples: [] };
        byCode.set(e.code, entry);
      }
      entry.count += 1;
      if (entry.samples.length < maxSamples) entry.samples.push({ error_message: e.message, request: { identifier: e.identifier } });
    }
    const n = errors.length;
    const data = {
      developer_message_summary: n === 1 ? 'There is 1 invalid event' : `There are ${n} invalid events`,
      reason: {
        error_count: n,
        error_types: [...byCode].map(([code, v]) => ({ code, error_count: v.count, sample_errors: v.samples })),
      },
      validation_end: iso(end),
      validation_start: iso(start),
    };
    reports.push(
      meterId
        ? thinEvent('v1.billing.meter.error_report_triggered', data, nowMs, { id: meterId, type: 'billing.meter', url: `/v1/billing/meters/${meterId}` })
        : thinEvent('v1.billing.meter.no_meter_found', data, nowMs),
    );
  }
  return reports;
}

/** The event `sendWebhook` sends: thin for v1./v2. types, else a snapshot (subscriptions filled out as Stripe's). */
export function webhookEvent(
  type: string,
  dataObject: Record<string, unknown>,
  nowMs: number,
  opts: { previousAttributes?: Record<string, unknown>; relatedObject?: RelatedObject } = {},
): SimulatedEvent {
  if (isThinEventType(type)) return thinEvent(type, dataObject, nowMs, opts.relatedObject);
  const object = type.startsWith('customer.subscription.') ? subscriptionObject(dataObject, nowMs) : dataObject;
  if (type === 'customer.subscription.deleted' && dataObject.status === undefined) {
    object.status = 'canceled';
    object.ended_at ??= Math.floor(nowMs / 1000);
    object.canceled_at ??= Math.floor(nowMs / 1000);
  }
  return snapshotEvent(type, object, nowMs, opts.previousAttributes);
}

/**
 * Fills the fields a `customer.subscription.*` consumer reads (API 2025+ moved the period to the items), keeping
 * anything the caller set.
 */
export function subscriptionObject(partial: Record<string, unknown>, nowMs: number): Record<string, unknown> {
  const nowSec = Math.floor(nowMs / 1000);
  const start = typeof partial.start_date === 'number' ? partial.start_date : nowSec;
  const periodStart = typeof partial.current_period_start === 'number' ? partial.current_period_start : start;
  const periodEnd = typeof partial.current_period_end === 'number' ? partial.current_period_end : periodStart + 30 * 86400;
  const id = typeof partial.id === 'string' ? partial.id : randomId('sub_', 24);
  const price = {
    id: typeof partial.price === 'string' ? partial.price : randomId('price_', 24),
    object: 'price',
    active: true,
    billing_scheme: 'per_unit',
    created: start,
    currency: 'usd',
    custom_unit_amount: null,
    livemode: false,
    lookup_key: null,
    metadata: {},
    nickname: null,
    product: randomId('prod_', 14),
    recurring: { interval: 'month', interval_count: 1, meter: partial.meter ?? null, trial_period_days: null, usage_type: 'metered' },
    tax_behavior: 'unspecified',
    tiers_mode: null,
    transform_quantity: null,
    type: 'recurring',
    unit_amount: null,
    unit_amount_decimal: null,
  };
  const items = partial.items ?? {
    object: 'list',
    data: [
      {
        id: randomId('si_', 14),
        object: 'subscription_item',
        created: start,
        current_period_start: periodStart,
        current_period_end: periodEnd,
        metadata: {},
        price,
        quantity: null,
        subscription: id,
        tax_rates: [],
        discounts: [],
        billing_thresholds: null,
        // The legacy view of the same price, still sent on every item.
        plan: {
          id: price.id,
          object: 'plan',
          active: true,
          amount: null,
          amount_decimal: null,
          billing_scheme: 'per_unit',
          created: start,
          currency: 'usd',
          interval: 'month',
          interval_count: 1,
          livemode: false,
          metadata: {},
          meter: partial.meter ?? null,
          nickname: null,
          product: price.product,
          tiers_mode: null,
          transform_usage: null,
          trial_period_days: null,
          usage_type: 'metered',
        },
      },
    ],
    has_more: false,
    url: `/v1/subscription_items?subscription=${id}`,
  };
  // Every key of Stripe's example subscription (fixtures3.json), nullable ones null: test/conformance checks them.
  return {
    id,
    object: 'subscription',
    application: null,
    application_fee_percent: null,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null },
    billing_cycle_anchor_config: null,
    billing_mode: { type: 'classic', flexible: null },
    billing_schedules: [],
    billing_thresholds: null,
    cancellation_details: { comment: null, feedback: null, reason: null },
    customer_account: null,
    days_until_due: null,
    default_payment_method: null,
    default_source: null,
    default_tax_rates: [],
    description: null,
    discounts: [],
    invoice_settings: { account_tax_ids: null, custom_fields: null, description: null, footer: null, issuer: { type: 'self' } },
    managed_payments: null,
    next_pending_invoice_item_invoice: null,
    on_behalf_of: null,
    pause_collection: null,
    payment_settings: { payment_method_options: null, payment_method_types: null, save_default_payment_method: 'off' },
    pending_invoice_item_interval: null,
    pending_setup_intent: null,
    pending_update: null,
    schedule: null,
    test_clock: null,
    transfer_data: null,
    trial_end: null,
    trial_settings: { end_behavior: { missing_payment_method: 'create_invoice' } },
    trial_start: null,
    billing_cycle_anchor: periodStart,
    cancel_at: null,
    cancel_at_period_end: false,
    canceled_at: null,
    collection_method: 'charge_automatically',
    created: start,
    currency: 'usd',
    customer: null,
    ended_at: null,
    latest_invoice: null,
    livemode: false,
    metadata: {},
    start_date: start,
    status: 'active',
    ...partial,
    items,
  };
}

export interface WebhookDelivery {
  event_id: string;
  type: string;
  url: string | null;
  /** HTTP status from the endpoint; 0 when it could not be reached or no endpoint is configured. */
  status: number;
  ok: boolean;
  error?: string;
  attempt: number;
  delivered_at: number;
  duration_ms: number;
}

export interface WebhookTarget {
  url: string | undefined;
  secret: string;
}

export async function postSignedEvent(
  target: WebhookTarget,
  event: SimulatedEvent,
  attempt: number,
  timeoutMs: number,
): Promise<WebhookDelivery> {
  const started = Date.now();
  const base = { event_id: event.id, type: event.type, url: target.url ?? null, attempt, delivered_at: started };
  if (!target.url) {
    return { ...base, status: 0, ok: false, error: 'no webhook endpoint configured', duration_ms: 0 };
  }
  // Stripe pretty-prints webhook bodies; the signature covers these exact bytes.
  const payload = JSON.stringify(pushedBody(event), null, 2);
  // The signature time is wall-clock, not the simulator's business clock: receivers check it against their own
  // clock with a 5-minute tolerance.
  const header = signatureHeader(payload, target.secret, Math.floor(Date.now() / 1000));
  try {
    const res = await fetch(target.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json; charset=utf-8',
        'stripe-signature': header,
        'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
        'cache-control': 'no-cache',
        accept: '*/*; q=0.5, application/xml',
      },
      body: payload,
      signal: AbortSignal.timeout(timeoutMs),
    });
    // Drain so keep-alive sockets are reused.
    await res.arrayBuffer().catch(() => undefined);
    return { ...base, status: res.status, ok: res.status >= 200 && res.status < 300, duration_ms: Date.now() - started };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { ...base, status: 0, ok: false, error: message, duration_ms: Date.now() - started };
  }
}
