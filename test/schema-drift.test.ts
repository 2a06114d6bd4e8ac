// The migrations and schema.prisma describe the same database: `prisma migrate diff` between them is empty.
// (Partial indexes and storage parameters are invisible to Prisma; everything else it models is compared.)
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database';

const run = promisify(execFile);

describe('schema drift', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('prisma migrate diff from the migrations to schema.prisma is empty', async () => {
    const { stdout } = await run(
      'node_modules/.bin/prisma',
      ['migrate', 'diff', '--from-migrations', 'prisma/migrations', '--to-schema-datamodel', 'prisma/schema.prisma', '--script'],
      { env: { ...process.env, DATABASE_URL: db.connectionString, CHECKPOINT_DISABLE: '1' }, timeout: 120_000 },
    );
    const statements = stdout.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('--'));
    expect(statements).toEqual([]);
  }, 150_000);
});
