// Crontab (every 15 minutes, and a 35-day sweep once a day) and the desk's "Run reconciliation now": compares the
// ledger with what Stripe and Braintree hold (app/billing/reconciliation.ts). Safe to run twice: runs take a lock,
// so a second one finds it held and stops; differences are ops events deduped per subject and period.
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { addJob } from '../../app/billing/db';
import { MAX_LOOKBACK_DAYS, RECONCILE_DESK_JOB_KEY, RECONCILE_TASK, reconcileLedger, type ReconcileOptions } from '../../app/billing/reconciliation';

// Cron jobs carry `_cron`; the desk sends who asked.
const Payload = z
  .object({
    lookbackDays: z.number().int().min(1).max(MAX_LOOKBACK_DAYS).optional(),
    trigger: z.enum(['schedule', 'desk']).optional(),
    requestedBy: z.uuid().nullish(),
  })
  .loose()
  .nullish();

/** Needs the processors (what Stripe counted, Braintree's sales), so it is built with the process's services. */
export function createReconcileLedgerTask(options: Omit<ReconcileOptions, 'lookbackDays' | 'trigger' | 'requestedBy'>): Task {
  return async (payload, helpers) => {
    const parsed = Payload.safeParse(payload);
    if (!parsed.success) {
      helpers.logger.error(`ops__reconcile_ledger: invalid payload ${JSON.stringify(payload)}`);
      return;
    }
    const input = parsed.data ?? {};
    const trigger = input.trigger ?? 'schedule';
    const result = await helpers.withPgClient((client) =>
      reconcileLedger(client, {
        ...options,
        trigger,
        requestedBy: input.requestedBy ?? null,
        ...(input.lookbackDays ? { lookbackDays: input.lookbackDays } : {}),
      }),
    );
    if (result.status === 'busy') {
      // A scheduled run just yields; someone who asked for a run gets one after the current one.
      if (trigger === 'desk') {
        await helpers.withPgClient((client) =>
          addJob(client, RECONCILE_TASK, { trigger, requestedBy: input.requestedBy ?? null }, { jobKey: RECONCILE_DESK_JOB_KEY, runAt: new Date(Date.now() + 15_000), maxAttempts: 1 }),
        );
      }
      helpers.logger.info(`ops__reconcile_ledger: another run is in progress${trigger === 'desk' ? '; asked again in 15 s' : ''}`);
      return;
    }
    const { run } = result;
    const message = `ops__reconcile_ledger: ${run.driftCount} difference(s), ${run.newDriftCount} new, ${run.resolvedCount} resolved`;
    if (run.driftCount > 0 || run.error) helpers.logger.warn(`${message}${run.error ? `; ${run.error}` : ''}`);
    else helpers.logger.debug(message);
  };
}
