// The web process's database sessions run without parallel query (ADR 034): a parallel index walk under a page's
// LIMIT stops only once every worker has found a row, and a worker whose share of the index has none reads all of it
// (an invoices page at 10M events: 6.4 s). Shown here on the plan the planner picks for a newest-first page whose
// matches are all at the newest end, with parallel plans made cheap so that a default session picks one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServices, type Services } from '../app/server/services';
import { useTestServices } from './support/services';

const t = useTestServices();
let serial: Services;
let serialWithReplica: Services;

beforeAll(async () => {
  serial = createServices({ connectionString: t.db.connectionString, serialQueries: true });
  // The read pool takes the same session settings (here the "replica" is the primary itself).
  serialWithReplica = createServices({ connectionString: t.db.connectionString, readConnectionString: t.db.connectionString, serialQueries: true });
  await t.services.pool.query(`CREATE TABLE page_probe (id bigint PRIMARY KEY, at timestamptz NOT NULL, tag int NOT NULL)`);
  await t.services.pool.query(`INSERT INTO page_probe SELECT n, now() - n * interval '1 second', CASE WHEN n <= 100 THEN 1 ELSE n % 1000 + 2 END FROM generate_series(1, 200000) n`);
  await t.services.pool.query(`CREATE INDEX ON page_probe (at)`);
  await t.services.pool.query(`ANALYZE page_probe`);
});
afterAll(async () => {
  await serial?.close();
  await serialWithReplica?.close();
});

const CHEAP_PARALLEL = `SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_index_scan_size = 0; SET min_parallel_table_scan_size = 0`;
const PAGE = `EXPLAIN SELECT id FROM page_probe WHERE tag = 1 ORDER BY at DESC LIMIT 51`;

async function plan(services: Services, pool: 'pool' | 'readPool'): Promise<string> {
  const client = await services[pool]!.connect();
  try {
    await client.query(CHEAP_PARALLEL);
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(PAGE);
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  } finally {
    await client.query('RESET ALL');
    client.release();
  }
}

describe('serial sessions', () => {
  it('a default session plans the page in parallel; a serial one (the web process) does not', async () => {
    expect(await plan(t.services, 'pool')).toMatch(/Gather/);
    expect(await plan(serial, 'pool')).not.toMatch(/Gather/);
    expect(await plan(serialWithReplica, 'readPool')).not.toMatch(/Gather/);
  });

  it('the read pool stays read-only as well', async () => {
    const { rows } = await serialWithReplica.readPool!.query(
      `SELECT current_setting('default_transaction_read_only') AS ro, current_setting('max_parallel_workers_per_gather') AS workers`,
    );
    expect(rows).toEqual([{ ro: 'on', workers: '0' }]);
  });
});
