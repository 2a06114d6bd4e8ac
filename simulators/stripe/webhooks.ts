// Webhook envelopes and signing, as Stripe sends them. Snapshot events (`object: 'event'`, verified with
// `stripe.webhooks.constructEvent`) carry `data.object`; thin events (`object: 'v2.core.event'`, parsed with
// `stripe.parseEventNotification`) carry `related_object` and, like the examples in Stripe's docs, `data`.
import { createHmac } from 'node:crypto';
import { randomId } from './wire';

export const SIMULATOR_API_VERSION = '2026-10-28.endive';

/** `Stripe-Signature` header value: `t=<unix>,v1=<hex hmac-sha256 of "t.payload">`. */
export function signatureHeader(payload: string, secret: string, timestampSec: number): string {
  const signature = createHmac('sha256', secret).update(`${timestampSec}.${payload}`, 'utf8').digest('hex');
  return `t=${timestampSec},v1=${signature}`;
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

export interface ThinEvent {
  id: string;
  object: 'v2.core.event';
  type: string;
  created: string;
  livemode: boolean;
  context: string | null;
  reason: null;
  related_object: { id: string; type: string; url: string } | Record<string, never>;
  data?: Record<string, unknown>;
}

export type SimulatedEvent = SnapshotEvent | ThinEvent;

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
  relatedObject?: { id: string; type: string; url: string },
): ThinEvent {
  const event: ThinEvent = {
    id: randomId('evt_test_', 52),
    object: 'v2.core.event',
    type,
    created: new Date(nowMs).toISOString(),
    livemode: false,
    context: null,
    reason: null,
    related_object: relatedObject ?? {},
  };
  if (data) event.data = data;
  return event;
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
        price: {
          id: typeof partial.price === 'string' ? partial.price : randomId('price_', 24),
          object: 'price',
          active: true,
          currency: 'usd',
          recurring: { interval: 'month', interval_count: 1, usage_type: 'metered', meter: partial.meter ?? null },
          type: 'recurring',
          billing_scheme: 'per_unit',
          unit_amount: null,
        },
        subscription: id,
      },
    ],
    has_more: false,
    url: `/v1/subscription_items?subscription=${id}`,
  };
  return {
    id,
    object: 'subscription',
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
  const payload = JSON.stringify(event, null, 2);
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
