// Helpers shared by the global setup (main process) and test/support/database.ts (workers); no vitest imports.
import pg from 'pg';

export const TEMPLATE_DATABASE = 'meterdesk_template';
export const TEST_DATABASE_PREFIX = 'meterdesk_test_';

/** `connectionString` with its database replaced. */
export function databaseUrl(connectionString: string, database: string): string {
  const url = new URL(connectionString);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** One statement on a short-lived connection (CREATE/DROP DATABASE cannot run inside a transaction block). */
export async function adminQuery<Row extends pg.QueryResultRow = pg.QueryResultRow>(
  connectionString: string,
  sql: string,
  params: unknown[] = [],
): Promise<Row[]> {
  const client = new pg.Client({ connectionString });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<Row>(sql, params)).rows;
  } finally {
    await client.end();
  }
}
