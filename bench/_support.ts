// Shared bench plumbing: a database (DATABASE_URL, else an embedded PostgreSQL in a temp dir), the scale fill with its
// disk check (bench/scale.ts, bench/alerts.ts), and a clean exit.
import { existsSync, readFileSync, readdirSync, statfsSync } from 'node:fs';
import { mkdtemp, chmod, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { startEmbeddedPostgres } from '../app/db/embedded-postgres';
import { prepareDatabase } from '../app/seed/prepare';
import { growScale } from '../app/seed/scale-growth';
import { seedScale } from '../app/seed/scale';

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

// ───────────── the scale fill (bench/scale.ts, bench/alerts.ts) ─────────────

const GiB = 2 ** 30;
/**
 * Bytes per event of the whole database (ledger with its indexes, windows, invoices, attempts) before a size has
 * been measured: a deliberately high prior; once a size is filled, the measured figure replaces it.
 */
export const PRIOR_BYTES_PER_EVENT = 1200;
/** Free space kept beyond the estimate: WAL, sorts, the growth step's own transaction. */
const HEADROOM = (bytes: number) => bytes * 0.15 + 2 * GiB;

/**
 * One step of the scale fill, windows = events / 10: the scale seed (seedScale: the last 30 days of events) when
 * `first`, else history and older windows up to `events` (growScale: set-based INSERT ... SELECT in transactions of
 * `chunk` rows) followed by VACUUM (ANALYZE). Progress lines go to `log`.
 */
export async function fillScaleStep(pool: pg.Pool, step: { events: number; first: boolean; chunk: number; log: (line: string) => void }): Promise<void> {
  const windows = Math.floor(step.events / 10);
  if (step.first) {
    const seeded = await seedScale(pool, { events: step.events, windows, log: step.log });
    if (seeded.status === 'skipped') throw new Error(`the scale fill needs a database of its own: ${seeded.reason}`);
    return;
  }
  const grown = await growScale(pool, { events: step.events, windows, chunk: step.chunk, log: step.log });
  step.log(`  grew by ${fmt(grown.addedEvents)} events and ${fmt(grown.addedWindows)} windows in ${fmt(grown.seconds, 1)} s`);
  const tv = performance.now();
  await pool.query(`VACUUM (ANALYZE) meter_events, windows, invoices, invoice_lines, charge_attempts`);
  step.log(`  VACUUM (ANALYZE) ${fmt((performance.now() - tv) / 1000, 1)} s`);
}

/** The data directory cannot hold the next size: said plainly, without a stack. */
export class NotEnoughDisk extends Error {}

/** Runs a bench that fills a database; not enough disk ends it with the reason and exit code 1, not a stack. */
export async function exitOnNotEnoughDisk(bench: string, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (error) {
    if (!(error instanceof NotEnoughDisk)) throw error;
    console.error(`\n${bench}: ${error.message}`);
    process.exit(1);
  }
}

export async function databaseBytes(pool: pg.Pool): Promise<number> {
  const r = await pool.query<{ b: string }>(`SELECT pg_database_size(current_database())::text AS b`);
  return Number(r.rows[0]!.b);
}

/** The local directory holding the database's files, when it is on this machine (the embedded PostgreSQL). */
export async function diskOf(pool: pg.Pool): Promise<string | null> {
  const dir = await pool.query<{ dir: string }>(`SELECT current_setting('data_directory') AS dir`).then((r) => r.rows[0]!.dir, () => null);
  if (dir && existsSync(dir)) {
    console.log(`data directory ${dir}: ${gib(freeBytes(dir))} free`);
    return dir;
  }
  console.log(`data directory not on this machine (${dir ?? 'not readable'}): free disk cannot be checked here — make sure the server has room`);
  return null;
}

export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/**
 * Throws NotEnoughDisk when `dir` cannot take `growth` more bytes plus headroom. `bench` names the run and `smaller`
 * the option that makes it smaller, for the message.
 */
export function checkDisk(dir: string | null, growth: number, perEvent: number, upTo: number, say: { bench: string; smaller: string }) {
  if (!dir) return;
  const need = Math.max(0, growth) + HEADROOM(Math.max(0, growth));
  const available = freeBytes(dir);
  if (available < need) {
    throw new NotEnoughDisk(
      `not enough free disk for the ${say.bench} benchmark: growing the database to ${fmt(upTo)} events needs about ${gib(need)} ` +
        `(${gib(Math.max(0, growth))} at ${fmt(perEvent)} B/event, plus headroom for WAL and sorts), and ${dir} has ${gib(available)} free. ` +
        `Free some space, point TMPDIR (embedded PostgreSQL) at a larger disk, or choose ${say.smaller}.`,
    );
  }
}

export function gib(bytes: number): string {
  return `${fmt(bytes / GiB, 2)} GiB`;
}

/** 1,000,000 -> "1M", 100,000 -> "100k". */
export function compact(n: number): string {
  return n >= 1_000_000 ? `${fmt(n / 1_000_000, n % 1_000_000 ? 1 : 0)}M` : n >= 1000 ? `${fmt(n / 1000, n % 1000 ? 1 : 0)}k` : String(n);
}
