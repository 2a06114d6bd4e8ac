// The per-test-file database harness: clones are migrated, isolated from each other, and really dropped.
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './database';
import { adminQuery } from './pg-admin';

const created: TestDatabase[] = [];
afterAll(() => Promise.all(created.map((db) => db.drop())));

async function rows<Row extends pg.QueryResultRow>(connectionString: string, sql: string) {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return (await client.query<Row>(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('createTestDatabase', () => {
  it('clones a database with every migration and the graphile-worker schema applied', async () => {
    const startedAt = Date.now();
    const db = await createTestDatabase();
    const cloneMs = Date.now() - startedAt;
    created.push(db);
    if (process.env.MD_TEST_TIMINGS) console.log(`[db] template clone ${cloneMs} ms`);

    const applied = await rows<{ migration_name: string; finished: boolean }>(
      db.connectionString,
      'SELECT migration_name, finished_at IS NOT NULL AS finished FROM _prisma_migrations ORDER BY migration_name',
    );
    expect(applied.length).toBeGreaterThan(0);
    expect(applied.every((migration) => migration.finished)).toBe(true);
    expect(await rows(db.connectionString, `SELECT to_regclass('graphile_worker.jobs') IS NOT NULL AS ok`)).toEqual([
      { ok: true },
    ]);
  });

  it('gives each caller its own database: writes in one are invisible in another', async () => {
    const [a, b] = await Promise.all([createTestDatabase(), createTestDatabase()]);
    created.push(a, b);
    expect(a.connectionString).not.toBe(b.connectionString);

    await rows(a.connectionString, 'CREATE TABLE only_in_a (id int)');
    expect(await rows(a.connectionString, `SELECT to_regclass('only_in_a') IS NOT NULL AS ok`)).toEqual([{ ok: true }]);
    expect(await rows(b.connectionString, `SELECT to_regclass('only_in_a') IS NOT NULL AS ok`)).toEqual([{ ok: false }]);
  });

  it('drops the database even with open connections, and drop() is idempotent', async () => {
    const db = await createTestDatabase();
    const name = new URL(db.connectionString).pathname.slice(1);
    const lingering = new pg.Client({ connectionString: db.connectionString });
    lingering.on('error', () => {});
    await lingering.connect();

    await Promise.all([db.drop(), db.drop()]);
    await db.drop();
    const remaining = await adminQuery(inject('databaseAdminUrl'), 'SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    expect(remaining).toEqual([]);
    await lingering.end().catch(() => {});
  });

  it('names databases with the run prefix, so teardown can find the ones a test file forgot', async () => {
    const db = await createTestDatabase();
    created.push(db);
    expect(new URL(db.connectionString).pathname.slice(1).startsWith(inject('databaseRunPrefix'))).toBe(true);
  });
});
