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

/** Session settings of a process whose queries are all small (see `serialQueries`). */
const SERIAL_SESSION = '-c max_parallel_workers_per_gather=0';

export function createServices(options: {
  connectionString: string;
  /** A streaming replica for the desk's reads (DATABASE_READ_URL). */
  readConnectionString?: string;
  poolSize?: number;
  ledger?: Omit<LedgerOptions, 'pool'>;
  /**
   * Sessions without parallel query: the web process's (desk pages and the API), whose reads are keyset pages of a
   * few dozen rows (ADR 034). A parallel index walk under a LIMIT can only stop once every worker has found a row,
   * and a worker whose share of the index holds none reads all of it: 6.4 s for an invoices page at 10M events.
   */
  serialQueries?: boolean;
}): Services {
  const session = options.serialQueries ? SERIAL_SESSION : undefined;
  const pool = createPool(options.connectionString, options.poolSize ?? 10, session ? { options: session } : {});
  const readPool = options.readConnectionString ? createReadPool(options.readConnectionString, pool, options.poolSize ?? 10, session) : undefined;
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
