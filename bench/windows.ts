// `npm run bench -- windows [--subscriptions N] [--events-per E] [--concurrency C] [--latency-concurrency C]
//                           [--sale-latency-ms MS] [--phase a|b|both]`:
// Braintree renewal windows from "the period has ended" to `paid`, against the simulator on loopback:
//   (A) no simulated latency: windows/s (target >= 200/s);
//   (B) the simulator holds every sale for 300 ms: windows/s (target >= 100/s through bounded concurrency).
// Each phase gets its own N subscriptions (E recorded events each, one open window on an ended period), seeded
// before the clock starts. The timed part is the production path in this process: startBraintree (the processor
// on the real `braintree` SDK, pointed at the simulator like BRAINTREE_API_BASE) + createTaskList + startWorker,
// driven by one `braintree__close_windows` run: close_window jobs author the invoices of up to 50 windows each and
// enqueue one settle_window job for them, which sends one Transaction.sale per window (16 in flight). Both phases use
// the production worker concurrency (8) unless told otherwise.
import os from 'node:os';
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { startBraintreeSimulator, type BraintreeSimulator } from '../simulators/braintree/simulator';
import { DEFAULT_SALES_IN_FLIGHT, orderIdFor } from '../app/billing/windows/settlement';
import { openWindowNow } from '../app/billing/windows/windows';
import { DEFAULT_PLANS } from '../app/seed/base';
import { startBraintree } from '../app/server/braintree';
import { createServices, type Services } from '../app/server/services';
import { createTaskList } from '../jobs/tasks';
import { createCloseWindowsTask } from '../jobs/tasks/braintree__close_windows';
import { startWorker } from '../jobs/worker';
import { benchDatabase, fmt, machine, percentile, postgresCpu } from './_support';
import { addJob, deleteAllJobs } from '../app/db/graphile-jobs';

const DAY = 86_400_000;
/** `meterdesk start`'s worker default (app/cli/run.ts, WORKER_CONCURRENCY): 8 jobs at once, 12 pooled clients. */
const PRODUCTION_CONCURRENCY = 8;

interface Seeded {
  label: string;
  windowIds: string[];
  periodEnd: Date;
  eventsPerWindow: number;
  events: number;
  seconds: { customers: number; windows: number; events: number };
}

interface PhaseResult {
  windows: number;
  concurrency: number;
  /** From the close_windows job being queued to the last window paid. */
  seconds: number;
  rate: number;
  /** From the first window closed to the last paid: the pace once the pipeline runs. */
  steadyRate: number;
  closeSeconds: number;
  /** Closed -> paid per window, ms. */
  settle: { p50: number; p99: number };
  cpu: Cpu;
  /** Authoring (close_window jobs) and settling (settle_window jobs, one sale each), measured apart. */
  stages: { closeRate: number; settleRate: number; closeCpu: Cpu; settleCpu: Cpu } | null;
  checks: string[];
}

interface Cpu {
  node: number;
  postgres: number | null;
}

export async function run(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      subscriptions: { type: 'string', default: '10000' },
      'events-per': { type: 'string', default: '100' },
      concurrency: { type: 'string', default: String(PRODUCTION_CONCURRENCY) },
      'latency-concurrency': { type: 'string', default: String(PRODUCTION_CONCURRENCY) },
      'sale-latency-ms': { type: 'string', default: '300' },
      phase: { type: 'string', default: 'both' },
    },
  });
  const n = positive(values.subscriptions, 'subscriptions');
  const eventsPer = positive(values['events-per'], 'events-per');
  const concurrency = positive(values.concurrency, 'concurrency');
  const latencyConcurrency = positive(values['latency-concurrency'], 'latency-concurrency');
  const saleLatencyMs = Number(values['sale-latency-ms']);
  const phases = values.phase === 'both' ? ['a', 'b'] : [values.phase];
  if (!phases.every((p) => p === 'a' || p === 'b')) throw new Error('--phase is a, b or both');

  const db = await benchDatabase();
  // Usage a day old is inside the ledger's default 35 days; the pool serves seeding and the polling only.
  const services = createServices({ connectionString: db.connectionString, poolSize: 16 });
  services.pool.on('connect', (client) => client.on('error', () => undefined));
  // Sandbox "decline by amount" rules off: ordinary invoices must not decline by chance.
  const sim = await startBraintreeSimulator({ amountRules: false });
  try {
    console.log(`windows benchmark — ${machine()} — ${db.label} — Braintree simulator in this process on ${sim.url}`);
    console.log(`load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    console.log(`${fmt(n)} subscriptions × ${fmt(eventsPer)} events per phase; worker concurrency ${concurrency} (A), ${latencyConcurrency} (B)`);

    if (phases.includes('a')) {
      const seeded = await seed(services, sim, 'a', n, eventsPer);
      printSeed(seeded);
      sim.configure({ saleLatencyMs: 0 });
      const a = await settleAll(services, sim, db.connectionString, seeded, concurrency);
      console.log(
        `(A) no simulated latency     ${fmt(a.steadyRate)} windows/s from first close to last paid (target >= 200: ${fmt(a.steadyRate / 200, 2)}×) ` +
          `[${fmt(a.rate)} windows/s counting the cron job's start: ${fmt(a.windows)} in ${fmt(a.seconds, 2)} s; worker concurrency ${a.concurrency}]`,
      );
      printDetail(a);
    }
    if (phases.includes('b')) {
      const seeded = await seed(services, sim, 'b', n, eventsPer);
      printSeed(seeded);
      sim.configure({ saleLatencyMs });
      const b = await settleAll(services, sim, db.connectionString, seeded, latencyConcurrency);
      sim.configure({ saleLatencyMs: 0 });
      console.log(
        `(B) ${saleLatencyMs} ms per sale         ${fmt(b.steadyRate)} windows/s from first close to last paid (target >= 100: ${fmt(b.steadyRate / 100, 2)}×) ` +
          `[${fmt(b.rate)} windows/s counting the cron job's start: ${fmt(b.windows)} in ${fmt(b.seconds, 2)} s; worker concurrency ${b.concurrency}, ` +
          `${DEFAULT_SALES_IN_FLIGHT} sales in flight per settle job, ceiling from latency alone ${fmt((b.concurrency * DEFAULT_SALES_IN_FLIGHT * 1000) / saleLatencyMs)}/s]`,
      );
      printDetail(b);
    }
    console.log(`load average at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  } finally {
    await sim.stop();
    await services.close();
    await db.stop();
  }
}

function positive(v: string | undefined, name: string): number {
  const x = Number(v);
  if (!Number.isInteger(x) || x <= 0) throw new Error(`--${name} must be a positive integer`);
  return x;
}

function printSeed(s: Seeded) {
  console.log(
    `    seeded phase ${s.label.toUpperCase()} (not timed): ${fmt(s.windowIds.length)} customers + subscriptions in ${fmt(s.seconds.customers, 1)} s, ` +
      `windows opened in ${fmt(s.seconds.windows, 1)} s, ${fmt(s.events)} events in ${fmt(s.seconds.events, 1)} s (${fmt(s.events / s.seconds.events)}/s via reportUsageBatch)`,
  );
}

function printDetail(r: PhaseResult) {
  const pg = r.cpu.postgres;
  console.log(
    `    all closed after ${fmt(r.closeSeconds, 2)} s; closed -> paid per window p50 ${fmt(r.settle.p50)} ms, p99 ${fmt(r.settle.p99)} ms; ` +
      `CPU per window: ${fmt(r.cpu.node, 2)} ms in this process (worker + SDK + simulator)` +
      (pg === null ? '' : `, ${fmt(pg, 2)} ms in PostgreSQL -> CPU capacity about ${fmt((os.cpus().length * 1000) / (r.cpu.node + pg))} windows/s with every core`),
  );
  if (r.stages) {
    const cpu = (c: Cpu) => `${fmt(c.node, 2)} ms here + ${c.postgres === null ? '?' : fmt(c.postgres, 2)} ms PostgreSQL CPU per window`;
    console.log(`    authoring (close_window jobs): ${fmt(r.stages.closeRate)} windows/s, ${cpu(r.stages.closeCpu)}`);
    console.log(`    settling (settle_window jobs, one sale each): ${fmt(r.stages.settleRate)} windows/s, ${cpu(r.stages.settleCpu)}`);
  }
  for (const c of r.checks) console.log(`    check: ${c}`);
}

// ───────────────────────────── seeding ─────────────────────────────

export async function seed(services: Services, sim: BraintreeSimulator, label: string, n: number, eventsPer: number): Promise<Seeded> {
  const pool = services.pool;
  // The period ended as seeding starts: every event lies inside it and within the ledger's accepted age.
  const periodEnd = new Date(Math.floor(Date.now() / 1000) * 1000);
  const periodStart = new Date(periodEnd.getTime() - DAY);
  // Unique per run, so a database given by DATABASE_URL can be used again.
  const tag = `${label}${periodEnd.getTime().toString(36)}`;
  const ext = (i: number) => `bench-win-${tag}-${i}`;
  const btCustomer = (i: number) => `bt_bench_${tag}_${i}`;
  const token = (i: number) => `tok_bench_${tag}_${i}`;

  let t = performance.now();
  for (let i = 0; i < n; i++) sim.addPaymentMethod(btCustomer(i), token(i), { makeDefault: true });
  const plans = await pool.query<{ id: string; code: string }>(`SELECT id, code FROM plans WHERE code = ANY($1::text[]) ORDER BY code`, [DEFAULT_PLANS.map((p) => p.code)]);
  if (plans.rows.length !== DEFAULT_PLANS.length) throw new Error('the base seed plans are missing');
  const planIds = plans.rows.map((p) => p.id);
  await pool.query(
    `WITH c AS (
       INSERT INTO customers (id, external_id, processor, processor_customer_id, default_payment_method_token, updated_at)
       SELECT gen_random_uuid(), $1 || i, 'braintree', $2 || i, $3 || i, now() FROM generate_series(0, $4 - 1) i
       RETURNING id, external_id
     )
     INSERT INTO subscriptions (id, customer_id, plan_id, processor, processor_subscription_id, status, current_period_start, current_period_end, updated_at)
     SELECT gen_random_uuid(), c.id, ($5::uuid[])[1 + (substr(c.external_id, length($1) + 1)::int % cardinality($5::uuid[]))],
            'braintree', 'bt_sub_' || c.external_id, 'active', $6, $7, now()
     FROM c`,
    [`bench-win-${tag}-`, `bt_bench_${tag}_`, `tok_bench_${tag}_`, n, planIds, periodStart, periodEnd],
  );
  const customersSeconds = (performance.now() - t) / 1000;

  t = performance.now();
  const { rows: subs } = await pool.query<{ id: string }>(
    `SELECT s.id FROM subscriptions s JOIN customers c ON c.id = s.customer_id WHERE c.external_id LIKE $1 ORDER BY s.id`,
    [`bench-win-${tag}-%`],
  );
  const windowIds: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < subs.length) {
        const s = subs[next++]!;
        const opened = await openWindowNow(pool, s.id, periodStart, periodEnd);
        if (opened.status !== 'opened') throw new Error(`window for ${s.id}: ${opened.status}`);
        windowIds.push(opened.window.id);
      }
    }),
  );
  const windowsSeconds = (performance.now() - t) / 1000;

  // The ledger's own batch ingest (validation, lookups, one unnest INSERT per 1,000), 10 customers per batch.
  t = performance.now();
  const perBatch = Math.max(1, Math.floor(1000 / eventsPer));
  const step = DAY / eventsPer;
  let cursor = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (cursor < n) {
        const from = cursor;
        cursor += perBatch;
        const batch: Parameters<Services['ledger']['reportUsageBatch']>[0] = [];
        for (let i = from; i < Math.min(n, from + perBatch); i++) {
          for (let k = 0; k < eventsPer; k++) {
            batch.push({ customer: ext(i), eventName: 'ai_tokens', value: 1 + ((i * 7919 + k * 104_729) % 1000), timestamp: new Date(periodStart.getTime() + Math.floor((k + 0.5) * step)) });
          }
        }
        for (let j = 0; j < batch.length; j += 1000) {
          const results = await services.ledger.reportUsageBatch(batch.slice(j, j + 1000));
          const bad = results.find((r) => r.result !== 'accepted');
          if (bad) throw new Error(`bench ingest: ${JSON.stringify(bad)}`);
        }
      }
    }),
  );
  const eventsSeconds = (performance.now() - t) / 1000;
  await pool.query(`VACUUM ANALYZE meter_events`);
  await pool.query(`VACUUM ANALYZE windows`);
  return { label, windowIds, periodEnd, eventsPerWindow: eventsPer, events: n * eventsPer, seconds: { customers: customersSeconds, windows: windowsSeconds, events: eventsSeconds } };
}

// ───────────────────────────── the timed phase ─────────────────────────────

async function settleAll(services: Services, sim: BraintreeSimulator, connectionString: string, seeded: Seeded, concurrency: number): Promise<PhaseResult> {
  const pool = services.pool;
  const n = seeded.windowIds.length;
  await deleteAllJobs(pool);
  const braintree = await startBraintree({ pool, apiBase: sim.url, allowSimulator: false });
  const tasks = createTaskList({ braintree: { processor: braintree.processor, closeGraceMs: 0 } });
  // The cron task queues at most 5,000 closes per run, one run a minute in production (so at most 5,000 closes a
  // minute in a burst); one run here must cover every window of the phase, so the bench raises the limit.
  tasks.braintree__close_windows = createCloseWindowsTask({ graceMs: 0, limit: n });
  // A settle job holds its client across the sale (advisory lock), so the pool covers the concurrency, as in
  // `meterdesk start` (8 jobs, 12 clients).
  const worker = await startWorker({ connectionString, concurrency, tasks, crontab: '', maxPoolSize: concurrency + 4 });
  const pgCpu = await postgresCpu(pool);
  const pg0 = pgCpu();
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  let closedAt: { ms: number; cpu: NodeJS.CpuUsage; pg: number | null } | undefined;
  let end: { cpu: NodeJS.CpuUsage; pg: number | null } | undefined;
  try {
    await addJob(pool, 'braintree__close_windows', {});
    const deadline = t0 + Math.max(120_000, n * 100);
    for (;;) {
      const { rows } = await pool.query<{ state: string; n: string }>(
        `SELECT state::text AS state, count(*) AS n FROM windows WHERE period_end = $1 GROUP BY state`,
        [seeded.periodEnd],
      );
      const byState = Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
      // Close jobs all run before the first settle job (same run_at order), so "none open" splits the two stages.
      if (!closedAt && !byState.open) closedAt = { ms: Date.now(), cpu: process.cpuUsage(cpu0), pg: pgCpu() };
      if ((byState.paid ?? 0) === n) {
        // Read while the worker's backends are alive: an exited backend's CPU reaches the postmaster's child
        // times only once it is reaped, so a reading taken during the shutdown can miss it.
        end = { cpu: process.cpuUsage(cpu0), pg: pgCpu() };
        break;
      }
      const stuck = Object.keys(byState).filter((s) => !['open', 'closed', 'settling', 'paid'].includes(s));
      if (stuck.length > 0 || Date.now() > deadline) throw new Error(`phase ${seeded.label}: windows by state ${JSON.stringify(byState)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await worker.stop();
    await braintree.stop();
  }
  const { cpu, pg: pg1 } = end!;

  const { rows } = await pool.query<{ first_closed: Date; last_closed: Date; last_paid: Date }>(
    `SELECT min(closed_at) AS first_closed, max(closed_at) AS last_closed, max(paid_at) AS last_paid FROM windows WHERE id = ANY($1::uuid[])`,
    [seeded.windowIds],
  );
  const r = rows[0]!;
  const { rows: lat } = await pool.query<{ ms: number }>(
    `SELECT extract(epoch FROM paid_at - closed_at)::float8 * 1000 AS ms FROM windows WHERE id = ANY($1::uuid[]) ORDER BY 1`,
    [seeded.windowIds],
  );
  const sorted = lat.map((l) => l.ms);
  const seconds = (r.last_paid.getTime() - t0) / 1000;
  return {
    windows: n,
    concurrency,
    seconds,
    rate: n / seconds,
    steadyRate: n / ((r.last_paid.getTime() - r.first_closed.getTime()) / 1000),
    closeSeconds: (r.last_closed.getTime() - t0) / 1000,
    settle: { p50: percentile(sorted, 50), p99: percentile(sorted, 99) },
    cpu: {
      node: (cpu.user + cpu.system) / 1000 / n,
      postgres: pg0 === null || pg1 === null ? null : (pg1 - pg0) / n,
    },
    stages: closedAt
      ? {
          closeRate: n / ((closedAt.ms - t0) / 1000),
          settleRate: n / ((r.last_paid.getTime() - closedAt.ms) / 1000),
          closeCpu: { node: (closedAt.cpu.user + closedAt.cpu.system) / 1000 / n, postgres: pg0 === null || closedAt.pg === null ? null : (closedAt.pg - pg0) / n },
          settleCpu: {
            node: (cpu.user + cpu.system - closedAt.cpu.user - closedAt.cpu.system) / 1000 / n,
            postgres: pg1 === null || closedAt.pg === null ? null : (pg1 - closedAt.pg) / n,
          },
        }
      : null,
    checks: await verify(pool, sim, seeded, seeded.eventsPerWindow),
  };
}

/** Every window paid, exactly one sale per order id (the simulator's inspection endpoint), each charging its invoice. */
async function verify(pool: pg.Pool, sim: BraintreeSimulator, seeded: Seeded, eventsPer: number): Promise<string[]> {
  const n = seeded.windowIds.length;
  const { rows } = await pool.query<{ window_id: string; state: string; total_minor: string; amount_minor: string | null; tries: number | null; events: string }>(
    `SELECT w.id AS window_id, w.state::text AS state, i.total_minor::text AS total_minor, a.amount_minor::text AS amount_minor, a.tries,
            COALESCE(e.events, 0) AS events
     FROM windows w LEFT JOIN invoices i ON i.window_id = w.id LEFT JOIN charge_attempts a ON a.window_id = w.id
     LEFT JOIN (SELECT window_id, count(*) AS events FROM meter_events WHERE window_id = ANY($1::uuid[]) AND status = 'matched' GROUP BY window_id) e
       ON e.window_id = w.id
     WHERE w.id = ANY($1::uuid[])`,
    [seeded.windowIds],
  );
  const notPaid = rows.filter((r) => r.state !== 'paid').length;
  const zero = rows.filter((r) => !(BigInt(r.total_minor ?? '0') > 0n)).length;
  const retried = rows.filter((r) => r.tries !== 1).length;
  const wrongEvents = rows.filter((r) => Number(r.events) !== eventsPer).length;

  const res = await fetch(`${sim.url}/__simulator/sales`);
  const body = (await res.json()) as { data: Array<{ orderId: string | null; amount: string }>; counts: Record<string, number>; approved_counts: Record<string, number> };
  const amounts = new Map(body.data.map((s) => [s.orderId, s.amount]));
  let notOne = 0;
  let notApproved = 0;
  let wrongAmount = 0;
  let totalMinor = 0n;
  for (const r of rows) {
    const orderId = orderIdFor(r.window_id);
    if (body.counts[orderId] !== 1) notOne++;
    if (body.approved_counts[orderId] !== 1) notApproved++;
    totalMinor += BigInt(r.total_minor ?? '0');
    // Invoices are in USD: the SDK sends minor units as "d.cc".
    const expected = r.total_minor === null ? null : (Number(r.total_minor) / 100).toFixed(2);
    if (amounts.get(orderId) !== expected) wrongAmount++;
  }
  const problems = [notPaid, zero, retried, wrongEvents, notOne, notApproved, wrongAmount, rows.length === n ? 0 : 1].some((x) => x > 0);
  const lines = [
    `${fmt(rows.length - notPaid)}/${fmt(n)} windows paid; ${fmt(n - zero)}/${fmt(n)} invoices with a non-zero total (sum ${(Number(totalMinor) / 100).toFixed(2)} USD); ` +
      `${fmt(n - wrongEvents)}/${fmt(n)} windows billed all ${eventsPer} of their events`,
    `simulator /__simulator/sales: ${fmt(n - notOne)}/${fmt(n)} order ids with exactly one sale, ${fmt(n - notApproved)} approved, ` +
      `${fmt(n - wrongAmount)} charging exactly the invoice total; ${fmt(n - retried)}/${fmt(n)} charge attempts sent once`,
  ];
  if (problems) throw new Error(`phase ${seeded.label} failed verification:\n  ${lines.join('\n  ')}`);
  return lines;
}

