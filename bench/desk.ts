// `npm run bench -- desk [--scale 1m|demo] [--samples N] [--warmup N]`: server time of the desk's read pages on a ledger
// at scale (seedScale: S events, S/10 windows), against the real web process (the CLI `web` in a child process,
// production build) on loopback, signed in as an operator. Requests are sequential, after a warm-up; the time is
// request sent to last byte received. Target: p95 < 100 ms per page. Pages are the PAGES list below (one line each).
// `--scale demo` measures the same pages on the demo `npm start` makes, in its own process (runOnDemo).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createUser } from '../app/billing/access/users';
import { parseScale, seedScale } from '../app/seed/scale';
import { createPrisma } from '../app/db/clients';
import { ensureFreshBuild } from '../test/support/desk-build';
import { benchDatabase, fmt, machine, percentile } from './_support';
import { startedUrl } from '../test/support/process-output';
import { demoCredentials, demoDatabase, startDemo, stopDemo, waitForDemoTrouble } from '../test/support/demo';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const TARGET_MS = 100;

/** Values picked from the seeded data, for the pages' filters. */
interface Sample {
  customer: string;
  eventName: string;
  failedEventId: string;
  identifier: string;
  from: string;
  to: string;
  /** The "next" (older) link of the unfiltered events page: keyset page 2. */
  eventsPage2: string;
  /** A Braintree customer with invoices, of median count. */
  invoiceCustomer: string;
  /** A UTC day ten days back: invoices whose period ended since. */
  periodFrom: string;
}

// Adding a page is one line here.
const PAGES = (s: Sample): Array<{ label: string; path: string }> => [
  { label: 'overview', path: '/' },
  { label: 'events', path: '/events' },
  { label: 'events status=failed', path: '/events?status=failed' },
  { label: 'events status=pending', path: '/events?status=pending' },
  { label: 'events customer', path: `/events?customer=${encodeURIComponent(s.customer)}` },
  { label: 'events meter (ai_tokens)', path: '/events?eventName=ai_tokens' },
  { label: `events meter (${s.eventName})`, path: `/events?eventName=${encodeURIComponent(s.eventName)}` },
  { label: 'events processor=braintree', path: '/events?processor=braintree' },
  { label: 'events received in 1 h', path: `/events?from=${s.from}&to=${s.to}` },
  { label: 'events usage time in 1 h', path: `/events?time=occurred&from=${s.from}&to=${s.to}` },
  { label: 'events failed + received in 1 h', path: `/events?status=failed&from=${s.from}&to=${s.to}` },
  { label: 'events identifier search', path: `/events?q=${encodeURIComponent(s.identifier)}` },
  { label: 'events keyset page 2', path: s.eventsPage2 },
  { label: 'event detail (failed)', path: `/events/${s.failedEventId}` },
  { label: 'windows', path: '/windows' },
  { label: 'windows state=retry_scheduled', path: '/windows?state=retry_scheduled' },
  { label: 'windows state=paid', path: '/windows?state=paid' },
  { label: 'invoices (with totals)', path: '/invoices' },
  { label: 'invoices state=failed_exhausted', path: '/invoices?state=failed_exhausted' },
  { label: 'invoices customer', path: `/invoices?customer=${encodeURIComponent(s.invoiceCustomer)}` },
  { label: 'invoices period ended in 10 days', path: `/invoices?periodFrom=${s.periodFrom}` },
];

export async function run(args: string[]) {
  const { values } = parseArgs({
    args,
    options: { scale: { type: 'string', default: '1m' }, samples: { type: 'string', default: '60' }, warmup: { type: 'string', default: '5' } },
  });
  const samples = Number(values.samples);
  const warmup = Number(values.warmup);
  if (values.scale === 'demo') return runOnDemo(samples, warmup);
  const events = parseScale(values.scale);
  const db = await benchDatabase();
  const pool = new pg.Pool({ connectionString: db.connectionString, max: 4 });
  pool.on('error', () => undefined);
  try {
    console.log(`desk benchmark — ${machine()} — ${db.label}`);
    const seeded = await seedScale(pool, { events, windows: Math.floor(events / 10), log: (line) => console.log(line) });
    if (seeded.status === 'skipped') console.log(`seed skipped: ${seeded.reason}`);
    else console.log(`seeded ${fmt(seeded.events)} events, ${fmt(seeded.windows)} windows, ${fmt(seeded.customers)} customers in ${fmt(seeded.seconds, 1)} s`);
    const size = await pool.query<{ events: string; windows: string; bytes: string }>(
      `SELECT (SELECT count(*) FROM meter_events)::text AS events, (SELECT count(*) FROM windows)::text AS windows,
              pg_size_pretty(pg_total_relation_size('meter_events')) AS bytes`,
    );
    console.log(`database: ${fmt(Number(size.rows[0]!.events))} meter_events (${size.rows[0]!.bytes} with indexes), ${fmt(Number(size.rows[0]!.windows))} windows`);

    await measureDesk(pool, db.connectionString, { samples, warmup });
  } finally {
    await pool.end();
    await db.stop();
  }
}

export interface PageFigure {
  label: string;
  p50: number;
  p95: number;
  max: number;
}

/**
 * Every page of PAGES on the database `pool` reaches (which must hold a scale seed to sample): a fresh production
 * build, a new operator, the web process started here and stopped before returning. Prints the table; returns it.
 */
export async function measureDesk(pool: pg.Pool, connectionString: string, { samples, warmup }: { samples: number; warmup: number }): Promise<PageFigure[]> {
  await ensureFreshBuild();
  const email = `bench-operator-${process.pid}-${randomBytes(4).toString('hex')}@meterdesk.local`;
  const password = randomBytes(18).toString('base64url');
  const prisma = createPrisma(connectionString);
  try {
    await createUser(prisma, { email, role: 'operator', password });
  } finally {
    await prisma.$disconnect();
  }
  const web = await startWeb(connectionString);
  try {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const cookie = await login(agent, web.url, email, password);
    const sample = await pickSamples(pool, agent, web.url, cookie);
    const figures = await measurePages(agent, web.url, cookie, sample, samples, warmup);
    agent.destroy();
    return figures;
  } finally {
    web.child.kill('SIGTERM');
    await new Promise((r) => web.child.once('exit', r));
  }
}

/** Each page: warm-up requests, then `samples` sequential ones; p50, p95 and max of request-to-last-byte. */
async function measurePages(agent: http.Agent, url: string, cookie: string, sample: Sample, samples: number, warmup: number): Promise<PageFigure[]> {
  console.log(`\n${samples} sequential samples per page after ${warmup} warm-up requests; server time = request to last byte, loopback`);
  console.log(`${'page'.padEnd(34)} ${'p50 ms'.padStart(8)} ${'p95 ms'.padStart(8)} ${'max ms'.padStart(8)} ${'KiB'.padStart(6)}  target p95 < ${TARGET_MS} ms`);
  const misses: string[] = [];
  const figures: PageFigure[] = [];
  for (const page of PAGES(sample)) {
    for (let i = 0; i < warmup; i++) await get(agent, url + page.path, cookie);
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < samples; i++) {
      const r = await get(agent, url + page.path, cookie);
      times.push(r.ms);
      bytes = r.bytes;
    }
    times.sort((a, b) => a - b);
    const p95 = percentile(times, 95);
    if (p95 >= TARGET_MS) misses.push(page.label);
    figures.push({ label: page.label, p50: percentile(times, 50), p95, max: times.at(-1)! });
    console.log(
      `${page.label.padEnd(34)} ${fmt(percentile(times, 50), 1).padStart(8)} ${fmt(p95, 1).padStart(8)} ${fmt(times.at(-1)!, 1).padStart(8)} ${fmt(bytes / 1024).padStart(6)}  ${p95 < TARGET_MS ? 'ok' : 'MISS'}`,
    );
  }
  console.log(misses.length ? `\n${misses.length} page(s) miss the target: ${misses.join(', ')}` : `\nevery page meets p95 < ${TARGET_MS} ms`);
  return figures;
}

/**
 * `--scale demo`: the desk as a newcomer meets it. `npm start`'s own process (embedded PostgreSQL, worker, simulated
 * processors, the demo's trouble made by the real path) in a data directory of its own, signed in as the demo's
 * operator once the trouble is there; its worker keeps running while the pages are measured.
 */
async function runOnDemo(samples: number, warmup: number): Promise<void> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'meterdesk-bench-demo-'));
  const demo = await startDemo(dataDir, 180_000);
  const db = await demoDatabase(dataDir);
  try {
    console.log(`desk benchmark on the demo — ${machine()} — npm start's own process and embedded PostgreSQL`);
    const trouble = await waitForDemoTrouble(db);
    console.log(`demo trouble: ${trouble.join('; ')}`);
    const creds = await demoCredentials(dataDir);
    const operator = creds.users.find((u) => u.role === 'operator')!;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const cookie = await login(agent, demo.url, operator.email, operator.password);
    await measurePages(agent, demo.url, cookie, await pickSamples(db, agent, demo.url, cookie), samples, warmup);
    agent.destroy();
  } finally {
    await db.end();
    await stopDemo(demo.child);
    await rm(dataDir, { recursive: true, force: true });
  }
}

async function pickSamples(pool: pg.Pool | pg.Client, agent: http.Agent, url: string, cookie: string): Promise<Sample> {
  // A customer of median volume (not the heaviest), an event name few events carry, a failed event with attempts.
  const customer = await pool.query<{ external_id: string }>(
    `SELECT c.external_id FROM customers c ORDER BY c.external_id OFFSET (SELECT count(*) / 2 FROM customers) LIMIT 1`,
  );
  const failed = await pool.query<{ id: string; identifier: string; received_at: Date }>(
    `SELECT id, identifier, received_at FROM meter_events WHERE status = 'failed'
      ORDER BY id DESC OFFSET (SELECT least(100, count(*) / 2) FROM meter_events WHERE status = 'failed') LIMIT 1`,
  );
  const invoiced = await pool.query<{ external_id: string }>(
    `SELECT c.external_id FROM customers c WHERE c.processor = 'braintree' AND EXISTS (SELECT 1 FROM invoices i WHERE i.customer_id = c.id)
      ORDER BY c.external_id OFFSET (SELECT count(*) / 2 FROM customers WHERE processor = 'braintree') / 2 LIMIT 1`,
  );
  const f = failed.rows[0];
  if (!customer.rows[0] || !invoiced.rows[0] || !f) throw new Error('the bench database has no scale seed to sample');
  // One hour, ten days back: a range in the middle of the ledger.
  const start = new Date(Math.floor((Date.now() - 10 * 86_400_000) / 3_600_000) * 3_600_000);
  const minute = (d: Date) => d.toISOString().slice(0, 16);
  const first = await get(agent, `${url}/events`, cookie);
  const next = /<a[^>]*href="(\/events\?[^"]*cursor=[^"]*)"[^>]*rel="next"|<a[^>]*rel="next"[^>]*href="(\/events\?[^"]*cursor=[^"]*)"/.exec(first.body);
  const page2 = (next?.[1] ?? next?.[2])?.replace(/&amp;/g, '&');
  if (!page2) throw new Error('no "next" link on /events');
  return {
    customer: customer.rows[0].external_id,
    eventName: 'image_renders',
    failedEventId: f.id,
    identifier: f.identifier,
    from: minute(start),
    to: minute(new Date(start.getTime() + 3_600_000)),
    eventsPage2: page2,
    invoiceCustomer: invoiced.rows[0].external_id,
    periodFrom: new Date(Date.now() - 10 * 86_400_000).toISOString().slice(0, 10),
  };
}

async function login(agent: http.Agent, url: string, email: string, password: string): Promise<string> {
  const body = new URLSearchParams({ email, password }).toString();
  const res = await request(agent, `${url}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: url, 'content-length': String(Buffer.byteLength(body)) },
    body,
  });
  const session = res.setCookie.map((c) => c.split(';')[0]!).find((c) => /^(__Host-)?md_session=./.test(c));
  if (res.status !== 302 || !session) throw new Error(`login failed: ${res.status}`);
  return session;
}

async function get(agent: http.Agent, url: string, cookie: string) {
  const r = await request(agent, url, { method: 'GET', headers: { cookie } });
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${r.body.slice(0, 300)}`);
  return r;
}

function request(
  agent: http.Agent,
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
): Promise<{ status: number; body: string; bytes: number; ms: number; setCookie: string[] }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(url, { method: init.method, agent, headers: init.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const ms = performance.now() - t0;
        const buf = Buffer.concat(chunks);
        const setCookie = res.headers['set-cookie'] ?? [];
        resolve({ status: res.statusCode ?? 0, body: buf.toString('utf8'), bytes: buf.length, ms, setCookie });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

function startWeb(connectionString: string): Promise<{ child: ReturnType<typeof spawn>; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/cli/main.ts', 'web'], {
    env: {
      ...process.env,
      DATABASE_URL: connectionString,
      PORT: '0',
      HOST: '127.0.0.1',
      NODE_ENV: 'production',
      SESSION_SECRET: randomBytes(32).toString('hex'),
    },
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
