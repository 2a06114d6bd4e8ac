// Closes windows: authors their invoices, moves them to `closed` and enqueues their settlement. Payload: one
// window id (webhooks, the desk) or up to CLOSE_BATCH_SIZE of them (the crontab's batches), ids only.
// Safe to run twice: a window no longer open is left alone.
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { CLOSE_BATCH_SIZE, closeWindowNow, closeWindowsNow } from '../../app/billing/windows/invoices';

const payloadSchema = z.union([
  z.strictObject({ windowId: z.uuid() }),
  z.strictObject({ windowIds: z.array(z.uuid()).min(1).max(CLOSE_BATCH_SIZE) }),
]);

export const braintreeCloseWindow: Task = async (payload, helpers) => {
  const parsed = payloadSchema.safeParse(payload);
  if (!parsed.success) {
    helpers.logger.error(`braintree__close_window: invalid payload ${JSON.stringify(payload)}`);
    return;
  }
  if ('windowId' in parsed.data) {
    const { windowId } = parsed.data;
    const result = await helpers.withPgClient((client) => closeWindowNow(client, windowId));
    if (result.status === 'not_found') helpers.logger.warn(`braintree__close_window: window ${windowId} does not exist`);
    return;
  }
  const { windowIds } = parsed.data;
  try {
    const results = await helpers.withPgClient((client) => closeWindowsNow(client, windowIds));
    const missing = windowIds.filter((_, i) => results[i]!.status === 'not_found');
    if (missing.length > 0) helpers.logger.warn(`braintree__close_window: windows ${missing.join(', ')} do not exist`);
  } catch (batchError) {
    // One window must not hold back the others: close each alone; the job fails (and is retried) only for the
    // windows that still fail, and a retry finds the others closed.
    const failed: string[] = [];
    for (const windowId of windowIds) {
      try {
        await helpers.withPgClient((client) => closeWindowNow(client, windowId));
      } catch (error) {
        failed.push(windowId);
        helpers.logger.error(`braintree__close_window: window ${windowId}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    if (failed.length > 0) throw new Error(`could not close ${failed.length} of ${windowIds.length} windows (${failed.join(', ')}); first error: ${batchError instanceof Error ? batchError.message : String(batchError)}`);
  }
};
