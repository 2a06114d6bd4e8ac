// Applies one stored Stripe webhook (enqueued by POST /webhooks/stripe in the transaction that stored it).
// Payload: ids only. Safe to run twice: the domain locks the row and a processed row is left alone.
import type { Task } from 'graphile-worker';
import type Stripe from 'stripe';
import { z } from 'zod';
import { processStripeWebhookEvent } from '../../app/billing/processors/stripe/webhooks';

const payloadSchema = z.strictObject({ webhookEventId: z.uuid() });

export interface ProcessWebhookTaskDeps {
  /** Fetches thin events that arrive without `data` (real Stripe event notifications); optional for tests. */
  stripe?: Stripe;
}

export function createProcessWebhookTask(deps: ProcessWebhookTaskDeps = {}): Task {
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

export const stripeProcessWebhook: Task = createProcessWebhookTask();
