// The desk's "repair now" of a stale renewal: the reconciler's repair plus the audit row naming the operator.
import type pg from 'pg';
import type { Actor } from '../audit';
import { inTransaction, withClient } from './transaction';
import { auditStaleRepair, repairStaleRenewal, type StaleRepairResult } from './windows';

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
      if (r.status === 'repaired') await auditStaleRepair(client, actor, input.subscriptionId, r, input.reason || null);
      return r;
    }),
  );
}
