import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client';
import { logger } from '../log';

const log = logger('db');

export type { PrismaClient };

/**
 * The pg pool for the hot paths (ingest, reporting). Errors on a client must not crash the process: the pool's
 * listener covers idle clients only, and a checked-out client whose connection the server ends between two queries
 * (a restart, a failover, pg_terminate_backend) emits 'error' on itself, which with no listener kills the process.
 * Its next query fails instead, and the pool discards it on release.
 */
export function createPool(connectionString: string, max = 10, extra: Omit<pg.PoolConfig, 'connectionString' | 'max'> = {}): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, idleTimeoutMillis: 30_000, ...extra });
  pool.on('error', (error) => log.warn({ error: error.message }, 'idle database client error'));
  pool.on('connect', (client) => client.on('error', (error) => log.warn({ error: error.message }, 'database client error')));
  return pool;
}

export function createPrisma(connectionString: string): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString }) });
}
