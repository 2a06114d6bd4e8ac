// Shared bench plumbing: a database (DATABASE_URL, else an embedded PostgreSQL in a temp dir), and a clean exit.
import { mkdtemp, chmod, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../app/db/embedded-postgres';
import { prepareDatabase } from '../app/db/prepare';

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
