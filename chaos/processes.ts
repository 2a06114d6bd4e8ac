// The processes of one seed, supervised as a process manager would: the Stripe and Braintree simulators, the two web
// processes (CLI `web`, behind the campaign's proxy, chaos/proxy.ts) and the three workers (test/support/campaign-worker.ts), each logging to a file of its own. A process
// that exits without a kill from the plan is news: counted, its logs kept, and started again.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { waitForLine } from '../test/support/process-output';
import { CLOSE_GRACE_MS, sleep } from './plan';

/** Worker processes a seed runs (each with WORKER_CONCURRENCY 4). */
export const WORKERS = 3;
/** Web processes behind the proxy. */
export const WEBS = 2;

export type BraintreeEnv = { BRAINTREE_API_BASE: string; BRAINTREE_MERCHANT_ID: string; BRAINTREE_PUBLIC_KEY: string; BRAINTREE_PRIVATE_KEY: string };


/** Children the campaign itself stopped (anything else exiting is news). */
const expectedExits = new WeakSet<ChildProcess>();

export function kill(child: ChildProcess | null | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  expectedExits.add(child);
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

/** `POST|GET|DELETE /__simulator/<route>` on a simulator, JSON both ways. */
export type SimulatorControl = (route: string, body?: unknown, method?: string) => Promise<unknown>;

export const controlAt =
  (base: string): SimulatorControl =>
  async (route, body, method) => {
    const res = await fetch(`${base}/__simulator/${route}`, {
      method: method ?? (body === undefined ? 'GET' : 'POST'),
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`simulator ${route}: ${res.status} ${await res.text()}`);
    return res.json();
  };

export interface ProcessesOptions {
  seed: number;
  logDir: string;
  log: (line: string) => void;
  connectionString: string;
  /** One port per web process (restarted on the same port); the proxy in front of them forwards to these. */
  webPorts: readonly number[];
  /** The proxy's URL: what the simulators' webhooks and every client talk to. */
  publicUrl: string;
  apiKey: string;
  webhookSecret: string;
  /** Draws each worker's Stripe meter API (v1 or v2), a stream of its own so the senders' draws do not move it. */
  apiRandom: () => number;
  /** Where a web process exiting on its own, or a restart that fails, is recorded. */
  violations: string[];
}

export class CampaignProcesses {
  readonly unexpectedExits = { worker: 0, web: 0 };
  readonly workers = new Map<string, ChildProcess>();
  /** The web processes by index (null while one is down). */
  readonly webs: Array<ChildProcess | null>;
  /** Set when something happened that the logs explain: the seed keeps them. */
  keepLogs = false;
  simUrl = '';
  braintreeEnv: BraintreeEnv = { BRAINTREE_API_BASE: '', BRAINTREE_MERCHANT_ID: '', BRAINTREE_PUBLIC_KEY: '', BRAINTREE_PRIVATE_KEY: '' };
  private readonly children = new Set<ChildProcess>();
  private readonly ready = new WeakSet<ChildProcess>();
  private spawned = 0;
  private workerCount = 0;
  private stopping = false;
  /** One session secret for every web process of the seed: a desk session signed by one is good on the other. */
  private readonly sessionSecret = randomBytes(32).toString('hex');

  constructor(private readonly o: ProcessesOptions) {
    this.webs = o.webPorts.map(() => null);
  }

  get webUrl(): string {
    return this.o.publicUrl;
  }

  private spawn(name: string, args: string[], env: NodeJS.ProcessEnv, onUnexpectedExit?: (code: number | null, signal: string | null) => void): ChildProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const file = `${String(++this.spawned).padStart(2, '0')}-${name}`;
    const out = createWriteStream(path.join(this.o.logDir, `${file}.log`));
    child.stdout!.pipe(out, { end: false });
    child.stderr!.pipe(out, { end: false });
    this.children.add(child);
    child.once('exit', (code, signal) => {
      this.children.delete(child);
      out.end(`\n[campaign] exited ${code ?? signal}\n`);
      if (!expectedExits.has(child) && !this.stopping) {
        this.o.log(`  seed ${this.o.seed}: ${file} (pid ${child.pid}) exited on its own (${code ?? signal})`);
        onUnexpectedExit?.(code, signal);
      }
    });
    return child;
  }

  /** Both simulators, each in its own process; their control endpoints. */
  async startSimulators(): Promise<{ control: SimulatorControl; btControl: SimulatorControl }> {
    const simulator = this.spawn('stripe-simulator', ['app/cli/main.ts', 'simulator', 'stripe', '--port', '0', '--webhook-url', `${this.webUrl}/webhooks/stripe`, '--webhook-secret', this.o.webhookSecret], {});
    // Braintree's sandbox rules (amounts 2000.00-2999.99 decline ...) stay off: declines come from the seed's rules.
    const btSimulator = this.spawn('braintree-simulator', ['app/cli/main.ts', 'simulator', 'braintree', '--port', '0', '--no-amount-rules', '--seed', String(this.o.seed)], {});
    const [simLine, btLine] = await Promise.all([waitForLine(simulator, /^\{.*"url"/, 'Stripe simulator'), waitForLine(btSimulator, /^\{.*"url"/, 'Braintree simulator')]);
    this.simUrl = (JSON.parse(simLine) as { url: string }).url;
    const bt = JSON.parse(btLine) as { url: string; merchantId: string; publicKey: string; privateKey: string };
    this.braintreeEnv = { BRAINTREE_API_BASE: bt.url, BRAINTREE_MERCHANT_ID: bt.merchantId, BRAINTREE_PUBLIC_KEY: bt.publicKey, BRAINTREE_PRIVATE_KEY: bt.privateKey };
    return { control: controlAt(this.simUrl), btControl: controlAt(bt.url) };
  }

  /** Like a supervisor: a process started while its database restarts exits, and is started again. */
  private async supervised(startOnce: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await startOnce();
      } catch (error) {
        if (attempt >= 30) throw error;
        await sleep(500);
      }
    }
  }

  startWeb(index: number): Promise<void> {
    return this.supervised(async () => {
      const child = this.spawn(
        `web-${index + 1}`,
        ['app/cli/main.ts', 'web'],
        {
          DATABASE_URL: this.o.connectionString,
          PORT: String(this.o.webPorts[index]),
          HOST: '127.0.0.1',
          NODE_ENV: 'production',
          SESSION_SECRET: this.sessionSecret,
          METERDESK_BOOTSTRAP_API_KEY: this.o.apiKey,
          STRIPE_SECRET_KEY: 'sk_test_chaos',
          STRIPE_WEBHOOK_SECRET: this.o.webhookSecret,
          STRIPE_API_BASE: this.simUrl,
          METERDESK_DEMO: 'false',
          ...this.braintreeEnv,
        },
        (code, signal) => {
          if (!this.ready.has(child)) return;
          // The web process must survive every fault here (it serves the next request once the database is back).
          this.unexpectedExits.web++;
          this.o.violations.push(`the web process exited on its own (${code ?? signal}); logs kept`);
          this.keepLogs = true;
          if (this.webs[index] === child) this.webs[index] = null;
          void this.startWeb(index).catch((e) => this.o.violations.push(`web restart failed: ${(e as Error).message}`));
        },
      );
      await waitForLine(child, /"msg":"started"/, 'web');
      this.ready.add(child);
      this.webs[index] = child;
    });
  }

  startWebs(): Promise<void> {
    return Promise.all(this.webs.map((_, i) => this.startWeb(i))).then(() => undefined);
  }

  /** Restarts of killed web processes still under way (the settle phase waits for them). */
  private readonly webRestarts = new Set<Promise<void>>();
  private readonly restarting = new Set<number>();

  /**
   * SIGKILLs one web process (the other keeps serving behind the proxy) and starts it again on its port, without
   * waiting for the restart: the ingest goes on through the other one, and the next faults land while it does.
   */
  async killWeb(index: number): Promise<void> {
    // One restart per port at a time: a web process still starting is not killed again.
    if (this.restarting.has(index)) index = this.webs.findIndex((_, i) => !this.restarting.has(i));
    if (index < 0) return;
    const victim = this.webs[index];
    this.webs[index] = null;
    await kill(victim, 'SIGKILL');
    const restart = this.startWeb(index).catch((e: unknown) => {
      this.o.violations.push(`web restart failed: ${(e as Error).message}`);
    });
    this.webRestarts.add(restart);
    this.restarting.add(index);
    void restart.finally(() => {
      this.webRestarts.delete(restart);
      this.restarting.delete(index);
    });
  }

  /** A worker that exits on its own (graphile-worker stops one that cannot record a job's outcome) is started again. */
  startWorker(): Promise<void> {
    return this.supervised(async () => {
      const name = `chaos-worker-${++this.workerCount}`;
      const url = new URL(this.o.connectionString);
      // Names the worker's database sessions, so a kill can aim at the worker holding a window's settlement lock.
      url.searchParams.set('application_name', name);
      const api = this.o.apiRandom() < 0.5 ? 'v1' : 'v2';
      const child = this.spawn(
        name,
        ['test/support/campaign-worker.ts', '--tick-ms', '500', '--close-grace-ms', String(CLOSE_GRACE_MS)],
        { DATABASE_URL: url.toString(), STRIPE_API_BASE: this.simUrl, STRIPE_METER_API: api, WORKER_CONCURRENCY: '4', ...this.braintreeEnv },
        () => {
          if (!this.ready.has(child)) return;
          this.unexpectedExits.worker++;
          this.keepLogs = true; // not a violation (the campaign starts another), but why it exited is worth reading
          this.workers.delete(name);
          void this.startWorker().catch((e) => this.o.violations.push(`worker restart failed: ${(e as Error).message}`));
        },
      );
      await waitForLine(child, /^ready /, 'worker');
      this.ready.add(child);
      this.workers.set(name, child);
      child.once('exit', () => {
        if (this.workers.get(name) === child) this.workers.delete(name);
      });
    });
  }

  async killWorker(name: string): Promise<void> {
    const victim = this.workers.get(name);
    this.workers.delete(name);
    await kill(victim, 'SIGKILL');
    void this.startWorker().catch((e) => this.o.violations.push(`worker restart failed: ${(e as Error).message}`));
  }

  /** The worker whose session holds a window's settlement lock (a sale in flight), if any. */
  async settlingWorker(pool: pg.Pool): Promise<string | null> {
    // Not the alert evaluation's transaction lock (one bigint key, objsubid 1): a worker in an evaluation pass holds
    // no sale.
    const { rows } = await pool.query<{ name: string }>(
      `SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'chaos-worker-%'
         AND NOT (l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext('meterdesk.alerts')::bigint) LIMIT 1`,
    );
    return rows[0] && this.workers.has(rows[0].name) ? rows[0].name : null;
  }

  /** Both web processes up and the workers, as the settle phase wants them. */
  async ensureRunning(): Promise<void> {
    await Promise.all([...this.webRestarts]);
    for (let i = 0; i < this.webs.length; i++) {
      const web = this.webs[i];
      if (!web || web.exitCode !== null || web.signalCode !== null) await this.startWeb(i);
    }
    while (this.workers.size < WORKERS) await this.startWorker();
  }

  startWorkers(): Promise<void> {
    return Promise.all(Array.from({ length: WORKERS }, () => this.startWorker())).then(() => undefined);
  }

  async stopAll(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.children].map((c) => kill(c, 'SIGKILL')));
  }
}
