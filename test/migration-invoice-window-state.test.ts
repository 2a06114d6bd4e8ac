// Migration 20261207110000_invoice_window_state on a populated database: invoices written before it, of windows in
// several states, then the project's own migrate code applies the rest. Each invoice must carry its window's state,
// and the triggers must keep that copy true through every later change (ADR 034).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedMigrations, migrateDatabase } from '../app/db/migrate';
import { databaseBeforeMigration, insertMigrationSubscriber, type DatabaseBeforeMigration } from './support/migrations';

const MIGRATION = '20261207110000_invoice_window_state';

let db: DatabaseBeforeMigration;
let client: pg.Client;
const q = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await client.query<T>(sql, params)).rows;
const ID = (n: number, kind: number) => `${kind}0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const STATES = ['paid', 'failed_exhausted', 'written_off', 'closed', 'awaiting_payment_method'] as const;

beforeAll(async () => {
  db = await databaseBeforeMigration(MIGRATION);
  client = new pg.Client({ connectionString: db.connectionString });
  await client.connect();
  await insertMigrationSubscriber(q, { plan: ID(1, 1), customer: ID(1, 4), subscription: ID(1, 5) });
  for (const [n, state] of STATES.entries()) {
    await q(
      `INSERT INTO windows (id, subscription_id, customer_id, period_start, period_end, state, price_snapshot, currency, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6::window_state, '[]'::jsonb, 'usd', now())`,
      [ID(n, 6), ID(1, 5), ID(1, 4), `2026-0${n + 1}-01`, `2026-0${n + 2}-01`, state],
    );
    await q(`INSERT INTO invoices (id, window_id, customer_id, subscription_id, currency, total_minor) VALUES ($1, $2, $3, $4, 'usd', 100)`, [
      ID(n, 7), ID(n, 6), ID(1, 4), ID(1, 5),
    ]);
  }
  await q(
    `INSERT INTO windows (id, subscription_id, customer_id, period_start, period_end, state, price_snapshot, currency, updated_at)
     VALUES ($1, $2, $3, '2026-07-01', '2026-08-01', 'settling', '[]'::jsonb, 'usd', now())`,
    [ID(9, 6), ID(1, 5), ID(1, 4)],
  );
  await migrateDatabase(db.connectionString);
}, 600_000);

afterAll(async () => {
  await client?.end();
  await db?.drop();
});

const copies = () =>
  q<{ id: string; window_state: string; state: string }>(
    `SELECT i.id, i.window_state::text, w.state::text FROM invoices i JOIN windows w ON w.id = i.window_id ORDER BY i.id`,
  );

describe(`migration ${MIGRATION}`, () => {
  it('is the one migration applied on top of the populated database', async () => {
    const applied = await q<{ migration_name: string }>(`SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL ORDER BY migration_name`);
    expect(applied.map((r) => r.migration_name)).toEqual(await expectedMigrations());
  });

  it("backfills every invoice with its window's state", async () => {
    expect((await copies()).map((r) => r.window_state)).toEqual([...STATES]);
    const nullable = await q<{ is_nullable: string }>(`SELECT is_nullable FROM information_schema.columns WHERE table_name = 'invoices' AND column_name = 'window_state'`);
    expect(nullable).toEqual([{ is_nullable: 'NO' }]);
  });

  it('keeps the copy: a window that changes state moves its invoice; a new invoice takes its window’s state whatever it was given', async () => {
    await q(`UPDATE windows SET state = 'written_off' WHERE id = $1`, [ID(1, 6)]);
    await q(`UPDATE windows SET state = 'paid' WHERE id = $1`, [ID(4, 6)]);
    // An update that leaves the state as it was touches nothing.
    await q(`UPDATE windows SET updated_at = now() WHERE id = $1`, [ID(0, 6)]);
    await q(`INSERT INTO invoices (id, window_id, customer_id, subscription_id, currency, total_minor, window_state) VALUES ($1, $2, $3, $4, 'usd', 5, 'paid')`, [
      ID(9, 7), ID(9, 6), ID(1, 4), ID(1, 5),
    ]);
    // Writing the copy by hand is corrected in the same statement.
    await q(`UPDATE invoices SET window_state = 'open' WHERE id = $1`, [ID(2, 7)]);
    const rows = await copies();
    expect(rows.map((r) => r.window_state)).toEqual(['paid', 'written_off', 'written_off', 'closed', 'paid', 'settling']);
    expect(rows.every((r) => r.window_state === r.state)).toBe(true);
  });

  it('lists one state newest first through its index', async () => {
    await q('SET enable_seqscan = off');
    const plan = await q<{ 'QUERY PLAN': string }>(
      `EXPLAIN SELECT id FROM invoices WHERE window_state = 'written_off' ORDER BY authored_at DESC, id DESC LIMIT 51`,
    );
    await q('RESET enable_seqscan');
    expect(plan.map((r) => r['QUERY PLAN']).join('\n')).toContain('invoices_window_state_authored_at_id_idx');
  });
});
