// Liveness and readiness (ADR 020). /healthz: the process answers (never the database: a liveness probe that fails
// on a database outage would have every process restarted at once). /readyz: this process should get traffic now —
// not draining, the database answers, its schema is the one this code expects, and the worker runs where the process
// runs one. A probe never waits on the request pool: it has a connection of its own with short timeouts.
import type { IncomingMessage, ServerResponse } from 'node:http';
import pg from 'pg';
import { expectedMigrations, pendingMigrations } from '../db/migrate';
import { logger } from '../log';
import type { NodeHandler } from './http';

const log = logger('health');

const DRAINING: CheckResult = { status: 'fail', detail: 'shutting down: finishing the work in flight, taking no new work' };

export type WorkerState = 'starting' | 'running' | 'restarting' | 'stopping' | 'stopped';

export interface CheckResult {
  status: 'pass' | 'fail';
  detail?: string;
}

export interface Readiness {
  ready: boolean;
  checks: Record<string, CheckResult>;
}

export interface HealthOptions {
  connectionString: string;
  /** The worker's state, where this process runs one. */
  worker?: () => WorkerState;
  /** Defaults to the directories in prisma/migrations. */
  expectedMigrations?: readonly string[];
  /** Per check (connect, each query). */
  timeoutMs?: number;
  /** Prometheus text, served on /metrics by processes with no other HTTP server (the worker). */
  metrics?: (req: IncomingMessage, res: ServerResponse) => void;
}

export interface Health {
  /** /healthz, /readyz (and /metrics when given); false for any other path. */
  handler: NodeHandler;
  /** From now on /readyz answers 503 `draining`. */
  startDraining(): void;
  readonly draining: boolean;
  check(): Promise<Readiness>;
  close(): Promise<void>;
}

export function createHealth(options: HealthOptions): Health {
  const timeoutMs = options.timeoutMs ?? 2_000;
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: 1,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: 'meterdesk-health',
  });
  pool.on('error', (error) => log.debug({ error: error.message }, 'health connection error'));
  pool.on('connect', (client) => client.on('error', (error) => log.debug({ error: error.message }, 'health connection error')));
  let expected: Promise<readonly string[]> | null = options.expectedMigrations ? Promise.resolve(options.expectedMigrations) : null;
  let draining = false;
  let inflight: Promise<Readiness> | null = null;
  let lastReady: boolean | null = null;

  const checkDatabase = async (checks: Record<string, CheckResult>) => {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      checks.database = { status: 'fail', detail: `unreachable: ${(error as Error).message}` };
      checks.migrations = { status: 'fail', detail: 'not checked: the database is unreachable' };
      return;
    }
    let broken: Error | undefined;
    try {
      await client.query('SELECT 1');
      checks.database = { status: 'pass' };
      try {
        const pending = await pendingMigrations(client, await (expected ??= expectedMigrations()));
        checks.migrations = pending.length === 0 ? { status: 'pass' } : { status: 'fail', detail: `not applied: ${pending.join(', ')}` };
      } catch (error) {
        checks.migrations = { status: 'fail', detail: `could not be read: ${(error as Error).message}` };
      }
    } catch (error) {
      broken = error as Error;
      checks.database = { status: 'fail', detail: `unreachable: ${broken.message}` };
      checks.migrations = { status: 'fail', detail: 'not checked: the database is unreachable' };
    } finally {
      client.release(broken);
    }
  };

  const run = async (): Promise<Readiness> => {
    const checks: Record<string, CheckResult> = {};
    if (draining) checks.draining = DRAINING;
    await checkDatabase(checks);
    if (options.worker) {
      const state = options.worker();
      checks.worker = state === 'running' ? { status: 'pass' } : { status: 'fail', detail: state };
    }
    const ready = Object.values(checks).every((c) => c.status === 'pass');
    if (ready !== lastReady) {
      // Only the changes: a probe every few seconds would otherwise fill the log.
      if (ready) log.info('readiness: ready');
      else log.warn({ checks: failing(checks) }, 'readiness: not ready');
      lastReady = ready;
    }
    return { ready, checks };
  };

  const check = () =>
    // One check at a time: probes arriving while one runs share its answer.
    (inflight ??= run().finally(() => {
      inflight = null;
    }));

  const handler: NodeHandler = async (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path === '/healthz') {
      respond(res, req, 200, 'application/json', { status: 'ok' });
      return true;
    }
    if (path === '/readyz') {
      // Draining needs no database round trip to say so: answered at once, so balancers see it at once.
      const { ready, checks } = draining ? { ready: false, checks: { draining: DRAINING } } : await check();
      if (ready) respond(res, req, 200, 'application/json', { status: 'ready', checks });
      else {
        const names = Object.keys(failing(checks));
        respond(res, req, 503, 'application/problem+json', {
          type: draining ? '/problems/draining' : '/problems/not-ready',
          title: draining ? 'Draining' : 'Not ready',
          status: 503,
          detail: names.map((n) => `${n}: ${checks[n]!.detail ?? 'fail'}`).join('; '),
          failing: names,
          checks,
        });
      }
      return true;
    }
    if (path === '/metrics' && options.metrics) {
      options.metrics(req, res);
      return true;
    }
    return false;
  };

  return {
    handler,
    startDraining() {
      draining = true;
    },
    get draining() {
      return draining;
    },
    check,
    async close() {
      await pool.end().catch(() => undefined);
    },
  };
}

function failing(checks: Record<string, CheckResult>): Record<string, CheckResult> {
  return Object.fromEntries(Object.entries(checks).filter(([, c]) => c.status === 'fail'));
}

function respond(res: ServerResponse, req: IncomingMessage, status: number, type: string, value: unknown) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : body);
}
