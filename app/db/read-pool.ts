// The desk's read pool on a streaming replica (DATABASE_READ_URL, docs/decisions/027-read-replica.md). Two promises:
// nothing is ever written through it (every session is read-only, so a write fails loudly even when the URL names
// the primary), and a replica that is down or restarting never takes the desk down: a read that cannot reach it
// runs on the primary instead.
import type pg from 'pg';
import { createPool } from './clients';
import { logger } from '../log';

const log = logger('db');

/** After the replica failed to answer, reads go straight to the primary this long before it is tried again. */
export const REPLICA_RETRY_AFTER_MS = 5_000;
// A replica on an unreachable host must not hold every desk page for the operating system's connect timeout.
const CONNECT_TIMEOUT_MS = 2_000;

/**
 * A pg.Pool (to its callers) whose `query` and `connect` use the replica and fall back to `primary` when the replica
 * cannot be reached. Only reads come here, so running one again on the primary is always safe.
 */
export function createReadPool(readConnectionString: string, primary: pg.Pool, max = 10, session?: string): pg.Pool {
  const replica = createPool(readConnectionString, max, {
    options: ['-c default_transaction_read_only=on', session].filter(Boolean).join(' '),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
  let skipUntil = 0;
  let down = false;

  const fallBack = (error: unknown) => {
    skipUntil = Date.now() + REPLICA_RETRY_AFTER_MS;
    // Once per outage, not once per read: a replica down for an hour would otherwise fill the log.
    if (!down) log.warn({ error: (error as Error).message }, 'read replica unreachable; desk reads go to the primary');
    down = true;
  };
  const reached = () => {
    if (down) log.info('read replica reachable again; desk reads go to it');
    down = false;
  };

  async function attempt<T>(onReplica: () => Promise<T>, onPrimary: () => Promise<T>): Promise<T> {
    if (Date.now() < skipUntil) return onPrimary();
    try {
      const result = await onReplica();
      reached();
      return result;
    } catch (error) {
      if (!replicaUnavailable(error)) throw error;
      fallBack(error);
      return onPrimary();
    }
  }

  return new Proxy(replica, {
    get(target, property, receiver) {
      if (property === 'query') {
        return (...args: Parameters<pg.Pool['query']>) =>
          attempt(
            () => (target.query as (...a: unknown[]) => Promise<unknown>)(...args),
            () => (primary.query as (...a: unknown[]) => Promise<unknown>)(...args),
          );
      }
      if (property === 'connect') {
        return () => attempt(() => target.connect(), () => primary.connect());
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

/**
 * The database could not run the statement at all: not reachable, shutting down or starting up, or the connection
 * terminated by the server (57P0x), a connection lost mid-query (class 08 or pg's own message). A bad query, a
 * constraint or a read-only violation is not: those are answers, and must surface as they are.
 */
export function databaseUnavailable(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || code.startsWith('08') || /^57P0[123]$/.test(code))) return true;
  return typeof message === 'string' && /Connection terminated|timeout exceeded when trying to connect|connection timeout/i.test(message);
}

/**
 * The replica could not run the read: unavailable as any database is, or the read cancelled because replay needed
 * what it held (40001, "conflict with recovery").
 */
export function replicaUnavailable(error: unknown): boolean {
  return databaseUnavailable(error) || (error as { code?: unknown } | null)?.code === '40001';
}
