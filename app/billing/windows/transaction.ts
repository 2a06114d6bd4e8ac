import type pg from 'pg';

/** Runs `fn` in one transaction on a client the caller owns (a task's client, a pool client). */
export async function inTransaction<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** A pooled client for the duration of `fn` (domain entry points accept a pool; tasks hand over their client). */
export async function withClient<T>(db: pg.Pool | pg.ClientBase, fn: (client: pg.ClientBase) => Promise<T>): Promise<T> {
  if (!('totalCount' in db)) return fn(db);
  const client = await db.connect();
  let broken: Error | undefined;
  try {
    return await fn(client);
  } catch (error) {
    // A client whose connection failed mid-call must not go back to the pool.
    if (error instanceof Error && /connection|terminat/i.test(error.message)) broken = error;
    throw error;
  } finally {
    client.release(broken);
  }
}
