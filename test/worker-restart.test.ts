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

  it('starts a new graphile-worker when outcomes cannot be recorded, rather than wait on a job still running', async () => {
    // graphile-worker 0.18: a completion or failure the batcher cannot write raises pool:fatalError and starts a
    // graceful stop, which waits for every running job. A job that does not end (a processor call hanging, a client
    // lost in a database restart) then holds the stop, runner.promise never settles, and the worker process lives on
    // running nothing (campaign seeds 25, 26 and 28 of 2026-12-06: hundreds of events left pending).
    let away = false;
    let hanging = 0;
    let endHang: () => void = () => undefined;
    const hang = new Promise<void>((resolve) => (endHang = resolve));
    worker = await startWorker({
      connectionString: db.connectionString,
      concurrency: 2,
      tasks: {
        test__record: async (payload) => void ran.push((payload as { n: string }).n),
        test__hang: async () => {
          hanging++;
          await hang;
        },
        // Makes the completion of its own job fail: the jobs table is gone when the batcher writes the outcome.
        test__hide_jobs: async () => {
          await pool.query('ALTER TABLE graphile_worker._private_jobs RENAME TO _private_jobs_away');
          away = true;
        },
      },
    });
    try {
      await pool.query(`SELECT graphile_worker.add_job('test__hang', '{}', max_attempts => 1)`);
      await until(() => hanging === 1);
      await pool.query(`SELECT graphile_worker.add_job('test__hide_jobs', '{}')`);
      await until(() => away);
      await new Promise((r) => setTimeout(r, 300));
      await pool.query('ALTER TABLE graphile_worker._private_jobs_away RENAME TO _private_jobs');
      await until(() => worker!.restarts === 1, 20_000);

      await pool.query(`SELECT graphile_worker.add_job('test__record', '{"n":"after the failed completion"}')`);
      await until(() => ran.includes('after the failed completion'));
      // The job still running was not waited on, and it was not cut off either: when it ends, the old pool records its
      // outcome (the job is done and gone), then finishes its stop.
      expect(hanging).toBe(1);
      endHang();
      const jobsLeft = async () =>
        (await pool.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'test__hang'`)).rows[0].n as number;
      const deadline = Date.now() + 15_000;
      while ((await jobsLeft()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await jobsLeft()).toBe(0);
    } finally {
      endHang();
      await worker.stop({ graceMs: 2000 });
      worker = undefined;
    }
  }, 60_000);
});
