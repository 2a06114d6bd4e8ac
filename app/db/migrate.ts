// Runs the Prisma CLI (JS engines only, configured by prisma.config.ts) as a child process: migrations are
// applied exactly as `prisma migrate deploy` applies them, with no second implementation to drift.
import { spawn } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GRAPHILE_SCHEMA_PRESENT_SQL } from './graphile-jobs';

const DEPLOY_TIMEOUT_MS = 10 * 60_000;
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
  ) {
    super(`prisma ${args.join(' ')} failed (exit ${exitCode ?? 'signal'}):\n${output.trim()}`);
    this.name = 'PrismaCommandError';
  }
}

/** Applies prisma/migrations to the database. Throws PrismaCommandError with the CLI output on failure. */
export async function migrateDatabase(connectionString: string): Promise<void> {
  await runPrisma(['migrate', 'deploy'], { DATABASE_URL: connectionString }, DEPLOY_TIMEOUT_MS);
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

/** Spawns the project's Prisma CLI with the current node binary; resolves with its combined output. */
export async function runPrisma(
  args: readonly string[],
  env: Record<string, string>,
  timeoutMs: number = DEPLOY_TIMEOUT_MS,
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

  const timer = setTimeout(() => {
    output += `\n[killed after ${timeoutMs} ms]`;
    child.kill('SIGKILL');
  }, timeoutMs);
  try {
    const exitCode = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code) => resolve(code));
    });
    if (exitCode !== 0) throw new PrismaCommandError(args, exitCode, output);
    return output;
  } finally {
    clearTimeout(timer);
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
