// Vitest global setup: one PostgreSQL server for the whole run and one migrated template database, from which
// test/support/database.ts clones a fresh database per test file. See docs/decisions/002-*.md.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Logger } from 'graphile-worker';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import {
  embeddedPostgresStatePath,
  startEmbeddedPostgres,
  stopOrphanedPostgres,
  type EmbeddedPostgresHandle,
} from '../../app/db/embedded-postgres';
import { installGraphileWorker } from '../../app/db/graphile-jobs';
import { ensureGeneratedClient, migrateDatabase, projectRoot } from '../../app/db/migrate';
import { TEMPLATE_DATABASE, TEST_DATABASE_PREFIX, adminQuery, databaseUrl } from './pg-admin';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Connection string of a role that may CREATE/DROP databases (the embedded cluster's superuser). */
    databaseAdminUrl: string;
    /** Prefix for this run's test databases, so teardown can drop the ones a test file did not. */
    databaseRunPrefix: string;
    /** `STRATEGY FILE_COPY` for the throwaway embedded cluster (fsync off, ~17 ms per clone), else ''. */
    databaseCloneStrategy: string;
  }
}

const CLUSTER_DIR_PREFIX = 'meterdesk-vitest-';
// Test databases from runs that died before teardown, on a server they shared with us (DATABASE_URL).
const ABANDONED_AFTER_SECONDS = 24 * 3600;

export default async function setup(project: TestProject) {
  const started = Date.now();
  const timings: string[] = [];
  const lap = (label: string, since: number) => timings.push(`${label} ${Date.now() - since} ms`);

  let t = Date.now();
  await ensureGeneratedClient();
  lap('prisma generate check', t);

  let cluster: { handle: EmbeddedPostgresHandle; dir: string } | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    t = Date.now();
    await sweepKilledRuns();
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), CLUSTER_DIR_PREFIX));
    const handle = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), ephemeral: true });
    cluster = { handle, dir };
    adminUrl = handle.connectionString;
    lap('embedded PostgreSQL initdb+start', t);
  }

  const runPrefix = `${TEST_DATABASE_PREFIX}${Math.floor(Date.now() / 1000)}_${randomBytes(3).toString('hex')}_`;
  try {
    const serverVersion = Number(
      (await adminQuery<{ v: string }>(adminUrl, `SELECT current_setting('server_version_num') AS v`))[0]?.v,
    );
    t = Date.now();
    const rebuilt = await ensureTemplate(adminUrl);
    lap(rebuilt ? 'template migrated' : 'template reused', t);

    project.provide('databaseAdminUrl', adminUrl);
    project.provide('databaseRunPrefix', runPrefix);
    // FILE_COPY copies the template's files after a checkpoint: cheap with fsync off, but a checkpoint on a
    // shared server can take long, so there the server's default (WAL_LOG) stays.
    project.provide('databaseCloneStrategy', cluster && serverVersion >= 150000 ? 'STRATEGY FILE_COPY' : '');
  } catch (error) {
    await cluster?.handle.stop();
    throw error;
  }
  if (process.env.MD_TEST_TIMINGS) console.log(`[db] ${timings.join(', ')}; total ${Date.now() - started} ms`);

  return async () => {
    if (cluster) {
      await cluster.handle.stop();
      await fs.rm(cluster.dir, { recursive: true, force: true });
      return;
    }
    await dropTestDatabases(adminUrl, (name) => name.startsWith(runPrefix) || isAbandoned(name));
  };
}

/**
 * Builds `meterdesk_template` (Prisma migrations + graphile-worker's schema) unless one built from the same
 * migrations already exists. The fingerprint lives in the database comment; building happens under a new name
 * and an advisory lock, so concurrent runs against one server never clone a half-built template.
 */
async function ensureTemplate(adminUrl: string): Promise<boolean> {
  const fingerprint = `meterdesk-template:${await templateFingerprint()}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  admin.on('error', () => {});
  await admin.connect();
  try {
    await admin.query('SELECT pg_advisory_lock(hashtext($1))', [TEMPLATE_DATABASE]);
    const existing = await admin.query<{ comment: string | null }>(
      `SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`,
      [TEMPLATE_DATABASE],
    );
    if (existing.rows[0]?.comment === fingerprint) return false;

    const building = `${TEMPLATE_DATABASE}_build_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE DATABASE ${building}`);
    try {
      const url = databaseUrl(adminUrl, building);
      await migrateDatabase(url);
      await installGraphileWorker(url, new Logger(() => () => {}));
      await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DATABASE} WITH (FORCE)`);
      await admin.query(`ALTER DATABASE ${building} RENAME TO ${TEMPLATE_DATABASE}`);
    } catch (error) {
      await admin.query(`DROP DATABASE IF EXISTS ${building} WITH (FORCE)`);
      throw error;
    }
    // Nobody connects to the template; a stray session would make every clone fail ("being accessed by other users").
    await admin.query(`ALTER DATABASE ${TEMPLATE_DATABASE} WITH ALLOW_CONNECTIONS false`);
    await admin.query(`COMMENT ON DATABASE ${TEMPLATE_DATABASE} IS ${admin.escapeLiteral(fingerprint)}`);
    return true;
  } finally {
    await admin.end();
  }
}

/** Hash of everything that shapes the template: migration SQL and the graphile-worker version. */
async function templateFingerprint(): Promise<string> {
  const root = projectRoot();
  const hash = createHash('sha256');
  const migrations = path.join(root, 'prisma', 'migrations');
  for (const entry of (await fs.readdir(migrations, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    if (!entry.isDirectory()) continue;
    hash.update(entry.name);
    hash.update(await fs.readFile(path.join(migrations, entry.name, 'migration.sql')).catch(() => Buffer.alloc(0)));
  }
  const worker = JSON.parse(await fs.readFile(path.join(root, 'node_modules', 'graphile-worker', 'package.json'), 'utf8')) as {
    version: string;
  };
  hash.update(`graphile-worker@${worker.version}`);
  return hash.digest('hex').slice(0, 16);
}

async function dropTestDatabases(adminUrl: string, shouldDrop: (name: string) => boolean): Promise<void> {
  const rows = await adminQuery<{ datname: string }>(adminUrl, `SELECT datname FROM pg_database WHERE datname LIKE $1`, [
    `${TEST_DATABASE_PREFIX}%`,
  ]);
  for (const { datname } of rows) {
    if (shouldDrop(datname)) await adminQuery(adminUrl, `DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  }
}

function isAbandoned(name: string): boolean {
  const createdAt = Number(name.slice(TEST_DATABASE_PREFIX.length).split('_')[0]);
  return Number.isFinite(createdAt) && createdAt > 0 && Date.now() / 1000 - createdAt > ABANDONED_AFTER_SECONDS;
}

/**
 * A run that was SIGKILLed (CI timeout, OOM) never reached teardown: its PostgreSQL keeps running and its temp
 * dir stays. Stop those whose vitest process is gone and remove their directories; live runs are left alone.
 */
async function sweepKilledRuns(): Promise<void> {
  const tmp = os.tmpdir();
  for (const name of await fs.readdir(tmp)) {
    if (!name.startsWith(CLUSTER_DIR_PREFIX)) continue;
    const dir = path.join(tmp, name);
    const dataDir = path.join(dir, 'data');
    const hasState = await fs.access(embeddedPostgresStatePath(dataDir)).then(() => true, () => false);
    if (!hasState) {
      // No state file: a run is starting right now (initdb), or one died during initdb long ago.
      const { mtimeMs } = await fs.stat(dir);
      if (Date.now() - mtimeMs > 3600_000) await fs.rm(dir, { recursive: true, force: true });
      continue;
    }
    try {
      if (await stopOrphanedPostgres(dataDir)) await fs.rm(dir, { recursive: true, force: true });
    } catch (error) {
      // Housekeeping only: a directory we cannot judge must not stop this run.
      console.warn(`[db] could not clean up ${dir}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
