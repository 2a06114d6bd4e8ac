import type pg from 'pg';

/** A pool or a client inside a transaction: domain writes that must join the caller's transaction take this. */
export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** Runs `fn` in one transaction on a pooled client; rolls back on any error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

// graphile-worker's add_job: owned, with every other use of graphile-worker's tables, by app/db/graphile-jobs.ts (ADR 022).
export { addJob } from '../db/graphile-jobs';
