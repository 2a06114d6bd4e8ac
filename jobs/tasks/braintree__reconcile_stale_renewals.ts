// Crontab: repairs Braintree subscriptions whose period ended with no window for it (open + close, same path).
import type { Task } from 'graphile-worker';
import { reconcileStaleRenewals } from '../../app/billing/windows/windows';

export const braintreeReconcileStaleRenewals: Task = async (_payload, helpers) => {
  const { repaired } = await helpers.withPgClient((client) => reconcileStaleRenewals(client));
  if (repaired.length > 0) helpers.logger.info(`braintree__reconcile_stale_renewals: repaired ${repaired.length} window(s)`);
};
