// Crontab: enqueues `braintree__close_window` for each open window whose period ended (after a grace period).
import type { Task } from 'graphile-worker';
import { enqueueDueWindowCloses } from '../../app/billing/windows/windows';

/** Default grace after a period's end before its window closes: usage reported a little late still lands in it. */
export const DEFAULT_CLOSE_GRACE_MS = 5 * 60_000;

export function createCloseWindowsTask(opts: { graceMs?: number; limit?: number } = {}): Task {
  return async (_payload, helpers) => {
    const { enqueued } = await helpers.withPgClient((client) =>
      enqueueDueWindowCloses(client, { graceMs: opts.graceMs ?? DEFAULT_CLOSE_GRACE_MS, limit: opts.limit }),
    );
    if (enqueued > 0) helpers.logger.info(`braintree__close_windows: ${enqueued} window(s) to close`);
  };
}

export const braintreeCloseWindows: Task = createCloseWindowsTask();
