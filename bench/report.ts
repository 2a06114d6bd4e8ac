// `npm run bench -- report [--v1-events N] [--v2-events N] [--rate R] [--seconds S]`: Stripe reporting against the
// simulator on loopback, in one run, into one database:
//   (a) v1 at Stripe's default limits (1,000 calls/s, one call in flight per customer and meter): events/s from
//       pending to reported, and the 429s received (must be 0 once the limiter is warm);
//   (b) v2 stream at Stripe's limit (10,000 events/s) and (c) with the simulator's limit lifted, which shows
//       Meterdesk's own ceiling on this machine (so the 10,000/s of (b) is Stripe's limit, not ours);
//   (d) accept-to-reported latency (p50/p99) while events are ingested at a sustained R events/s (v2).
// The worker is the production wiring (startStripe + createTaskList + startWorker) in this process.
import os from 'node:os';
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { startStripeSimulator, type StripeSimulator } from '../simulators/stripe/simulator';
import { startStripe } from '../app/server/stripe';
import { createServices, type Services } from '../app/server/services';
import { createTaskList } from '../jobs/tasks';
import { startWorker } from '../jobs/worker';
import { benchDatabase, fmt, machine, postgresCpu } from './_support';
import { deleteAllJobs } from '../app/db/graphile-jobs';

const CUSTOMERS = 1000;

interface PhaseResult {
  events: number;
  /** From the worker's start to the last event reported. */
  seconds: number;
  rate: number;
  /** From the first call to Stripe to the last event reported: the pace once the pipeline runs. */
  steadyRate: number;
  http429: number;
  http429AfterWarmup: number;
  /** CPU milliseconds per 1,000 events: this process (worker + simulator) and the PostgreSQL cluster. */
  cpu: { node: number; postgres: number | null };
}

export async function run(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      'v1-events': { type: 'string', default: '10000' },
      'v2-events': { type: 'string', default: '100000' },
      rate: { type: 'string', default: '5000' },
      seconds: { type: 'string', default: '10' },
      'tick-ms': { type: 'string', default: '50' },
    },
  });
  const db = await benchDatabase();
  const services = createServices({ connectionString: db.connectionString, poolSize: 16 });
  services.pool.on('connect', (client) => client.on('error', () => undefined));
  const sim = await startStripeSimulator({ seed: 1 });
  try {
    console.log(`reporting benchmark — ${machine()} — ${db.label} — simulator in this process on ${sim.url}`);
    // Other work on the machine shows up here: the figures below are only comparable at similar load.
    console.log(`load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    await seed(services, sim);
    // Warm-up, not measured: the first run pays for module loading and JIT compilation in this process.
    await throughput(services, sim, db.connectionString, 'v2', 3000);
    await throughput(services, sim, db.connectionString, 'v1', 500);

    const v1 = await throughput(services, sim, db.connectionString, 'v1', Number(values['v1-events']));
    console.log(
      `(a) v1, Stripe's default limits        ${fmt(v1.steadyRate)} events/s = ${fmt((v1.steadyRate / 1000) * 100, 1)}% of 1,000 calls/s (target >= 95%) ` +
        `[${fmt(v1.rate)} events/s counting the worker's start: ${fmt(v1.events)} in ${fmt(v1.seconds, 2)} s]; ` +
        `429s: ${v1.http429} total, ${v1.http429AfterWarmup} after the first second (target 0)`,
    );

    const v2 = await throughput(services, sim, db.connectionString, 'v2', Number(values['v2-events']));
    console.log(
      `(b) v2 stream, Stripe's limit 10,000/s  ${fmt(v2.steadyRate)} events/s (target >= 10,000: the limit is the bottleneck) ` +
        `[${fmt(v2.rate)} events/s counting the worker's start: ${fmt(v2.events)} in ${fmt(v2.seconds, 2)} s]; 429s: ${v2.http429}`,
    );

    console.log(`    ${cpuLine(v1)}`);
    console.log(`    ${cpuLine(v2)}`);
    sim.configure({ v2EventsPerSecond: 1_000_000 });
    const v2Open = await throughput(services, sim, db.connectionString, 'v2', Number(values['v2-events']), { v2EventsPerSecond: 1_000_000 });
    sim.configure({ v2EventsPerSecond: 10_000 });
    console.log(
      `(c) v2 stream, limit lifted            ${fmt(v2Open.steadyRate)} events/s: Meterdesk's own ceiling here ` +
        `[${fmt(v2Open.rate)} events/s counting the worker's start: ${fmt(v2Open.events)} in ${fmt(v2Open.seconds, 2)} s]`,
    );
    console.log(`    ${cpuLine(v2Open)}`);

    const lat = await latency(services, sim, db.connectionString, Number(values.rate), Number(values.seconds), Number(values['tick-ms']));
    console.log(
      `(d) latency at ${fmt(lat.offered)} events/s offered in batches of ${fmt(lat.batch)} (${fmt(lat.events)} events, v2): ` +
        `accept-to-reported p50 ${fmt(lat.p50)} ms, p99 ${fmt(lat.p99)} ms, max ${fmt(lat.max)} ms (target p99 < 2,000 ms)`,
    );
    console.log(
      `    CPU per 1,000 events, ingest and reporting together: ${fmt(lat.cpu.node)} ms in this process (load generator, ledger, worker, simulator)` +
        (lat.cpu.postgres === null ? '' : `, ${fmt(lat.cpu.postgres)} ms in PostgreSQL -> CPU capacity about ${fmt((os.cpus().length * 1_000_000) / (lat.cpu.node + lat.cpu.postgres))} events/s with every core`),
    );
    console.log(`load average at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  } finally {
    await sim.stop();
    await services.close();
    await db.stop();
  }
}

async function seed(services: Services, sim: StripeSimulator) {
  await services.pool.query(
    `INSERT INTO customers (id, external_id, processor, processor_customer_id, updated_at)
     SELECT gen_random_uuid(), 'bench-report-' || i, 'stripe', 'cus_bench_' || i, now() FROM generate_series(0, $1 - 1) i
     ON CONFLICT DO NOTHING`,
    [CUSTOMERS],
  );
  for (let i = 0; i < CUSTOMERS; i++) sim.addCustomer(`cus_bench_${i}`);
  sim.addMeter('ai_tokens');
}

let run_ = 0;

/** Ingests `count` events (no worker running), then starts a worker and times pending -> reported. */
async function throughput(
  services: Services,
  sim: StripeSimulator,
  connectionString: string,
  api: 'v1' | 'v2',
  count: number,
  processor: { v2EventsPerSecond?: number } = {},
): Promise<PhaseResult> {
  const prefix = `bench-${api}-${++run_}-`;
  await reset(services.pool, sim);
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < count) {
        const start = next;
        next += 1000;
        const batch = Array.from({ length: Math.min(1000, count - start) }, (_, k) => ({
          customer: `bench-report-${(start + k) % CUSTOMERS}`,
          eventName: 'ai_tokens',
          value: ((start + k) % 100) + 1,
          identifier: `${prefix}${start + k}`,
        }));
        const results = await services.ledger.reportUsageBatch(batch);
        if (results.some((r) => r.result !== 'accepted')) throw new Error('bench ingest: not all accepted');
      }
    }),
  );

  const pgCpu = await postgresCpu(services.pool);
  const pg0 = pgCpu();
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  const { stop } = await startReporting(connectionString, services.pool, sim.url, api, processor);
  try {
    await waitUntil(async () => !(await anyPending(services.pool)), 600_000);
  } finally {
    await stop();
  }
  const cpu = process.cpuUsage(cpu0);
  const pg1 = pgCpu();
  const { rows } = await services.pool.query<{ first: Date; last: Date; n: string; limited: string; limited_late: string }>(
    `SELECT max(reported_at) AS last, count(*) AS n, (SELECT min(started_at) FROM event_attempts) AS first,
            (SELECT count(*) FROM event_attempts WHERE outcome = 'rate_limited') AS limited,
            (SELECT count(*) FROM event_attempts WHERE outcome = 'rate_limited' AND started_at > $1::timestamptz + interval '1 second') AS limited_late
     FROM meter_events WHERE identifier LIKE $2 AND status = 'reported'`,
    [new Date(t0), `${prefix}%`],
  );
  const r = rows[0]!;
  if (Number(r.n) !== count) throw new Error(`${api}: only ${r.n} of ${count} reported`);
  const seconds = (r.last.getTime() - t0) / 1000;
  return {
    events: count,
    seconds,
    rate: count / seconds,
    steadyRate: count / ((r.last.getTime() - r.first.getTime()) / 1000),
    http429: sim.stats().rateLimited,
    http429AfterWarmup: Number(r.limited_late),
    cpu: {
      node: ((cpu.user + cpu.system) / 1000 / count) * 1000,
      postgres: pg0 === null || pg1 === null ? null : ((pg1 - pg0) / count) * 1000,
    },
  };
}

/** Ingests at `rate` events/s for `seconds` with the worker running, then reads accept-to-reported latencies. */
async function latency(services: Services, sim: StripeSimulator, connectionString: string, rate: number, seconds: number, tickMs: number) {
  const prefix = `bench-lat-${++run_}-`;
  await reset(services.pool, sim);
  const pgCpu = await postgresCpu(services.pool);
  const pg0 = pgCpu();
  const cpu0 = process.cpuUsage();
  const { stop } = await startReporting(connectionString, services.pool, sim.url, 'v2', {});
  const perTick = Math.round((rate * tickMs) / 1000);
  const ticks = Math.round((seconds * 1000) / tickMs);
  let sent = 0;
  try {
    const t0 = performance.now();
    const inflight: Array<Promise<unknown>> = [];
    for (let t = 0; t < ticks; t++) {
      // Open-loop load: each tick's batch starts on schedule whether or not earlier ones finished.
      const due = t0 + t * tickMs;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const start = sent;
      sent += perTick;
      inflight.push(
        services.ledger.reportUsageBatch(
          Array.from({ length: perTick }, (_, k) => ({
            customer: `bench-report-${(start + k) % CUSTOMERS}`,
            eventName: 'ai_tokens',
            value: 1,
            identifier: `${prefix}${start + k}`,
          })),
        ),
      );
    }
    await Promise.all(inflight);
    const offered = sent / ((performance.now() - t0) / 1000);
    await waitUntil(async () => !(await anyPending(services.pool)), 120_000);
    const cpu = process.cpuUsage(cpu0);
    const pg1 = pgCpu();
    const { rows } = await services.pool.query<{ p50: number; p99: number; max: number; n: string }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
              max(ms) AS max, count(*) AS n
       FROM (SELECT extract(epoch FROM reported_at - received_at) * 1000 AS ms FROM meter_events WHERE identifier LIKE $1) l`,
      [`${prefix}%`],
    );
    const r = rows[0]!;
    return {
      offered,
      batch: perTick,
      events: Number(r.n),
      p50: r.p50,
      p99: r.p99,
      max: r.max,
      cpu: {
        node: ((cpu.user + cpu.system) / 1000 / sent) * 1000,
        postgres: pg0 === null || pg1 === null ? null : ((pg1 - pg0) / sent) * 1000,
      },
    };
  } finally {
    await stop();
  }
}

async function startReporting(connectionString: string, pool: pg.Pool, apiBase: string, api: 'v1' | 'v2', processor: { v2EventsPerSecond?: number }) {
  const stripe = await startStripe({ pool, apiBase, api, allowSimulator: false, processor });
  const worker = await startWorker({ connectionString, concurrency: 8, tasks: createTaskList({ stripeReporting: stripe.reporting }), crontab: '' });
  return {
    async stop() {
      await worker.stop();
      await stripe.stop();
    },
  };
}

async function reset(pool: pg.Pool, sim: StripeSimulator) {
  sim.reset();
  await deleteAllJobs(pool);
  await pool.query(`TRUNCATE event_attempts, ops_events`);
  await pool.query(`DELETE FROM meter_events`);
  await pool.query(`VACUUM ANALYZE meter_events`);
}

// Cheap enough to poll while measuring: stops at the first pending row.
async function anyPending(pool: pg.Pool): Promise<boolean> {
  const { rows } = await pool.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM meter_events WHERE status = 'pending') AS any`);
  return rows[0]!.any;
}

async function waitUntil(done: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function cpuLine(r: PhaseResult): string {
  const pg = r.cpu.postgres;
  const total = r.cpu.node + (pg ?? 0);
  return (
    `CPU per 1,000 events: ${fmt(r.cpu.node)} ms in this process (worker + simulator), ` +
    (pg === null ? 'PostgreSQL not measurable (not local)' : `${fmt(pg)} ms in PostgreSQL`) +
    (pg === null ? '' : ` -> CPU capacity about ${fmt((os.cpus().length * 1_000_000) / total)} events/s with every core of this machine`)
  );
}

