// Brings a database to the current schema: Prisma migrations, graphile-worker's own schema, and the base seed.
import { Logger, runMigrations } from 'graphile-worker';
import { migrateDatabase } from './migrate';
import { createPrisma } from './clients';
import { seedBase } from '../billing/seed';
import { logger } from '../log';

const log = logger('worker');

export async function prepareDatabase(connectionString: string): Promise<void> {
  await migrateDatabase(connectionString);
  await runMigrations({ connectionString, logger: graphileLogger });
  const prisma = createPrisma(connectionString);
  try {
    // The ledger writes its report jobs straight into graphile-worker's job table (ADR 015); their task row exists
    // before the first commit, so two first commits never race to create it.
    await prisma.$executeRawUnsafe(
      `INSERT INTO graphile_worker._private_tasks (identifier) SELECT 'stripe__report_events'
       WHERE NOT EXISTS (SELECT 1 FROM graphile_worker._private_tasks WHERE identifier = 'stripe__report_events') ON CONFLICT DO NOTHING`,
    );
    await seedBase(prisma);
  } finally {
    await prisma.$disconnect();
  }
}

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
