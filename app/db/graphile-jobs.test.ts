// The graphile-worker coupling (ADR 022): the version it was written against is the one installed and pinned, and
// the schema check passes on graphile-worker's real migrations and names each difference when the schema moves.
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Logger, runMigrations } from 'graphile-worker';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../test/support/database';
import {
  assertGraphileSchema,
  checkGraphileSchema,
  DIRECT_INSERT_TASKS,
  GRAPHILE_WORKER_VERSION,
  GraphileSchemaMismatchError,
  installGraphileWorker,
} from './graphile-jobs';
import { projectRoot } from './migrate';

const silent = new Logger(() => () => {});

let db: TestDatabase;
let pool: pg.Pool;
beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.connectionString, max: 2 });
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

describe('the graphile-worker version', () => {
  it('installed is the one the module was written against, and package.json pins exactly that', async () => {
    const entry = createRequire(import.meta.url).resolve('graphile-worker');
    let dir = path.dirname(entry);
    while (!(await fs.stat(path.join(dir, 'package.json')).catch(() => null))) dir = path.dirname(dir);
    const installed = JSON.parse(await fs.readFile(path.join(dir, 'package.json'), 'utf8')) as { name: string; version: string };
    expect(installed.name).toBe('graphile-worker');
    expect(installed.version, 'installed graphile-worker; app/db/graphile-jobs.ts was written against GRAPHILE_WORKER_VERSION').toBe(GRAPHILE_WORKER_VERSION);
    const ours = JSON.parse(await fs.readFile(path.join(projectRoot(), 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(ours.dependencies['graphile-worker'], 'package.json must pin graphile-worker exactly (no ^ or ~)').toBe(GRAPHILE_WORKER_VERSION);
  });
});

describe('the schema check', () => {
  it('finds nothing to report on the migrated database, whose direct-insert task rows exist', async () => {
    expect(await checkGraphileSchema(pool)).toEqual([]);
    await expect(assertGraphileSchema(pool)).resolves.toBeUndefined();
    const { rows } = await pool.query<{ identifier: string }>(`SELECT identifier FROM graphile_worker._private_tasks WHERE identifier = ANY($1::text[])`, [DIRECT_INSERT_TASKS]);
    expect(rows.map((r) => r.identifier).sort()).toEqual([...DIRECT_INSERT_TASKS].sort());
  });

  it("names each table, column and function that differs from what the module expects", async () => {
    // graphile-worker's own migrations into a scratch schema, then changed the way an upgrade might change them.
    const schema = 'gw_drift';
    await runMigrations({ connectionString: db.connectionString, schema, logger: silent });
    expect(await checkGraphileSchema(pool, schema)).toEqual([]);

    await pool.query(`ALTER TABLE ${schema}._private_jobs RENAME COLUMN task_id TO task_ref`);
    expect(await checkGraphileSchema(pool, schema)).toEqual([
      `${schema}._private_jobs.task_id: column missing (expected integer)`,
      // the renamed column is NOT NULL with no default, and the direct insert does not name it
      `${schema}._private_jobs.task_ref: NOT NULL without a default, and the ledger's direct job insert (ADR 015) does not set it`,
    ]);
    await pool.query(`ALTER TABLE ${schema}._private_jobs RENAME COLUMN task_ref TO task_id`);

    await pool.query(`DROP VIEW ${schema}.jobs`);
    await pool.query(`ALTER TABLE ${schema}._private_jobs ALTER COLUMN last_error TYPE varchar(200)`);
    await pool.query(`ALTER TABLE ${schema}._private_jobs ADD COLUMN tenant text NOT NULL`);
    const { rows: unique } = await pool.query<{ name: string }>(
      `SELECT conname AS name FROM pg_constraint WHERE conrelid = '${schema}._private_tasks'::regclass AND contype = 'u'`,
    );
    expect(unique).toHaveLength(1);
    await pool.query(`ALTER TABLE ${schema}._private_tasks DROP CONSTRAINT "${unique[0]!.name}"`);
    await pool.query(`DROP FUNCTION ${schema}.add_job`);
    const problems = await checkGraphileSchema(pool, schema);
    expect(problems).toEqual([
      `${schema}._private_jobs.last_error: type is character varying(200), expected text`,
      `${schema}.jobs: view missing`,
      `${schema}._private_jobs.tenant: NOT NULL without a default, and the ledger's direct job insert (ADR 015) does not set it`,
      `${schema}._private_tasks.identifier: no unique index (the direct insert's ON CONFLICT DO NOTHING relies on it)`,
      `${schema}.add_job(): function missing`,
    ]);
    const error = await assertGraphileSchema(pool, schema).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GraphileSchemaMismatchError);
    expect((error as Error).message).toContain(`graphile-worker ${GRAPHILE_WORKER_VERSION}`);
    for (const p of problems) expect((error as Error).message).toContain(p);
  });

  it('names a function argument that changed type or went away', async () => {
    const schema = 'gw_args';
    await runMigrations({ connectionString: db.connectionString, schema, logger: silent });
    // add_job as a later release might declare it: no job_key_mode, priority a smallint.
    await pool.query(`DROP FUNCTION ${schema}.add_job`);
    await pool.query(
      `CREATE FUNCTION ${schema}.add_job(identifier text, payload json DEFAULT NULL, queue_name text DEFAULT NULL, run_at timestamptz DEFAULT NULL,
         max_attempts integer DEFAULT NULL, job_key text DEFAULT NULL, priority smallint DEFAULT NULL) RETURNS void LANGUAGE sql AS 'SELECT'`,
    );
    expect(await checkGraphileSchema(pool, schema)).toEqual([
      `${schema}.add_job(job_key_mode): argument missing (expected text)`,
      `${schema}.add_job(priority): type is smallint, expected integer`,
    ]);
  });

  it('refuses to prepare a database whose graphile_worker schema differs', async () => {
    const other = await createTestDatabase();
    const client = new pg.Client({ connectionString: other.connectionString });
    await client.connect();
    try {
      await client.query(`ALTER TABLE graphile_worker._private_jobs RENAME COLUMN payload TO body`);
      await expect(installGraphileWorker(other.connectionString, silent)).rejects.toThrow(
        /graphile_worker\._private_jobs\.payload: column missing \(expected json\)/,
      );
    } finally {
      await client.end();
      await other.drop();
    }
  });
});
