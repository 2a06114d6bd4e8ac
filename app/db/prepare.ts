// Brings a database to the current schema: Prisma migrations, graphile-worker's own schema (checked against what
// app/db/graphile-jobs.ts writes into, with the task rows of the jobs written directly), and the base seed.
import { migrateDatabase } from './migrate';
import { createPrisma } from './clients';
import { installGraphileWorker } from './graphile-jobs';
import { seedBase } from '../billing/seed';

export { quietLogger } from './graphile-jobs';

export async function prepareDatabase(connectionString: string): Promise<void> {
  await migrateDatabase(connectionString);
  await installGraphileWorker(connectionString);
  const prisma = createPrisma(connectionString);
  try {
    await seedBase(prisma);
  } finally {
    await prisma.$disconnect();
  }
}
