// Migration 20261207025000_invoice_totals_rollup on a populated database: the migrations before it are applied by the
// Prisma CLI from a copy of the migrations folder that stops there, invoices are written in several currencies,
// states and months, then the project's own migrate code applies the rest. The rollup must hold exactly their sums,
// and its triggers must keep it so from then on.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { expectedMigrations, migrateDatabase, projectRoot } from '../app/db/migrate';
import { adminQuery, databaseUrl } from './support/database';

const MIGRATION = '20261207025000_invoice_totals_rollup';
const run = promisify(execFile);

let url: string;
let dbName: string;
let tmp: string;
let client: pg.Client;
const q = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await client.query<T>(sql, params)).rows;

/** `prisma migrate deploy` with only the migrations before MIGRATION (same names and checksums as the real ones). */
async function migrateUpToBefore(connectionString: string): Promise<void> {
  const root = projectRoot();
  const all = await expectedMigrations();
  const before = all.slice(0, all.indexOf(MIGRATION));
  expect(before.length).toBeGreaterThan(0);
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'meterdesk-migrate-'));
  await fs.symlink(path.join(root, 'node_modules'), path.join(tmp, 'node_modules'));
  await fs.copyFile(path.join(root, 'prisma.config.ts'), path.join(tmp, 'prisma.config.ts'));
  await fs.mkdir(path.join(tmp, 'prisma', 'migrations'), { recursive: true });
  await fs.copyFile(path.join(root, 'prisma', 'schema.prisma'), path.join(tmp, 'prisma', 'schema.prisma'));
  const lock = path.join(root, 'prisma', 'migrations', 'migration_lock.toml');
  if (existsSync(lock)) await fs.copyFile(lock, path.join(tmp, 'prisma', 'migrations', 'migration_lock.toml'));
  for (const name of before) await fs.cp(path.join(root, 'prisma', 'migrations', name), path.join(tmp, 'prisma', 'migrations', name), { recursive: true });
  const cli = realpathSync(path.join(root, 'node_modules', '.bin', 'prisma'));
  await run(process.execPath, [cli, 'migrate', 'deploy'], {
    cwd: tmp,
    env: { ...process.env, DATABASE_URL: connectionString, CHECKPOINT_DISABLE: '1', PRISMA_HIDE_UPDATE_MESSAGE: '1', NO_COLOR: '1' },
    timeout: 5 * 60_000,
  });
}

const ID = (n: number, kind: number) => `${kind}0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
// Big totals: their sum is past 2^53 (exact only as bigint) yet well inside bigint.
const BIG = '4000000000000001';

beforeAll(async () => {
  const adminUrl = inject('databaseAdminUrl');
  dbName = `${inject('databaseRunPrefix')}mig_${randomBytes(4).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE "${dbName}" TEMPLATE template0`);
  url = databaseUrl(adminUrl, dbName);
  await migrateUpToBefore(url);
  client = new pg.Client({ connectionString: url });
  await client.connect();
  await q(`INSERT INTO plans (id, code, name, updated_at) VALUES ($1, 'mig', 'Mig', now())`, [ID(1, 1)]);
  await q(`INSERT INTO customers (id, external_id, processor, processor_customer_id, updated_at) VALUES ($1, 'mig-1', 'braintree', 'bt_mig_1', now())`, [ID(1, 4)]);
  await q(
    `INSERT INTO subscriptions (id, customer_id, plan_id, processor, processor_subscription_id, current_period_start, current_period_end, updated_at)
     VALUES ($1, $2, $3, 'braintree', 'sub_mig_1', '2026-11-01', '2026-12-01', now())`,
    [ID(1, 5), ID(1, 4), ID(1, 1)],
  );
  // (period end, state, currency, total): two in one rollup row, months split at midnight UTC, an open window with none.
  const windows: Array<[string, string, string, string | null]> = [
    ['2026-10-15T00:00:00Z', 'paid', 'usd', BIG],
    ['2026-10-31T23:59:59.999Z', 'paid', 'usd', BIG],
    ['2026-11-01T00:00:00Z', 'paid', 'usd', '700'],
    ['2026-11-10T00:00:00Z', 'failed_exhausted', 'usd', '250'],
    ['2026-11-11T00:00:00Z', 'written_off', 'eur', '90'],
    ['2026-11-12T00:00:00Z', 'closed', 'eur', '0'],
    ['2026-12-01T00:00:00Z', 'open', 'usd', null],
  ];
  for (const [n, [end, state, currency, total]] of windows.entries()) {
    const start = new Date(Date.parse(end) - 86_400_000).toISOString();
    await q(
      `INSERT INTO windows (id, subscription_id, customer_id, period_start, period_end, state, price_snapshot, currency, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6::window_state, '[]'::jsonb, $7, now())`,
      [ID(n, 6), ID(1, 5), ID(1, 4), start, end, state, currency],
    );
    if (total !== null) {
      await q(`INSERT INTO invoices (id, window_id, customer_id, subscription_id, currency, total_minor) VALUES ($1, $2, $3, $4, $5, $6)`, [
        ID(n, 7), ID(n, 6), ID(1, 4), ID(1, 5), currency, total,
      ]);
    }
  }
  await migrateDatabase(url);
}, 600_000);

afterAll(async () => {
  await client?.end();
  if (dbName) await adminQuery(inject('databaseAdminUrl'), `DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

const rollup = () =>
  q(`SELECT currency, state::text, processor::text, to_char(period_month, 'YYYY-MM-DD') AS month, invoices, total_minor::text AS total
       FROM invoice_totals ORDER BY currency, month, state`);

describe(`migration ${MIGRATION}`, () => {
  it('is the one migration applied on top of the populated database', async () => {
    const applied = await q<{ migration_name: string }>(`SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL ORDER BY migration_name`);
    expect(applied.map((r) => r.migration_name)).toEqual(await expectedMigrations());
  });

  it('backfills the rollup with the exact sums of the invoices there, by currency, state, processor and UTC month', async () => {
    expect(await rollup()).toEqual([
      { currency: 'eur', state: 'closed', processor: 'braintree', month: '2026-11-01', invoices: 1, total: '0' },
      { currency: 'eur', state: 'written_off', processor: 'braintree', month: '2026-11-01', invoices: 1, total: '90' },
      { currency: 'usd', state: 'paid', processor: 'braintree', month: '2026-10-01', invoices: 2, total: '8000000000000002' },
      { currency: 'usd', state: 'failed_exhausted', processor: 'braintree', month: '2026-11-01', invoices: 1, total: '250' },
      { currency: 'usd', state: 'paid', processor: 'braintree', month: '2026-11-01', invoices: 1, total: '700' },
    ]);
  });

  it('then keeps it: a write-off moves the invoice, an invoice on a new window adds it, deleting one removes its row', async () => {
    await q(`UPDATE windows SET state = 'written_off' WHERE id = $1`, [ID(3, 6)]);
    await q(`UPDATE windows SET state = 'closed' WHERE id = $1`, [ID(6, 6)]);
    await q(`INSERT INTO invoices (id, window_id, customer_id, subscription_id, currency, total_minor) VALUES ($1, $2, $3, $4, 'usd', 5)`, [ID(6, 7), ID(6, 6), ID(1, 4), ID(1, 5)]);
    await q(`DELETE FROM invoices WHERE id = $1`, [ID(5, 7)]);
    expect(await rollup()).toEqual([
      { currency: 'eur', state: 'written_off', processor: 'braintree', month: '2026-11-01', invoices: 1, total: '90' },
      { currency: 'usd', state: 'paid', processor: 'braintree', month: '2026-10-01', invoices: 2, total: '8000000000000002' },
      { currency: 'usd', state: 'paid', processor: 'braintree', month: '2026-11-01', invoices: 1, total: '700' },
      { currency: 'usd', state: 'written_off', processor: 'braintree', month: '2026-11-01', invoices: 1, total: '250' },
      { currency: 'usd', state: 'closed', processor: 'braintree', month: '2026-12-01', invoices: 1, total: '5' },
    ]);
  });
});
