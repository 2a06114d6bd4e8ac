// A fresh, fully migrated database per test file, cloned from the run's template (see global-setup.ts), so test
// files are isolated from each other and can run in parallel workers.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, inject } from 'vitest';
import { TEMPLATE_DATABASE, adminQuery, databaseUrl } from './pg-admin';

export { adminQuery, databaseUrl } from './pg-admin';

export interface TestDatabase {
  connectionString: string;
  /** Drops the database, disconnecting whatever still uses it. Idempotent. */
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = inject('databaseAdminUrl');
  const runPrefix = inject('databaseRunPrefix');
  if (!adminUrl || !runPrefix) {
    throw new Error('createTestDatabase() needs the database global setup: run tests with vitest.config.ts');
  }
  const name = `${runPrefix}${randomBytes(4).toString('hex')}`;
  const create = `CREATE DATABASE "${name}" TEMPLATE ${TEMPLATE_DATABASE} ${inject('databaseCloneStrategy')}`;
  for (let attempt = 1; ; attempt++) {
    try {
      await adminQuery(adminUrl, create);
      break;
    } catch (error) {
      // 55006: someone is connected to the template (on a shared server); it is usually momentary.
      if ((error as { code?: string }).code !== '55006' || attempt === 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }
  let dropping: Promise<void> | undefined;
  return {
    connectionString: databaseUrl(adminUrl, name),
    drop: () => (dropping ??= adminQuery(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).then(() => {})),
  };
}

/**
 * A fresh database and one connected client for a test file that only queries: created before the file's tests and
 * dropped after them. Returns the client's getter (it exists once `beforeAll` has run).
 */
export function useTestDatabaseClient(timeoutMs = 60_000): () => pg.Client {
  let db: TestDatabase | undefined;
  let client: pg.Client | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    client = new pg.Client({ connectionString: db.connectionString });
    await client.connect();
  }, timeoutMs);
  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });
  return () => {
    if (!client) throw new Error('useTestDatabaseClient: the client exists once beforeAll has run');
    return client;
  };
}
