// A test file's own database with the services on it (pools, Prisma, the ledger), opened before its tests and
// closed after: `({ db, services } = await openTestServices())` in beforeAll, `closeTestServices(db, services)` after.
import { createServices, type Services } from '../../app/server/services';
import { createTestDatabase, type TestDatabase } from './database';

export async function openTestServices(): Promise<{ db: TestDatabase; services: Services }> {
  const db = await createTestDatabase();
  return { db, services: createServices({ connectionString: db.connectionString }) };
}

/** Closes the services, then drops the database (either may be absent when beforeAll failed early). */
export async function closeTestServices(db: TestDatabase | undefined, services: Services | undefined): Promise<void> {
  await services?.close();
  await db?.drop();
}
