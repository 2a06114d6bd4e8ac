// Reports the still-pending Stripe events among the payload's ids (claim, call Stripe, move each row).
// Enqueued by ingest (same statement as the events), by backoffs, by the reconciler and by operator retries.
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import type { StripeReporting } from '../../app/billing/ledger/reporting';

const payloadSchema = z.object({ eventIds: z.array(z.uuid()).max(10_000) });

export function createReportEventsTask(reporting: StripeReporting): Task {
  return async (payload, helpers) => {
    const parsed = payloadSchema.safeParse(payload);
    if (!parsed.success) {
      // Retrying cannot fix a malformed payload: fail loudly once instead of 25 times.
      helpers.logger.error(`stripe__report_events: invalid payload (${parsed.error.message}); job ${helpers.job.id} dropped`);
      return;
    }
    const summary = await reporting.reportEvents(parsed.data.eventIds);
    if (summary.failed > 0 || summary.expired > 0) {
      helpers.logger.info(`stripe__report_events: ${summary.reported} reported, ${summary.failed} failed, ${summary.expired} past the dedupe guard, ${summary.retrying} retrying`);
    }
  };
}
