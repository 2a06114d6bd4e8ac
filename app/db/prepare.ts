// Brings a database to the current schema: Prisma migrations, then graphile-worker's own schema (checked against what
// app/db/graphile-jobs.ts writes into, with the task rows of the jobs written directly). The base data is the seed's:
// app/seed/prepare.ts is what a process calls.
import { Logger } from 'graphile-worker';
import { installGraphileWorker } from './graphile-jobs';
import { migrateDatabase } from './migrate';

/** graphile-worker's logger for migrations and the worker: errors and warnings only. */
export const quietLogger = new Logger(() => (level: string, message: string) => {
  if (level === 'error' || level === 'warning') console.error(`[worker] ${level}: ${message}`);
});

export async function prepareSchema(connectionString: string): Promise<void> {
  await migrateDatabase(connectionString);
  await installGraphileWorker(connectionString, quietLogger);
}
