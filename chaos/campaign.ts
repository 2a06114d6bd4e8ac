// The fault campaign: each seed is one reproducible scenario against real processes — the web process (CLI `web`),
// two worker processes (the production task list with shortened claim timings, test/support/stripe-worker.ts), the
// Stripe simulator in its own process, and a PostgreSQL cluster of its own — driven over HTTP while faults are
// injected at times the seed chooses. At the end the system is left to settle and the invariants of PRODUCT.md are
// checked against the ledger and the simulator's records (chaos/invariants.ts).
//
// Scope today: the Stripe path (ingest → report → webhooks). Braintree windows under the same faults are the next
// step (docs/reliability.md).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../app/db/embedded-postgres';
import { prepareDatabase } from '../app/db/prepare';
import { checkInvariants, type Accepted } from './invariants';

export const FAULT_KINDS = ['worker_kill', 'web_kill', 'processor_fault', 'db_connections_dropped', 'db_restart'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface SeedOptions {
  seed: number;
  /** Events to send (singles and batches, duplicates not counted). */
  events?: number;
  customers?: number;
  /** Faults injected while ingest runs. */
  faults?: number;
  log?: (line: string) => void;
}

export interface SeedResult {
  seed: number;
  accepted: number;
  requests: number;
  retriedRequests: number;
  faults: Record<FaultKind, number>;
  /** Simulator fault rules that fired, by kind (429, 5xx, timeouts with the request applied, resets, ...). */
  processorFaults: Record<string, number>;
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

function kill(child: ChildProcess | null | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
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

export async function runSeed(options: SeedOptions): Promise<SeedResult> {
  const started = performance.now();
  // Separate streams, so the scenario (what is sent, which fault at which point) does not depend on how the
  // concurrent senders interleave; only the exact moments differ from run to run.
  const random = prng(options.seed);
  const faultRandom = prng(options.seed ^ 0x5eed);
  const log = options.log ?? (() => {});
  const events = options.events ?? 1500;
  const customers = options.customers ?? 20;
  const faultCount = options.faults ?? 6;
  const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  const violations: string[] = [];

  const dir = await mkdtemp(path.join(os.tmpdir(), `meterdesk-chaos-${options.seed}-`));
  await chmod(dir, 0o755);
  const dataDir = path.join(dir, 'pg');
  let db: EmbeddedPostgresHandle | null = await startEmbeddedPostgres({ dataDir, ephemeral: false });
  const connectionString = db.connectionString;
  await prepareDatabase(connectionString);
  const pool = new pg.Pool({ connectionString, max: 4 });
  pool.on('error', () => undefined);

  const apiKey = `md_chaos_${randomBytes(24).toString('base64url')}`;
  const webhookSecret = `whsec_chaos_${randomBytes(16).toString('hex')}`;
  const webPort = await freePort();
  const webUrl = `http://127.0.0.1:${webPort}`;
  const children = new Set<ChildProcess>();
  const spawnTracked = (args: string[], env: NodeJS.ProcessEnv) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  };

  const simulator = spawnTracked(['app/cli/main.ts', 'simulator', 'stripe', '--port', '0', '--webhook-url', `${webUrl}/webhooks/stripe`, '--webhook-secret', webhookSecret], {});
  const simUrl = (JSON.parse(await waitForLine(simulator, /^\{.*"url"/, 'Stripe simulator')) as { url: string }).url;
  const control = async (route: string, body?: unknown, method?: string): Promise<unknown> => {
    const res = await fetch(`${simUrl}/__simulator/${route}`, {
      method: method ?? (body === undefined ? 'GET' : 'POST'),
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`simulator ${route}: ${res.status} ${await res.text()}`);
    return res.json();
  };
  await control('config', { v1_rate_per_second: 2000, latency_ms: 2 });
  await control('meters', { event_name: 'ai_tokens' });

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
    const child = spawnTracked(['app/cli/main.ts', 'web'], {
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
    });
    await waitForLine(child, /desk and API\s+http/, 'web');
    web = child;
  };
  const workers = new Set<ChildProcess>();
  // Like a process supervisor: a worker that cannot reach the database yet (it is restarting) is started again.
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
    const child = spawnTracked(['test/support/stripe-worker.ts', '--database-url', connectionString, '--stripe-base', simUrl, '--api', random() < 0.5 ? 'v1' : 'v2'], {});
    await waitForLine(child, /^ready /, 'worker');
    workers.add(child);
    child.once('exit', () => workers.delete(child));
  };

  const accepted = new Map<string, Accepted>();
  let requests = 0;
  let retriedRequests = 0;
  try {
    await startWeb();
    await Promise.all([startWorker(), startWorker()]);

    // Customers through the API, known to the simulator too; one customer Stripe does not know (its events fail).
    const post = async (route: string, body: unknown): Promise<{ status: number; json: unknown }> => {
      const res = await fetch(`${webUrl}${route}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      return { status: res.status, json: await res.json().catch(() => null) };
    };
    for (let i = 0; i < customers; i++) {
      const r = await post('/api/v1/customers', { external_id: `chaos-${i}`, processor: 'stripe', processor_customer_id: `cus_chaos_${i}` });
      if (r.status !== 201 && r.status !== 200) throw new Error(`customer ${i}: ${r.status} ${JSON.stringify(r.json)}`);
      if (i > 0) await control('customers', { id: `cus_chaos_${i}` });
    }

    // A request whose answer was lost (killed web, dropped connection) is sent again, as a host app would: same
    // identifiers, until it gets a definite answer.
    const send = async (items: Array<Record<string, unknown>>): Promise<void> => {
      const body = items.length === 1 && random() < 0.5 ? items[0] : { events: items };
      for (let attempt = 0; ; attempt++) {
        requests++;
        if (attempt > 0) retriedRequests++;
        try {
          const r = await post('/api/v1/events', body);
          if (r.status >= 500) throw new Error(`status ${r.status}`);
          const results = 'events' in (body as object) ? ((r.json as { results: Array<Record<string, unknown>> }).results ?? []) : [r.json as Record<string, unknown>];
          if ('events' in (body as object) && r.status !== 200) throw new Error(`batch answered ${r.status}: ${JSON.stringify(r.json)}`);
          results.forEach((res, k) => {
            const item = items[k]!;
            const ok = 'events' in (body as object) ? res.result === 'accepted' || res.result === 'duplicate' : r.status === 202 || r.status === 200;
            if (ok) {
              const stored = 'events' in (body as object) ? (res.event as Record<string, unknown> | undefined) : res;
              const identifier = String(stored?.identifier ?? item.identifier);
              const previous = accepted.get(identifier);
              if (!previous) accepted.set(identifier, { identifier, value: Number(item.value ?? 1), customer: String(item.customer) });
            }
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

    // Faults at points of the ingest the seed picks (after so many events were sent), so they land mid-flight.
    let ingestDone = false;
    let sent = 0;
    const faultPoints = Array.from({ length: faultCount }, () => Math.floor((0.05 + faultRandom() * 0.9) * events)).sort((a, b) => a - b);
    const faultLoop = (async () => {
      for (const point of faultPoints) {
        while (sent < point && !ingestDone) await sleep(20);
        if (ingestDone) break;
        const kind = FAULT_KINDS[Math.floor(faultRandom() * FAULT_KINDS.length)]!;
        faults[kind]++;
        log(`  seed ${options.seed}: ${kind}`);
        switch (kind) {
          case 'worker_kill': {
            const victim = [...workers][Math.floor(faultRandom() * workers.size)];
            await kill(victim, 'SIGKILL');
            void startWorker().catch((e) => violations.push(`worker restart failed: ${(e as Error).message}`));
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
        }
      }
    })();

    const sentIdentifiers: Array<Record<string, unknown>> = [];
    const senders = Array.from({ length: 3 }, async () => {
      while (sent < events) {
        const size = random() < 0.4 ? 1 : 1 + Math.floor(random() * 50);
        const items: Array<Record<string, unknown>> = [];
        for (let k = 0; k < size && sent < events; k++) items.push(makeEvent(sent++));
        // Duplicates: a few earlier events again, within the batch or on their own.
        if (sentIdentifiers.length > 0 && random() < 0.2) items.push(sentIdentifiers[Math.floor(random() * sentIdentifiers.length)]!);
        await send(items);
        for (const item of items) if (item.value !== -1) sentIdentifiers.push(item);
        // Paced, so ingest spans the fault schedule instead of finishing before the first fault.
        await sleep(20 + random() * 80);
      }
    });
    await Promise.all(senders);
    ingestDone = true;
    await faultLoop;

    // Settle: faults off, processes up, every pending event given time to finish.
    await control('faults', undefined, 'DELETE');
    if (!web || web.exitCode !== null || web.signalCode !== null) await startWeb();
    while (workers.size < 2) await startWorker();
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
    // event has been taken (the simulator retries deliveries that found the web process down, as Stripe does),
    // then give the worker a moment to apply them.
    await control('flush_error_reports', {});
    const webhookDeadline = Date.now() + 90_000;
    for (;;) {
      const { data } = (await control('webhook_deliveries')) as { data: Array<{ event_id: string; ok: boolean }> };
      const taken = new Set(data.filter((d) => d.ok).map((d) => d.event_id));
      const untaken = new Set(data.filter((d) => !taken.has(d.event_id)).map((d) => d.event_id));
      if (untaken.size === 0) break;
      if (Date.now() > webhookDeadline) {
        violations.push(`${untaken.size} webhook events never taken by the web process`);
        break;
      }
      await sleep(500);
    }
    // A webhook job that failed (its database restarted under it) is retried with graphile-worker's backoff, which
    // reaches a minute by the fourth attempt: wait for it, and call it a violation only if it never happens.
    const appliedDeadline = Date.now() + 150_000;
    for (;;) {
      const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM webhook_events WHERE processed_at IS NULL`);
      if (rows[0]!.n === 0) break;
      if (Date.now() > appliedDeadline) {
        violations.push(`${rows[0]!.n} stored webhook events still unprocessed 150 s after the faults stopped`);
        break;
      }
      await sleep(250);
    }

    const sim = (await control('meter_events')) as { counts: Record<string, number>; data: Array<{ identifier: string; value: number; status: string }> };
    const stats = (await control('stats')) as { faultsApplied?: Record<string, number> };
    violations.push(...(await checkInvariants(pool, accepted, sim)));
    const processorFaults = Object.fromEntries(Object.entries(stats.faultsApplied ?? {}).filter(([, n]) => n > 0));
    return { seed: options.seed, accepted: accepted.size, requests, retriedRequests, faults, processorFaults, violations, seconds: (performance.now() - started) / 1000 };
  } finally {
    await Promise.all([...children].map((c) => kill(c, 'SIGKILL')));
    await pool.end().catch(() => undefined);
    await db?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
