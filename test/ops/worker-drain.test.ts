// A worker on SIGTERM takes no new job and finishes the ones in flight (graphile-worker's graceful stop); a job still
// running when the grace period ends is released — unlocked, to run again on any worker — never left locked or lost
// (ADR 020).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { prepareDatabase } from '../../app/seed/prepare';
import { startWorker } from '../../jobs/worker';
import { SIMULATOR_SECRET_KEY, startStripeSimulator, type StripeSimulator } from '../../simulators/stripe/simulator';
import { startCli } from '../support/process-output';
import { useTestServices } from '../support/services';

const t = useTestServices();

beforeAll(async () => {
  // What `migrate` does before the processes start (compose's one-shot), as they run with MIGRATE_ON_START=false.
  await prepareDatabase(t.db.connectionString);
  await t.services.prisma.customer.create({ data: { externalId: 'drain', processor: 'stripe', processorCustomerId: 'cus_drain' } });
});

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false> | T, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const jobRows = async (task: string) =>
  (
    await t.services.pool.query<{ id: string; locked_at: Date | null; locked_by: string | null; attempts: number; last_error: string | null }>(
      `SELECT j.id, j.locked_at, j.locked_by, j.attempts, j.last_error FROM graphile_worker._private_jobs j
       JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE t.identifier = $1`,
      [task],
    )
  ).rows;

describe('the worker process on SIGTERM', () => {
  let sim: StripeSimulator;
  beforeAll(async () => {
    // Every Stripe call takes a while, so the report job is still in flight when the signal comes.
    sim = await startStripeSimulator({ latencyMs: 1500 });
    sim.addCustomer('cus_drain');
    sim.addMeter('ai_tokens');
  });
  afterAll(() => sim?.stop());

  it('finishes the report job in flight: every event reported once, no job left locked, exit 0', async () => {
    const worker = await startCli(
      'worker',
      {
        DATABASE_URL: t.db.connectionString,
        MIGRATE_ON_START: 'false',
        HEALTH_PORT: '0',
        STRIPE_SECRET_KEY: SIMULATOR_SECRET_KEY,
        STRIPE_API_BASE: sim.url,
        STRIPE_METER_API: 'v2',
      },
      { field: 'health_url' },
    );
    await t.services.ledger.reportUsageBatch(Array.from({ length: 50 }, (_, i) => ({ customer: 'drain', eventName: 'ai_tokens', value: 2, identifier: `drain-${i}` })));
    // The session and then the stream call: the second one is held by the simulator when the signal is sent.
    await until('the meter event stream call to be in flight', () => sim.stats().requests >= 2);
    const { rows: before } = await t.services.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM meter_events WHERE status = 'reported'`);
    expect(before[0]!.n).toBe(0);
    worker.child.kill('SIGTERM');
    const draining = await until('readyz to say draining', async () => {
      const res = await fetch(`${worker.url}/readyz`).catch(() => null);
      return res && res.status === 503 && ((await res.json()) as { failing: string[] });
    });
    expect(draining.failing).toContain('draining');

    expect(await worker.exited).toBe(0);
    const { rows } = await t.services.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM meter_events WHERE status = 'reported'`);
    expect(rows[0]!.n).toBe(50);
    expect(sim.usageTotal('cus_drain', 'ai_tokens')).toBe(100);
    expect(await jobRows('stripe__report_events')).toEqual([]);
    const { rows: locked } = await t.services.pool.query(`SELECT id FROM graphile_worker._private_jobs WHERE locked_at IS NOT NULL`);
    expect(locked).toEqual([]);
    expect(worker.output()).toContain('finishing the jobs in flight');
  }, 120_000);
});

describe('a job still running when the grace period ends', () => {
  it('is released (unlocked with the reason, attempt counted) and runs to completion on another worker', async () => {
    let releaseStuck!: () => void;
    const stuck = new Promise<void>((r) => (releaseStuck = r));
    let started = 0;
    // Named sessions, so the test can wait for this worker's connections to end before its database is dropped.
    const firstUrl = new URL(t.db.connectionString);
    firstUrl.searchParams.set('application_name', 'drain-first');
    const first = await startWorker({
      connectionString: firstUrl.toString(),
      concurrency: 1,
      tasks: {
        test__long: async () => {
          started++;
          await stuck; // longer than any grace period here
        },
      },
    });
    await t.services.pool.query(`SELECT graphile_worker.add_job('test__long', '{}', max_attempts => 5)`);
    await until('the job to start', () => started === 1);
    expect((await jobRows('test__long'))[0]!.locked_at).not.toBeNull();

    await first.stop({ graceMs: 300 });
    expect(first.state()).toBe('stopped');
    const [released] = await jobRows('test__long');
    expect(released).toMatchObject({ locked_at: null, locked_by: null, attempts: 1, last_error: expect.stringContaining('stopping') });

    const done: string[] = [];
    const second = await startWorker({
      connectionString: t.db.connectionString,
      concurrency: 1,
      tasks: { test__long: async (_payload, helpers) => void done.push(String(helpers.job.id)) },
    });
    try {
      // graphile-worker retries it after its backoff (e^1 s for a first failure).
      await until('the released job to run again', () => done.length === 1, 30_000);
      expect(done).toEqual([released!.id]);
      await until('the job to be completed', async () => (await jobRows('test__long')).length === 0);
    } finally {
      await second.stop();
      // The task that ran on past the grace now ends, and with it the first worker's stop and its connections.
      releaseStuck();
      await until('the first worker to close its connections', async () => {
        const { rows } = await t.services.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'drain-first'`);
        return rows[0]!.n === 0;
      });
    }
  }, 60_000);
});
