// `migrate deploy` past its limit (MIGRATE_TIMEOUT_SECONDS, ADR 035) on a real database: a migration is held
// on a table lock, as a long rewrite of a large ledger would hold it, until the limit stops the deploy. The deploy's
// own sessions are ended before the CLI is killed, so PostgreSQL rolls the migration back, and it is marked rolled
// back: running migrate again resumes from it. A migration an earlier deploy left half-recorded is refused with the
// commands that resolve it, and those commands work.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectedMigrations,
  migrateDatabase,
  migrationChecksum,
  MigrationTimeoutError,
  resolveMigration,
  ResolveMigrationError,
  runPrisma,
  UnfinishedMigrationError,
} from '../app/db/migrate';
import { databaseBeforeMigration, type DatabaseBeforeMigration } from './support/migrations';

let db: DatabaseBeforeMigration;
let client: pg.Client;
let last: string;
const q = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await client.query<T>(sql, params)).rows;
const hasWindowState = async () =>
  (await q<{ n: number }>(`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'invoices' AND column_name = 'window_state'`))[0]!.n === 1;
const rowsOf = (name: string) =>
  q<{ finished: boolean; rolled_back: boolean }>(
    `SELECT finished_at IS NOT NULL AS finished, rolled_back_at IS NOT NULL AS rolled_back FROM _prisma_migrations WHERE migration_name = $1 ORDER BY started_at`,
    [name],
  );
const run = promisify(execFile);
const blockedInMigration = async () =>
  (await q<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'meterdesk-migrate-%' AND wait_event_type = 'Lock'`))[0]!.n > 0;
const migrateSessions = async () => (await q<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'meterdesk-migrate-%'`))[0]!.n;

/** Runs `fn` while another session holds `lockSql` in an open transaction. */
async function whileHeld<T>(lockSql: string, fn: () => Promise<T>): Promise<T> {
  const holder = new pg.Client({ connectionString: db.connectionString });
  await holder.connect();
  try {
    await holder.query('BEGIN');
    await holder.query(lockSql);
    return await fn();
  } finally {
    await holder.query('ROLLBACK').catch(() => {});
    await holder.end();
  }
}

beforeAll(async () => {
  // The migration held on a table lock: its first statement alters invoices. Later migrations stay pending with it.
  last = '20261207110000_invoice_window_state';
  expect(await expectedMigrations()).toContain(last);
  db = await databaseBeforeMigration(last);
  client = new pg.Client({ connectionString: db.connectionString });
  await client.connect();
}, 600_000);

afterAll(async () => {
  await client?.end();
  await db?.drop();
});

describe('migrate deploy past its limit', () => {
  it('stopped before it starts a migration (waiting for the migrate lock): nothing to resolve, says to run again', async () => {
    // Prisma's migration advisory lock, held as a second deploy would hold it.
    const error = await whileHeld('SELECT pg_advisory_lock(72707369)', () => migrateDatabase(db.connectionString, { timeoutMs: 2_000 }).then(() => null, (e: unknown) => e));
    expect(error).toBeInstanceOf(MigrationTimeoutError);
    const e = error as MigrationTimeoutError;
    expect(e.message).toMatch(/stopped after 2 s \(MIGRATE_TIMEOUT_SECONDS\) before it started a migration\. Run migrate again with a longer MIGRATE_TIMEOUT_SECONDS/);
    expect(e.resolved).toBeNull();
    expect(await rowsOf(last)).toEqual([]);
    expect(await migrateSessions()).toBe(0);
  }, 120_000);

  it('stopped inside a migration: rolled back by PostgreSQL, marked rolled back, and the next migrate resumes it', async () => {
    // Stopped once the deploy's session is seen waiting inside the migration (the limit's own path, without a race
    // against the CLI's start-up time on a loaded machine).
    const stopper = new AbortController();
    const error = await whileHeld('LOCK TABLE invoices IN SHARE MODE', async () => {
      const deploy = migrateDatabase(db.connectionString, { timeoutMs: 0, signal: stopper.signal }).then(() => null, (e: unknown) => e);
      for (let i = 0; i < 600 && !(await blockedInMigration()); i++) await new Promise((r) => setTimeout(r, 100));
      stopper.abort();
      return deploy;
    });
    expect(error).toBeInstanceOf(MigrationTimeoutError);
    const e = error as MigrationTimeoutError;
    expect(e.resolved).toBe(last);
    expect(e.message).toContain(`stopped (asked to stop) while it ran ${last}. PostgreSQL rolled that migration back`);
    expect(e.message).toContain('MIGRATE_TIMEOUT_SECONDS=0 npm run cli -- migrate');
    // Nothing of it is in the database, no session of the deploy is left, and Prisma's record says rolled back.
    expect(await hasWindowState()).toBe(false);
    expect(await migrateSessions()).toBe(0);
    expect(await rowsOf(last)).toEqual([{ finished: false, rolled_back: true }]);

    await migrateDatabase(db.connectionString);
    expect(await hasWindowState()).toBe(true);
    expect(await rowsOf(last)).toEqual([
      { finished: false, rolled_back: true },
      { finished: true, rolled_back: false },
    ]);
  }, 120_000);

  it('a migration left started and unfinished by an earlier deploy: refused with the resolve commands, which work', async () => {
    // As a deploy killed from outside (the container stopped) leaves it: Prisma's row started, never finished.
    await q(
      `INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count)
       SELECT gen_random_uuid()::text, checksum, migration_name, now(), 0 FROM _prisma_migrations WHERE migration_name = $1 AND finished_at IS NOT NULL`,
      [last],
    );
    const error = await migrateDatabase(db.connectionString).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(UnfinishedMigrationError);
    const e = error as UnfinishedMigrationError;
    expect(e.unfinished).toEqual([last]);
    expect(e.message).toContain(`npm run cli -- migrate resolve --rolled-back ${last}`);
    expect(e.message).toContain(`npm run cli -- migrate resolve --applied ${last}`);

    await expect(resolveMigration(db.connectionString, '20990101000000_nothing', 'applied')).rejects.toThrow(ResolveMigrationError);
    // Its changes are all there: the CLI command records it applied, with Prisma's own checksum of the file.
    await run(process.execPath, ['--import', 'tsx', 'app/cli/main.ts', 'migrate', 'resolve', '--applied', last], {
      env: { ...process.env, DATABASE_URL: db.connectionString, LOG_FORMAT: 'json' },
      timeout: 60_000,
    });
    const rows = await q<{ checksum: string; finished: boolean; rolled_back: boolean }>(
      `SELECT checksum, finished_at IS NOT NULL AS finished, rolled_back_at IS NOT NULL AS rolled_back FROM _prisma_migrations WHERE migration_name = $1 ORDER BY started_at`,
      [last],
    );
    expect(rows.map((r) => [r.finished, r.rolled_back])).toEqual([[false, true], [true, false], [false, true], [true, false]]);
    expect(new Set(rows.map((r) => r.checksum)).size).toBe(1);
    expect(rows[3]!.checksum).toBe(await migrationChecksum(last));
    const deployed = await runPrisma(['migrate', 'deploy'], { DATABASE_URL: db.connectionString });
    expect(deployed).toMatch(/No pending migrations to apply/);
    expect(deployed).not.toMatch(/modified after it was applied/);
  }, 120_000);
});
