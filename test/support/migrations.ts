// A database migrated up to just before one migration, to populate in the old shape and then migrate the rest with
// the project's own migrate code: how a migration is tested on a populated database.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import { expectedMigrations, projectRoot } from '../../app/db/migrate';
import { adminQuery, databaseUrl } from './database';

const run = promisify(execFile);

export interface DatabaseBeforeMigration {
  connectionString: string;
  /** Drops the database and the migrations copy. */
  drop(): Promise<void>;
}

/** A new database with `prisma migrate deploy` of only the migrations before `migration` (same names and checksums). */
export async function databaseBeforeMigration(migration: string): Promise<DatabaseBeforeMigration> {
  const adminUrl = inject('databaseAdminUrl');
  const name = `${inject('databaseRunPrefix')}mig_${randomBytes(4).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE "${name}" TEMPLATE template0`);
  const connectionString = databaseUrl(adminUrl, name);
  const root = projectRoot();
  const all = await expectedMigrations();
  const index = all.indexOf(migration);
  if (index <= 0) throw new Error(`${migration} is not a migration after the first`);
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'meterdesk-migrate-'));
  const drop = async () => {
    await adminQuery(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await fs.rm(tmp, { recursive: true, force: true });
  };
  try {
    await fs.symlink(path.join(root, 'node_modules'), path.join(tmp, 'node_modules'));
    await fs.copyFile(path.join(root, 'prisma.config.ts'), path.join(tmp, 'prisma.config.ts'));
    await fs.mkdir(path.join(tmp, 'prisma', 'migrations'), { recursive: true });
    await fs.copyFile(path.join(root, 'prisma', 'schema.prisma'), path.join(tmp, 'prisma', 'schema.prisma'));
    const lock = path.join(root, 'prisma', 'migrations', 'migration_lock.toml');
    if (existsSync(lock)) await fs.copyFile(lock, path.join(tmp, 'prisma', 'migrations', 'migration_lock.toml'));
    for (const m of all.slice(0, index)) await fs.cp(path.join(root, 'prisma', 'migrations', m), path.join(tmp, 'prisma', 'migrations', m), { recursive: true });
    const cli = realpathSync(path.join(root, 'node_modules', '.bin', 'prisma'));
    await run(process.execPath, [cli, 'migrate', 'deploy'], {
      cwd: tmp,
      env: { ...process.env, DATABASE_URL: connectionString, CHECKPOINT_DISABLE: '1', PRISMA_HIDE_UPDATE_MESSAGE: '1', NO_COLOR: '1' },
      timeout: 5 * 60_000,
    });
  } catch (error) {
    await drop();
    throw error;
  }
  return { connectionString, drop };
}

/**
 * The rows a migration test's windows hang on, written by plain SQL (the schema before the migration): plan `mig`,
 * Braintree customer `mig-1` and its subscription, with the ids the caller derives.
 */
export async function insertMigrationSubscriber(
  q: (sql: string, params?: unknown[]) => Promise<unknown>,
  ids: { plan: string; customer: string; subscription: string },
): Promise<void> {
  await q(`INSERT INTO plans (id, code, name, updated_at) VALUES ($1, 'mig', 'Mig', now())`, [ids.plan]);
  await q(`INSERT INTO customers (id, external_id, processor, processor_customer_id, updated_at) VALUES ($1, 'mig-1', 'braintree', 'bt_mig_1', now())`, [ids.customer]);
  await q(
    `INSERT INTO subscriptions (id, customer_id, plan_id, processor, processor_subscription_id, current_period_start, current_period_end, updated_at)
     VALUES ($1, $2, $3, 'braintree', 'sub_mig_1', '2026-11-01', '2026-12-01', now())`,
    [ids.subscription, ids.customer, ids.plan],
  );
}
