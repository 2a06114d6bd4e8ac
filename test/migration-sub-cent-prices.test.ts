// Migration 20261207010000_sub_cent_unit_prices on a populated database: the migrations before it are applied by
// the Prisma CLI from a copy of the migrations folder that stops there, rows are written in the old shape, then the
// project's own migrate code applies the rest. Prices, lines and window snapshots must come out exactly equal.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedMigrations, migrateDatabase } from '../app/db/migrate';
import { fromStoredSnapshot } from '../app/billing/windows/invoice-math';
import { databaseBeforeMigration, type DatabaseBeforeMigration } from './support/migrations';

const MIGRATION = '20261207010000_sub_cent_unit_prices';
const MAX_BIGINT = '9223372036854775807';

let url: string;
let db: DatabaseBeforeMigration;
let client: pg.Client;
const q = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await client.query<T>(sql, params)).rows;

const ids = {
  plan: '10000000-0000-4000-8000-000000000001',
  meterA: '20000000-0000-4000-8000-000000000001',
  meterB: '20000000-0000-4000-8000-000000000002',
  priceZero: '30000000-0000-4000-8000-000000000001',
  priceFive: '30000000-0000-4000-8000-000000000002',
  priceMax: '30000000-0000-4000-8000-000000000003',
  customer: '40000000-0000-4000-8000-000000000001',
  subscription: '50000000-0000-4000-8000-000000000001',
  windowOld: '60000000-0000-4000-8000-000000000001',
  windowEmpty: '60000000-0000-4000-8000-000000000002',
  invoice: '70000000-0000-4000-8000-000000000001',
  lineFive: '80000000-0000-4000-8000-000000000001',
  lineMax: '80000000-0000-4000-8000-000000000002',
};
const oldSnapshot = [
  { meterId: ids.meterA, eventName: 'a_tokens', displayName: 'A tokens', aggregation: 'sum', unitAmountMinor: '5', perUnits: '1000', rounding: 'up', currency: 'usd', meterPriceId: ids.priceFive },
  { meterId: ids.meterB, eventName: 'b_calls', displayName: 'B calls', aggregation: 'count', unitAmountMinor: MAX_BIGINT, perUnits: '1', rounding: 'down', currency: 'usd', meterPriceId: ids.priceMax },
];

beforeAll(async () => {
  db = await databaseBeforeMigration(MIGRATION);
  url = db.connectionString;
  client = new pg.Client({ connectionString: url });
  await client.connect();
  // The old shape: bigint prices and lines, snapshots keyed unitAmountMinor.
  await q(`INSERT INTO plans (id, code, name, updated_at) VALUES ($1, 'mig', 'Mig', now())`, [ids.plan]);
  await q(`INSERT INTO meters (id, event_name, display_name, aggregation, updated_at) VALUES ($1, 'a_tokens', 'A tokens', 'sum', now()), ($2, 'b_calls', 'B calls', 'count', now())`, [ids.meterA, ids.meterB]);
  await q(
    `INSERT INTO meter_prices (id, plan_id, meter_id, unit_amount_minor, per_units, rounding, currency, effective_from, effective_to)
     VALUES ($1, $4, $5, 0, 1, 'up', 'usd', '2020-01-01', '2021-01-01'),
            ($2, $4, $5, 5, 1000, 'up', 'usd', '2021-01-01', NULL),
            ($3, $4, $6, ${MAX_BIGINT}, 1, 'down', 'usd', '2020-01-01', NULL)`,
    [ids.priceZero, ids.priceFive, ids.priceMax, ids.plan, ids.meterA, ids.meterB],
  );
  await q(
    `INSERT INTO customers (id, external_id, processor, processor_customer_id, updated_at) VALUES ($1, 'mig-1', 'braintree', 'bt_mig_1', now())`,
    [ids.customer],
  );
  await q(
    `INSERT INTO subscriptions (id, customer_id, plan_id, processor, processor_subscription_id, current_period_start, current_period_end, updated_at)
     VALUES ($1, $2, $3, 'braintree', 'sub_mig_1', '2026-11-01', '2026-12-01', now())`,
    [ids.subscription, ids.customer, ids.plan],
  );
  await q(
    `INSERT INTO windows (id, subscription_id, customer_id, period_start, period_end, state, price_snapshot, currency, updated_at)
     VALUES ($1, $3, $4, '2026-10-01', '2026-11-01', 'closed', $5::jsonb, 'usd', now()),
            ($2, $3, $4, '2026-11-01', '2026-12-01', 'open', '[]'::jsonb, 'usd', now())`,
    [ids.windowOld, ids.windowEmpty, ids.subscription, ids.customer, JSON.stringify(oldSnapshot)],
  );
  await q(`INSERT INTO invoices (id, window_id, customer_id, subscription_id, currency, total_minor) VALUES ($1, $2, $3, $4, 'usd', 15)`, [
    ids.invoice,
    ids.windowOld,
    ids.customer,
    ids.subscription,
  ]);
  await q(
    `INSERT INTO invoice_lines (id, invoice_id, kind, meter_id, event_name, description, event_count, quantity, billed_units, unit_amount_minor, per_units, rounding, amount_minor)
     VALUES ($1, $3, 'usage', $4, 'a_tokens', 'A tokens', 2, 2250, 3, 5, 1000, 'up', 15),
            ($2, $3, 'usage', $5, 'b_calls', 'B calls', 0, 0, 0, ${MAX_BIGINT}, 1, 'down', 0)`,
    [ids.lineFive, ids.lineMax, ids.invoice, ids.meterA, ids.meterB],
  );
  await migrateDatabase(url);
}, 600_000);

afterAll(async () => {
  await client?.end();
  await db?.drop();
});

describe(`migration ${MIGRATION}`, () => {
  it('is the one migration applied on top of the populated database', async () => {
    const applied = await q<{ migration_name: string }>(`SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL ORDER BY migration_name`);
    expect(applied.map((r) => r.migration_name)).toEqual(await expectedMigrations());
  });

  it('turns both columns into numeric(31,12) unit_amount_decimal, keeping every value exactly', async () => {
    const columns = await q<{ table_name: string; column_name: string; data_type: string; numeric_precision: number; numeric_scale: number }>(
      `SELECT table_name, column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns
        WHERE table_name IN ('meter_prices', 'invoice_lines') AND column_name LIKE 'unit_amount%' ORDER BY table_name`,
    );
    expect(columns).toEqual([
      { table_name: 'invoice_lines', column_name: 'unit_amount_decimal', data_type: 'numeric', numeric_precision: 31, numeric_scale: 12 },
      { table_name: 'meter_prices', column_name: 'unit_amount_decimal', data_type: 'numeric', numeric_precision: 31, numeric_scale: 12 },
    ]);
    expect(await q(`SELECT id, unit_amount_decimal::text AS price, per_units::text AS per FROM meter_prices ORDER BY id`)).toEqual([
      { id: ids.priceZero, price: '0.000000000000', per: '1' },
      { id: ids.priceFive, price: '5.000000000000', per: '1000' },
      { id: ids.priceMax, price: `${MAX_BIGINT}.000000000000`, per: '1' },
    ]);
    expect(await q(`SELECT id, unit_amount_decimal::text AS price, amount_minor::text AS amount FROM invoice_lines ORDER BY id`)).toEqual([
      { id: ids.lineFive, price: '5.000000000000', amount: '15' },
      { id: ids.lineMax, price: `${MAX_BIGINT}.000000000000`, amount: '0' },
    ]);
  });

  it('renames the snapshot key in place: same values, same order, other keys untouched, and the parser reads it', async () => {
    const [old, empty] = await q<{ price_snapshot: Array<Record<string, unknown>> }>(`SELECT price_snapshot FROM windows ORDER BY id`);
    const expected = oldSnapshot.map(({ unitAmountMinor, ...rest }) => ({ ...rest, unitAmountDecimal: unitAmountMinor }));
    expect(old!.price_snapshot).toEqual(expected);
    expect(old!.price_snapshot.every((p) => !('unitAmountMinor' in p))).toBe(true);
    expect(empty!.price_snapshot).toEqual([]);
    expect(fromStoredSnapshot(old!.price_snapshot).map((p) => [p.eventName, p.unitAmountDecimal, p.perUnits])).toEqual([
      ['a_tokens', '5', 1000n],
      ['b_calls', MAX_BIGINT, 1n],
    ]);
  });

  it('takes sub-cent prices from now on, and still refuses a negative one', async () => {
    await q(`UPDATE meter_prices SET unit_amount_decimal = '0.015' WHERE id = $1`, [ids.priceFive]);
    expect((await q<{ p: string }>(`SELECT unit_amount_decimal::text AS p FROM meter_prices WHERE id = $1`, [ids.priceFive]))[0]!.p).toBe('0.015000000000');
    await expect(q(`UPDATE meter_prices SET unit_amount_decimal = -0.000000000001 WHERE id = $1`, [ids.priceFive])).rejects.toMatchObject({ code: '23514' });
  });
});
