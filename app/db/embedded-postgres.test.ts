// The embedded PostgreSQL against real binaries: lifecycle, data reuse, recovery from a SIGKILLed owner, and no
// server left behind.
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DataDirInUseError,
  embeddedPostgresStatePath,
  startEmbeddedPostgres,
  type EmbeddedPostgresHandle,
  type EmbeddedPostgresState,
} from './embedded-postgres';

const CHILD = path.resolve(import.meta.dirname, '../../test/support/embedded-postgres-child.ts');

let root: string;
const started: EmbeddedPostgresHandle[] = [];
const children: ReturnType<typeof spawn>[] = [];

beforeAll(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'meterdesk-epg-test-'));
  // mkdtemp makes 0700; PostgreSQL runs as the postgres user and must traverse down to the data directories.
  await fs.chmod(root, 0o755);
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all(started.map((server) => server.stop()));
  // Children were SIGKILLed: their servers are orphans only a later start would clean up; stop them here.
  for (const { pid } of await postgresProcessesUnder(root)) process.kill(pid, 'SIGINT');
  await waitFor(async () => (await postgresProcessesUnder(root)).length === 0, 15_000);
  await fs.rm(root, { recursive: true, force: true });
});

async function start(dataDir: string, log?: string[]): Promise<EmbeddedPostgresHandle> {
  const server = await startEmbeddedPostgres({ dataDir, ephemeral: true, log: log && ((line) => log.push(line)) });
  started.push(server);
  return server;
}

async function query<Row extends pg.QueryResultRow>(connectionString: string, sql: string, params: unknown[] = []) {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return (await client.query<Row>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Live (not zombie) postgres processes whose command line mentions a path under `dir`. */
async function postgresProcessesUnder(dir: string): Promise<{ pid: number; args: string }[]> {
  const { stdout } = await promisify(execFile)('ps', ['-eo', 'pid=,stat=,args=']);
  return stdout
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(\S+)\s+(.*)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null)
    .filter((match) => !match[2]!.startsWith('Z') && match[3]!.includes('postgres') && match[3]!.includes(dir))
    .map((match) => ({ pid: Number(match[1]), args: match[3]! }));
}

function isAlive(pid: number): boolean {
  try {
    // Orphans are re-parented to a PID 1 that may not reap them; a zombie ("Z") has exited.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !['Z', 'X'].includes(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return false;
  }
}

async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function readState(dataDir: string): Promise<EmbeddedPostgresState> {
  return JSON.parse(await fs.readFile(embeddedPostgresStatePath(dataDir), 'utf8')) as EmbeddedPostgresState;
}

/** Starts the child fixture and resolves with what it printed once its server is up and the row written. */
function startChild(dataDir: string, note: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, note], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const ready = new Promise<{ pid: number; port: number; ownerPid: number }>((resolve, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`child exited early (${code ?? signal}): ${stderr}`)));
    createInterface({ input: child.stdout! }).once('line', (line) => resolve(JSON.parse(line)));
  });
  return { child, ready };
}

describe('startEmbeddedPostgres', () => {
  it('initialises a cluster, serves queries on 127.0.0.1 only, and stops idempotently', async () => {
    const dataDir = path.join(root, 'basic', 'data');
    const server = await start(dataDir);

    expect(server.connectionString).toMatch(/^postgresql:\/\/postgres:[0-9a-f]+@127\.0\.0\.1:\d+\/postgres$/);
    const [row] = await query<{ version: string; listen: string; encoding: string; walInitZero: string }>(
      server.connectionString,
      `SELECT version(), current_setting('listen_addresses') AS listen, current_setting('server_encoding') AS encoding,
              current_setting('wal_init_zero') AS "walInitZero"`,
    );
    // wal_init_zero: ADR 017 (a zero-filled WAL segment stalled every commit in flight).
    expect(row).toMatchObject({ listen: '127.0.0.1', encoding: 'UTF8', walInitZero: 'off' });
    expect(row!.version).toMatch(/^PostgreSQL 18\./);
    expect(await readState(dataDir)).toMatchObject({ pid: server.pid, port: server.port, ownerPid: process.pid });

    const stopStarted = Date.now();
    await Promise.all([server.stop(), server.stop()]);
    expect(Date.now() - stopStarted).toBeLessThan(5_000);
    await server.stop();
    expect(isAlive(server.pid)).toBe(false);
    expect(existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);
    expect(await readState(dataDir)).toMatchObject({ pid: null, ownerPid: null, port: server.port });
    await expect(query(server.connectionString, 'SELECT 1')).rejects.toThrow();
  });

  it('reuses the data directory and the recorded port on the next start, and creates a named database', async () => {
    const dataDir = path.join(root, 'reuse', 'data');
    const first = await start(dataDir, []);
    await query(first.connectionString, 'CREATE TABLE kept (id int PRIMARY KEY)');
    await query(first.connectionString, 'INSERT INTO kept VALUES (42)');
    await first.stop();

    const log: string[] = [];
    const second = await start(dataDir, log);
    expect(log.some((line) => line.includes('database system is ready'))).toBe(true);
    expect(log.some((line) => /initdb|belonging to this database system/i.test(line))).toBe(false);
    expect(second.port).toBe(first.port);
    expect(second.connectionString).toBe(first.connectionString);
    expect(await query(second.connectionString, 'SELECT id FROM kept')).toEqual([{ id: 42 }]);
    await second.stop();

    const named = await start(dataDir, undefined);
    await named.stop();
    const withDatabase = await startEmbeddedPostgres({ dataDir, database: 'meterdesk_named', ephemeral: true });
    started.push(withDatabase);
    expect(withDatabase.connectionString).toMatch(/\/meterdesk_named$/);
    expect(await query(withDatabase.connectionString, 'SELECT current_database() AS db')).toEqual([{ db: 'meterdesk_named' }]);
    await withDatabase.stop();
  });

  it('recovers after its owner was SIGKILLed: stops the orphaned server and reuses the data', async () => {
    const dataDir = path.join(root, 'orphan', 'data');
    const { child, ready } = startChild(dataDir, 'written before SIGKILL');
    const orphan = await ready;
    child.kill('SIGKILL');
    await waitFor(() => child.signalCode === 'SIGKILL', 5_000);

    // The point of the recovery: the server outlived its parent.
    expect(isAlive(orphan.pid)).toBe(true);
    expect(await postgresProcessesUnder(dataDir)).toHaveLength(1);

    const log: string[] = [];
    const server = await start(dataDir, log);
    expect(log.some((line) => line.includes(`stopping orphaned PostgreSQL (pid ${orphan.pid})`))).toBe(true);
    expect(isAlive(orphan.pid)).toBe(false);
    expect(server.pid).not.toBe(orphan.pid);
    expect(await query(server.connectionString, 'SELECT body FROM notes')).toEqual([{ body: 'written before SIGKILL' }]);
    expect((await postgresProcessesUnder(dataDir)).map((p) => p.pid)).toEqual([server.pid]);

    await server.stop();
    expect(await postgresProcessesUnder(dataDir)).toEqual([]);
  });

  it('refuses a data directory a live process is using, and SIGTERM stops that process cleanly', async () => {
    const dataDir = path.join(root, 'owned', 'data');
    const { child, ready } = startChild(dataDir, 'owned');
    const owner = await ready;

    await expect(startEmbeddedPostgres({ dataDir, ephemeral: true })).rejects.toBeInstanceOf(DataDirInUseError);
    expect(isAlive(owner.pid)).toBe(true);

    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(128 + 15);
    expect(isAlive(owner.pid)).toBe(false);
    expect(await readState(dataDir)).toMatchObject({ pid: null, ownerPid: null });
    expect(await postgresProcessesUnder(dataDir)).toEqual([]);
  });

  it('leaves no PostgreSQL running under its directories', async () => {
    await Promise.all(started.map((server) => server.stop()));
    expect(await postgresProcessesUnder(root)).toEqual([]);
  });
});
