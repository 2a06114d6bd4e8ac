// The fault campaign: each seed is one reproducible scenario against real processes — the web process (CLI `web`),
// two worker processes (the production task list with shortened timings, test/support/campaign-worker.ts), the
// Stripe and the Braintree simulators each in its own process (CLI `simulator stripe|braintree`), and a PostgreSQL
// cluster of its own — driven over HTTP while faults are injected at times the seed chooses. At the end the system is
// left to settle and the invariants of PRODUCT.md are checked against the ledger and the simulators' own records
// (chaos/invariants.ts).
//
// Two flows run at once. Stripe: customers and usage, reported v1 or v2, error reports by webhook. Braintree:
// customers with a payment method in the simulator and subscriptions whose periods end during the run (one already
// ended, as a stale renewal), renewed through the API; their usage, including late events for a period already
// invoiced and events no meter defines; the workers open, close and author the windows and settle them with the real
// SDK. Faults: worker and web SIGKILLs (some aimed at a worker in the middle of a sale), Stripe simulator rules,
// Braintree simulator rules (5xx, timeouts with or without the sale applied, resets, 429, soft and hard declines,
// failing searches), dropped connections and database restarts. docs/reliability.md describes it.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../app/db/embedded-postgres';
import { jobsByPayloadField } from '../app/db/graphile-jobs';
import { prepareDatabase } from '../app/seed/prepare';
import { reconcileLedger } from '../app/billing/reconciliation';
import { reconciliationSources } from '../app/cli/reconcile';
import { checkInvariants, type Accepted, type BraintreeRecords } from './invariants';

export const FAULT_KINDS = [
  'worker_kill',
  'settling_worker_kill',
  'web_kill',
  'processor_fault',
  'braintree_fault',
  'db_connections_dropped',
  'db_restart',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Faults placed along the Stripe ingest (the Braintree ones follow the Braintree timeline). */
const INGEST_FAULTS: readonly FaultKind[] = ['worker_kill', 'web_kill', 'processor_fault', 'db_connections_dropped', 'db_restart'];

export interface SeedOptions {
  seed: number;
  /** Stripe events to send (singles and batches, duplicates not counted). */
  events?: number;
  customers?: number;
  /** Faults injected while the Stripe ingest runs. */
  faults?: number;
  /** Braintree events to send (default a fifth of `events`). */
  braintreeEvents?: number;
  log?: (line: string) => void;
}

export interface BraintreeSummary {
  subscriptions: number;
  /** Windows by final state. */
  windows: Record<string, number>;
  /** Transactions the simulator recorded (any outcome), and the approved ones. */
  sales: number;
  approved: number;
  /** Braintree events by final ledger status; late ones billed on a late-usage line. */
  events: Record<string, number>;
  lateBilled: number;
}

export interface SeedResult {
  seed: number;
  accepted: number;
  requests: number;
  retriedRequests: number;
  faults: Record<FaultKind, number>;
  /** Simulator fault rules that fired, by simulator and kind (`stripe:rate_limit`, `braintree:timeout_applied` ...). */
  processorFaults: Record<string, number>;
  /** Processes that exited without being killed (a worker's graphile-worker aborts when it cannot record a job). */
  unexpectedExits: { worker: number; web: number };
  braintree: BraintreeSummary;
  violations: string[];
  seconds: number;
}

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function waitForLine(child: ChildProcess, pattern: RegExp, what: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${output}`)), timeoutMs);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      output += `${line}\n`;
      if (pattern.test(line)) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code ?? signal}) before it was ready:\n${output.slice(-2000)}`));
    });
  });
}

/** Children the campaign itself stopped (anything else exiting is news). */
const expectedExits = new WeakSet<ChildProcess>();

function kill(child: ChildProcess | null | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  expectedExits.add(child);
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

const PROCESSOR_FAULTS = [
  { kind: 'rate_limit', probability: 0.3 },
  { kind: 'server_error', probability: 0.3, status: 503 },
  { kind: 'timeout_applied', probability: 0.2 },
  { kind: 'timeout_not_applied', probability: 0.2 },
  { kind: 'reset_applied', probability: 0.2 },
  { kind: 'reset_not_applied', probability: 0.2 },
  { kind: 'slow', probability: 0.3, delayMs: 400 },
  { kind: 'reject_after_accept', probability: 0.05, delayMs: 100, errorCode: 'chaos_rejected_after_accept', errorMessage: 'rejected by the chaos campaign' },
] as const;

// Braintree simulator rules: on sales unless said otherwise; each fires `count` times (1-3, chosen by the seed).
const SALE = { operation: 'transaction.sale' } as const;
const BRAINTREE_FAULTS = [
  { kind: 'server_error', status: 500, match: SALE },
  { kind: 'server_error', status: 503, match: SALE },
  { kind: 'timeout_applied', match: SALE },
  { kind: 'timeout_not_applied', match: SALE },
  { kind: 'reset_applied', match: SALE },
  { kind: 'reset_not_applied', match: SALE },
  { kind: 'rate_limit', match: SALE },
  { kind: 'processor_declined', responseCode: '2000', responseType: 'soft_declined' },
  { kind: 'processor_declined', responseCode: '2001', responseType: 'soft_declined' },
  { kind: 'processor_declined', responseCode: '2004', responseType: 'hard_declined' },
  // The search that follows a lost answer fails too.
  { kind: 'server_error', status: 500, match: { operation: 'transaction.search_ids' } },
] as const;

const PLANS = ['essential', 'business', 'enterprise'] as const;
/** An event name no meter defines: stored, then `unmatched` (missing definition) when its window is authored. */
const UNMETERED = 'chaos_unmetered';
const CLOSE_GRACE_MS = 1000;

interface Subscriber {
  externalId: string;
  processorSubscriptionId: string;
  plan: string;
  token: string | null;
  start1: number;
  end1: number;
  /** Offset from T0 at which the subscription is renewed to [end1, end2) through the API; null: never. */
  renewAt: number | null;
  end2: number | null;
}

export async function runSeed(options: SeedOptions): Promise<SeedResult> {
  const started = performance.now();
  // Separate streams, so the scenario (what is sent, which fault at which point) does not depend on how the
  // concurrent senders interleave; only the exact moments differ from run to run.
  const random = prng(options.seed);
  const faultRandom = prng(options.seed ^ 0x5eed);
  const apiRandom = prng(options.seed ^ 0xa91);
  const btRandom = prng(options.seed ^ 0xb7ee);
  const btFaultRandom = prng(options.seed ^ 0xb7fa);
  const logLine = options.log ?? (() => {});
  const t0 = performance.now();
  const log = (line: string) => logLine(`${`+${((performance.now() - t0) / 1000).toFixed(1)}s`.padStart(7)} ${line}`);
  const events = options.events ?? 1500;
  const btEvents = options.braintreeEvents ?? Math.round(events / 5);
  const customers = options.customers ?? 20;
  const faultCount = options.faults ?? 6;
  const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  const unexpectedExits = { worker: 0, web: 0 };
  const violations: string[] = [];

  const dir = await mkdtemp(path.join(os.tmpdir(), `meterdesk-chaos-${options.seed}-`));
  await chmod(dir, 0o755);
  const dataDir = path.join(dir, 'pg');
  let db: EmbeddedPostgresHandle | null = await startEmbeddedPostgres({ dataDir, ephemeral: false });
  const connectionString = db.connectionString;
  await prepareDatabase(connectionString);
  log(`  seed ${options.seed}: database ready`);
  const pool = new pg.Pool({ connectionString, max: 4 });
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));

  const apiKey = `md_chaos_${randomBytes(24).toString('base64url')}`;
  const webhookSecret = `whsec_chaos_${randomBytes(16).toString('hex')}`;
  const webPort = await freePort();
  const webUrl = `http://127.0.0.1:${webPort}`;
  const children = new Set<ChildProcess>();
  const logDir = path.join(dir, 'logs');
  await mkdir(logDir);
  let spawned = 0;
  let stopping = false;
  let keepLogs = false;
  const spawnTracked = (name: string, args: string[], env: NodeJS.ProcessEnv, onUnexpectedExit?: (code: number | null, signal: string | null) => void) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const file = `${String(++spawned).padStart(2, '0')}-${name}`;
    const out = createWriteStream(path.join(logDir, `${file}.log`));
    child.stdout!.pipe(out, { end: false });
    child.stderr!.pipe(out, { end: false });
    children.add(child);
    child.once('exit', (code, signal) => {
      children.delete(child);
      out.end(`\n[campaign] exited ${code ?? signal}\n`);
      if (!expectedExits.has(child) && !stopping) {
        log(`  seed ${options.seed}: ${file} (pid ${child.pid}) exited on its own (${code ?? signal})`);
        onUnexpectedExit?.(code, signal);
      }
    });
    return child;
  };
  const ready = new WeakSet<ChildProcess>();

  const simulator = spawnTracked('stripe-simulator', ['app/cli/main.ts', 'simulator', 'stripe', '--port', '0', '--webhook-url', `${webUrl}/webhooks/stripe`, '--webhook-secret', webhookSecret], {});
  // Braintree's sandbox rules (amounts 2000.00-2999.99 decline ...) stay off: declines come from the seed's rules.
  const btSimulator = spawnTracked('braintree-simulator', ['app/cli/main.ts', 'simulator', 'braintree', '--port', '0', '--no-amount-rules', '--seed', String(options.seed)], {});
  const [simLine, btLine] = await Promise.all([waitForLine(simulator, /^\{.*"url"/, 'Stripe simulator'), waitForLine(btSimulator, /^\{.*"url"/, 'Braintree simulator')]);
  const simUrl = (JSON.parse(simLine) as { url: string }).url;
  const bt = JSON.parse(btLine) as { url: string; merchantId: string; publicKey: string; privateKey: string };
  const controlAt = (base: string) => async (route: string, body?: unknown, method?: string): Promise<unknown> => {
    const res = await fetch(`${base}/__simulator/${route}`, {
      method: method ?? (body === undefined ? 'GET' : 'POST'),
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`simulator ${route}: ${res.status} ${await res.text()}`);
    return res.json();
  };
  const control = controlAt(simUrl);
  const btControl = controlAt(bt.url);
  await control('config', { v1_rate_per_second: 2000, latency_ms: 2 });
  await control('meters', { event_name: 'ai_tokens' });
  // Sales take a while at the gateway, so a worker can be killed with one in flight.
  await btControl('config', { sale_latency_ms: 200 + Math.floor(btFaultRandom() * 500) });

  const braintreeEnv = {
    BRAINTREE_API_BASE: bt.url,
    BRAINTREE_MERCHANT_ID: bt.merchantId,
    BRAINTREE_PUBLIC_KEY: bt.publicKey,
    BRAINTREE_PRIVATE_KEY: bt.privateKey,
  };
  let web = null as ChildProcess | null;
  // Supervisor-like, as for workers: a web process started while its database restarts exits, and is started again.
  const startWeb = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await startWebOnce();
      } catch (error) {
        if (attempt >= 30) throw error;
        await sleep(500);
      }
    }
  };
  const startWebOnce = async () => {
    const child = spawnTracked(
      'web',
      ['app/cli/main.ts', 'web'],
      {
        DATABASE_URL: connectionString,
        PORT: String(webPort),
        HOST: '127.0.0.1',
        NODE_ENV: 'production',
        SESSION_SECRET: randomBytes(32).toString('hex'),
        METERDESK_BOOTSTRAP_API_KEY: apiKey,
        STRIPE_SECRET_KEY: 'sk_test_chaos',
        STRIPE_WEBHOOK_SECRET: webhookSecret,
        STRIPE_API_BASE: simUrl,
        METERDESK_DEMO: 'false',
        ...braintreeEnv,
      },
      (code, signal) => {
        if (!ready.has(child)) return;
        // The web process must survive every fault here (it serves the next request once the database is back).
        unexpectedExits.web++;
        violations.push(`the web process exited on its own (${code ?? signal}); logs kept`);
        keepLogs = true;
        void startWeb().catch((e) => violations.push(`web restart failed: ${(e as Error).message}`));
      },
    );
    await waitForLine(child, /"msg":"started"/, 'web');
    ready.add(child);
    web = child;
  };

  const workers = new Map<string, ChildProcess>();
  let workerCount = 0;
  // Like a process supervisor: a worker that cannot reach the database yet (it is restarting) is started again, and
  // so is one that exits on its own (graphile-worker stops a worker that cannot record a job's outcome).
  const startWorker = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await startWorkerOnce();
      } catch (error) {
        if (attempt >= 30) throw error;
        await sleep(500);
      }
    }
  };
  const startWorkerOnce = async () => {
    const name = `chaos-worker-${++workerCount}`;
    const url = new URL(connectionString);
    // Names the worker's database sessions, so a kill can aim at the worker holding a window's settlement lock.
    url.searchParams.set('application_name', name);
    const api = apiRandom() < 0.5 ? 'v1' : 'v2';
    const child = spawnTracked(
      name,
      ['test/support/campaign-worker.ts', '--tick-ms', '500', '--close-grace-ms', String(CLOSE_GRACE_MS)],
      { DATABASE_URL: url.toString(), STRIPE_API_BASE: simUrl, STRIPE_METER_API: api, WORKER_CONCURRENCY: '4', ...braintreeEnv },
      () => {
        if (!ready.has(child)) return;
        unexpectedExits.worker++;
        keepLogs = true; // not a violation (the campaign starts another), but why it exited is worth reading
        workers.delete(name);
        void startWorker().catch((e) => violations.push(`worker restart failed: ${(e as Error).message}`));
      },
    );
    await waitForLine(child, /^ready /, 'worker');
    ready.add(child);
    workers.set(name, child);
    child.once('exit', () => {
      if (workers.get(name) === child) workers.delete(name);
    });
  };
  const killWorker = async (name: string) => {
    const victim = workers.get(name);
    workers.delete(name);
    await kill(victim, 'SIGKILL');
    void startWorker().catch((e) => violations.push(`worker restart failed: ${(e as Error).message}`));
  };
  /** The worker whose session holds a window's settlement lock (a sale in flight), if any. */
  const settlingWorker = async (): Promise<string | null> => {
    const { rows } = await pool.query<{ name: string }>(
      `SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'chaos-worker-%' LIMIT 1`,
    );
    return rows[0] && workers.has(rows[0].name) ? rows[0].name : null;
  };

  const accepted = new Map<string, Accepted>();
  let requests = 0;
  let retriedRequests = 0;
  try {
    await Promise.all([startWeb(), startWorker(), startWorker()]);
    log(`  seed ${options.seed}: web and workers ready`);

    const post = async (route: string, body: unknown): Promise<{ status: number; json: unknown }> => {
      const res = await fetch(`${webUrl}${route}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      return { status: res.status, json: await res.json().catch(() => null) };
    };
    // A request whose answer was lost (killed web, dropped connection, restarting database) is sent again, as a host
    // app would, until it gets a definite answer.
    const postUntilAnswered = async (route: string, body: unknown, ok: (status: number) => boolean): Promise<{ status: number; json: unknown }> => {
      let last = '';
      for (let attempt = 0; attempt <= 60; attempt++) {
        if (attempt > 0) await sleep(200 + attempt * 50);
        let r: { status: number; json: unknown };
        try {
          r = await post(route, body);
        } catch (error) {
          last = (error as Error).message;
          continue;
        }
        if (ok(r.status)) return r;
        // A definite refusal is a bug in the campaign's requests, not a fault.
        if (r.status < 500) throw new Error(`${route} answered ${r.status}: ${JSON.stringify(r.json)}`);
        last = `status ${r.status}`;
      }
      throw new Error(`${route}: no definite answer after 60 attempts: ${last}`);
    };
    // Stripe customers through the API, known to the simulator too; one Stripe does not know (its events fail).
    await Promise.all(
      Array.from({ length: customers }, async (_, i) => {
        await postUntilAnswered('/api/v1/customers', { external_id: `chaos-${i}`, processor: 'stripe', processor_customer_id: `cus_chaos_${i}` }, (s) => s === 201 || s === 200);
        if (i > 0) await control('customers', { id: `cus_chaos_${i}` });
      }),
    );

    // Braintree subscribers: vaulted in the simulator (one, chosen by the seed, without a payment method), created
    // through the API with periods relative to T0, the start of the ingest.
    const T0 = Date.now() + 500;
    const subscribers: Subscriber[] = [];
    const nSubscribers = 4 + Math.floor(btRandom() * 3);
    const noPaymentMethod = btRandom() < 0.5 ? 1 + Math.floor(btRandom() * (nSubscribers - 1)) : -1;
    const longLived = btRandom() < 0.5 ? nSubscribers - 1 : -1;
    for (let i = 0; i < nSubscribers; i++) {
      const end2 = 12_000 + Math.floor(btRandom() * 8_000);
      let s: Subscriber;
      const base = { externalId: `bt-chaos-${i}`, processorSubscriptionId: `bts_chaos_${options.seed}_${i}`, plan: PLANS[Math.floor(btRandom() * PLANS.length)]!, token: i === noPaymentMethod ? null : `tok_chaos_${i}` };
      if (i === 0) {
        // Its period ended an hour ago and has no window: the stale-renewal reconciler repairs it.
        s = { ...base, start1: -3 * 86_400_000, end1: -3_600_000, renewAt: 4_000 + Math.floor(btRandom() * 3_000), end2 };
      } else if (i === longLived) {
        s = { ...base, start1: -2 * 86_400_000, end1: 86_400_000, renewAt: null, end2: null };
      } else {
        const end1 = 3_000 + Math.floor(btRandom() * 6_000);
        s = { ...base, start1: -(1 + Math.floor(btRandom() * 3)) * 86_400_000, end1, renewAt: end1 + 1_500 + Math.floor(btRandom() * 2_500), end2 };
      }
      subscribers.push(s);
      const processorCustomerId = `btc_chaos_${i}`;
      await btControl('customers', { id: processorCustomerId });
      if (s.token) await btControl('payment_methods', { customer_id: processorCustomerId, token: s.token, make_default: true });
      await postUntilAnswered(
        '/api/v1/customers',
        { external_id: s.externalId, processor: 'braintree', processor_customer_id: processorCustomerId, default_payment_method_token: s.token },
        (st) => st === 201 || st === 200,
      );
      await postUntilAnswered(
        '/api/v1/subscriptions',
        { customer: s.externalId, plan: s.plan, processor_subscription_id: s.processorSubscriptionId, current_period_start: new Date(T0 + s.start1).toISOString(), current_period_end: new Date(T0 + s.end1).toISOString() },
        (st) => st === 201 || st === 200,
      );
    }
    const lastPeriodEnd = Math.max(...subscribers.map((s) => s.end2 ?? 0));
    log(`  seed ${options.seed}: ${nSubscribers} Braintree subscriptions, periods ending by T0+${(lastPeriodEnd / 1000).toFixed(1)} s`);

    const record = (item: Record<string, unknown>, stored: Record<string, unknown> | undefined) => {
      const identifier = String(stored?.identifier ?? item.identifier);
      if (!accepted.has(identifier)) accepted.set(identifier, { identifier, value: Number(item.value ?? 1), customer: String(item.customer) });
    };
    const send = async (items: Array<Record<string, unknown>>, single: boolean): Promise<void> => {
      const body = items.length === 1 && single ? items[0] : { events: items };
      const batch = 'events' in (body as object);
      for (let attempt = 0; ; attempt++) {
        requests++;
        if (attempt > 0) retriedRequests++;
        try {
          const r = await post('/api/v1/events', body);
          if (r.status >= 500) throw new Error(`status ${r.status}`);
          if (batch && r.status !== 200) throw new Error(`batch answered ${r.status}: ${JSON.stringify(r.json)}`);
          const results = batch ? ((r.json as { results: Array<Record<string, unknown>> }).results ?? []) : [r.json as Record<string, unknown>];
          results.forEach((res, k) => {
            const ok = batch ? res.result === 'accepted' || res.result === 'duplicate' : r.status === 202 || r.status === 200;
            if (ok) record(items[k]!, batch ? (res.event as Record<string, unknown> | undefined) : res);
          });
          return;
        } catch (error) {
          if (attempt > 60) throw new Error(`no definite answer after ${attempt} attempts: ${(error as Error).message}`);
          await sleep(200 + attempt * 50);
        }
      }
    };

    const now = Date.now();
    const makeEvent = (i: number): Record<string, unknown> => {
      const random = prng(options.seed * 1_000_003 + i);
      const r = random();
      const e: Record<string, unknown> = {
        customer: `chaos-${Math.floor(random() * customers)}`,
        event_name: 'ai_tokens',
        value: 1 + Math.floor(random() * 1000),
        identifier: `chaos-${options.seed}-${i}`,
      };
      if (r < 0.15) e.timestamp = Math.floor((now - random() * 2 * 86_400_000) / 1000); // late usage
      if (r > 0.97) e.value = -1; // invalid: refused, never stored
      return e;
    };

    // The Braintree plan: each event's send time (from T0), customer, name, value and usage time follow from the seed.
    const btPlan = Array.from({ length: btEvents }, (_, j) => {
      const random = prng(options.seed * 7_000_003 + j);
      const at = Math.floor(random() * (lastPeriodEnd + 1_500));
      const s = subscribers[Math.floor(random() * subscribers.length)]!;
      const r = random();
      const e: Record<string, unknown> = {
        customer: s.externalId,
        event_name: random() < 0.07 ? UNMETERED : 'ai_tokens',
        value: 1 + Math.floor(random() * 20_000),
        identifier: `chaos-${options.seed}-bt-${j}`,
      };
      // Late: usage inside the first period, sent after that period ended (by then usually invoiced).
      if (r < 0.2 && s.renewAt !== null && at > s.end1 + CLOSE_GRACE_MS) e.timestamp = new Date(T0 + s.start1 + random() * (s.end1 - s.start1 - 1)).toISOString();
      else if (s.end1 < 0) e.timestamp = new Date(T0 + s.start1 + random() * (s.end1 - s.start1)).toISOString(); // the stale period's usage
      if (r > 0.97) e.value = -1;
      return { at, e };
    }).sort((a, b) => a.at - b.at);

    // Faults at points of the Stripe ingest the seed picks (after so many events were sent), so they land mid-flight.
    let ingestDone = false;
    let sent = 0;
    const injectIngestFault = async (kind: FaultKind) => {
      faults[kind]++;
      log(`  seed ${options.seed}: ${kind}`);
      switch (kind) {
        case 'worker_kill': {
          const names = [...workers.keys()];
          await killWorker(names[Math.floor(faultRandom() * names.length)]!);
          break;
        }
        case 'web_kill':
          await kill(web, 'SIGKILL');
          await startWeb();
          break;
        case 'processor_fault': {
          const rule = PROCESSOR_FAULTS[Math.floor(faultRandom() * PROCESSOR_FAULTS.length)]!;
          await control('faults', { ...rule, count: 5 + Math.floor(faultRandom() * 20) });
          break;
        }
        case 'db_connections_dropped':
          await pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
          break;
        case 'db_restart':
          await db!.stop();
          await sleep(300 + faultRandom() * 700);
          db = await startEmbeddedPostgres({ dataDir, port: db!.port });
          break;
        default:
          break;
      }
    };
    const faultPoints = Array.from({ length: faultCount }, () => Math.floor((0.05 + faultRandom() * 0.9) * events)).sort((a, b) => a - b);
    const faultLoop = (async () => {
      for (const point of faultPoints) {
        while (sent < point && !ingestDone) await sleep(20);
        if (ingestDone) break;
        await injectIngestFault(INGEST_FAULTS[Math.floor(faultRandom() * INGEST_FAULTS.length)]!);
      }
    })();

    // Braintree faults along the Braintree timeline: before each wave of period ends, simulator rules for the next
    // sales; and, in some waves, a SIGKILL of the worker caught with a sale in flight.
    const firstEnds = subscribers.filter((s) => s.end1 > 0 && s.renewAt !== null).map((s) => s.end1);
    const waves = [firstEnds.length > 0 ? Math.min(...firstEnds) : 4_000, Math.min(...subscribers.filter((s) => s.end2 !== null).map((s) => s.end2!))];
    const btFaultLoop = (async () => {
      for (const wave of waves) {
        while (Date.now() < T0 + wave - 1_000) await sleep(50);
        const rules = Math.floor(btFaultRandom() * 3);
        for (let k = 0; k < rules; k++) {
          const rule = BRAINTREE_FAULTS[Math.floor(btFaultRandom() * BRAINTREE_FAULTS.length)]!;
          faults.braintree_fault++;
          log(`  seed ${options.seed}: braintree_fault ${rule.kind}${'responseCode' in rule ? ` ${rule.responseCode}` : ''}${'status' in rule ? ` ${rule.status}` : ''}${'match' in rule && rule.match.operation === 'transaction.search_ids' ? ' (search)' : ''}`);
          await btControl('faults', { ...rule, count: 1 + Math.floor(btFaultRandom() * 3) });
        }
        if (btFaultRandom() < 0.7) {
          // Wait for a sale in flight (settlements follow the period ends within a few seconds).
          const until = Date.now() + 10_000;
          let victim: string | null = null;
          while (!victim && Date.now() < until) {
            victim = await settlingWorker().catch(() => null);
            if (!victim) await sleep(30);
          }
          if (victim) {
            faults.settling_worker_kill++;
            log(`  seed ${options.seed}: settling_worker_kill ${victim}`);
            await killWorker(victim);
          }
        }
      }
    })();

    // Renewals through the API, as a host app reports them (Braintree's own renewal webhooks carry dates only).
    const renewals = (async () => {
      for (const s of [...subscribers].filter((x) => x.renewAt !== null).sort((a, b) => a.renewAt! - b.renewAt!)) {
        while (Date.now() < T0 + s.renewAt!) await sleep(25);
        await postUntilAnswered(
          '/api/v1/subscriptions',
          { customer: s.externalId, plan: s.plan, processor_subscription_id: s.processorSubscriptionId, current_period_start: new Date(T0 + s.end1).toISOString(), current_period_end: new Date(T0 + s.end2!).toISOString() },
          (st) => st === 201 || st === 200,
        );
      }
    })();

    const btSender = (async () => {
      const sentBt: Array<Record<string, unknown>> = [];
      let next = 0;
      const r = prng(options.seed ^ 0xb75e);
      while (next < btPlan.length) {
        const wait = T0 + btPlan[next]!.at - Date.now();
        if (wait > 0) await sleep(Math.min(wait, 100));
        const items: Array<Record<string, unknown>> = [];
        while (next < btPlan.length && T0 + btPlan[next]!.at <= Date.now() && items.length < 20) items.push(btPlan[next++]!.e);
        if (items.length === 0) continue;
        if (sentBt.length > 0 && r() < 0.15) items.push(sentBt[Math.floor(r() * sentBt.length)]!);
        await send(items, r() < 0.5);
        for (const item of items) if (item.value !== -1) sentBt.push(item);
      }
    })();

    await sleep(Math.max(0, T0 - Date.now()));
    const sentIdentifiers: Array<Record<string, unknown>> = [];
    const senders = Array.from({ length: 3 }, async () => {
      while (sent < events) {
        const size = random() < 0.4 ? 1 : 1 + Math.floor(random() * 50);
        const items: Array<Record<string, unknown>> = [];
        for (let k = 0; k < size && sent < events; k++) items.push(makeEvent(sent++));
        // Duplicates: a few earlier events again, within the batch or on their own.
        if (sentIdentifiers.length > 0 && random() < 0.2) items.push(sentIdentifiers[Math.floor(random() * sentIdentifiers.length)]!);
        await send(items, random() < 0.5);
        for (const item of items) if (item.value !== -1) sentIdentifiers.push(item);
        // Paced, so ingest spans the fault schedule instead of finishing before the first fault.
        await sleep(20 + random() * 80);
      }
    });
    await Promise.all(senders);
    ingestDone = true;
    await Promise.all([faultLoop, btFaultLoop, renewals, btSender]);

    // Settle: Stripe faults off (the Braintree rules fire a few times each and are spent), processes up, then give
    // every pending event, webhook and window time to finish.
    await control('faults', undefined, 'DELETE');
    if (!web || web.exitCode !== null || web.signalCode !== null) await startWeb();
    while (workers.size < 2) await startWorker();
    const settleStarted = Date.now();
    const deadline = Date.now() + 120_000;
    for (;;) {
      const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM meter_events WHERE status = 'pending'`);
      if (rows[0]!.n === 0) break;
      if (Date.now() > deadline) {
        violations.push(`${rows[0]!.n} events still pending 120 s after the faults stopped`);
        break;
      }
      await sleep(250);
    }
    // Error reports (accepted then rejected) arrive as webhooks; send any still queued, wait until every webhook
    // event the simulator created has been taken, including deliveries still in flight (it retries deliveries that
    // found the web process down, as Stripe does), then until every stored webhook is processed.
    await control('flush_error_reports', {});
    const webhookDeadline = Date.now() + 90_000;
    for (;;) {
      const { data: created } = (await control('events')) as { data: Array<{ id: string }> };
      const { data } = (await control('webhook_deliveries')) as { data: Array<{ event_id: string; ok: boolean }> };
      const taken = new Set(data.filter((d) => d.ok).map((d) => d.event_id));
      const untaken = created.filter((e) => !taken.has(e.id));
      if (untaken.length === 0) break;
      if (Date.now() > webhookDeadline) {
        violations.push(`${untaken.length} webhook events never taken by the web process`);
        break;
      }
      await sleep(500);
    }
    // A webhook job that failed (its database restarted under it) is retried with graphile-worker's backoff, and one
    // whose worker died is queued again by the webhook sweep: wait, and call it a violation only if it never happens.
    const appliedDeadline = Date.now() + 150_000;
    for (;;) {
      const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM webhook_events WHERE processed_at IS NULL`);
      if (rows[0]!.n === 0) break;
      if (Date.now() > appliedDeadline) {
        // What each one went through, and where its job is, so the line says why.
        const { rows: stuck } = await pool.query<{ id: string; line: string }>(
          `SELECT w.id, w.processor_event_id || ' ' || w.type || ' attempts=' || w.attempts || ' last_error=' || coalesce(w.last_error, '-') AS line
           FROM webhook_events w WHERE w.processed_at IS NULL`,
        );
        const jobs = await jobsByPayloadField(pool, 'webhookEventId', stuck.map((w) => w.id));
        const jobLine = (id: string) =>
          jobs
            .filter((j) => j.value === id)
            .map((j) => `attempts ${j.attempts}/${j.maxAttempts} locked_at ${j.lockedAt?.toISOString() ?? '-'} run_at ${j.runAt.toISOString()} error ${j.lastError?.slice(0, 200) ?? '-'}`)
            .join(', ') || 'none';
        violations.push(`${rows[0]!.n} stored webhook events still unprocessed 150 s after the faults stopped: ${stuck.map((w) => `${w.line} jobs=${jobLine(w.id)}`).join('; ')}`);
        break;
      }
      await sleep(250);
    }
    // Braintree: every period that ended has its window closed, authored and settled (paid, exhausted or waiting for a
    // payment method); the retry backoffs and the search after a lost answer are seconds here.
    while (Date.now() < T0 + lastPeriodEnd + CLOSE_GRACE_MS + 500) await sleep(100);
    const windowsDeadline = Date.now() + 120_000;
    for (;;) {
      const { rows } = await pool.query<{ line: string }>(
        `SELECT 'window ' || w.id || ' ' || w.state::text AS line FROM windows w
         WHERE w.state IN ('closed', 'settling', 'retry_scheduled') OR (w.state = 'open' AND w.period_end <= now() - $1 * interval '1 millisecond')
         UNION ALL
         SELECT 'subscription ' || s.processor_subscription_id || ' has no window for its period ending ' || s.current_period_end FROM subscriptions s
         WHERE s.processor = 'braintree' AND s.current_period_end <= now() - $1 * interval '1 millisecond'
           AND NOT EXISTS (SELECT 1 FROM windows w WHERE w.subscription_id = s.id AND w.period_end = s.current_period_end)`,
        [CLOSE_GRACE_MS + 1_000],
      );
      if (rows.length === 0) break;
      if (Date.now() > windowsDeadline) {
        violations.push(`Braintree not settled 120 s after the faults stopped: ${rows.map((r) => r.line).join('; ')}`);
        break;
      }
      await sleep(250);
    }
    log(`  seed ${options.seed}: settled in ${((Date.now() - settleStarted) / 1000).toFixed(1)} s`);
    if (options.log) {
      const { rows: ws } = await pool.query<{ line: string }>(
        `SELECT s.processor_subscription_id || ' ' || to_char(w.period_start, 'MM-DD HH24:MI:SS') || '..' || to_char(w.period_end, 'HH24:MI:SS') || ' ' || w.state ||
                ' total ' || coalesce(i.total_minor::text, '-') || ' events ' || (SELECT count(*) FROM meter_events e WHERE e.window_id = w.id) ||
                ' tries ' || coalesce(a.tries::text, '-') || ' ' || coalesce(a.status::text, '') || coalesce(' ' || a.last_failure_code, '') AS line
         FROM windows w JOIN subscriptions s ON s.id = w.subscription_id LEFT JOIN invoices i ON i.window_id = w.id LEFT JOIN charge_attempts a ON a.window_id = w.id
         ORDER BY s.processor_subscription_id, w.period_start`,
      );
      for (const w of ws) log(`    window ${w.line}`);
    }

    const sim = (await control('meter_events')) as { counts: Record<string, number>; data: Array<{ identifier: string; value: number; status: string }> };
    const stats = (await control('stats')) as { faultsApplied?: Record<string, number> };
    const btSales = (await btControl('sales')) as { data: BraintreeRecords['sales'] };
    const btStats = (await btControl('stats')) as { faultsApplied?: Record<string, number>; approved: number; sales: number };
    violations.push(...(await checkInvariants(pool, accepted, sim, { sales: btSales.data })));
    // The operator's view of the same proof: a reconciliation run (ADR 011) against both simulators finds no drift.
    violations.push(...(await reconciliationDrift(pool, simUrl, braintreeEnv)));
    const processorFaults: Record<string, number> = {};
    for (const [k, n] of Object.entries(stats.faultsApplied ?? {})) if (n > 0) processorFaults[`stripe:${k}`] = n;
    for (const [k, n] of Object.entries(btStats.faultsApplied ?? {})) if (n > 0) processorFaults[`braintree:${k}`] = n;
    const summary = await braintreeSummary(pool, subscribers.length, btStats);
    return { seed: options.seed, accepted: accepted.size, requests, retriedRequests, faults, processorFaults, unexpectedExits, braintree: summary, violations, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    keepLogs = true;
    throw error;
  } finally {
    stopping = true;
    await Promise.all([...children].map((c) => kill(c, 'SIGKILL')));
    await pool.end().catch(() => undefined);
    await db?.stop().catch(() => undefined);
    if (keepLogs || violations.length > 0) {
      const kept = path.join(os.tmpdir(), 'meterdesk-chaos-logs', `seed-${options.seed}-${new Date().toISOString().replace(/[:.]/g, '')}`);
      await cp(logDir, kept, { recursive: true }).catch(() => undefined);
      console.log(`  seed ${options.seed}: process logs kept in ${kept}`);
    }
    await rm(dir, { recursive: true, force: true });
  }
}

type BraintreeEnv = { BRAINTREE_API_BASE: string; BRAINTREE_MERCHANT_ID: string; BRAINTREE_PUBLIC_KEY: string; BRAINTREE_PRIVATE_KEY: string };

/** One reconciliation run over the last three days (late usage is up to two days old), nothing in flight any more. */
async function reconciliationDrift(pool: pg.Pool, stripeApiBase: string, braintree: BraintreeEnv): Promise<string[]> {
  const { sources } = reconciliationSources({ STRIPE_SECRET_KEY: undefined, STRIPE_API_BASE: stripeApiBase, ...braintree });
  try {
    const result = await reconcileLedger(pool, { ...sources, trigger: 'cli', lookbackDays: 3, graceMs: 0 });
    if (result.status === 'busy') return ['reconciliation: another run was in progress at the end of the seed'];
    if (result.run.driftCount === 0) return [];
    const shown = result.findings.slice(0, 5).map((f) => `${f.processor} ${f.kind} ${f.customerLabel} ${f.eventName ?? f.windowId}: ledger ${f.ledger.value}, processor ${f.processorSide.value}`);
    return [`reconciliation found ${result.run.driftCount} difference(s) between the ledger and the processors: ${shown.join('; ')}`];
  } catch (error) {
    return [`reconciliation failed: ${error instanceof Error ? error.message : String(error)}`];
  }
}

async function braintreeSummary(pool: pg.Pool, subscriptions: number, stats: { approved: number; sales: number }): Promise<BraintreeSummary> {
  const { rows } = await pool.query<{ windows: Record<string, number> | null; events: Record<string, number> | null; late: number }>(
    `SELECT (SELECT json_object_agg(state, n) FROM (SELECT state::text, count(*)::int AS n FROM windows GROUP BY state) w) AS windows,
            (SELECT json_object_agg(status, n) FROM (SELECT status::text, count(*)::int AS n FROM meter_events WHERE processor = 'braintree' GROUP BY status) e) AS events,
            (SELECT count(*)::int FROM meter_events e JOIN invoice_lines l ON l.id = e.invoice_line_id WHERE l.kind = 'late_usage') AS late`,
  );
  const r = rows[0]!;
  return { subscriptions, windows: r.windows ?? {}, sales: stats.sales, approved: stats.approved, events: r.events ?? {}, lateBilled: r.late };
}
