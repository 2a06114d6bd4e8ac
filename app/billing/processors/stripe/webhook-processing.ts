// Applying one stored Stripe webhook (the `stripe__process_webhook` job). Meter error reports are thin events:
// Stripe pushes a notification without `data`, and the event, data and all, is fetched from
// `GET /v2/core/events/:id` on every run (an inline `data` is never trusted: Stripe does not send one, and a
// payload that has one was not built by Stripe). Subscription events are snapshots and carry their object.
import type pg from 'pg';
import type Stripe from 'stripe';
import { recordOpsEvents, type OpsEventInput } from '../../ops-events';
import { applyMeterErrorReport, METER_ERROR_EVENT_TYPES } from './meter-error-reports';
import { applySubscriptionEvent } from './subscription-events';
import { firstLine, NotApplicable, type StoredWebhook } from './webhook-types';

export interface ProcessStripeWebhookDeps {
  /** Fetches thin events (Stripe's event notifications carry only ids; the full event comes from `GET /v2/core/events/:id`). */
  stripe: Stripe;
}

export type ProcessStripeWebhookResult =
  | { status: 'processed'; note: string | null }
  | { status: 'already_processed' | 'not_found' }
  | { status: 'not_applied'; code: string; message: string };

/** The thin event could not be fetched (404, 5xx, timeout, refused connection): the job retries it with backoff. */
export class EventFetchFailed extends Error {
  constructor(
    readonly stripeEventId: string,
    readonly statusCode: number | undefined,
    cause: unknown,
  ) {
    super(`GET /v2/core/events/${stripeEventId} failed${statusCode ? ` (${statusCode})` : ''}: ${firstLine(cause instanceof Error ? cause.message : String(cause))}`, { cause });
    this.name = 'EventFetchFailed';
  }
}

/**
 * Applies one stored Stripe event. Safe to run twice and concurrently: the row is locked and `processed_at` is set
 * in the transaction that applies it, so a second run does nothing. Definitive problems (unknown customer, no
 * plan, malformed data) are written to the row's `last_error` with one `webhook_rejected` ops event and leave it
 * unprocessed (an operator can replay it once fixed); transient errors throw, for the job to retry. A thin event
 * that cannot be fetched is transient (it is never marked processed) and also shows on the desk, once per webhook.
 */
export async function processStripeWebhookEvent(client: pg.ClientBase, webhookEventId: string, deps: ProcessStripeWebhookDeps): Promise<ProcessStripeWebhookResult> {
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
    if (error instanceof EventFetchFailed) await recordFetchFailed(client, stored, error);
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
  if (isMeterErrorReport(stored)) return applyMeterErrorReport(client, stored, payload);
  if (stored.type.startsWith('customer.subscription.')) return applySubscriptionEvent(client, stored, payload);
  return `ignored: Meterdesk does not act on ${stored.type}`;
}

function isMeterErrorReport(stored: StoredWebhook): boolean {
  return (METER_ERROR_EVENT_TYPES as readonly string[]).includes(stored.type);
}

/** The event to apply: for a meter error report, always the one Stripe serves for the notification's id. */
async function withEventData(stored: StoredWebhook, deps: ProcessStripeWebhookDeps): Promise<Record<string, unknown>> {
  if (!isMeterErrorReport(stored)) return stored.payload;
  let event: unknown;
  try {
    event = await deps.stripe.v2.core.events.retrieve(stored.processor_event_id);
  } catch (error) {
    throw new EventFetchFailed(stored.processor_event_id, (error as { statusCode?: number }).statusCode, error);
  }
  return JSON.parse(JSON.stringify(event)) as Record<string, unknown>;
}

async function recordFetchFailed(client: pg.ClientBase, stored: StoredWebhook, failure: EventFetchFailed): Promise<void> {
  // One ops event per webhook however often the job retries: the desk shows it until it is processed.
  await recordOpsEvents(client, [
    processingRejected(stored, 'event_fetch_failed', { message: failure.message, status_code: failure.statusCode ?? null }),
  ]).catch(() => {});
}

async function recordNotApplied(client: pg.ClientBase, stored: StoredWebhook, failure: NotApplicable): Promise<ProcessStripeWebhookResult> {
  const message = `${failure.code}: ${failure.message}`;
  await client.query('BEGIN');
  try {
    await client.query(`UPDATE webhook_events SET last_error = $2 WHERE id = $1 AND processed_at IS NULL`, [stored.id, message]);
    await recordOpsEvents(client, [processingRejected(stored, failure.code, { message: failure.message })]);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
  return { status: 'not_applied', code: failure.code, message: failure.message };
}

/**
 * The `webhook_rejected` ops event (source `processing`) for a stored webhook, keyed by event and cause: a retried job
 * makes no noise, a different cause after a replay is news.
 */
function processingRejected(stored: StoredWebhook, reason: string, details: Record<string, unknown>): OpsEventInput {
  return {
    type: 'webhook_rejected',
    processor: 'stripe',
    source: 'processing',
    subjectType: 'webhook',
    subjectId: stored.id,
    dedupeKey: `webhook_rejected:${stored.id}:${reason}`,
    metadata: { reason, ...details, stripe_event_id: stored.processor_event_id, event_type: stored.type },
  };
}

async function noteTransientError(client: pg.ClientBase, id: string, error: unknown): Promise<void> {
  const message = `transient (will retry): ${firstLine(error instanceof Error ? error.message : String(error))}`;
  await client.query(`UPDATE webhook_events SET last_error = $2 WHERE id = $1 AND processed_at IS NULL`, [id, message]).catch(() => {});
}
