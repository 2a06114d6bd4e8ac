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
    await seedBase(prisma);
  } finally {
    await prisma.$disconnect();
  }
}

export const quietLogger = new Logger(() => (level: string, message: string) => {
  if (level === 'error' || level === 'warning') console.error(`[worker] ${level}: ${message}`);
});
