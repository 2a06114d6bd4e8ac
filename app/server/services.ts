// The objects a process needs, built once from configuration. Nothing below here reads the environment.
import type pg from 'pg';
import { createPool, createPrisma, type PrismaClient } from '../db/clients';
import { ApiKeyVerifier } from '../billing/access/api-keys';
import { GroupCommitter } from '../billing/ledger/group-commit';
import { Ledger, type LedgerOptions } from '../billing/ledger/ledger';

export interface Services {
  connectionString: string;
  pool: pg.Pool;
  prisma: PrismaClient;
  ledger: Ledger;
  committer: GroupCommitter;
  apiKeys: ApiKeyVerifier;
  close(): Promise<void>;
}

export function createServices(options: { connectionString: string; poolSize?: number; ledger?: Omit<LedgerOptions, 'pool'> }): Services {
  const pool = createPool(options.connectionString, options.poolSize ?? 10);
  const prisma = createPrisma(options.connectionString);
  const ledger = new Ledger({ pool, ...options.ledger });
  return {
    connectionString: options.connectionString,
    pool,
    prisma,
    ledger,
    committer: new GroupCommitter(ledger),
    apiKeys: new ApiKeyVerifier(pool),
    async close() {
      await Promise.allSettled([pool.end(), prisma.$disconnect()]);
    },
  };
}
