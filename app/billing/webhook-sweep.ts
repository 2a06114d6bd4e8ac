// Stored webhooks whose processing job died with its worker. graphile-worker leaves the job of a worker that died
// mid-job (SIGKILL, or its own abort when it cannot record a job's outcome after a database fault) locked for four
// hours before anyone runs it again, so without this sweep a meter error report or a renewal would wait that long:
// the fault campaign found Stripe-rejected events still `reported` that way. Processing is safe to run twice (the row
// is locked and processed_at checked), so a second job for a row whose first one is merely slow costs nothing.
import { addJobCall } from '../db/graphile-jobs';
import type { Queryable } from './db';
import { PROCESS_BRAINTREE_WEBHOOK_TASK } from './processors/braintree/webhooks';
import { PROCESS_STRIPE_WEBHOOK_TASK } from './processors/stripe/webhooks';

export interface SweepWebhooksOptions {
  /** A stored webhook still unprocessed this long after it arrived gets a job again. Default 5 min. */
  afterMs?: number;
  limit?: number;
  now?: Date;
}

/**
 * Enqueues processing again for each unprocessed webhook older than `afterMs` that is not waiting for an operator
 * (no error, or only a transient one). One queued sweep job per row at most (its job key, preserve_run_at), so a row
 * whose job keeps failing follows that job's backoff instead of being retried every sweep.
 */
export async function sweepWebhooks(db: Queryable, opts: SweepWebhooksOptions = {}): Promise<{ enqueued: number }> {
  const now = opts.now ?? new Date();
  const { rowCount } = await db.query(
    `SELECT ${addJobCall({
      identifier: `CASE w.processor WHEN 'stripe' THEN $1 ELSE $2 END`,
      payload: `json_build_object('webhookEventId', w.id)`,
      jobKey: `'webhook_sweep:' || w.id::text`,
      jobKeyMode: `'preserve_run_at'`,
      maxAttempts: '25',
    })}
     FROM (
       SELECT id, processor FROM webhook_events
       WHERE processed_at IS NULL AND received_at <= $3
         AND (last_error IS NULL OR last_error LIKE 'transient (will retry):%')
       ORDER BY received_at LIMIT $4
     ) w`,
    [PROCESS_STRIPE_WEBHOOK_TASK, PROCESS_BRAINTREE_WEBHOOK_TASK, new Date(now.getTime() - (opts.afterMs ?? 5 * 60_000)), opts.limit ?? 1000],
  );
  return { enqueued: rowCount ?? 0 };
}
