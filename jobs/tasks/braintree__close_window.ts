// Closes one window: authors its invoice, moves it to `closed` and enqueues its settlement, in one transaction.
// Payload: ids only. Safe to run twice: a window no longer open is left alone.
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { closeWindowNow } from '../../app/billing/windows/invoices';

const payloadSchema = z.strictObject({ windowId: z.uuid() });

export const braintreeCloseWindow: Task = async (payload, helpers) => {
  const parsed = payloadSchema.safeParse(payload);
  if (!parsed.success) {
    helpers.logger.error(`braintree__close_window: invalid payload ${JSON.stringify(payload)}`);
    return;
  }
  const result = await helpers.withPgClient((client) => closeWindowNow(client, parsed.data.windowId));
  if (result.status === 'not_found') helpers.logger.warn(`braintree__close_window: window ${parsed.data.windowId} does not exist`);
};
