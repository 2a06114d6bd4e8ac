// Braintree webhooks as the gateway sends them: a form-encoded POST of `bt_signature` and `bt_payload`, where
// the payload is base64 (with line breaks, as Ruby's Base64.encode64 writes it) of a `<notification>` XML
// document, and the signature is `<public_key>|<hex hmac-sha1 keyed with sha1(private_key) of the payload>`.
// `gateway.webhookNotification.parse(signature, payload)` accepts them.
import { createHash, createHmac } from 'node:crypto';
import { randomId } from './wire';
import { array, bool, date, datetime, document, escapeXml, int, nil, node, text } from './xml';

export interface WebhookKeys {
  publicKey: string;
  privateKey: string;
}

export type SubscriptionStatus = 'Active' | 'Canceled' | 'Expired' | 'Past Due' | 'Pending';

export interface SubscriptionTransactionSubject {
  id?: string;
  status?: string;
  amount?: string;
  orderId?: string | null;
  createdAt?: Date | string;
}

/** The subscription in a `subscription_*` notification. Dates are calendar dates, `YYYY-MM-DD`. */
export interface SubscriptionSubject {
  id: string;
  status?: SubscriptionStatus;
  planId?: string;
  price?: string;
  balance?: string;
  billingPeriodStartDate?: string | null;
  billingPeriodEndDate?: string | null;
  paidThroughDate?: string | null;
  nextBillingDate?: string | null;
  firstBillingDate?: string | null;
  currentBillingCycle?: number;
  billingDayOfMonth?: number;
  numberOfBillingCycles?: number | null;
  neverExpires?: boolean;
  failureCount?: number;
  daysPastDue?: number | null;
  paymentMethodToken?: string;
  merchantAccountId?: string;
  createdAt?: Date | string;
  updatedAt?: Date | string;
  /**
   * Transactions of the subscription, newest first. Absent on `subscription_charged_successfully` /
   * `subscription_charged_unsuccessfully`: one is made up for the subscription's price (not stored), as in
   * Braintree's own sample notifications (`submitted_for_settlement`, or `failed` when charged unsuccessfully).
   */
  transactions?: SubscriptionTransactionSubject[];
}

export interface WebhookSubject {
  subscription?: SubscriptionSubject;
  /** Raw subject XML (anything the SDK knows how to parse), used as is. */
  xml?: string;
}

export interface SignedWebhook {
  bt_signature: string;
  bt_payload: string;
  /** The notification document inside the payload. */
  xml: string;
  kind: string;
  timestamp: string;
}

export interface WebhookDelivery {
  kind: string;
  url: string | null;
  /** HTTP status from the endpoint; 0 when it could not be reached or no endpoint is configured. */
  status: number;
  ok: boolean;
  error?: string;
  delivered_at: number;
  duration_ms: number;
  bt_signature: string;
  bt_payload: string;
}

const toMs = (v: Date | string | undefined, fallback: number): number =>
  v === undefined ? fallback : v instanceof Date ? v.getTime() : Number.isFinite(Date.parse(v)) ? Date.parse(v) : fallback;

/** The price of a subscription that names none: that of Braintree's sample notifications (the SDK's webhookTesting). */
const SAMPLE_PRICE = '49.99';

export function subscriptionXml(sub: SubscriptionSubject, kind: string, nowMs: number): string {
  const charged = kind === 'subscription_charged_successfully' || kind === 'subscription_charged_unsuccessfully';
  const price = sub.price ?? SAMPLE_PRICE;
  const transactions =
    sub.transactions ??
    (charged
      ? [
          {
            id: randomId(8),
            status: kind === 'subscription_charged_successfully' ? 'submitted_for_settlement' : 'failed',
            amount: price,
          },
        ]
      : []);
  return node('subscription', [
    text('id', sub.id),
    text('status', sub.status ?? (kind === 'subscription_canceled' ? 'Canceled' : kind === 'subscription_expired' ? 'Expired' : kind === 'subscription_went_past_due' ? 'Past Due' : 'Active')),
    text('plan-id', sub.planId ?? null),
    text('price', price),
    text('balance', sub.balance ?? '0.00'),
    date('billing-period-start-date', sub.billingPeriodStartDate ?? null),
    date('billing-period-end-date', sub.billingPeriodEndDate ?? null),
    date('paid-through-date', sub.paidThroughDate ?? sub.billingPeriodEndDate ?? null),
    date('next-billing-date', sub.nextBillingDate ?? null),
    date('first-billing-date', sub.firstBillingDate ?? sub.billingPeriodStartDate ?? null),
    int('current-billing-cycle', sub.currentBillingCycle ?? 1),
    int('billing-day-of-month', sub.billingDayOfMonth ?? null),
    int('number-of-billing-cycles', sub.numberOfBillingCycles ?? null),
    bool('never-expires', sub.neverExpires ?? true),
    int('failure-count', sub.failureCount ?? (kind === 'subscription_charged_unsuccessfully' ? 1 : 0)),
    int('days-past-due', sub.daysPastDue ?? null),
    text('payment-method-token', sub.paymentMethodToken ?? null),
    text('merchant-account-id', sub.merchantAccountId ?? null),
    bool('trial-period', false),
    datetime('created-at', toMs(sub.createdAt, nowMs)),
    datetime('updated-at', toMs(sub.updatedAt, nowMs)),
    array(
      'transactions',
      transactions.map((t) =>
        node('transaction', [
          text('id', t.id ?? randomId(8)),
          text('status', t.status ?? 'submitted_for_settlement'),
          text('type', 'sale'),
          text('amount', t.amount ?? price),
          text('order-id', t.orderId ?? null),
          text('subscription-id', sub.id),
          bool('recurring', true),
          datetime('created-at', toMs(t.createdAt, nowMs)),
        ]),
      ),
    ),
    array('add-ons', []),
    array('discounts', []),
    array('status-history', []),
    nil('description'),
  ]);
}

export function notificationXml(kind: string, subjectXml: string, timestampMs: number): string {
  return document(node('notification', [datetime('timestamp', timestampMs), `<kind>${escapeXml(kind)}</kind>`, `<subject>${subjectXml}</subject>`]));
}

/** Ruby's Base64.encode64: lines of 60 characters, each ending in a newline. */
export function encodePayload(xml: string): string {
  const b64 = Buffer.from(xml, 'utf8').toString('base64');
  let out = '';
  for (let i = 0; i < b64.length; i += 60) out += `${b64.slice(i, i + 60)}\n`;
  return out;
}

export function signPayload(keys: WebhookKeys, payload: string): string {
  const key = createHash('sha1').update(keys.privateKey, 'utf8').digest();
  return `${keys.publicKey}|${createHmac('sha1', key).update(payload, 'utf8').digest('hex')}`;
}

function subjectXmlFor(kind: string, subject: WebhookSubject, nowMs: number): string {
  if (subject.xml !== undefined) return subject.xml;
  if (subject.subscription) return subscriptionXml(subject.subscription, kind, nowMs);
  if (kind === 'check') return bool('check', true);
  throw new Error(`webhook ${kind}: give a subscription or raw subject xml`);
}

/** A signed `bt_signature` / `bt_payload` pair for `kind`, timestamped `now` (ms). */
export function buildSignedWebhook(keys: WebhookKeys, kind: string, subject: WebhookSubject, now: number = Date.now()): SignedWebhook {
  const xml = notificationXml(kind, subjectXmlFor(kind, subject, now), now);
  const bt_payload = encodePayload(xml);
  return { bt_signature: signPayload(keys, bt_payload), bt_payload, xml, kind, timestamp: new Date(now).toISOString() };
}

export async function postSignedWebhook(url: string | undefined, webhook: SignedWebhook, timeoutMs: number): Promise<WebhookDelivery> {
  const started = Date.now();
  const base = { kind: webhook.kind, url: url ?? null, delivered_at: started, bt_signature: webhook.bt_signature, bt_payload: webhook.bt_payload };
  if (!url) return { ...base, status: 0, ok: false, error: 'no webhook endpoint configured', duration_ms: 0 };
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'Braintree Webhooks' },
      body: new URLSearchParams({ bt_signature: webhook.bt_signature, bt_payload: webhook.bt_payload }).toString(),
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.arrayBuffer().catch(() => undefined);
    return { ...base, status: res.status, ok: res.status >= 200 && res.status < 300, duration_ms: Date.now() - started };
  } catch (err) {
    return { ...base, status: 0, ok: false, error: err instanceof Error ? err.message : String(err), duration_ms: Date.now() - started };
  }
}
