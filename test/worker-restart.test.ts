// graphile-worker can stop its own pool (when it cannot record a job's outcome, e.g. across a database restart); the
// worker process must then run jobs again rather than live on idle (found by the fault campaign, seed 20).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type Worker } from '../jobs/worker';
import { createTestDatabase, type TestDatabase } from './support/database';
import pg from 'pg';

let db: TestDatabase;
let pool: pg.Pool;
let worker: Worker | undefined;
const ran: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.connectionString, max: 2 });
});
afterAll(async () => {
  await worker?.stop();
  await pool?.end();
  await db?.drop();
});

async function until(check: () => boolean, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('the worker', () => {
  it('starts graphile-worker again when it stops without being asked, and keeps running jobs', async () => {
    worker = await startWorker({
      connectionString: db.connectionString,
      concurrency: 2,
      tasks: { test__record: async (payload) => void ran.push((payload as { n: string }).n) },
    });
    await pool.query(`SELECT graphile_worker.add_job('test__record', '{"n":"before"}')`);
    await until(() => ran.includes('before'));

    // What graphile-worker does to itself after "Could not completeJobs": its pool shuts down, nobody asked.
    const first = worker.current();
    await first.stop();
    await until(() => worker!.restarts === 1);
    expect(worker.current()).not.toBe(first);

    await pool.query(`SELECT graphile_worker.add_job('test__record', '{"n":"after"}')`);
    await until(() => ran.includes('after'));

    // A stop that is asked for stays stopped.
    await worker.stop();
    await pool.query(`SELECT graphile_worker.add_job('test__record', '{"n":"stopped"}')`);
    await new Promise((r) => setTimeout(r, 1500));
    expect(ran).not.toContain('stopped');
    expect(worker.restarts).toBe(1);
    worker = undefined;
  }, 60_000);
});
