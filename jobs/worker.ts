// The worker process: graphile-worker running every task in jobs/tasks and the crontab beside this file.
import { run, type Runner, type TaskList } from 'graphile-worker';
import { quietLogger } from '../app/db/prepare';
import { taskList } from './tasks';

export interface WorkerOptions {
  connectionString: string;
  concurrency?: number;
  tasks?: TaskList;
  crontab?: string;
  maxPoolSize?: number;
}

export async function startWorker(options: WorkerOptions): Promise<Runner> {
  return run({
    connectionString: options.connectionString,
    concurrency: options.concurrency ?? 4,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: quietLogger,
    taskList: options.tasks ?? taskList,
    crontab: options.crontab ?? '',
    ...(options.maxPoolSize ? { maxPoolSize: options.maxPoolSize } : {}),
  });
}
