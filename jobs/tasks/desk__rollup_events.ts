// Crontab (every minute): recomputes the recent minutes of event_rollups for the desk's charts, then the recent
// 10-minute buckets of usage_rollups for the alert rules (app/billing/rollups.ts), each in its own transaction.
import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { rollupEvents, rollupUsage } from '../../app/billing/rollups';

// Cron jobs carry `_cron`; an explicit range (ISO timestamps) lets an operator enqueue a backfill.
const Payload = z
  .object({ from: z.iso.datetime().optional(), to: z.iso.datetime().optional() })
  .loose()
  .nullish();

export const deskRollupEvents: Task = async (payload, helpers) => {
  const input = Payload.parse(payload) ?? {};
  const range = { ...(input.from ? { from: new Date(input.from) } : {}), ...(input.to ? { to: new Date(input.to) } : {}) };
  for (const [name, rollup] of [['event_rollups', rollupEvents], ['usage_rollups', rollupUsage]] as const) {
    const result = await helpers.withPgClient((client) => rollup(client, range));
    if (result.written > 0 || result.deleted > 0) {
      helpers.logger.debug(`desk__rollup_events: ${name} ${result.written} written, ${result.deleted} deleted in [${result.from.toISOString()}, ${result.to.toISOString()})`);
    }
  }
};
