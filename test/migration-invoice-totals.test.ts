// Migration 20261207025000_invoice_totals_rollup on a populated database: the migrations before it are applied by the
// Prisma CLI from a copy of the migrations folder that stops there, invoices are written in several currencies,
// states and months, then the project's own migrate code applies the rest. The rollup must hold exactly their sums,
// and its triggers must keep it so from then on.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedMigrations, migrateDatabase } from '../app/db/migrate';
import { databaseBeforeMigration, insertMigrationSubscriber, type DatabaseBeforeMigration } from './support/migrations';

const MIGRATION = '20261207025000_invoice_totals_rollup';

let url: string;
let db: DatabaseBeforeMigration;
let client: pg.Client;
const q = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await client.query<T>(sql, params)).rows;

const ID = (n: number, kind: number) => `${kind}0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
// Big totals: their sum is past 2^53 (exact only as bigint) yet well inside bigint.
const BIG = '4000000000000001';

beforeAll(async () => {
  db = await databaseBeforeMigration(MIGRATION);
  url = db.connectionString;
  client = new pg.Client({ connectionString: url });
  await client.connect();
  await insertMigrationSubscriber(q, { plan: ID(1, 1), customer: ID(1, 4), subscription: ID(1, 5) });
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
  await db?.drop();
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
