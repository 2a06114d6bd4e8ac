// A test file's own database with the services on it (pools, Prisma, the ledger), opened before its tests and
// closed after: `const t = useTestServices()` at the top of the file, or by hand `({ db, services } = await
// openTestServices())` in beforeAll and `closeTestServices(db, services)` after.
import { afterAll, beforeAll } from 'vitest';
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

/**
 * Opens this file's services in a beforeAll and closes them in an afterAll; both fields are set by the time the
 * file's own beforeAll hooks (registered after this call) and its tests run, and its own afterAll hooks run first.
 */
export function useTestServices(): { readonly db: TestDatabase; readonly services: Services } {
  const opened: { db?: TestDatabase; services?: Services } = {};
  beforeAll(async () => {
    Object.assign(opened, await openTestServices());
  });
  afterAll(async () => {
    await closeTestServices(opened.db, opened.services);
  });
  return {
    get db() {
      if (!opened.db) throw new Error('useTestServices: the database opens in beforeAll');
      return opened.db;
    },
    get services() {
      if (!opened.services) throw new Error('useTestServices: the services open in beforeAll');
      return opened.services;
    },
  };
}
