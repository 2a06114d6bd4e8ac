// Crontab: opens the current period's window of every live Braintree subscription lacking one.
import type { Task } from 'graphile-worker';
import { openCurrentWindows } from '../../app/billing/windows/windows';

export function createOpenWindowsTask(opts: { limit?: number } = {}): Task {
  return async (_payload, helpers) => {
    const { opened } = await helpers.withPgClient((client) => openCurrentWindows(client, { limit: opts.limit }));
    if (opened.length > 0) helpers.logger.info(`braintree__open_windows: opened ${opened.length} window(s)`);
  };
}

export const braintreeOpenWindows: Task = createOpenWindowsTask();
