// Applies one stored Stripe webhook (enqueued by POST /webhooks/stripe in the transaction that stored it).
// Payload: ids only. Safe to run twice: the domain locks the row and a processed row is left alone.
import type { Task } from 'graphile-worker';
import type Stripe from 'stripe';
import { z } from 'zod';
import { processStripeWebhookEvent } from '../../app/billing/processors/stripe/webhooks';

const payloadSchema = z.strictObject({ webhookEventId: z.uuid() });

export interface ProcessWebhookTaskDeps {
  /** Fetches thin events (meter error reports arrive as notifications without data). Required. */
  stripe: Stripe;
}

/**
 * Refuses to build without a Stripe client: a worker that cannot fetch thin events must not take these jobs (it
 * would leave meter error reports unapplied, or worse, mark them done).
 */
export function createProcessWebhookTask(deps: ProcessWebhookTaskDeps): Task {
  if (!deps?.stripe) throw new TypeError('stripe__process_webhook needs a Stripe client to fetch thin events (GET /v2/core/events/:id)');
  return async (payload, helpers) => {
    const parsed = payloadSchema.safeParse(payload);
    if (!parsed.success) {
      // A malformed payload never becomes valid: retrying it would only fill the log.
      helpers.logger.error(`stripe__process_webhook: invalid payload ${JSON.stringify(payload)}: ${parsed.error.issues[0]?.message ?? ''}`);
      return;
    }
    const { webhookEventId } = parsed.data;
    const result = await helpers.withPgClient((client) => processStripeWebhookEvent(client, webhookEventId, deps));
    if (result.status === 'not_found') helpers.logger.warn(`stripe__process_webhook: webhook event ${webhookEventId} does not exist`);
  };
}
