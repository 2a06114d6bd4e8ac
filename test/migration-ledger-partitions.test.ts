// Migration 20261207030000_meter_events_partitioned on a populated database (ADR 032): the existing table becomes the
// first partition in place (same table, no row copied), every identifier is claimed once in meter_event_identifiers,
// the attempt log refers to the partitioned table, and the ledger goes on deduplicating the identifiers it held.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uuidv7Floor } from '../app/billing/ids';
import { listPartitions } from '../app/billing/ledger/partitions';
import { prepareDatabase } from '../app/seed/prepare';
import { createServices, type Services } from '../app/server/services';
import { databaseBeforeMigration, type DatabaseBeforeMigration } from './support/migrations';

const MIGRATION = '20261207030000_meter_events_partitioned';
const CUSTOMER = '40000000-0000-4000-8000-000000000001';
const id = (ms: number, n: number) => `${uuidv7Floor(ms).slice(0, 13)}-7000-8000-${String(n).padStart(12, '0')}`;
const events = [
  { id: id(Date.UTC(2026, 9, 3), 1), identifier: 'mig-oct' },
  { id: id(Date.UTC(2026, 10, 20), 2), identifier: 'mig-nov' },
  { id: id(Date.now() - 60_000, 3), identifier: 'mig-now' },
];

let db: DatabaseBeforeMigration;
let client: pg.Client;
let services: Services | undefined;
let oldOid: number;
let rowsBefore: unknown[];
const q = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await client.query<T>(sql, params)).rows;

beforeAll(async () => {
  db = await databaseBeforeMigration(MIGRATION);
  client = new pg.Client({ connectionString: db.connectionString });
  await client.connect();
  await q(`INSERT INTO customers (id, external_id, processor, processor_customer_id, updated_at) VALUES ($1, 'mig-cust', 'stripe', 'cus_mig', now())`, [CUSTOMER]);
  await q(
    `INSERT INTO meter_events (id, identifier, customer_id, event_name, value, occurred_at, received_at, processor, status)
     SELECT e.id, e.identifier, $3, 'ai_tokens', 7, now() - interval '1 minute', now() - interval '1 minute', 'stripe', 'reported'
       FROM unnest($1::uuid[], $2::text[]) AS e(id, identifier)`,
    [events.map((e) => e.id), events.map((e) => e.identifier), CUSTOMER],
  );
  await q(`INSERT INTO event_attempts (id, meter_event_id, source, outcome) VALUES (gen_random_uuid(), $1, 'sync', 'reported')`, [events[0]!.id]);
  oldOid = (await q<{ oid: number }>(`SELECT 'meter_events'::regclass::oid::int AS oid`))[0]!.oid;
  rowsBefore = await q('SELECT * FROM meter_events ORDER BY id');
  await prepareDatabase(db.connectionString); // what `npm run cli -- migrate` does
}, 600_000);

afterAll(async () => {
  await services?.close();
  await client?.end();
  await db?.drop();
});

describe(`migration ${MIGRATION}`, () => {
  it('keeps the existing table, unchanged, as the first partition: every id before next month', async () => {
    const partitions = await listPartitions(client);
    const first = partitions[0]!;
    expect(first.from).toBeNull();
    const oid = (await q<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [first.name]))[0]!.oid;
    expect(oid).toBe(oldOid);
    // Every column the rows had, unchanged (later migrations may add columns).
    const after = await q<Record<string, unknown>>('SELECT * FROM meter_events ORDER BY id');
    const columns = Object.keys(rowsBefore[0] as object);
    expect(after.map((r) => Object.fromEntries(columns.map((c) => [c, r[c]])))).toEqual(rowsBefore);
    const now = new Date();
    expect(first.to.getTime()).toBe(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
    expect(partitions.slice(1).map((p) => p.from!.getTime())).toEqual([1, 2, 3].map((k) => Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + k, 1)));
  });

  it('claims every identifier once and refuses a second claim', async () => {
    expect(await q('SELECT identifier, event_id FROM meter_event_identifiers ORDER BY identifier')).toEqual(
      [...events].sort((a, b) => a.identifier.localeCompare(b.identifier)).map((e) => ({ identifier: e.identifier, event_id: e.id })),
    );
    await expect(q(`INSERT INTO meter_event_identifiers (identifier, event_id) VALUES ('mig-oct', gen_random_uuid())`)).rejects.toMatchObject({ code: '23505' });
  });

  it('keeps the attempt log referring to the events', async () => {
    const fk = await q<{ target: string }>(
      `SELECT confrelid::regclass::text AS target FROM pg_constraint WHERE conname = 'event_attempts_meter_event_id_fkey'`,
    );
    expect(fk).toEqual([{ target: 'meter_events' }]);
    await expect(q(`INSERT INTO event_attempts (id, meter_event_id, source, outcome) VALUES (gen_random_uuid(), gen_random_uuid(), 'sync', 'reported')`)).rejects.toMatchObject({ code: '23503' });
  });

  it('the ledger answers the identifiers it held as duplicates and stores new events in the current partition', async () => {
    services = createServices({ connectionString: db.connectionString });
    const again = await services.ledger.reportUsage('mig-cust', 'ai_tokens', { identifier: 'mig-oct', value: 7 });
    expect(again).toMatchObject({ duplicate: true, event: { id: events[0]!.id } });
    const fresh = await services.ledger.reportUsage('mig-cust', 'ai_tokens', { identifier: 'mig-new', value: 1 });
    expect(fresh.duplicate).toBe(false);
    expect(await q(`SELECT count(*)::int AS n FROM meter_events`)).toEqual([{ n: 4 }]);
  });
});
