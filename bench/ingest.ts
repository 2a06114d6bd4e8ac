// `npm run bench -- ingest [--events N]`: ledger ingest throughput against a raw unnest INSERT of the same rows,
// in one run, into one database: (a) library batches, (b) HTTP batches of 1,000, (c) HTTP single events at
// concurrency 64 (group commit). The web process is the real CLI (`web`) in a child process; this process only
// generates load.
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createApiKey } from '../app/billing/access/api-keys';
import { createServices } from '../app/server/services';
import { newEventId } from '../app/billing/ids';
import { benchDatabase, fmt, machine, percentile, postgresCpu, processCpu } from './_support';
import { deleteAllJobs } from '../app/db/graphile-jobs';
import { startedUrl } from '../test/support/process-output';

const CUSTOMERS = 100;
const WARMUP_REQUESTS = 5_000;

export async function run(args: string[]) {
  const { values } = parseArgs({ args, options: { events: { type: 'string', default: '200000' }, single: { type: 'string' } } });
  const total = Number(values.events);
  const singleTotal = Number(values.single ?? Math.min(total, 60_000));
  const db = await benchDatabase();
  const services = createServices({ connectionString: db.connectionString });
  try {
    console.log(`ingest benchmark — ${machine()} — ${db.label}`);
    await measureIngest(services, db.connectionString, { total, singleTotal });
  } finally {
    await services.close();
    await db.stop();
  }
}

export interface IngestFigures {
  /** events/s of the raw unnest INSERT baseline, (a), (b); requests/s of (c). */
  raw: number;
  library: number;
  httpBatch: number;
  httpSingle: number;
  singleP50: number;
  singleP99: number;
}

let measurement = 0;

/**
 * The baseline and (a)/(b)/(c) against the database `services` uses, printing one line each: `total` events for
 * the baseline, (a) and (b), `singleTotal` requests for (c) (after a warm-up). The web process is started here and
 * stopped before returning; the reporting jobs the ingest enqueues are deleted at the end (no worker runs).
 */
export async function measureIngest(
  services: ReturnType<typeof createServices>,
  connectionString: string,
  { total, singleTotal }: { total: number; singleTotal: number },
): Promise<IngestFigures> {
  // Identifiers unique per measurement, so one process can measure the same database more than once.
  const tag = `${process.pid}-${++measurement}`;
  const customerIds = await seed(services);
  const { key } = await createApiKey(services.prisma, { name: 'bench' });
  let seq = 0;
  const event = (i: number) => ({
    customer: `bench-${i % CUSTOMERS}`,
    event_name: 'ai_tokens',
    value: (i % 5000) + 1,
    identifier: `bench-${tag}-${seq++}`,
  });

  // Baseline: the same rows as a raw unnest INSERT (the fastest SQL form short of COPY), batches of 1,000.
  const raw = await timed(total, async () => {
    for (let i = 0; i < total; i += 1000) await rawInsert(services.pool, customerIds, Math.min(1000, total - i), `bench-${tag}-raw-${i}`);
  });
  const rawRate = total / raw;
  console.log(`baseline  raw INSERT ... SELECT FROM unnest   ${fmt(rawRate)} events/s`);

  const lib = await timed(total, async () => {
    for (let i = 0; i < total; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, total - i) }, (_, j) => event(i + j));
      const results = await services.ledger.ingest(batch);
      if (results.some((r) => r.result !== 'accepted')) throw new Error('library batch: not all accepted');
    }
  });
  const libRate = total / lib;
  console.log(`(a) library reportUsageBatch (1,000/call)     ${fmt(libRate)} events/s   ${fmt((libRate / rawRate) * 100)}% of raw   (target >= 50%)`);

  const web = await startWeb(connectionString);
  try {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    // (b) HTTP batches of 1,000, 4 requests in flight.
    const batches = Math.ceil(total / 1000);
    let next = 0;
    const httpBatch = await timed(total, async () => {
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < batches) {
            const b = next++;
            const body = JSON.stringify({ events: Array.from({ length: Math.min(1000, total - b * 1000) }, (_, j) => event(b * 1000 + j)) });
            const res = await post(agent, web.url, key, body);
            if (res.status !== 200 || !res.body.includes('"rejected":0')) throw new Error(`batch ${res.status} ${res.body.slice(0, 200)}`);
          }
        }),
      );
    });
    const batchRate = total / httpBatch;
    console.log(`(b) HTTP batches of 1,000 (4 in flight)       ${fmt(batchRate)} events/s   ${fmt((batchRate / rawRate) * 100)}% of raw   (target >= 30,000/s)`);

    // (c) HTTP single events, 64 concurrent connections, each waiting for its own commit.
    const host = new URL(web.url).host;
    const head = `POST /api/v1/events HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\nauthorization: Bearer ${key}\r\n`;
    const connections = await Promise.all(Array.from({ length: 64 }, () => RawConnection.open(web.url)));
    // A worker would take the reporting jobs as they come; none runs here, so the queue is emptied every 250 ms
    // instead of growing by a job per commit (add_job gets slower as graphile-worker's job table grows).
    const drain = setInterval(() => void deleteAllJobs(services.pool).catch(() => {}), 250);
    // Closed loop: each connection sends its next request when the previous one is answered.
    const closedLoop = async (requests: number, latencies?: number[]) => {
      let sent = 0;
      await Promise.all(
        connections.map(async (connection) => {
          while (sent < requests) {
            sent++;
            const t0 = performance.now();
            const res = await connection.request(head, JSON.stringify(event(sent)));
            latencies?.push(performance.now() - t0);
            if (res.status !== 202) throw new Error(`single ${res.status} ${res.body}`);
          }
        }),
      );
    };
    // Warm-up, not measured: a freshly started server runs its first few thousand requests through V8's lower
    // tiers (in cold runs the first 250 ms held a quarter of the slowest 1 %); a server in service is past that.
    await closedLoop(WARMUP_REQUESTS);
    const latencies: number[] = [];
    const webCpu = processCpu(web.child.pid!);
    const pgCpu = await postgresCpu(services.pool);
    const cpu0 = { web: webCpu(), pg: pgCpu(), bench: process.cpuUsage() };
    const single = await timed(singleTotal, () => closedLoop(singleTotal, latencies));
    const cpu1 = { web: webCpu(), pg: pgCpu(), bench: process.cpuUsage(cpu0.bench) };
    clearInterval(drain);
    for (const c of connections) c.close();
    latencies.sort((a, b) => a - b);
    const singleRate = singleTotal / single;
    console.log(
      `(c) HTTP single events, concurrency 64        ${fmt(singleRate)} requests/s   p50 ${fmt(percentile(latencies, 50), 1)} ms   p99 ${fmt(percentile(latencies, 99), 1)} ms   ${fmt((singleRate / rawRate) * 100, 1)}% of raw   (target >= 2,000/s, p99 < 25 ms)`,
    );
    const perRequest = (ms: number | null) => (ms === null ? '?' : `${fmt((ms * 1000) / singleTotal)} µs`);
    const delta = (a: number | null, b: number | null) => (a === null || b === null ? null : b - a);
    console.log(
      `    CPU per request: web process ${perRequest(delta(cpu0.web, cpu1.web))}, PostgreSQL ${perRequest(delta(cpu0.pg, cpu1.pg))}, ` +
        `load generator ${perRequest((cpu1.bench.user + cpu1.bench.system) / 1000)}; p90 ${fmt(percentile(latencies, 90), 1)} ms, p99.9 ${fmt(percentile(latencies, 99.9), 1)} ms, max ${fmt(latencies.at(-1) ?? NaN, 1)} ms`,
    );
    const stored = await services.pool.query(`SELECT count(*)::int AS n FROM meter_events WHERE identifier LIKE $1`, [`bench-${tag}-%`]);
    console.log(`stored ${fmt(stored.rows[0].n)} events in this run (${fmt(total)} raw + ${fmt(total)} library + ${fmt(total)} HTTP batch + ${fmt(singleTotal + WARMUP_REQUESTS)} HTTP single, ${fmt(WARMUP_REQUESTS)} of them warm-up)`);
    agent.destroy();
    return { raw: rawRate, library: libRate, httpBatch: batchRate, httpSingle: singleRate, singleP50: percentile(latencies, 50), singleP99: percentile(latencies, 99) };
  } finally {
    web.child.kill('SIGTERM');
    await new Promise((r) => web.child.once('exit', r));
    await deleteAllJobs(services.pool);
  }
}

async function timed(_n: number, fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function seed(services: ReturnType<typeof createServices>): Promise<Array<{ id: string; sub: string }>> {
  const plan = await services.prisma.plan.findUniqueOrThrow({ where: { code: 'business' } });
  const out: Array<{ id: string; sub: string }> = [];
  for (let i = 0; i < CUSTOMERS; i++) {
    const c = await services.prisma.customer.upsert({
      where: { externalId: `bench-${i}` },
      update: {},
      create: { externalId: `bench-${i}`, processor: 'stripe', processorCustomerId: `cus_bench_${i}` },
    });
    const s = await services.prisma.subscription.upsert({
      where: { processor_processorSubscriptionId: { processor: 'stripe', processorSubscriptionId: `sub_bench_${i}` } },
      update: {},
      create: { customerId: c.id, planId: plan.id, processor: 'stripe', processorSubscriptionId: `sub_bench_${i}`, currentPeriodStart: new Date(Date.now() - 86_400_000), currentPeriodEnd: new Date(Date.now() + 29 * 86_400_000) },
    });
    out.push({ id: c.id, sub: s.id });
  }
  return out;
}

async function rawInsert(pool: pg.Pool, customers: Array<{ id: string; sub: string }>, n: number, prefix: string) {
  const meter = await pool.query(`SELECT id FROM meters WHERE event_name = 'ai_tokens'`);
  const meterId = meter.rows[0].id;
  const now = new Date();
  const ids: string[] = [], idents: string[] = [], cust: string[] = [], subs: string[] = [], values: number[] = [];
  for (let j = 0; j < n; j++) {
    const c = customers[j % customers.length]!;
    ids.push(newEventId());
    idents.push(`${prefix}-${j}`);
    cust.push(c.id);
    subs.push(c.sub);
    values.push(j + 1);
  }
  await pool.query(
    // The same storage work as the ledger's insert: the identifier claimed (ADR 032), then the row.
    `WITH t AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::bigint[]) AS t(id, identifier, customer_id, subscription_id, value)),
          claimed AS (INSERT INTO meter_event_identifiers (identifier, event_id) SELECT identifier, id FROM t)
     INSERT INTO meter_events (id, identifier, customer_id, subscription_id, event_name, meter_id, value, occurred_at, received_at, properties, processor, status)
     SELECT id, identifier, customer_id, subscription_id, 'ai_tokens', $6::uuid, value, $7, $7, NULL, 'stripe', 'pending' FROM t`,
    [ids, idents, cust, subs, values, meterId, now],
  );
}

function post(agent: http.Agent, url: string, key: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/api/v1/events`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'content-length': Buffer.byteLength(body) } },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * A keep-alive HTTP/1.1 connection that writes a request and reads one Content-Length response, with none of
 * node:http's per-request machinery: at 3,000+ requests/s on two shared cores, node:http's client cost the load
 * generator ~45 % of a core that the server under test then did not have (wrk and autocannon exist for the same
 * reason). Only for our own server's responses, which always carry Content-Length (app/api/problem.ts).
 */
class RawConnection {
  private buffer = Buffer.alloc(0);
  private waiting: { resolve: (r: { status: number; body: string }) => void; reject: (e: Error) => void } | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk) => {
      this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
      this.drain();
    });
    socket.on('error', (e) => this.waiting?.reject(e));
    socket.on('close', () => this.waiting?.reject(new Error('connection closed')));
  }

  static open(url: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(port), hostname, () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  request(head: string, body: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(`${head}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
  }

  private drain() {
    const end = this.buffer.indexOf('\r\n\r\n');
    if (end < 0 || !this.waiting) return;
    const head = this.buffer.subarray(0, end).toString('latin1');
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? NaN);
    if (!Number.isFinite(length)) return this.waiting.reject(new Error(`response without content-length: ${head}`));
    if (this.buffer.length < end + 4 + length) return;
    const body = this.buffer.subarray(end + 4, end + 4 + length).toString('utf8');
    this.buffer = this.buffer.subarray(end + 4 + length);
    const waiting = this.waiting;
    this.waiting = null;
    waiting.resolve({ status: Number(head.slice(9, 12)), body });
  }

  close() {
    this.socket.destroy();
  }
}

function startWeb(connectionString: string): Promise<{ child: ReturnType<typeof spawn>; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/cli/main.ts', 'web'], {
    env: { ...process.env, DATABASE_URL: connectionString, PORT: '0', HOST: '127.0.0.1', NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const url = startedUrl(out);
      if (url) resolve({ child, url });
    });
    child.once('exit', (code) => reject(new Error(`web exited ${code}: ${out}`)));
  });
}
