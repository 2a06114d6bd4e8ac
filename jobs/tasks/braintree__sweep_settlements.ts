// Crontab: re-enqueues settlement for windows whose job was lost or whose worker died mid-sale.
import type { Task } from 'graphile-worker';
import { sweepSettlements } from '../../app/billing/windows/settlement';

export interface SweepSettlementsOptions {
  /** A `closed` window with no settlement for this long gets a settle job. Default 5 min. */
  closedAfterMs?: number;
  /** A `settling` window untouched for this long gets a settle job (which searches before any sale). Default 5 min. */
  settlingAfterMs?: number;
  /** A due retry this late gets its job again. Default 1 min. */
  retryGraceMs?: number;
}

export function createSweepSettlementsTask(opts: SweepSettlementsOptions = {}): Task {
  return async (_payload, helpers) => {
    const { enqueued } = await helpers.withPgClient((client) => sweepSettlements(client, opts));
    if (enqueued > 0) helpers.logger.info(`braintree__sweep_settlements: ${enqueued} settle job(s) queued`);
  };
}

export const braintreeSweepSettlements: Task = createSweepSettlementsTask();
