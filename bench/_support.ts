// Shared bench plumbing: a database (DATABASE_URL, else an embedded PostgreSQL in a temp dir), and a clean exit.
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, chmod, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { startEmbeddedPostgres } from '../app/db/embedded-postgres';
import { prepareDatabase } from '../app/seed/prepare';

export async function benchDatabase(): Promise<{ connectionString: string; stop(): Promise<void>; label: string }> {
  if (process.env.DATABASE_URL) {
    await prepareDatabase(process.env.DATABASE_URL);
    return { connectionString: process.env.DATABASE_URL, stop: async () => {}, label: 'DATABASE_URL' };
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'meterdesk-bench-'));
  await chmod(dir, 0o755);
  const pg = await startEmbeddedPostgres({ dataDir: path.join(dir, 'pg') });
  await prepareDatabase(pg.connectionString);
  return {
    connectionString: pg.connectionString,
    label: 'embedded PostgreSQL 18 (durable: fsync on)',
    async stop() {
      await pg.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function machine(): string {
  return `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`;
}

const TICK_MS = 1000 / 100; // USER_HZ is 100 on Linux

/** utime, stime, cutime, cstime of a process from /proc (clock ticks), or null when it has gone. */
function procTimes(pid: number | string): number[] | null {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return [Number(f[11]), Number(f[12]), Number(f[13]), Number(f[14]), Number(f[1])];
  } catch {
    return null;
  }
}

/** CPU milliseconds used so far by one process (itself, not its children), or null when it cannot be read. */
export function processCpu(pid: number): () => number | null {
  return () => {
    const t = procTimes(pid);
    return t ? (t[0]! + t[1]!) * TICK_MS : null;
  };
}

/**
 * CPU milliseconds used so far by the local PostgreSQL cluster (postmaster, live backends, and exited backends via
 * the postmaster's child times), read from /proc. Returns a function yielding null when that is not possible (a
 * remote DATABASE_URL). Read while the backends of interest are alive: an exited backend's CPU reaches the
 * postmaster's child times only once it is reaped.
 */
export async function postgresCpu(pool: pg.Pool): Promise<() => number | null> {
  try {
    const { rows } = await pool.query<{ dir: string }>(`SELECT current_setting('data_directory') AS dir`);
    const postmaster = readFileSync(`${rows[0]!.dir}/postmaster.pid`, 'utf8').split('\n')[0]!.trim();
    if (!procTimes(postmaster)) return () => null;
    return () => {
      let ticks = 0;
      for (const pid of readdirSync('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        const t = procTimes(pid);
        if (!t) continue; // the process exited between listing and reading
        if (pid === postmaster) ticks += t[0]! + t[1]! + t[2]! + t[3]!;
        else if (String(t[4]) === postmaster) ticks += t[0]! + t[1]!;
      }
      return ticks * TICK_MS;
    };
  } catch {
    return () => null;
  }
}
