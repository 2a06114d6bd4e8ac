// Crontab: processes again the stored webhooks whose job died with its worker (see app/billing/webhook-sweep.ts).
import type { Task } from 'graphile-worker';
import { sweepWebhooks, type SweepWebhooksOptions } from '../../app/billing/webhook-sweep';

export function createSweepWebhooksTask(opts: Omit<SweepWebhooksOptions, 'now'> = {}): Task {
  return async (_payload, helpers) => {
    const { enqueued } = await helpers.withPgClient((client) => sweepWebhooks(client, opts));
    if (enqueued > 0) helpers.logger.info(`ops__sweep_webhooks: ${enqueued} webhook(s) queued again`);
  };
}

export const opsSweepWebhooks: Task = createSweepWebhooksTask();
