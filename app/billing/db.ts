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

/** graphile-worker's add_job, inside the caller's transaction (jobs commit with the rows that need them). */
export async function addJob(
  db: Queryable,
  task: string,
  payload: Record<string, unknown>,
  options: { runAt?: Date; maxAttempts?: number; jobKey?: string; jobKeyMode?: 'replace' | 'preserve_run_at'; priority?: number } = {},
): Promise<void> {
  await db.query(
    `SELECT graphile_worker.add_job($1, $2::json, run_at => $3, max_attempts => $4, job_key => $5, job_key_mode => $6, priority => $7)`,
    [task, JSON.stringify(payload), options.runAt ?? null, options.maxAttempts ?? 25, options.jobKey ?? null, options.jobKey ? (options.jobKeyMode ?? 'replace') : null, options.priority ?? null],
  );
}
