// Applies one stored Braintree webhook (enqueued by POST /webhooks/braintree in the transaction that stored it).
// Payload: ids only. Safe to run twice: the row is locked and a processed row is left alone.
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { processBraintreeWebhook } from '../../app/billing/processors/braintree/webhooks';

const payloadSchema = z.strictObject({ webhookEventId: z.uuid() });

export const braintreeProcessWebhook: Task = async (payload, helpers) => {
  const parsed = payloadSchema.safeParse(payload);
  if (!parsed.success) {
    helpers.logger.error(`braintree__process_webhook: invalid payload ${JSON.stringify(payload)}`);
    return;
  }
  const result = await helpers.withPgClient((client) => processBraintreeWebhook(client, parsed.data.webhookEventId));
  if (result.status === 'not_found') helpers.logger.warn(`braintree__process_webhook: webhook event ${parsed.data.webhookEventId} does not exist`);
};
