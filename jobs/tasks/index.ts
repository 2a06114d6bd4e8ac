// One task per file, named area__verb. Registered here so the worker and tests share one list.
import type { TaskList } from 'graphile-worker';
import { stripeProcessWebhook } from './stripe__process_webhook';

export const taskList: TaskList = {
  stripe__process_webhook: stripeProcessWebhook,
};
