// Settles one window: at most one charge, through its charge attempt (see app/billing/windows/settlement.ts).
// Payload: ids only. Safe to run twice and concurrently (a per-window lock; a sale is marked sent before it leaves).
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { settleWindow, type SettlementOptions } from '../../app/billing/windows/settlement';

const payloadSchema = z.strictObject({ windowId: z.uuid() });

/** Needs the Braintree processor, so it is built with the process's services (createTaskList). */
export function createSettleWindowTask(options: SettlementOptions): Task {
  return async (payload, helpers) => {
    const parsed = payloadSchema.safeParse(payload);
    if (!parsed.success) {
      helpers.logger.error(`braintree__settle_window: invalid payload ${JSON.stringify(payload)}`);
      return;
    }
    const result = await helpers.withPgClient((client) => settleWindow(client, parsed.data.windowId, options));
    if (result.outcome === 'not_found') helpers.logger.warn(`braintree__settle_window: window ${parsed.data.windowId} does not exist`);
  };
}
