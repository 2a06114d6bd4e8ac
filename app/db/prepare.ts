// Brings a database to the current schema: Prisma migrations, graphile-worker's own schema, and the base seed.
import { Logger, runMigrations } from 'graphile-worker';
import { migrateDatabase } from './migrate';
import { createPrisma } from './clients';
import { seedBase } from '../billing/seed';

export async function prepareDatabase(connectionString: string): Promise<void> {
  await migrateDatabase(connectionString);
  await runMigrations({ connectionString, logger: quietLogger });
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

export const quietLogger = new Logger(() => (level: string, message: string) => {
  if (level === 'error' || level === 'warning') console.error(`[worker] ${level}: ${message}`);
});
