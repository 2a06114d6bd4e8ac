// Stripe webhooks, from the wire to the ledger. The endpoint verifies the signature (5-minute tolerance), stores the
// event once by Stripe event id and enqueues its processing job in the same transaction; the job applies it:
// meter error reports move the named events to `failed`, subscription events upsert the subscription.
// Decisions (plan rule, ordering, notes on the webhook row): docs/decisions/ (Stripe webhooks ADR).
import type pg from 'pg';
import Stripe from 'stripe';
import { z } from 'zod';
import { isStorableText } from '../../validation';
import { addJob, withTransaction, type Queryable } from '../../db';
import { recordOpsEvents, type OpsEventInput } from '../../ops-events';

export const STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300;
export const PROCESS_STRIPE_WEBHOOK_TASK = 'stripe__process_webhook';

/** Thin events (event destinations, `object: 'v2.core.event'`) that carry meter error reports. */
export const METER_ERROR_EVENT_TYPES = ['v1.billing.meter.error_report_triggered', 'v1.billing.meter.no_meter_found'] as const;

// Stripe names a duplicate only by this message (no distinctive code); the simulator adds `duplicate_identifier`.
// Such an error confirms Stripe already counted the identifier, so it must never fail our event.
const ALREADY_EXISTS = /^An event already exists with identifier/i;
const DUPLICATE_CODES = new Set(['duplicate_identifier']);

// ───────────────────────────── verification ─────────────────────────────

export type WebhookRejectReason =
  | 'missing_signature'
  | 'malformed_signature'
  | 'signature_mismatch'
  | 'timestamp_outside_tolerance'
  | 'malformed_payload'
  | 'payload_too_large';

export interface VerifiedStripeEvent {
  id: string;
  type: string;
  /** `snapshot`: a classic event (`object: 'event'`) with `data.object`; `thin`: an event notification. */
  kind: 'snapshot' | 'thin';
  /** The event JSON exactly as Stripe signed it (parsed). */
  payload: Record<string, unknown>;
}

export type StripeWebhookVerification =
  | { ok: true; event: VerifiedStripeEvent }
  | { ok: false; reason: WebhookRejectReason; message: string; signatureTimestamp: number | null };

/**
 * Verifies a delivery with the SDK: `webhooks.constructEvent` for classic events, `parseEventNotification` for thin
 * events (constructEvent refuses those by design; both run the same HMAC and tolerance check). Never throws for a
 * bad delivery: the result says why it was refused.
 */
export function verifyStripeWebhook(
  stripe: Stripe,
  rawBody: Buffer,
  header: string | undefined,
  secret: string,
  opts: { toleranceSeconds?: number; receivedAtMs?: number } = {},
): StripeWebhookVerification {
  const tolerance = opts.toleranceSeconds ?? STRIPE_WEBHOOK_TOLERANCE_SECONDS;
  const signatureTimestamp = headerTimestamp(header);
  const refuse = (reason: WebhookRejectReason, message: string): StripeWebhookVerification => ({ ok: false, reason, message, signatureTimestamp });
  if (!header || header.trim() === '') return refuse('missing_signature', 'No Stripe-Signature header was sent.');

  // Only to choose the SDK entry point: nothing from the body is trusted before the signature is checked.
  let object: unknown;
  try {
    object = (JSON.parse(rawBody.toString('utf8')) as { object?: unknown } | null)?.object;
  } catch {
    object = undefined;
  }
  let parsed: unknown;
  try {
    if (object === 'v2.core.event') {
      stripe.parseEventNotification(rawBody, header, secret, tolerance, undefined, opts.receivedAtMs);
    } else {
      stripe.webhooks.constructEvent(rawBody, header, secret, tolerance, undefined, opts.receivedAtMs);
    }
    // The SDK's return values carry helper functions; what we store is the signed JSON itself.
    parsed = JSON.parse(rawBody.toString('utf8'));
  } catch (error) {
    if (error instanceof Stripe.errors.StripeSignatureVerificationError) {
      const message = firstLine(error.message);
      return refuse(signatureReason(message), message);
    }
    return refuse('malformed_payload', firstLine(error instanceof Error ? error.message : String(error)));
  }
  const shape = z
    .object({ id: z.string().min(1).max(255), type: z.string().min(1).max(255), object: z.enum(['event', 'v2.core.event']) })
    .safeParse(parsed);
  if (!shape.success) return refuse('malformed_payload', 'The signed body is not a Stripe event (id, type, object).');
  // Signed, but holding text PostgreSQL cannot store as sent (U+0000, a lone surrogate): refused now, as a 400,
  // rather than failing the insert with a 5xx that would have the sender deliver it again forever.
  if (!storableJson(parsed)) {
    return refuse('malformed_payload', 'The signed body holds text that cannot be stored as sent (U+0000 or a lone surrogate), or is nested more than 64 levels deep.');
  }
  return {
    ok: true,
    event: {
      id: shape.data.id,
      type: shape.data.type,
      kind: shape.data.object === 'v2.core.event' ? 'thin' : 'snapshot',
      payload: parsed as Record<string, unknown>,
    },
  };
}

function storableJson(value: unknown, depth = 0): boolean {
  if (depth > 64) return false;
  if (typeof value === 'string') return isStorableText(value);
  if (Array.isArray(value)) return value.every((v) => storableJson(v, depth + 1));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>).every(([k, v]) => isStorableText(k) && storableJson(v, depth + 1));
  }
  return true;
}

function signatureReason(message: string): WebhookRejectReason {
  if (/tolerance/i.test(message)) return 'timestamp_outside_tolerance';
  if (/no stripe-signature header/i.test(message)) return 'missing_signature';
  if (/no webhook payload/i.test(message)) return 'malformed_payload';
  if (/matching the expected signature/i.test(message)) return 'signature_mismatch';
  return 'malformed_signature';
}

function headerTimestamp(header: string | undefined): number | null {
  const match = header ? /(?:^|,)\s*t=(\d{1,12})(?:,|$)/.exec(header) : null;
  return match ? Number(match[1]) : null;
}

function firstLine(message: string): string {
  return (message.split('\n')[0] ?? '').trim().slice(0, 300);
}

// ───────────────────────────── storing and refusing ─────────────────────────────

/**
 * Stores a verified event once per Stripe event id and enqueues its processing job in the same transaction.
 * A redelivery (Stripe retries until it gets a 2xx) finds the stored row and adds nothing.
 */
export async function storeStripeWebhook(pool: pg.Pool, event: VerifiedStripeEvent): Promise<{ webhookEventId: string; duplicate: boolean }> {
  return withTransaction(pool, async (client) => {
    const inserted = await client.query<{ id: string }>(
      `INSERT INTO webhook_events (id, processor, processor_event_id, type, payload)
       VALUES (gen_random_uuid(), 'stripe', $1, $2, $3::jsonb)
       ON CONFLICT (processor, processor_event_id) DO NOTHING
       RETURNING id`,
      [event.id, event.type, JSON.stringify(event.payload)],
    );
    const row = inserted.rows[0];
    if (row) {
      await addJob(client, PROCESS_STRIPE_WEBHOOK_TASK, { webhookEventId: row.id });
      return { webhookEventId: row.id, duplicate: false };
    }
    const existing = await client.query<{ id: string }>(
      `SELECT id FROM webhook_events WHERE processor = 'stripe' AND processor_event_id = $1`,
      [event.id],
    );
    return { webhookEventId: existing.rows[0]!.id, duplicate: true };
  });
}

export interface WebhookRejection {
  reason: WebhookRejectReason;
  message: string;
  /** The `t=` of the Stripe-Signature header (never the header itself: it holds the signature). */
  signatureTimestamp?: number | null;
  bodyBytes?: number;
  remoteAddress?: string | null;
}

/** One `webhook_rejected` ops event per refused delivery; metadata says why, never the secret or the header. */
export async function recordWebhookRejected(db: Queryable, rejection: WebhookRejection, nowMs = Date.now()): Promise<void> {
  const metadata: Record<string, unknown> = { reason: rejection.reason, message: rejection.message };
  if (rejection.signatureTimestamp != null) {
    metadata.signature_timestamp = rejection.signatureTimestamp;
    metadata.signature_age_seconds = Math.floor(nowMs / 1000) - rejection.signatureTimestamp;
  }
  if (rejection.bodyBytes !== undefined) metadata.body_bytes = rejection.bodyBytes;
  if (rejection.remoteAddress) metadata.remote_address = rejection.remoteAddress;
  await recordOpsEvents(db, [{ type: 'webhook_rejected', processor: 'stripe', source: 'endpoint', subjectType: 'webhook', metadata }]);
}

// ───────────────────────────── processing ─────────────────────────────

export interface ProcessStripeWebhookDeps {
  /**
   * Fetches thin events that arrive without `data` (Stripe's event notifications carry only ids; the full event
   * comes from `GET /v2/core/events/:id`). Without it such events are recorded as not processable.
   */
  stripe?: Stripe;
}

export type ProcessStripeWebhookResult =
  | { status: 'processed'; note: string | null }
  | { status: 'already_processed' | 'not_found' }
  | { status: 'not_applied'; code: string; message: string };

/** A definitive reason the event cannot be applied; retrying the job would not change it. */
class NotApplicable extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'NotApplicable';
  }
}

interface StoredWebhook {
  id: string;
  processor_event_id: string;
  type: string;
  payload: Record<string, unknown>;
  processed_at: Date | null;
}

/**
 * Applies one stored Stripe event. Safe to run twice and concurrently: the row is locked and `processed_at` is set
 * in the transaction that applies it, so a second run does nothing. Definitive problems (unknown customer, no
 * plan, malformed data) are written to the row's `last_error` with one `webhook_rejected` ops event and leave it
 * unprocessed (an operator can replay it once fixed); only transient errors throw, for the job to retry.
 */
export async function processStripeWebhookEvent(
  client: pg.ClientBase,
  webhookEventId: string,
  deps: ProcessStripeWebhookDeps = {},
): Promise<ProcessStripeWebhookResult> {
  const counted = await client.query<StoredWebhook>(
    `UPDATE webhook_events SET attempts = attempts + 1
     WHERE id = $1 AND processor = 'stripe' AND processed_at IS NULL
     RETURNING id, processor_event_id, type, payload, processed_at`,
    [webhookEventId],
  );
  const stored = counted.rows[0];
  if (!stored) {
    const exists = await client.query(`SELECT 1 FROM webhook_events WHERE id = $1 AND processor = 'stripe'`, [webhookEventId]);
    return { status: exists.rowCount ? 'already_processed' : 'not_found' };
  }

  let payload = stored.payload;
  try {
    // Any network call happens here, before the transaction: no lock is held across HTTP.
    payload = await withEventData(stored, deps);
  } catch (error) {
    if (error instanceof NotApplicable) return recordNotApplied(client, stored, error);
    await noteTransientError(client, stored.id, error);
    throw error;
  }

  await client.query('BEGIN');
  try {
    const locked = await client.query<{ processed_at: Date | null }>(`SELECT processed_at FROM webhook_events WHERE id = $1 FOR UPDATE`, [stored.id]);
    if (locked.rows[0]?.processed_at) {
      await client.query('COMMIT');
      return { status: 'already_processed' };
    }
    const note = await apply(client, stored, payload);
    await client.query(`UPDATE webhook_events SET processed_at = now(), last_error = $2 WHERE id = $1`, [stored.id, note]);
    await client.query('COMMIT');
    return { status: 'processed', note };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    if (error instanceof NotApplicable) return recordNotApplied(client, stored, error);
    await noteTransientError(client, stored.id, error);
    throw error;
  }
}

async function apply(client: pg.ClientBase, stored: StoredWebhook, payload: Record<string, unknown>): Promise<string | null> {
  if ((METER_ERROR_EVENT_TYPES as readonly string[]).includes(stored.type)) return applyMeterErrorReport(client, stored, payload);
  if (stored.type.startsWith('customer.subscription.')) return applySubscriptionEvent(client, stored, payload);
  return `ignored: Meterdesk does not act on ${stored.type}`;
}

async function withEventData(stored: StoredWebhook, deps: ProcessStripeWebhookDeps): Promise<Record<string, unknown>> {
  const payload = stored.payload;
  if (payload.object !== 'v2.core.event' || isRecord(payload.data)) return payload;
  if (!(METER_ERROR_EVENT_TYPES as readonly string[]).includes(stored.type)) return payload;
  if (!deps.stripe) {
    throw new NotApplicable('event_data_unavailable', `${stored.type} arrived without data and no Stripe client is configured to fetch it`);
  }
  try {
    const event = await deps.stripe.v2.core.events.retrieve(stored.processor_event_id);
    return JSON.parse(JSON.stringify(event)) as Record<string, unknown>;
  } catch (error) {
    const status = (error as { statusCode?: number }).statusCode;
    if (status !== undefined && status >= 400 && status < 500 && status !== 429) {
      throw new NotApplicable('event_fetch_refused', `GET /v2/core/events/${stored.processor_event_id}: ${status} ${(error as Error).message}`);
    }
    throw error;
  }
}

async function recordNotApplied(client: pg.ClientBase, stored: StoredWebhook, failure: NotApplicable): Promise<ProcessStripeWebhookResult> {
  const message = `${failure.code}: ${failure.message}`;
  await client.query('BEGIN');
  try {
    await client.query(`UPDATE webhook_events SET last_error = $2 WHERE id = $1 AND processed_at IS NULL`, [stored.id, message]);
    // Keyed by event and cause: a retried job makes no noise, a different cause after a replay is news.
    await recordOpsEvents(client, [
      {
        type: 'webhook_rejected',
        processor: 'stripe',
        source: 'processing',
        subjectType: 'webhook',
        subjectId: stored.id,
        dedupeKey: `webhook_rejected:${stored.id}:${failure.code}`,
        metadata: { reason: failure.code, message: failure.message, stripe_event_id: stored.processor_event_id, event_type: stored.type },
      },
    ]);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
  return { status: 'not_applied', code: failure.code, message: failure.message };
}

async function noteTransientError(client: pg.ClientBase, id: string, error: unknown): Promise<void> {
  const message = `transient (will retry): ${firstLine(error instanceof Error ? error.message : String(error))}`;
  await client.query(`UPDATE webhook_events SET last_error = $2 WHERE id = $1 AND processed_at IS NULL`, [id, message]).catch(() => {});
}

// ───────────────────────────── meter error reports ─────────────────────────────

const meterErrorData = z.object({
  reason: z.object({
    error_count: z.number().int().nonnegative().optional(),
    error_types: z.array(
      z.object({
        // Open-ended on Stripe's side: any code is kept verbatim.
        code: z.string().min(1),
        error_count: z.number().int().nonnegative().optional(),
        sample_errors: z
          .array(z.object({ error_message: z.string().optional().nullable(), request: z.object({ identifier: z.string().min(1) }) }))
          .default([]),
      }),
    ),
  }),
});

interface MovedEvent {
  id: string;
  identifier: string;
  previous_status: string;
  code: string;
  message: string | null;
}

async function applyMeterErrorReport(client: pg.ClientBase, stored: StoredWebhook, payload: Record<string, unknown>): Promise<string | null> {
  const parsed = meterErrorData.safeParse(payload.data);
  if (!parsed.success) throw new NotApplicable('malformed_event_data', `data.reason does not have the shape of a meter error report: ${parsed.error.issues[0]?.message ?? ''}`);
  const { reason } = parsed.data;

  // One verdict per identifier: the first error naming it wins (a report lists an identifier once per code at most).
  const failures = new Map<string, { code: string; message: string | null }>();
  const alreadyCounted = new Set<string>();
  let sampled = 0;
  for (const type of reason.error_types) {
    for (const sample of type.sample_errors) {
      sampled += 1;
      const identifier = sample.request.identifier;
      if (DUPLICATE_CODES.has(type.code) || ALREADY_EXISTS.test(sample.error_message ?? '')) {
        alreadyCounted.add(identifier);
        continue;
      }
      if (!failures.has(identifier)) failures.set(identifier, { code: type.code, message: sample.error_message ?? null });
    }
  }
  for (const identifier of failures.keys()) alreadyCounted.delete(identifier);

  const identifiers = [...failures.keys()];
  const moved = identifiers.length === 0
    ? []
    : (
        await client.query<MovedEvent>(
          `WITH named AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS n(identifier, code, message)
           ), target AS (
             SELECT m.id, m.status::text AS previous_status, n.identifier, n.code, n.message
             FROM meter_events m JOIN named n ON n.identifier = m.identifier
             WHERE m.processor = 'stripe' AND m.status IN ('pending', 'reported')
             FOR UPDATE OF m
           )
           UPDATE meter_events m
           SET status = 'failed', last_error_code = t.code, last_error_message = t.message, last_error_source = 'webhook'
           FROM target t
           WHERE m.id = t.id AND m.status IN ('pending', 'reported')
           RETURNING m.id, t.identifier, t.previous_status, t.code, t.message`,
          [identifiers, identifiers.map((i) => failures.get(i)!.code), identifiers.map((i) => failures.get(i)!.message)],
        )
      ).rows;

  if (moved.length > 0) {
    await client.query(
      `INSERT INTO event_attempts (id, meter_event_id, source, outcome, error_code, error_message, response)
       SELECT gen_random_uuid(), a.id, 'webhook', 'rejected', a.code, a.message, a.response
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) AS a(id, code, message, response)`,
      [
        moved.map((m) => m.id),
        moved.map((m) => m.code),
        moved.map((m) => m.message),
        moved.map((m) => JSON.stringify({ stripe_event_id: stored.processor_event_id, type: stored.type, code: m.code, error_message: m.message, identifier: m.identifier })),
      ],
    );
    await recordOpsEvents(
      client,
      moved.map(
        (m): OpsEventInput => ({
          type: 'meter_reporting_failed',
          processor: 'stripe',
          source: 'webhook',
          subjectType: 'meter_event',
          subjectId: m.id,
          metadata: {
            code: m.code,
            message: m.message,
            identifier: m.identifier,
            previous_status: m.previous_status,
            stripe_event_id: stored.processor_event_id,
            webhook_event_id: stored.id,
          },
        }),
      ),
    );
  }

  // What the report named but did not move: events we never had, and events in no state to fail.
  const movedIds = new Set(moved.map((m) => m.identifier));
  const unmoved = identifiers.filter((i) => !movedIds.has(i));
  const known = unmoved.length === 0
    ? new Map<string, string>()
    : new Map(
        (
          await client.query<{ identifier: string; status: string }>(
            `SELECT identifier, status::text AS status FROM meter_events WHERE identifier = ANY($1::text[])`,
            [unmoved],
          )
        ).rows.map((r) => [r.identifier, r.status]),
      );
  const unknown = unmoved.filter((i) => !known.has(i));
  const notes: string[] = [];
  if (unknown.length > 0) notes.push(`${unknown.length} identifier(s) not in the ledger, ignored: ${sample(unknown)}`);
  if (known.size > 0) notes.push(`${known.size} already in no state to fail: ${sample([...known].map(([i, s]) => `${i} (${s})`))}`);
  if (alreadyCounted.size > 0) notes.push(`${alreadyCounted.size} duplicate(s) Stripe already counted, left as they are: ${sample([...alreadyCounted])}`);
  const total = reason.error_count ?? reason.error_types.reduce((n, t) => n + (t.error_count ?? t.sample_errors.length), 0);
  if (total > sampled) notes.push(`${total - sampled} error(s) not named in the report's samples`);
  return notes.length > 0 ? `moved ${moved.length} to failed; ${notes.join('; ')}` : null;
}

function sample(values: string[], max = 10): string {
  return values.length <= max ? values.join(', ') : `${values.slice(0, max).join(', ')} and ${values.length - max} more`;
}

// ───────────────────────────── subscriptions ─────────────────────────────

const STATUSES = {
  trialing: 'trialing',
  active: 'active',
  past_due: 'past_due',
  canceled: 'canceled',
  incomplete: 'incomplete',
  // Terminal on Stripe's side: the subscription never started and never will.
  incomplete_expired: 'canceled',
  unpaid: 'unpaid',
  paused: 'paused',
} as const;
type SubscriptionStatus = (typeof STATUSES)[keyof typeof STATUSES];

const metadata = z.record(z.string(), z.unknown()).nullish();
// Up to 9999-12-31T23:59:59Z: past it PostgreSQL's to_timestamp fails, and the job would be retried forever.
const epoch = z.number().int().nonnegative().max(253_402_300_799).nullish();
const subscriptionItem = z.object({
  current_period_start: epoch,
  current_period_end: epoch,
  price: z
    .looseObject({
      lookup_key: z.string().nullish(),
      metadata,
      product: z.union([z.string(), z.looseObject({ metadata })]).nullish(),
    })
    .nullish(),
});
const subscriptionObject = z.looseObject({
  object: z.literal('subscription'),
  id: z.string().min(1).max(255),
  customer: z.union([z.string().min(1), z.looseObject({ id: z.string().min(1) })]),
  status: z.string(),
  metadata,
  items: z.looseObject({ data: z.array(subscriptionItem) }).nullish(),
  // Before API 2025-03-31 the period lived on the subscription; still read when present.
  current_period_start: epoch,
  current_period_end: epoch,
  canceled_at: epoch,
  ended_at: epoch,
});
type SubscriptionObject = z.infer<typeof subscriptionObject>;

async function applySubscriptionEvent(client: pg.ClientBase, stored: StoredWebhook, payload: Record<string, unknown>): Promise<string | null> {
  const data = isRecord(payload.data) ? payload.data : {};
  const parsed = subscriptionObject.safeParse(data.object);
  if (!parsed.success) throw new NotApplicable('malformed_event_data', `data.object is not a subscription: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message ?? ''}`);
  const sub = parsed.data;
  const eventCreated = typeof payload.created === 'number' ? payload.created : 0;

  // Stripe does not deliver in order: an older snapshot must not overwrite a newer one already applied.
  const newer = await client.query<{ processor_event_id: string }>(
    `SELECT processor_event_id FROM webhook_events
     WHERE processor = 'stripe' AND type LIKE 'customer.subscription.%' AND processed_at IS NOT NULL AND id <> $1
       AND payload->'data'->'object'->>'id' = $2
       -- jsonb comparison, not a cast: a row whose created is not a number must not make this query fail
       AND payload->'created' > to_jsonb($3::bigint)
     LIMIT 1`,
    [stored.id, sub.id, eventCreated],
  );
  if (newer.rows[0]) return `superseded: ${newer.rows[0].processor_event_id} (newer) was already applied; not applied`;

  const processorCustomerId = typeof sub.customer === 'string' ? sub.customer : sub.customer.id;
  const customer = await client.query<{ id: string }>(
    `SELECT id FROM customers WHERE processor = 'stripe' AND processor_customer_id = $1`,
    [processorCustomerId],
  );
  const customerId = customer.rows[0]?.id;
  if (!customerId) throw new NotApplicable('unknown_customer', `no Stripe customer ${processorCustomerId} in Meterdesk (subscription ${sub.id})`);

  const notes: string[] = [];
  const plan = await resolvePlan(client, sub);
  const period = plan.item ? itemPeriod(plan.item) : null;
  const chosen = period ?? firstItemPeriod(sub) ?? legacyPeriod(sub);
  if (!chosen) throw new NotApplicable('no_current_period', `subscription ${sub.id} has no current period on its items`);
  if (chosen.end <= chosen.start) throw new NotApplicable('invalid_period', `subscription ${sub.id} period ends before it starts`);

  const deleted = stored.type === 'customer.subscription.deleted';
  let status: SubscriptionStatus | null = deleted ? 'canceled' : (STATUSES[sub.status as keyof typeof STATUSES] ?? null);
  if (!status) notes.push(`unknown Stripe status "${sub.status}": status kept`);
  const canceledSec = status === 'canceled' ? (sub.canceled_at ?? sub.ended_at ?? (eventCreated || null)) : null;

  if (!plan.planId) {
    const existing = await client.query(`SELECT 1 FROM subscriptions WHERE processor = 'stripe' AND processor_subscription_id = $1`, [sub.id]);
    if (!existing.rowCount) {
      throw new NotApplicable('unknown_plan', `no Meterdesk plan for new subscription ${sub.id} (looked for: ${plan.looked.join(', ') || 'nothing to match'})`);
    }
  }

  const upsert = await client.query<{ id: string }>(
    `INSERT INTO subscriptions (id, customer_id, plan_id, processor, processor_subscription_id, status,
                                current_period_start, current_period_end, canceled_at, updated_at)
     VALUES (gen_random_uuid(), $1, $2::uuid, 'stripe', $3, COALESCE($4::subscription_status, 'incomplete'),
             to_timestamp($5), to_timestamp($6), to_timestamp($7), now())
     ON CONFLICT (processor, processor_subscription_id) DO UPDATE SET
       plan_id = COALESCE($2::uuid, subscriptions.plan_id),
       -- canceled is terminal at Stripe: nothing revives it
       status = CASE WHEN subscriptions.status = 'canceled' THEN subscriptions.status
                     ELSE COALESCE($4::subscription_status, subscriptions.status) END,
       current_period_start = EXCLUDED.current_period_start,
       current_period_end = EXCLUDED.current_period_end,
       canceled_at = CASE WHEN subscriptions.status = 'canceled' THEN subscriptions.canceled_at ELSE EXCLUDED.canceled_at END,
       updated_at = now()
     WHERE subscriptions.customer_id = EXCLUDED.customer_id
     RETURNING id`,
    [customerId, plan.planId, sub.id, status, chosen.start, chosen.end, canceledSec],
  );
  if (!upsert.rows[0]) throw new NotApplicable('subscription_conflict', `subscription ${sub.id} belongs to another customer in Meterdesk`);
  if (!plan.planId) notes.push(`no plan matched (${plan.looked.join(', ') || 'nothing to match'}): plan kept`);
  return notes.length > 0 ? notes.join('; ') : null;
}

type Item = z.infer<typeof subscriptionItem>;

/**
 * The plan rule (ADR): for each item in order, the price's `lookup_key`, then the price's `metadata.plan`, then
 * the product's `metadata.plan` (when the product is expanded); then the subscription's `metadata.plan`. The first
 * candidate that is a Meterdesk plan code wins, and that item's period is the subscription's period.
 */
async function resolvePlan(client: pg.ClientBase, sub: SubscriptionObject): Promise<{ planId: string | null; item: Item | null; looked: string[] }> {
  const candidates: Array<{ code: string; item: Item | null }> = [];
  for (const item of sub.items?.data ?? []) {
    const price = item.price;
    if (!price) continue;
    const product = typeof price.product === 'object' && price.product ? price.product : null;
    for (const code of [price.lookup_key, price.metadata?.plan, product?.metadata?.plan]) {
      if (typeof code === 'string' && code !== '') candidates.push({ code, item });
    }
  }
  if (typeof sub.metadata?.plan === 'string' && sub.metadata.plan !== '') candidates.push({ code: sub.metadata.plan, item: null });
  const looked = [...new Set(candidates.map((c) => c.code))];
  if (looked.length === 0) return { planId: null, item: null, looked };
  const plans = await client.query<{ id: string; code: string }>(`SELECT id, code FROM plans WHERE code = ANY($1::text[])`, [looked]);
  const byCode = new Map(plans.rows.map((p) => [p.code, p.id]));
  for (const c of candidates) {
    const planId = byCode.get(c.code);
    if (planId) return { planId, item: c.item, looked };
  }
  return { planId: null, item: null, looked };
}

function itemPeriod(item: Item): { start: number; end: number } | null {
  return item.current_period_start != null && item.current_period_end != null ? { start: item.current_period_start, end: item.current_period_end } : null;
}

function firstItemPeriod(sub: SubscriptionObject) {
  for (const item of sub.items?.data ?? []) {
    const p = itemPeriod(item);
    if (p) return p;
  }
  return null;
}

function legacyPeriod(sub: SubscriptionObject) {
  return sub.current_period_start != null && sub.current_period_end != null ? { start: sub.current_period_start, end: sub.current_period_end } : null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
