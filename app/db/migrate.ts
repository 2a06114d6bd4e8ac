// Runs the Prisma CLI (JS engines only, configured by prisma.config.ts) as a child process: migrations are
// applied exactly as `prisma migrate deploy` applies them, with no second implementation to drift.
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { GRAPHILE_SCHEMA_PRESENT_SQL } from './graphile-jobs';

/** `migrate deploy`'s limit unless MIGRATE_TIMEOUT_SECONDS says otherwise (app/env.ts). */
export const DEFAULT_DEPLOY_TIMEOUT_MS = 10 * 60_000;
/**
 * prisma.config.ts names the migrate connections' sessions (`application_name`) after this variable, so a deploy
 * stopped at its limit can end exactly its own sessions.
 */
export const MIGRATE_SESSION_ENV = 'METERDESK_MIGRATE_SESSION';
const GENERATE_TIMEOUT_MS = 5 * 60_000;
// `prisma generate` reads the schema's `url = env("DATABASE_URL")`; when the variable is missing it falls
// back to downloading a native query engine (which fails offline). Generation never connects.
const GENERATE_PLACEHOLDER_URL = 'postgresql://generate@127.0.0.1:1/unused';

/** The directory holding prisma.config.ts and node_modules, found from this file so any cwd works. */
export function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'prisma.config.ts')) && existsSync(path.join(dir, 'node_modules', '.bin', 'prisma'))) {
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the project root (prisma.config.ts + node_modules/.bin/prisma)');
    dir = parent;
  }
}

export class PrismaCommandError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly output: string,
    /** Stopped at its time limit or by its caller's signal, rather than failed on its own. */
    readonly stopped: 'limit' | 'signal' | null = null,
  ) {
    super(`prisma ${args.join(' ')} failed (exit ${exitCode ?? 'signal'}):\n${output.trim()}`);
    this.name = 'PrismaCommandError';
  }
}

/**
 * `migrate deploy` stopped at its limit (ADR 035). Its sessions were ended first, so the migration it was running
 * rolled back (each migration is one transaction); `resolved` says whether that migration was then marked rolled
 * back, so that running migrate again resumes from it. The message says what to do next.
 */
export class MigrationTimeoutError extends Error {
  constructor(
    message: string,
    readonly timeoutMs: number,
    /** The migration that was running, rolled back and marked so; null when none was running. */
    readonly resolved: string | null,
    /** Migrations left started but not finished, which Prisma refuses to deploy past until resolved by hand. */
    readonly unfinished: readonly string[],
    readonly output: string,
  ) {
    super(message);
    this.name = 'MigrationTimeoutError';
  }
}

/** `migrate deploy` refused because an earlier deploy left a migration started but not finished (Prisma's P3009). */
export class UnfinishedMigrationError extends Error {
  constructor(
    readonly unfinished: readonly string[],
    readonly output: string,
  ) {
    super(
      `migrate deploy refused: ${unfinished.length > 0 ? `migration ${unfinished.join(', ')} was` : 'a migration was'} started by an earlier deploy ` +
        `and never finished (Prisma P3009). Check whether its changes are in the database, then record which it is and migrate again:\n` +
        unfinished
          .map((m) => `  npm run cli -- migrate resolve --rolled-back ${m}   (none of its changes are there)\n  npm run cli -- migrate resolve --applied ${m}       (all of them are)`)
          .join('\n'),
    );
    this.name = 'UnfinishedMigrationError';
  }
}

export interface MigrateOptions {
  /** Stop `migrate deploy` after this long (default DEFAULT_DEPLOY_TIMEOUT_MS); 0: no limit. */
  timeoutMs?: number;
  /** Stops it as its limit would, now (a process told to shut down). */
  signal?: AbortSignal;
}

/**
 * Applies prisma/migrations to the database. Throws MigrationTimeoutError when it runs past its limit,
 * UnfinishedMigrationError when an earlier deploy left a migration half-recorded, and PrismaCommandError with the
 * CLI output on any other failure.
 */
export async function migrateDatabase(connectionString: string, options: MigrateOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_DEPLOY_TIMEOUT_MS;
  const session = `meterdesk-migrate-${randomUUID().slice(0, 8)}`;
  let ended: EndedSession[] = [];
  try {
    await runPrisma(['migrate', 'deploy'], { DATABASE_URL: connectionString, [MIGRATE_SESSION_ENV]: session }, timeoutMs, {
      signal: options.signal,
      beforeKill: async () => {
        ended = await endSessions(connectionString, session);
      },
    });
  } catch (error) {
    if (!(error instanceof PrismaCommandError)) throw error;
    if (error.stopped) {
      const stopped = error.stopped;
      throw await withClient(connectionString, (client) => afterTimeout(client, stopped, timeoutMs, ended, error.output));
    }
    if (/\bP3009\b/.test(error.output)) throw new UnfinishedMigrationError(await withClient(connectionString, unfinishedMigrations), error.output);
    throw error;
  }
}

interface EndedSession {
  state: string | null;
  query: string | null;
}

/** Ends the deploy's own sessions and waits until PostgreSQL has rolled back what they were running. */
async function endSessions(connectionString: string, session: string): Promise<EndedSession[]> {
  return withClient(connectionString, async (client) => {
    const { rows } = await client.query<EndedSession>(
      `SELECT state, query FROM pg_stat_activity, LATERAL pg_terminate_backend(pid) WHERE application_name = $1`,
      [session],
    );
    for (let i = 0; i < 100; i++) {
      const left = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`, [session]);
      if (left.rows[0]!.n === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return rows;
  });
}

async function afterTimeout(
  client: pg.Client,
  stopped: 'limit' | 'signal',
  timeoutMs: number,
  ended: readonly EndedSession[],
  output: string,
): Promise<MigrationTimeoutError> {
  const unfinished = await unfinishedMigrations(client);
  const limit = stopped === 'signal' ? '(asked to stop)' : `after ${Math.round(timeoutMs / 1000)} s (MIGRATE_TIMEOUT_SECONDS)`;
  const again = 'Run migrate again with a longer MIGRATE_TIMEOUT_SECONDS (0: no limit), e.g. `MIGRATE_TIMEOUT_SECONDS=0 npm run cli -- migrate`.';
  // A session still running a statement other than Prisma's own bookkeeping was running a migration's script: one
  // query, one transaction, rolled back when the session ended. Prisma records a migration started before it runs
  // the script, so that migration is the one left unfinished.
  const running = ended.some((s) => s.state === 'active' && s.query !== null && !s.query.includes('_prisma_migrations'));
  if (running && unfinished.length === 1) {
    const [migration] = unfinished as [string];
    await markResolved(client, migration, null);
    return new MigrationTimeoutError(
      `migrate deploy was stopped ${limit} while it ran ${migration}. PostgreSQL rolled that migration back ` +
        `(it runs as one transaction) and it is marked rolled back, so nothing is half-applied. ${again}`,
      timeoutMs,
      migration,
      [],
      output,
    );
  }
  if (unfinished.length > 0) {
    const error = new UnfinishedMigrationError(unfinished, output);
    return new MigrationTimeoutError(`migrate deploy was stopped ${limit} between steps. ${error.message}`, timeoutMs, null, unfinished, output);
  }
  return new MigrationTimeoutError(`migrate deploy was stopped ${limit} before it started a migration. ${again}`, timeoutMs, null, [], output);
}

export class ResolveMigrationError extends Error {
  override name = 'ResolveMigrationError';
}

/**
 * Records how a migration left started and unfinished ended, as `prisma migrate resolve` would (whose CLI needs the
 * native schema engine, which this installation does not have, STACK.md): `rolled-back` when none of its changes are
 * in the database, so that the next deploy runs it again; `applied` when all of them are, so that the next deploy
 * goes on after it. Refuses a migration that is not unfinished.
 */
export async function resolveMigration(connectionString: string, migration: string, as: 'rolled-back' | 'applied'): Promise<void> {
  const checksum = as === 'applied' ? await migrationChecksum(migration) : null;
  await withClient(connectionString, async (client) => {
    const unfinished = await unfinishedMigrations(client);
    if (!unfinished.includes(migration)) {
      throw new ResolveMigrationError(
        `${migration} is not a migration left unfinished${unfinished.length > 0 ? ` (unfinished: ${unfinished.join(', ')})` : ' (there is none)'}`,
      );
    }
    await markResolved(client, migration, checksum);
  });
}

/**
 * The unfinished record of `migration` marked rolled back and, given the file's checksum, a finished record beside it
 * (what `prisma migrate resolve --applied` writes). One statement, so both or neither.
 */
async function markResolved(client: pg.Client, migration: string, appliedChecksum: string | null): Promise<void> {
  await client.query(
    `WITH rolled AS (
       UPDATE _prisma_migrations SET rolled_back_at = now() WHERE migration_name = $1::text AND finished_at IS NULL AND rolled_back_at IS NULL RETURNING 1
     )
     INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
     SELECT $2::text, $3::text, $1::text, now(), now(), 1 WHERE $3::text IS NOT NULL AND EXISTS (SELECT 1 FROM rolled)`,
    [migration, randomUUID(), appliedChecksum],
  );
}

/** Prisma's checksum of a migration: SHA-256 of its migration.sql, in hex. */
export async function migrationChecksum(migration: string): Promise<string> {
  const file = path.join(projectRoot(), 'prisma', 'migrations', migration, 'migration.sql');
  const text = await fs.readFile(file).catch(() => {
    throw new ResolveMigrationError(`${migration} is not in prisma/migrations`);
  });
  return createHash('sha256').update(text).digest('hex');
}

/** Migrations Prisma recorded as started and neither finished nor rolled back. */
async function unfinishedMigrations(client: pg.Client): Promise<string[]> {
  const { rows } = await client
    .query<{ name: string }>(`SELECT migration_name AS name FROM _prisma_migrations WHERE finished_at IS NULL AND rolled_back_at IS NULL ORDER BY started_at`)
    .catch((error: unknown) => {
      if ((error as { code?: string }).code === '42P01') return { rows: [] }; // no migration ever ran
      throw error;
    });
  return rows.map((r) => r.name);
}

async function withClient<T>(connectionString: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

let generating: Promise<void> | undefined;

/** Runs `prisma generate` when app/generated/prisma is missing or older than prisma/schema.prisma. */
export function ensureGeneratedClient(): Promise<void> {
  generating ??= (async () => {
    const root = projectRoot();
    const schema = await fs.stat(path.join(root, 'prisma', 'schema.prisma'));
    const generated = await fs.stat(path.join(root, 'app', 'generated', 'prisma', 'client.ts')).catch(() => null);
    if (generated && generated.mtimeMs >= schema.mtimeMs) return;
    await runPrisma(['generate'], { DATABASE_URL: process.env.DATABASE_URL || GENERATE_PLACEHOLDER_URL }, GENERATE_TIMEOUT_MS);
  })().finally(() => {
    generating = undefined;
  });
  return generating;
}

/**
 * Spawns the project's Prisma CLI with the current node binary; resolves with its combined output. Past `timeoutMs`
 * (0: never), or when `signal` aborts, it runs `beforeKill`, then kills the CLI, and throws a PrismaCommandError
 * saying which (`stopped`).
 */
export async function runPrisma(
  args: readonly string[],
  env: Record<string, string>,
  timeoutMs: number = DEFAULT_DEPLOY_TIMEOUT_MS,
  stopping: { signal?: AbortSignal | undefined; beforeKill?: () => Promise<void> } = {},
): Promise<string> {
  const root = projectRoot();
  // node_modules/.bin/prisma is a symlink to the CLI script; running it with process.execPath avoids the
  // shebang picking up an older `node` from PATH.
  const cli = realpathSync(path.join(root, 'node_modules', '.bin', 'prisma'));
  const child = spawn(process.execPath, [cli, ...args], {
    cwd: root,
    env: {
      ...process.env,
      ...env,
      CHECKPOINT_DISABLE: '1',
      PRISMA_HIDE_UPDATE_MESSAGE: '1',
      NO_COLOR: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));

  let stopped: 'limit' | 'signal' | null = null;
  let killed: Promise<void> = Promise.resolve();
  const stop = (why: 'limit' | 'signal') => {
    if (stopped) return;
    stopped = why;
    output += why === 'limit' ? `\n[stopped after ${timeoutMs} ms]` : '\n[stopped: asked to stop]';
    // The CLI is killed after its sessions are ended: killed first, its server session would run on (PostgreSQL
    // notices a gone client only when it next writes to it) and could still commit a migration.
    killed = (stopping.beforeKill?.() ?? Promise.resolve())
      .catch((error: unknown) => void (output += `\n[ending its database sessions failed: ${(error as Error).message}]`))
      .finally(() => void child.kill('SIGKILL'));
  };
  const timer = timeoutMs > 0 ? setTimeout(() => stop('limit'), timeoutMs) : null;
  const onAbort = () => stop('signal');
  if (stopping.signal?.aborted) onAbort();
  else stopping.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const exitCode = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code) => resolve(code));
    });
    await killed;
    if (stopped) throw new PrismaCommandError(args, exitCode, output, stopped);
    if (exitCode !== 0) throw new PrismaCommandError(args, exitCode, output);
    return output;
  } finally {
    if (timer) clearTimeout(timer);
    stopping.signal?.removeEventListener('abort', onAbort);
  }
}

/** The migrations this code expects (the directories in prisma/migrations), in order. */
export async function expectedMigrations(): Promise<string[]> {
  const dir = path.join(projectRoot(), 'prisma', 'migrations');
  const entries = await fs.readdir(dir, { withFileTypes: true });
  return entries.filter((e) => e.isDirectory() && existsSync(path.join(dir, e.name, 'migration.sql'))).map((e) => e.name).sort();
}

interface Queryable {
  query<R extends object>(text: string): Promise<{ rows: R[] }>;
}

/**
 * What keeps a database from being current for this code: expected migrations Prisma has not finished (or rolled
 * back), and graphile-worker's schema when it is missing. Empty when the schema is current.
 */
export async function pendingMigrations(db: Queryable, expected: readonly string[]): Promise<string[]> {
  const { rows } = await db.query<{ prisma: boolean; worker: boolean }>(
    `SELECT to_regclass('public._prisma_migrations') IS NOT NULL AS prisma, ${GRAPHILE_SCHEMA_PRESENT_SQL} AS worker`,
  );
  const present = rows[0]!;
  const pending: string[] = [];
  if (!present.prisma) pending.push(...expected);
  else {
    const applied = await db.query<{ name: string }>(
      `SELECT migration_name AS name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`,
    );
    const names = new Set(applied.rows.map((r) => r.name));
    pending.push(...expected.filter((m) => !names.has(m)));
  }
  if (!present.worker) pending.push('graphile_worker schema');
  return pending;
}
