// Prisma CLI configuration: JavaScript engines only, so migrate/generate run offline from npm packages alone
// (no downloaded schema-engine or query-engine binaries). See /work/shared/STACK.md "Prisma".
import { randomUUID } from 'node:crypto';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { defineConfig } from 'prisma/config';

// Telemetry would call out of the machine; whoever spawns prisma sets this too.
process.env.CHECKPOINT_DISABLE ??= '1';

// The JS schema engine (wasm) guards queries with timeouts (10 s around the migration advisory lock, 60 s
// around the destructive-change check) whose setTimeout it never clears, so every `migrate deploy` lingered
// 10 s after finishing and `migrate dev` a minute. Long wasm timers are unref'd: they still fire while a
// query keeps the process alive through its socket, but no longer hold a finished CLI open.
const nativeSetTimeout = globalThis.setTimeout;
const unrefWasmTimeouts = (...args: Parameters<typeof setTimeout>) => {
  const timer = nativeSetTimeout(...args);
  if ((args[1] ?? 0) >= 5_000 && new Error().stack?.includes('wasm://')) timer.unref();
  return timer;
};
globalThis.setTimeout = Object.assign(unrefWasmTimeouts, nativeSetTimeout);

const CHAR_OID = 18;
const NAME_OID = 19;
const TEXT_OID = 25;
// ColumnTypeEnum.Character in @prisma/driver-adapter-utils (a dependency of adapter-pg, not ours).
const CHARACTER_COLUMN = 6;

type PgResultLike = { fields?: { dataTypeID: number }[]; rows?: unknown[] };

// Rows arrays of results that had `"char"` columns, with those columns' indexes; adapter-pg passes the same
// rows array through to its result set, which is how the adapter wrapper below finds them again.
const charColumnsByRows = new WeakMap<object, number[]>();

// prisma/orm#27403: the schema engine's catalog queries return `name` and `"char"` columns, which adapter-pg
// 6.x cannot map ("Column type 'name' could not be deserialized"). Both arrive as strings in the text
// protocol. `name` is relabelled text; `"char"` must reach the engine as a Character column (it reads
// pg_constraint.contype with get_char and panics, "RuntimeError: unreachable", on text), so it is relabelled
// here to get past adapter-pg and marked for restoreCharColumns.
function relabelCatalogTypes<T>(result: T): T {
  for (const item of Array.isArray(result) ? (result as PgResultLike[]) : [result as PgResultLike]) {
    const charColumns: number[] = [];
    item?.fields?.forEach((field, index) => {
      if (field.dataTypeID === NAME_OID) field.dataTypeID = TEXT_OID;
      if (field.dataTypeID === CHAR_OID) {
        field.dataTypeID = TEXT_OID;
        charColumns.push(index);
      }
    });
    if (charColumns.length > 0 && item.rows) charColumnsByRows.set(item.rows, charColumns);
  }
  return result;
}

function restoreCharColumns<T extends { rows: unknown[]; columnTypes: number[] }>(resultSet: T): T {
  for (const index of charColumnsByRows.get(resultSet.rows) ?? []) resultSet.columnTypes[index] = CHARACTER_COLUMN;
  return resultSet;
}

// Scoped to the migrate connections only: this Client class is handed to the pools created below, never to
// the application's PrismaClient.
class MigrateClient extends pg.Client {
  // pg's query() has many overloads (callback, promise, submittable); wrap whichever shape is used.
  override query(...args: any[]): any {
    const last: unknown = args[args.length - 1];
    if (typeof last === 'function') {
      args[args.length - 1] = (error: Error | null, result: unknown) => last(error, error ? result : relabelCatalogTypes(result));
      return (super.query as (...a: unknown[]) => unknown)(...args);
    }
    const returned = (super.query as (...a: unknown[]) => unknown)(...args);
    return returned instanceof Promise ? returned.then(relabelCatalogTypes) : returned;
  }
}

// The CLI does not always dispose the main adapter; without allowExitOnIdle every command would linger until
// pg's 10 s idle timeout.
// Sessions are named after METERDESK_MIGRATE_SESSION when the caller sets it (app/db/migrate.ts), which ends exactly
// these sessions when a deploy runs past its limit.
function poolConfig(connectionString: string): pg.PoolConfig {
  return { connectionString, Client: MigrateClient, allowExitOnIdle: true, application_name: process.env.METERDESK_MIGRATE_SESSION ?? 'prisma-migrate' };
}

function databaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL must be set for prisma migrate/db/studio commands');
  return url;
}

async function runOnServer(connectionString: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

type PgAdapter = Awaited<ReturnType<PrismaPg['connect']>>;

// Applied to the main and the shadow adapter alike.
function patchAdapter(adapter: PgAdapter): PgAdapter {
  const queryRaw = adapter.queryRaw.bind(adapter);
  adapter.queryRaw = async (query) => restoreCharColumns(await queryRaw(query));
  const startTransaction = adapter.startTransaction.bind(adapter);
  adapter.startTransaction = async (isolationLevel) => {
    const transaction = await startTransaction(isolationLevel);
    const transactionQueryRaw = transaction.queryRaw.bind(transaction);
    transaction.queryRaw = async (query) => restoreCharColumns(await transactionQueryRaw(query));
    return transaction;
  };

  // adapter-pg 6.x executes a migration script by splitting it on every ';', which cuts dollar-quoted
  // function bodies (`AS $$ BEGIN ...; END $$`) into invalid fragments ("unterminated dollar-quoted string").
  // One simple-protocol query is what the native schema engine sends: PostgreSQL parses the statements
  // itself and runs them in one implicit transaction.
  const pool = adapter.underlyingDriver();
  // onError maps a pg error to the DriverAdapterError the schema engine reports (code, message, position).
  const toDriverError = (adapter as unknown as { onError(error: unknown): never }).onError.bind(adapter);
  adapter.executeScript = async (script: string) => {
    try {
      await pool.query(script);
    } catch (error) {
      toDriverError(error);
    }
  };
  return adapter;
}

const SHADOW_PREFIX = 'prisma_shadow_';
const ABANDONED_AFTER_SECONDS = 3600;

// A CLI that crashes (or is killed) mid-command never disposes its shadow database. The creation time is in
// the name, so ones older than an hour can be dropped without touching a concurrent `migrate dev`'s shadow.
async function dropAbandonedShadowDatabases(connectionString: string): Promise<void> {
  const client = new pg.Client({ connectionString });
  client.on('error', () => {});
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname LIKE '${SHADOW_PREFIX}%'`,
    );
    const now = Date.now() / 1000;
    for (const { datname } of rows) {
      const createdAt = Number(/^prisma_shadow_(\d+)_/.exec(datname)?.[1]);
      if (createdAt && now - createdAt > ABANDONED_AFTER_SECONDS) {
        await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(datname)} WITH (FORCE)`);
      }
    }
  } finally {
    await client.end();
  }
}

/**
 * adapter-pg 6.x builds the shadow database config as `{ ...config, database }`; pg lets `connectionString`
 * win over `database`, so the "shadow" is silently the main database (P3006 "type already exists"). Here the
 * shadow gets its own URL, and is dropped WITH (FORCE) only after its pool has been closed.
 */
class MigratePrismaPg extends PrismaPg {
  readonly #url: string;

  constructor(url: string) {
    super(poolConfig(url));
    this.#url = url;
  }

  override async connect(): ReturnType<PrismaPg['connect']> {
    return patchAdapter(await super.connect());
  }

  override async connectToShadowDb(): ReturnType<PrismaPg['connectToShadowDb']> {
    await dropAbandonedShadowDatabases(this.#url);
    const name = `${SHADOW_PREFIX}${Math.floor(Date.now() / 1000)}_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
    await runOnServer(this.#url, `CREATE DATABASE "${name}"`);
    const shadowUrl = new URL(this.#url);
    shadowUrl.pathname = `/${name}`;
    const adapter = patchAdapter(await new PrismaPg(poolConfig(shadowUrl.toString())).connect());
    const closePool = adapter.dispose.bind(adapter);
    adapter.dispose = async () => {
      try {
        await closePool();
      } finally {
        await runOnServer(this.#url, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      }
    };
    return adapter;
  }
}

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  experimental: { adapter: true },
  engine: 'js',
  adapter: async () => new MigratePrismaPg(databaseUrl()),
});
