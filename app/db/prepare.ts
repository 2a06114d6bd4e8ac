// Brings a database to the current schema: Prisma migrations, then graphile-worker's own schema (checked against what
// app/db/graphile-jobs.ts writes into, with the task rows of the jobs written directly). The base data is the seed's:
// app/seed/prepare.ts is what a process calls.
import { migrateDatabase } from './migrate';
import { installGraphileWorker } from './graphile-jobs';

export { quietLogger } from './graphile-jobs';

export async function prepareSchema(connectionString: string): Promise<void> {
  await migrateDatabase(connectionString);
  await installGraphileWorker(connectionString);
}
