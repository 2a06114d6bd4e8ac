// Serves the desk for the browser tests: `tsx test/browser/serve.ts [--port N]` (default: a free port).
// A fresh database (a new database on DATABASE_URL's server when set, else an embedded PostgreSQL in a temp
// directory), migrated and seeded with one user per role (test/support/desk-users.ts), then the web process as
// production runs it: API handlers, the built desk, the desk's load context.
// Prints `MD_SERVE_DATABASE_URL=<url>` then `MD_SERVE_URL=<url>` once it accepts connections; cleans everything up on SIGTERM/SIGINT.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { createApiHandler } from '../../app/api/handler';
import { startEmbeddedPostgres, stopOrphanedPostgres, embeddedPostgresStatePath } from '../../app/db/embedded-postgres';
import { prepareDatabase } from '../../app/seed/prepare';
import { createDeskLoadContext } from '../../app/server/desk-context';
import { startHttpServer } from '../../app/server/http';
import { createServices } from '../../app/server/services';
import { adminQuery, databaseUrl } from '../support/pg-admin';
import { createDeskTestUsers } from '../support/desk-users';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(`serve: --port must be an integer between 0 and 65535, got ${values.port}`);
  process.exit(2);
}

const CLUSTER_PREFIX = 'meterdesk-e2e-';
const cleanup: Array<() => Promise<unknown>> = [];
const started = Date.now();

async function start() {
  let connectionString: string;
  if (process.env.DATABASE_URL) {
    const name = `meterdesk_e2e_${Math.floor(Date.now() / 1000)}_${randomBytes(3).toString('hex')}`;
    const admin = process.env.DATABASE_URL;
    await adminQuery(admin, `CREATE DATABASE "${name}"`);
    cleanup.push(() => adminQuery(admin, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    connectionString = databaseUrl(admin, name);
  } else {
    await sweepKilledRuns();
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), CLUSTER_PREFIX));
    cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
    const cluster = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), ephemeral: true });
    cleanup.push(() => cluster.stop());
    connectionString = cluster.connectionString;
  }
  await prepareDatabase(connectionString);

  const services = createServices({ connectionString });
  cleanup.push(async () => {
    await services.close();
    // pool.end() resolves before its sockets finish closing; stopping PostgreSQL may cut them, which is fine now.
    services.pool.removeAllListeners('error').on('error', () => {});
  });
  await createDeskTestUsers(services.prisma);

  const server = await startHttpServer({
    port,
    host: '127.0.0.1',
    handlers: [createApiHandler(services)],
    getLoadContext: createDeskLoadContext(services, {
      sessionSecret: randomBytes(32).toString('hex'),
      simulatedProcessors: true,
    }),
  });
  cleanup.push(() => server.close());
  console.log(`[serve] ready in ${Date.now() - started} ms`);
  // Journeys seed ledger rows with SQL (test/support/desk-events.ts); printed before the URL, which ends the handshake.
  console.log(`MD_SERVE_DATABASE_URL=${connectionString}`);
  console.log(`MD_SERVE_URL=${server.url}`);
}

async function stop(code: number) {
  for (const step of cleanup.reverse()) {
    await step().catch((error: unknown) => console.error('serve: cleanup step failed', error));
  }
  process.exit(code);
}

/** Clusters of runs that were SIGKILLed (their PostgreSQL outlives them): stop them and remove their directories. */
async function sweepKilledRuns() {
  for (const name of await fs.readdir(os.tmpdir())) {
    if (!name.startsWith(CLUSTER_PREFIX)) continue;
    const dataDir = path.join(os.tmpdir(), name, 'data');
    const hasState = await fs.access(embeddedPostgresStatePath(dataDir)).then(() => true, () => false);
    if (!hasState) continue;
    if (await stopOrphanedPostgres(dataDir).catch(() => false)) {
      await fs.rm(path.join(os.tmpdir(), name), { recursive: true, force: true });
    }
  }
}

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    void stop(0);
  });
}

start().catch((error: unknown) => {
  console.error('serve: failed to start', error);
  void stop(1);
});
