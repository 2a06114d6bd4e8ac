// Settles windows: at most one charge each, through its charge attempt (see app/billing/windows/settlement.ts).
// Payload: one window id (retries, the sweep, operators) or a batch of them (the windows one close job closed), ids
// only. Safe to run twice and concurrently (a per-window lock; a sale is marked sent before it leaves).
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { settleWindow, settleWindows, type SettlementOptions } from '../../app/billing/windows/settlement';

/** The largest batch accepted: a close job's batch (CLOSE_BATCH_SIZE) with room to spare. */
const MAX_BATCH = 200;

const payloadSchema = z.union([
  z.strictObject({ windowId: z.uuid() }),
  z.strictObject({ windowIds: z.array(z.uuid()).min(1).max(MAX_BATCH) }),
]);

/** Needs the Braintree processor, so it is built with the process's services (createTaskList). */
export function createSettleWindowTask(options: SettlementOptions): Task {
  return async (payload, helpers) => {
    const parsed = payloadSchema.safeParse(payload);
    if (!parsed.success) {
      helpers.logger.error(`braintree__settle_window: invalid payload ${JSON.stringify(payload)}`);
      return;
    }
    if ('windowId' in parsed.data) {
      const { windowId } = parsed.data;
      const result = await helpers.withPgClient((client) => settleWindow(client, windowId, options));
      if (result.outcome === 'not_found') helpers.logger.warn(`braintree__settle_window: window ${windowId} does not exist`);
      return;
    }
    const { windowIds } = parsed.data;
    const results = await helpers.withPgClient((client) => settleWindows(client, windowIds, options));
    const missing = windowIds.filter((id) => results.get(id)?.outcome === 'not_found');
    if (missing.length > 0) helpers.logger.warn(`braintree__settle_window: windows ${missing.join(', ')} do not exist`);
  };
}
