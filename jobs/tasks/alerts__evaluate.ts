// Crontab (every minute): one evaluation pass over the enabled alert rules (app/billing/alerts/evaluate.ts).
import type { Task } from 'graphile-worker';
import { evaluateAlerts } from '../../app/billing/alerts/evaluate';

export const alertsEvaluate: Task = async (_payload, helpers) => {
  const result = await helpers.withPgClient((client) => evaluateAlerts(client));
  if (result.fired.length || result.resolved.length) {
    helpers.logger.info(`alerts__evaluate: ${result.fired.length} fired, ${result.resolved.length} resolved, ${result.deliveries} deliveries queued (${result.rules} rules)`);
  }
};
