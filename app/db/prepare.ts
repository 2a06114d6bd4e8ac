// Brings a database to the current schema: Prisma migrations, then graphile-worker's own schema (checked against what
// app/db/graphile-jobs.ts writes into, with the task rows of the jobs written directly). The base data is the seed's:
// app/seed/prepare.ts is what a process calls.
import { Logger } from 'graphile-worker';
import { installGraphileWorker } from './graphile-jobs';
import { migrateDatabase, type MigrateOptions } from './migrate';
import { logger } from '../log';

const log = logger('worker');

/**
 * graphile-worker's own lines through our logger. Its `info` lines (one per job completed, the task list at start)
 * go to debug: at thousands of jobs a second they would drown everything else.
 */
export const graphileLogger = new Logger((scope) => (level: string, message: string) => {
  const fields: Record<string, string> = {};
  if (scope.workerId) fields.worker_id = scope.workerId;
  if (scope.taskIdentifier) fields.task = scope.taskIdentifier;
  if (scope.jobId) fields.job_id = String(scope.jobId);
  if (level === 'error') log.error(fields, message);
  else if (level === 'warning') log.warn(fields, message);
  else log.debug(fields, message);
});

export async function prepareSchema(connectionString: string, options: MigrateOptions = {}): Promise<void> {
  await migrateDatabase(connectionString, options);
  await installGraphileWorker(connectionString, graphileLogger);
}
