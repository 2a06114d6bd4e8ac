// The objects a process needs, built once from configuration. Nothing below here reads the environment.
import type pg from 'pg';
import { createPool, createPrisma, type PrismaClient } from '../db/clients';
import { createReadPool } from '../db/read-pool';
import { ApiKeyVerifier } from '../billing/access/api-keys';
import { GroupCommitter } from '../billing/ledger/group-commit';
import { Ledger, type LedgerOptions } from '../billing/ledger/ledger';

export interface Services {
  connectionString: string;
  /** The primary: every write, and every read that must see the process's own writes. */
  pool: pg.Pool;
  /**
   * Desk reads on a streaming replica (DATABASE_READ_URL; ADR 027): read-only sessions, falling back to `pool` when the
   * replica is unreachable. Unset: the desk reads from `pool`.
   */
  readPool?: pg.Pool;
  prisma: PrismaClient;
  ledger: Ledger;
  committer: GroupCommitter;
  apiKeys: ApiKeyVerifier;
  close(): Promise<void>;
}

export function createServices(options: {
  connectionString: string;
  /** A streaming replica for the desk's reads (DATABASE_READ_URL). */
  readConnectionString?: string;
  poolSize?: number;
  ledger?: Omit<LedgerOptions, 'pool'>;
}): Services {
  const pool = createPool(options.connectionString, options.poolSize ?? 10);
  const readPool = options.readConnectionString ? createReadPool(options.readConnectionString, pool, options.poolSize ?? 10) : undefined;
  const prisma = createPrisma(options.connectionString);
  const ledger = new Ledger({ pool, ...options.ledger });
  return {
    connectionString: options.connectionString,
    pool,
    ...(readPool ? { readPool } : {}),
    prisma,
    ledger,
    committer: new GroupCommitter(ledger),
    apiKeys: new ApiKeyVerifier(pool),
    async close() {
      await Promise.allSettled([pool.end(), readPool?.end(), prisma.$disconnect()]);
    },
  };
}
