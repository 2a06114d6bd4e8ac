// One alert notification to one channel (app/billing/alerts/deliveries.ts). An attempt that gets no 2xx (HTTP status or
// SMTP reply) is recorded and then thrown, so graphile-worker runs it again with its backoff until the job's attempts
// are used up.
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { deliverAlert, type DeliveryOptions } from '../../app/billing/alerts/deliveries';

const Payload = z.object({ deliveryId: z.uuid() });

export function createDeliverAlertTask(options: Pick<DeliveryOptions, 'deskUrl' | 'timeoutMs' | 'email'> = {}): Task {
  return async (payload, helpers) => {
    const { deliveryId } = Payload.parse(payload);
    const outcome = await deliverAlert((fn) => helpers.withPgClient(fn), deliveryId, {
      ...options,
      attempt: helpers.job.attempts,
      maxAttempts: helpers.job.max_attempts,
    });
    if (outcome.state === 'retry') throw new Error(`alert delivery ${deliveryId}: ${outcome.answer ?? 'no answer'}`);
    if (outcome.state === 'failed') helpers.logger.warn(`alert delivery ${deliveryId} failed after ${helpers.job.attempts} attempts: ${outcome.response ?? ''}`);
  };
}

export const alertsDeliver: Task = createDeliverAlertTask();
