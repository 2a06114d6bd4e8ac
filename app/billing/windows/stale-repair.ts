// The desk's "repair now" of a stale renewal: the reconciler's repair plus the audit row naming the operator.
import type pg from 'pg';
import { writeAudit, type Actor } from '../audit';
import { inTransaction, withClient } from './transaction';
import { repairStaleRenewal, type StaleRepairResult } from './windows';

/**
 * An operator's "repair now" of a stale renewal: the domain's repair (open + close + ops event, re-checked under the
 * subscription lock) plus the audit row naming who asked, in one transaction.
 */
export async function repairStaleWindow(
  pool: pg.Pool,
  actor: Actor,
  input: { subscriptionId: string; reason?: string },
): Promise<StaleRepairResult> {
  return withClient(pool, (client) =>
    inTransaction(client, async () => {
      const r = await repairStaleRenewal(client, input.subscriptionId);
      if (r.status === 'repaired') {
        await writeAudit(client, {
          actor,
          action: 'window.repair_stale',
          subjectType: 'window',
          subjectId: r.window.id,
          reason: input.reason || null,
          before: { subscription_id: input.subscriptionId, window: null },
          after: {
            state: r.window.state,
            period_start: r.window.periodStart.toISOString(),
            period_end: r.window.periodEnd.toISOString(),
            total_minor: r.close.status === 'closed' ? r.close.invoice.totalMinor.toString() : null,
          },
        });
      }
      return r;
    }),
  );
}
