// Braintree webhooks, from the wire to the windows. The endpoint verifies bt_signature / bt_payload with the SDK,
// stores the notification once and enqueues `braintree__process_webhook` in the same transaction; the job applies
// it: a renewal (`subscription_charged_successfully` / `subscription_went_active`) moves the subscription to its new
// period, closing the previous period's window and opening the new one; other subscription notifications update
// the status. Braintree notifications carry no id, so a delivery is identified by the SHA-256 of its signed
// payload: a redelivery of the same notification is the same bytes. Decisions: docs/decisions (Braintree windows).
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { addJob, withTransaction, type Queryable } from '../../db';
import { isStorableText } from '../../validation';
import { recordOpsEvents } from '../../ops-events';
import { renewSubscriptionPeriod } from '../../windows/windows';

export const PROCESS_BRAINTREE_WEBHOOK_TASK = 'braintree__process_webhook';

/** Kinds that announce a new subscription period (a renewal window to open). */
export const RENEWAL_KINDS = ['subscription_charged_successfully', 'subscription_went_active'] as const;

/** Braintree's subscription statuses as ours. */
const STATUSES: Record<string, string> = {
  Active: 'active',
  Canceled: 'canceled',
  Expired: 'canceled',
  'Past Due': 'past_due',
  Pending: 'incomplete',
};

export interface BraintreeSubscriptionSummary {
  id: string;
  status: string | null;
  billingPeriodStartDate: string | null;
  billingPeriodEndDate: string | null;
  nextBillingDate: string | null;
  paidThroughDate: string | null;
}

/** What is kept of a verified notification: its kind, time, subscription fields, and the signed payload itself. */
export interface VerifiedBraintreeNotification {
  /** `bt_` + SHA-256 (hex) of bt_payload. */
  id: string;
  kind: string;
  timestamp: string | null;
  subscription: BraintreeSubscriptionSummary | null;
  btPayload: string;
}

export type BraintreeWebhookVerification =
  | { ok: true; notification: VerifiedBraintreeNotification }
  | { ok: false; reason: 'missing_signature' | 'signature_mismatch' | 'malformed_payload'; message: string };

/** The SDK's parser, as the processor exposes it (kept narrow so tests and the endpoint share it). */
export interface WebhookParser {
  parseWebhook(signature: string, payload: string): Promise<unknown>;
  /** Braintree's destination-URL check; absent = GET is refused. */
  verifyChallenge?(challenge: string): string;
}

export function braintreeNotificationId(btPayload: string): string {
  return `bt_${createHash('sha256').update(btPayload.replace(/\s+$/, '')).digest('hex')}`;
}

/** A real calendar date (`2026-02-30` is not one: as an instant it is NaN, and a job applying it would fail forever). */
function dateOrNull(v: unknown): string | null {
  if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}/.test(v)) return null;
  const date = v.slice(0, 10);
  const instant = new Date(`${date}T00:00:00.000Z`);
  return !Number.isNaN(instant.getTime()) && instant.toISOString().slice(0, 10) === date ? date : null;
}

/** Verifies a delivery with the SDK (`webhookNotification.parse`); never throws for a bad delivery. */
export async function verifyBraintreeWebhook(parser: WebhookParser, signature: string | null, payload: string | null): Promise<BraintreeWebhookVerification> {
  if (!signature || !payload) return { ok: false, reason: 'missing_signature', message: 'bt_signature and bt_payload are both required' };
  let parsed: unknown;
  try {
    parsed = await parser.parseWebhook(signature, payload);
  } catch (error) {
    const e = error as { type?: string; message?: string };
    const message = (e.message ?? String(error)).split('\n')[0]!.slice(0, 300);
    return { ok: false, reason: e.type === 'invalidSignatureError' ? 'signature_mismatch' : 'malformed_payload', message };
  }
  const n = parsed as { kind?: unknown; timestamp?: unknown; subscription?: Record<string, unknown> | null } | null;
  if (!n || typeof n.kind !== 'string' || n.kind === '') return { ok: false, reason: 'malformed_payload', message: 'the notification has no kind' };
  const s = n.subscription;
  const notification: VerifiedBraintreeNotification = {
    id: braintreeNotificationId(payload),
    kind: n.kind,
    timestamp: typeof n.timestamp === 'string' ? n.timestamp : n.timestamp instanceof Date && !Number.isNaN(n.timestamp.getTime()) ? n.timestamp.toISOString() : null,
    subscription:
      s && typeof s.id === 'string'
        ? {
            id: s.id,
            status: typeof s.status === 'string' ? s.status : null,
            billingPeriodStartDate: dateOrNull(s.billingPeriodStartDate),
            billingPeriodEndDate: dateOrNull(s.billingPeriodEndDate),
            nextBillingDate: dateOrNull(s.nextBillingDate),
            paidThroughDate: dateOrNull(s.paidThroughDate),
          }
        : null,
    btPayload: payload,
  };
  // Signed, but holding text PostgreSQL cannot store as sent: a 400 now, not a failed insert (a 5xx Braintree
  // would redeliver for days).
  const texts = [notification.kind, notification.timestamp, notification.btPayload, ...Object.values(notification.subscription ?? {})];
  if (texts.some((t) => typeof t === 'string' && !isStorableText(t))) {
    return { ok: false, reason: 'malformed_payload', message: 'the notification holds text that cannot be stored as sent (U+0000 or a lone surrogate)' };
  }
  return { ok: true, notification };
}

/** Stores a verified notification once and enqueues its processing in the same transaction. */
export async function storeBraintreeWebhook(pool: pg.Pool, n: VerifiedBraintreeNotification): Promise<{ webhookEventId: string; duplicate: boolean }> {
  return withTransaction(pool, async (client) => {
    const payload = { kind: n.kind, timestamp: n.timestamp, subscription: n.subscription, bt_payload: n.btPayload };
    const inserted = await client.query<{ id: string }>(
      `INSERT INTO webhook_events (id, processor, processor_event_id, type, payload)
       VALUES (gen_random_uuid(), 'braintree', $1, $2, $3::jsonb)
       ON CONFLICT (processor, processor_event_id) DO NOTHING RETURNING id`,
      [n.id, n.kind, JSON.stringify(payload)],
    );
    if (inserted.rows[0]) {
      await addJob(client, PROCESS_BRAINTREE_WEBHOOK_TASK, { webhookEventId: inserted.rows[0].id });
      return { webhookEventId: inserted.rows[0].id, duplicate: false };
    }
    const existing = await client.query<{ id: string }>(`SELECT id FROM webhook_events WHERE processor = 'braintree' AND processor_event_id = $1`, [n.id]);
    return { webhookEventId: existing.rows[0]!.id, duplicate: true };
  });
}

/** One `webhook_rejected` per refused delivery (never the signature itself). */
export async function recordBraintreeWebhookRejected(db: Queryable, rejection: { reason: string; message: string; bodyBytes?: number; remoteAddress?: string | null }): Promise<void> {
  await recordOpsEvents(db, [
    {
      type: 'webhook_rejected',
      processor: 'braintree',
      source: 'endpoint',
      subjectType: 'webhook',
      metadata: { reason: rejection.reason, message: rejection.message, body_bytes: rejection.bodyBytes ?? null, remote_address: rejection.remoteAddress ?? null },
    },
  ]);
}

export type ProcessBraintreeWebhookResult =
  | { status: 'processed'; note: string | null }
  | { status: 'already_processed' | 'not_found' }
  | { status: 'not_applied'; code: string; message: string };

class NotApplicable extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

interface StoredWebhook {
  id: string;
  type: string;
  payload: { kind: string; subscription: BraintreeSubscriptionSummary | null };
}

/** A Braintree calendar date as the instant it starts (UTC; see the ADR on time zones). */
function dayStart(date: string): Date {
  return new Date(`${date}T00:00:00.000Z`);
}

/**
 * Applies one stored Braintree notification. Safe to run twice: the row is locked and `processed_at` is set in the
 * transaction that applies it. Definitive problems (unknown subscription, no period) are kept on the row with one
 * `webhook_rejected` ops event; transient errors throw for the job to retry.
 */
export async function processBraintreeWebhook(pool: pg.Pool | pg.ClientBase, webhookEventId: string, opts: { now?: Date } = {}): Promise<ProcessBraintreeWebhookResult> {
  const now = opts.now ?? new Date();
  const run = async (client: pg.ClientBase): Promise<ProcessBraintreeWebhookResult> => {
    await client.query('BEGIN');
    try {
      const locked = await client.query<StoredWebhook & { processed_at: Date | null }>(
        `UPDATE webhook_events SET attempts = attempts + 1 WHERE id = $1 AND processor = 'braintree'
         RETURNING id, type, payload, processed_at`,
        [webhookEventId],
      );
      const stored = locked.rows[0];
      if (!stored) {
        await client.query('ROLLBACK');
        return { status: 'not_found' };
      }
      if (stored.processed_at) {
        await client.query('ROLLBACK');
        return { status: 'already_processed' };
      }
      const note = await apply(client, stored, now);
      await client.query(`UPDATE webhook_events SET processed_at = $2, last_error = $3 WHERE id = $1`, [stored.id, now, note]);
      await client.query('COMMIT');
      return { status: 'processed', note };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      if (!(error instanceof NotApplicable)) {
        await client.query(`UPDATE webhook_events SET last_error = $2 WHERE id = $1 AND processed_at IS NULL`, [webhookEventId, `transient (will retry): ${(error as Error).message}`]).catch(() => {});
        throw error;
      }
      await client.query('BEGIN');
      try {
        await client.query(`UPDATE webhook_events SET last_error = $2, attempts = attempts + 1 WHERE id = $1 AND processed_at IS NULL`, [webhookEventId, `${error.code}: ${error.message}`]);
        await recordOpsEvents(client, [
          {
            type: 'webhook_rejected',
            processor: 'braintree',
            source: 'processing',
            subjectType: 'webhook',
            subjectId: webhookEventId,
            dedupeKey: `webhook_rejected:${webhookEventId}:${error.code}`,
            metadata: { reason: error.code, message: error.message },
          },
        ]);
        await client.query('COMMIT');
      } catch (inner) {
        await client.query('ROLLBACK').catch(() => {});
        throw inner;
      }
      return { status: 'not_applied', code: error.code, message: error.message };
    }
  };
  if ('totalCount' in pool) {
    const client = await pool.connect();
    try {
      return await run(client);
    } finally {
      client.release();
    }
  }
  return run(pool);
}

async function apply(client: pg.ClientBase, stored: StoredWebhook, now: Date): Promise<string | null> {
  const sub = stored.payload.subscription;
  if (!stored.type.startsWith('subscription_')) return `ignored: Meterdesk does not act on ${stored.type}`;
  if (!sub) throw new NotApplicable('malformed_event_data', `${stored.type} carries no subscription`);
  const found = await client.query<{ id: string; status: string }>(
    `SELECT id, status::text AS status FROM subscriptions WHERE processor = 'braintree' AND processor_subscription_id = $1 FOR NO KEY UPDATE`,
    [sub.id],
  );
  const row = found.rows[0];
  if (!row) throw new NotApplicable('unknown_subscription', `no Braintree subscription ${sub.id} in Meterdesk`);

  const notes: string[] = [];
  const status = sub.status ? STATUSES[sub.status] : undefined;
  if (sub.status && !status) notes.push(`unknown Braintree status "${sub.status}": status kept`);

  if ((RENEWAL_KINDS as readonly string[]).includes(stored.type)) {
    const start = sub.billingPeriodStartDate;
    // Braintree's end date is the last day of the period; the next billing date is the first day after it.
    const end = sub.nextBillingDate ?? (sub.billingPeriodEndDate ? new Date(dayStart(sub.billingPeriodEndDate).getTime() + 86_400_000).toISOString().slice(0, 10) : null);
    if (!start || !end) throw new NotApplicable('no_billing_period', `${stored.type} for ${sub.id} has no period dates (billingPeriodStartDate, nextBillingDate / billingPeriodEndDate)`);
    if (dayStart(end) <= dayStart(start)) throw new NotApplicable('invalid_period', `${stored.type} for ${sub.id}: period ends before it starts`);
    const renewal = await renewSubscriptionPeriod(client, { subscriptionId: row.id, periodStart: dayStart(start), periodEnd: dayStart(end), now });
    if (renewal.advanced) {
      const closed = renewal.previous.close?.status === 'closed' ? `closed window ${renewal.previous.window?.id}` : `previous window ${renewal.previous.window?.id ?? 'none'} already ${renewal.previous.window?.state ?? 'absent'}`;
      notes.push(`period ${start} .. ${end}; ${closed}; current window ${renewal.current && renewal.current.status !== 'not_found' ? renewal.current.window.id : 'none'}`);
    } else {
      notes.push(`period ${start} .. ${end} is not newer than the stored one: no renewal`);
    }
  }
  if (status && row.status !== 'canceled') {
    await client.query(
      `UPDATE subscriptions SET status = $2::subscription_status, canceled_at = CASE WHEN $2 = 'canceled' THEN $3 ELSE canceled_at END, updated_at = $3 WHERE id = $1`,
      [row.id, status, now],
    );
  }
  return notes.length > 0 ? notes.join('; ') : null;
}
