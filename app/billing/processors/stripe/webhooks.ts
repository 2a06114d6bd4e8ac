// Stripe webhooks, from the wire to the ledger. The endpoint verifies the signature (5-minute tolerance), stores the
// event once by Stripe event id and enqueues its processing job in the same transaction; the job applies it
// (./webhook-processing.ts): meter error reports (./meter-error-reports.ts) move the named events to `failed`,
// subscription events (./subscription-events.ts) upsert the subscription.
// Decisions (plan rule, ordering, notes on the webhook row): docs/decisions/ (Stripe webhooks ADR).
import type pg from 'pg';
import Stripe from 'stripe';
import { z } from 'zod';
import { isStorableText } from '../../validation';
import { addJob, withTransaction, type Queryable } from '../../db';
import { recordOpsEvents } from '../../ops-events';
import { firstLine } from './webhook-types';

export const STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300;
export const PROCESS_STRIPE_WEBHOOK_TASK = 'stripe__process_webhook';

export { METER_ERROR_EVENT_TYPES } from './meter-error-reports';
export { EventFetchFailed, processStripeWebhookEvent, type ProcessStripeWebhookDeps, type ProcessStripeWebhookResult } from './webhook-processing';

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
