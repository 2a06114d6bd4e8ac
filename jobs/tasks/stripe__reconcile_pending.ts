// Crontab, every minute: re-enqueues pending Stripe events a killed worker or a lost job left behind (same
// identifiers), and flags those pending past the 23 h dedupe guard for an operator instead of re-sending them.
import type { Task } from 'graphile-worker';
import type { StripeReporting } from '../../app/billing/ledger/reporting';

export function createReconcilePendingTask(reporting: StripeReporting): Task {
  // The payload is ignored (cron sends `{_cron: ...}`): the task takes no input.
  return async (_payload, helpers) => {
    const { expired, requeued } = await reporting.reconcile();
    if (expired > 0 || requeued > 0) {
      helpers.logger.info(`stripe__reconcile_pending: ${requeued} re-enqueued, ${expired} flagged past the dedupe guard`);
    }
  };
}
