// /healthz and /readyz on the real processes (`web`, `worker` with HEALTH_PORT), and the web process's drain on
// SIGTERM: /readyz turns 503 `draining` while it still serves, then the listener closes, the request in flight
// finishes, and the process exits 0 (ADR 020).
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import pg from 'pg';
import { prepareDatabase } from '../../app/seed/prepare';
import { createPrisma } from '../../app/db/clients';
import { createHealth } from '../../app/server/health';
import { adminQuery, createTestDatabase, databaseUrl, type TestDatabase } from '../support/database';
import { startCli, type CliProcess } from '../support/process-output';

let db: TestDatabase;
let pool: pg.Pool;
const apiKey = `md_health_${randomBytes(24).toString('base64url')}`;
const env = () => ({ DATABASE_URL: db.connectionString, PORT: '0', MIGRATE_ON_START: 'false', METERDESK_BOOTSTRAP_API_KEY: apiKey, SESSION_SECRET: 'x'.repeat(40) });

beforeAll(async () => {
  db = await createTestDatabase();
  const prisma = createPrisma(db.connectionString);
  // What `migrate` does before the processes start (compose's one-shot), as they run with MIGRATE_ON_START=false.
  await prepareDatabase(db.connectionString);
  await prisma.customer.create({ data: { externalId: 'acme', processor: 'stripe', processorCustomerId: 'cus_acme' } });
  await prisma.$disconnect();
  pool = new pg.Pool({ connectionString: db.connectionString, max: 2 });
  pool.on('error', () => undefined);
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function readyz(url: string) {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as Record<string, unknown> };
}

describe('health of a web and a worker process', () => {
  let web: CliProcess;
  let worker: CliProcess;
  beforeAll(async () => {
    [web, worker] = await Promise.all([startCli('web', env()), startCli('worker', { ...env(), HEALTH_PORT: '0' }, { field: 'health_url' })]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([web?.stop(), worker?.stop()]);
  });

  it('/healthz is 200 and /readyz 200 with each check passing (the worker check only where a worker runs)', async () => {
    const alive = await fetch(`${web.url}/healthz`);
    expect(alive.status).toBe(200);
    expect(await alive.json()).toEqual({ status: 'ok' });
    expect(await readyz(web.url)).toEqual({
      status: 200,
      type: 'application/json',
      body: { status: 'ready', checks: { database: { status: 'pass' }, migrations: { status: 'pass' } } },
    });
    // The worker's readiness includes its runner; its listener serves probes and metrics only.
    const workerReady = await until('the worker to be ready', async () => {
      const r = await readyz(worker.url);
      return r.status === 200 && r;
    });
    expect(workerReady.body).toEqual({ status: 'ready', checks: { database: { status: 'pass' }, migrations: { status: 'pass' }, worker: { status: 'pass' } } });
    expect((await fetch(`${worker.url}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${worker.url}/metrics`)).text()).toContain('service_name="meterdesk-worker"');
    expect((await fetch(`${worker.url}/api/v1/events`)).status).toBe(404);
  });

  it('/readyz is 503 naming the migration the database lacks, while /healthz stays 200; ready again once applied', async () => {
    const { rows } = await pool.query(`SELECT * FROM _prisma_migrations ORDER BY migration_name DESC LIMIT 1`);
    const last = rows[0] as Record<string, unknown>;
    await pool.query(`DELETE FROM _prisma_migrations WHERE id = $1`, [last.id]);
    try {
      const r = await readyz(web.url);
      expect(r.status).toBe(503);
      expect(r.type).toBe('application/problem+json');
      expect(r.body).toMatchObject({ type: '/problems/not-ready', status: 503, failing: ['migrations'], checks: { database: { status: 'pass' } } });
      expect(r.body.detail).toContain(String(last.migration_name));
      expect((await fetch(`${web.url}/healthz`)).status).toBe(200);
      // The API does not depend on readiness: the process still serves what it can.
      expect((await fetch(`${web.url}/api/v1/events?identifier=none`, { headers: { authorization: `Bearer ${apiKey}` } })).status).toBe(404);
    } finally {
      const columns = Object.keys(last);
      await pool.query(`INSERT INTO _prisma_migrations (${columns.join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')})`, columns.map((c) => last[c]));
    }
    expect((await readyz(web.url)).status).toBe(200);
  });

  it('/readyz is 503 naming the database while it refuses connections (both processes), and 200 once it is back', async () => {
    const adminUrl = inject('databaseAdminUrl');
    const name = new URL(db.connectionString).pathname.slice(1);
    await adminQuery(adminUrl, `ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`);
    try {
      await adminQuery(adminUrl, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name]);
      for (const url of [web.url, worker.url]) {
        const r = await readyz(url);
        expect(r.status).toBe(503);
        expect(r.type).toBe('application/problem+json');
        expect((r.body.failing as string[])[0]).toBe('database');
        expect(r.body.checks).toMatchObject({ database: { status: 'fail', detail: expect.stringContaining('unreachable') } });
        expect((await fetch(`${url}/healthz`)).status).toBe(200);
      }
    } finally {
      await adminQuery(adminUrl, `ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`);
    }
    await until('web ready again', async () => (await readyz(web.url)).status === 200);
    await until('worker ready again', async () => (await readyz(worker.url)).status === 200);
    expect(web.child.exitCode).toBeNull();
    expect(worker.child.exitCode).toBeNull();
  }, 120_000);
});

describe('readiness of a database never migrated', () => {
  it('fails the migrations check with every migration and graphile-worker schema named', async () => {
    const adminUrl = inject('databaseAdminUrl');
    const name = `meterdesk_test_empty_${randomBytes(4).toString('hex')}`;
    await adminQuery(adminUrl, `CREATE DATABASE "${name}"`);
    const health = createHealth({ connectionString: databaseUrl(adminUrl, name) });
    try {
      const r = await health.check();
      expect(r.ready).toBe(false);
      expect(r.checks.database).toEqual({ status: 'pass' });
      expect(r.checks.migrations!.status).toBe('fail');
      expect(r.checks.migrations!.detail).toMatch(/^not applied: 20261122000000_init, .*graphile_worker schema$/);
    } finally {
      await health.close();
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    }
  });
});

describe('the web process on SIGTERM', () => {
  it('answers /readyz 503 draining while it still serves, stops accepting, finishes the request in flight, exits 0', async () => {
    const web = await startCli('web', { ...env(), DRAIN_DELAY_MS: '1500' });
    const { port } = new URL(web.url);
    // A request in flight across the whole drain: headers and half the body now, the rest after the listener closed.
    const body = JSON.stringify({ customer: 'acme', event_name: 'ai_tokens', value: 3, identifier: 'drain-in-flight' });
    const socket = net.connect(Number(port), '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    let response = '';
    socket.on('data', (c: Buffer) => (response += c.toString()));
    const ended = new Promise((r) => socket.once('close', r));
    socket.write(
      `POST /api/v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${apiKey}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 20)}`,
    );

    web.child.kill('SIGTERM');
    const draining = await until('readyz to say draining', async () => {
      const r = await readyz(web.url);
      return r.status === 503 && r;
    });
    expect(draining.type).toBe('application/problem+json');
    expect(draining.body).toMatchObject({ type: '/problems/draining', failing: ['draining'] });
    // Still serving everything else while balancers take it out, each answer asking the client to reconnect.
    const during = await fetch(`${web.url}/healthz`);
    expect(during.status).toBe(200);
    expect(during.headers.get('connection')).toBe('close');

    // Then the listener closes: a new connection is refused (a balancer retries it elsewhere).
    await until('the listener to close', () => new Promise<boolean>((resolve) => {
      const probe = net.connect(Number(port), '127.0.0.1');
      probe.once('connect', () => {
        probe.destroy();
        resolve(false);
      });
      probe.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
    }));
    expect(web.child.exitCode).toBeNull();
    socket.write(body.slice(20));
    await ended;
    expect(response).toMatch(/^HTTP\/1\.1 202 /);
    expect(response.toLowerCase()).toContain('connection: close');
    expect(await web.exited).toBe(0);
    const { rows } = await pool.query(`SELECT value FROM meter_events WHERE identifier = 'drain-in-flight'`);
    expect(rows).toEqual([{ value: '3' }]);
    expect(web.output()).toContain('"msg":"stopped"');
  }, 120_000);
});
