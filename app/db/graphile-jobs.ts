// Everything Meterdesk knows about graphile-worker's tables and functions lives here (ADR 022). Written against
// graphile-worker 0.18.0 (schema migration 000020), pinned exactly in package.json: graphile-jobs.test.ts fails when
// the installed version differs, and checkGraphileSchema() names every table, column and function below that an
// upgrade changed. Upgrading means reading graphile-worker's new migrations against EXPECTED_* here, then moving the
// pin, GRAPHILE_WORKER_VERSION and this comment together.
//
// Two kinds of coupling:
// - public: add_job(...) and the `jobs` view, graphile-worker's documented SQL API;
// - private: the ledger's report job written straight into `_private_jobs` (ADR 015, measured: ~0.45 ms less per
//   ingest commit), the crontab's look at jobs still waiting, and the benches' and fault campaign's job table.
// Nothing is cached in the process: task ids are resolved inside each statement, queues are never named directly.
// graphile-worker itself is loaded only to migrate (installGraphileWorker): the web process, which enqueues through
// the SQL below, never loads it.
import type { Logger } from 'graphile-worker';
import pg from 'pg';

/** The graphile-worker release this module was written and checked against (package.json pins the same). */
export const GRAPHILE_WORKER_VERSION = '0.18.0';

/** A pool or a client inside a transaction (the caller's transaction is joined: jobs commit with their rows). */
type Db = Pick<pg.Pool | pg.PoolClient, 'query'>;

const SCHEMA = 'graphile_worker';
const JOBS = `${SCHEMA}._private_jobs`;
const TASKS = `${SCHEMA}._private_tasks`;

/** SQL boolean: graphile-worker's schema is installed (readiness reads it among the pending migrations). */
export const GRAPHILE_SCHEMA_PRESENT_SQL = `to_regclass('${JOBS}') IS NOT NULL`;

// ───────────────────────────── public API: add_job ─────────────────────────────

export interface AddJobOptions {
  runAt?: Date;
  maxAttempts?: number;
  jobKey?: string;
  jobKeyMode?: 'replace' | 'preserve_run_at';
  priority?: number;
}

/** graphile-worker's add_job, inside the caller's transaction (jobs commit with the rows that need them). */
export async function addJob(db: Db, task: string, payload: Record<string, unknown>, options: AddJobOptions = {}): Promise<void> {
  await db.query(
    `SELECT ${SCHEMA}.add_job($1, $2::json, run_at => $3, max_attempts => $4, job_key => $5, job_key_mode => $6, priority => $7)`,
    [task, JSON.stringify(payload), options.runAt ?? null, options.maxAttempts ?? 25, options.jobKey ?? null, options.jobKey ? (options.jobKeyMode ?? 'replace') : null, options.priority ?? null],
  );
}

/**
 * An add_job call as a SQL expression, for set-based enqueues (`SELECT <this> FROM rows`): each argument is SQL
 * (a parameter, a column, an expression) and only the named arguments checkGraphileSchema() verifies are offered.
 */
export function addJobCall(args: { identifier: string; payload: string; jobKey?: string; jobKeyMode?: string; maxAttempts?: string; runAt?: string; priority?: string }): string {
  const named = [
    args.runAt && `run_at => ${args.runAt}`,
    args.jobKey && `job_key => ${args.jobKey}`,
    args.jobKeyMode && `job_key_mode => ${args.jobKeyMode}`,
    args.maxAttempts && `max_attempts => ${args.maxAttempts}`,
    args.priority && `priority => ${args.priority}`,
  ].filter(Boolean);
  return `${SCHEMA}.add_job(${[args.identifier, args.payload, ...named].join(', ')})`;
}

/** The queued (or running) job holding `key`, read from graphile-worker's public `jobs` view. */
export async function jobByKey(db: Db, key: string): Promise<{ runAt: Date; lockedAt: Date | null } | null> {
  const { rows } = await db.query<{ run_at: Date; locked_at: Date | null }>(`SELECT run_at, locked_at FROM ${SCHEMA}.jobs WHERE key = $1`, [key]);
  return rows[0] ? { runAt: rows[0].run_at, lockedAt: rows[0].locked_at } : null;
}

// ───────────────────────────── private tables ─────────────────────────────

/** Tasks whose jobs are written straight into the job table (ADR 015): their task rows are made at migrate time. */
export const DIRECT_INSERT_TASKS = ['stripe__report_events'] as const;
export type DirectInsertTask = (typeof DIRECT_INSERT_TASKS)[number];

/** The columns the direct insert sets; every other column of `_private_jobs` must have a default or be nullable. */
const DIRECT_INSERT_COLUMNS = ['task_id', 'payload', 'max_attempts'];

/**
 * CTEs `new_task` and `job` for one statement that inserts a job of `task` the way add_jobs would for a keyless,
 * queueless job at the default priority, due now: the task row is created when missing (it is made at migrate, so
 * this is for a database prepared by an older release), then the job row. `payload` and `guard` are SQL. The caller
 * selects `pg_notify(JOB_INSERTED_NOTIFY...)` once per row of `job` (see jobInsertedNotify) so idle workers wake.
 */
export function directJobInsertCtes(task: DirectInsertTask, sql: { payload: string; guard: string; maxAttempts?: number }): string {
  if (!DIRECT_INSERT_TASKS.includes(task)) throw new Error(`${task} is not a direct-insert task (DIRECT_INSERT_TASKS)`);
  const literal = `'${task}'`;
  return `new_task AS (
  INSERT INTO ${TASKS} (identifier)
  SELECT ${literal}
  WHERE ${sql.guard}
    AND NOT EXISTS (SELECT 1 FROM ${TASKS} WHERE identifier = ${literal})
  ON CONFLICT DO NOTHING
  RETURNING id
), job AS (
  INSERT INTO ${JOBS} (${DIRECT_INSERT_COLUMNS.join(', ')})
  SELECT COALESCE((SELECT id FROM new_task), (SELECT id FROM ${TASKS} WHERE identifier = ${literal})),
         ${sql.payload}, ${sql.maxAttempts ?? 25}
  WHERE ${sql.guard}
  RETURNING id
)`;
}

/** The notification add_jobs sends after inserting (graphile-worker LISTENs on `jobs:insert` and wakes at once). */
export const JOB_INSERTED_NOTIFY = `pg_notify('jobs:insert', '{"count":1}')`;

/** Creates the task rows of DIRECT_INSERT_TASKS when missing (as add_jobs does, without consuming identities). */
export async function ensureDirectInsertTasks(db: Db): Promise<void> {
  await db.query(
    `INSERT INTO ${TASKS} (identifier) SELECT t FROM unnest($1::text[]) t
     WHERE NOT EXISTS (SELECT 1 FROM ${TASKS} WHERE identifier = t) ON CONFLICT DO NOTHING`,
    [DIRECT_INSERT_TASKS],
  );
}

/**
 * SQL selecting `payload` of each job of `taskParam` (SQL, e.g. `$1`) still waiting to run: not locked by a worker,
 * attempts left. The crontab uses it so a backlog is never queued twice.
 */
export function waitingJobPayloads(taskParam: string): string {
  return `SELECT j.payload FROM ${JOBS} j JOIN ${TASKS} t ON t.id = j.task_id
     WHERE t.identifier = ${taskParam} AND j.locked_at IS NULL AND j.attempts < j.max_attempts`;
}

/** Empties the job table (benchmarks stand in for a worker that takes jobs as they come). */
export async function deleteAllJobs(db: Db): Promise<void> {
  await db.query(`DELETE FROM ${JOBS}`);
}

export interface JobState {
  /** The payload field's value the job was found by. */
  value: string;
  attempts: number;
  maxAttempts: number;
  lockedAt: Date | null;
  runAt: Date;
  lastError: string | null;
}

/** Jobs whose payload field `field` is one of `values`, with where they stand (for the fault campaign's verdicts). */
export async function jobsByPayloadField(db: Db, field: string, values: readonly string[]): Promise<JobState[]> {
  const { rows } = await db.query<JobState>(
    `SELECT j.payload::jsonb->>$1 AS value, j.attempts, j.max_attempts AS "maxAttempts", j.locked_at AS "lockedAt",
            j.run_at AS "runAt", j.last_error AS "lastError"
     FROM ${JOBS} j WHERE j.payload::jsonb->>$1 = ANY($2::text[]) ORDER BY j.id`,
    [field, values],
  );
  return rows;
}

// ───────────────────────────── install and check ─────────────────────────────

/**
 * graphile-worker's own migrations, the direct-insert task rows, then the schema check: a database whose
 * graphile-worker schema is not the one this module writes into is refused here, before any job is written.
 */
export async function installGraphileWorker(connectionString: string, logger: Logger): Promise<void> {
  const { runMigrations } = await import('graphile-worker');
  await runMigrations({ connectionString, logger });
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    await ensureDirectInsertTasks(client);
    await assertGraphileSchema(client);
  } finally {
    await client.end();
  }
}

interface ExpectedColumn {
  type: string;
  notNull?: boolean;
}

/** Tables and views this module (and the ledger's direct insert) reads or writes, with what it relies on. */
export const EXPECTED_RELATIONS: Record<string, { kind: 'table' | 'view'; columns: Record<string, ExpectedColumn> }> = {
  _private_tasks: { kind: 'table', columns: { id: { type: 'integer', notNull: true }, identifier: { type: 'text', notNull: true } } },
  _private_jobs: {
    kind: 'table',
    columns: {
      id: { type: 'bigint', notNull: true },
      task_id: { type: 'integer', notNull: true },
      payload: { type: 'json', notNull: true },
      max_attempts: { type: 'smallint', notNull: true },
      attempts: { type: 'smallint', notNull: true },
      run_at: { type: 'timestamp with time zone', notNull: true },
      locked_at: { type: 'timestamp with time zone' },
      last_error: { type: 'text' },
      key: { type: 'text' },
      job_queue_id: { type: 'integer' },
      priority: { type: 'smallint', notNull: true },
    },
  },
  jobs: {
    kind: 'view',
    columns: { key: { type: 'text' }, run_at: { type: 'timestamp with time zone' }, locked_at: { type: 'timestamp with time zone' }, task_identifier: { type: 'text' } },
  },
};

/** Functions called, with the arguments passed (by name) and their types. */
export const EXPECTED_FUNCTIONS: Record<string, Record<string, string>> = {
  add_job: {
    identifier: 'text',
    payload: 'json',
    run_at: 'timestamp with time zone',
    max_attempts: 'integer',
    job_key: 'text',
    job_key_mode: 'text',
    priority: 'integer',
  },
};

/**
 * Compares graphile-worker's schema (`graphile_worker` unless told) with what this module expects. Returns one line
 * per difference naming the table or function and column, empty when everything matches.
 */
export async function checkGraphileSchema(db: Db, schema: string = SCHEMA): Promise<string[]> {
  const problems: string[] = [];
  const { rows: columns } = await db.query<{ relation: string; kind: string; column: string; type: string; not_null: boolean; has_default: boolean }>(
    `SELECT c.relname AS relation, c.relkind::text AS kind, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
            a.attnotnull AS not_null, (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE n.nspname = $1 AND c.relname = ANY($2::text[])`,
    [schema, Object.keys(EXPECTED_RELATIONS)],
  );
  for (const [relation, expected] of Object.entries(EXPECTED_RELATIONS)) {
    const name = `${schema}.${relation}`;
    const actual = columns.filter((c) => c.relation === relation);
    if (actual.length === 0) {
      problems.push(`${name}: ${expected.kind} missing`);
      continue;
    }
    const kind = actual[0]!.kind === 'v' ? 'view' : actual[0]!.kind === 'r' || actual[0]!.kind === 'p' ? 'table' : `relkind ${actual[0]!.kind}`;
    if (kind !== expected.kind) problems.push(`${name}: is a ${kind}, expected a ${expected.kind}`);
    for (const [column, want] of Object.entries(expected.columns)) {
      const got = actual.find((c) => c.column === column);
      if (!got) problems.push(`${name}.${column}: column missing (expected ${want.type})`);
      else if (got.type !== want.type) problems.push(`${name}.${column}: type is ${got.type}, expected ${want.type}`);
      else if (want.notNull && !got.not_null) problems.push(`${name}.${column}: now nullable, expected NOT NULL`);
    }
  }
  // The direct insert leaves every column but its own to the table's defaults: a new required column breaks it.
  for (const c of columns.filter((c) => c.relation === '_private_jobs' && c.not_null && !c.has_default && !DIRECT_INSERT_COLUMNS.includes(c.column))) {
    problems.push(`${schema}._private_jobs.${c.column}: NOT NULL without a default, and the ledger's direct job insert (ADR 015) does not set it`);
  }
  const { rows: unique } = await db.query<{ ok: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
       WHERE n.nspname = $1 AND c.relname = '_private_tasks' AND i.indisunique AND i.indnatts = 1 AND a.attname = 'identifier'
     ) AS ok`,
    [schema],
  );
  if (!unique[0]?.ok) problems.push(`${schema}._private_tasks.identifier: no unique index (the direct insert's ON CONFLICT DO NOTHING relies on it)`);

  const { rows: args } = await db.query<{ function: string; overload: number; arg: string | null; type: string }>(
    `SELECT p.proname AS function, p.oid::int AS overload, a.name AS arg, format_type(a.type, NULL) AS type
     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     CROSS JOIN LATERAL unnest(p.proargtypes::oid[], p.proargnames) AS a(type, name)
     WHERE n.nspname = $1 AND p.proname = ANY($2::text[])`,
    [schema, Object.keys(EXPECTED_FUNCTIONS)],
  );
  for (const [fn, expected] of Object.entries(EXPECTED_FUNCTIONS)) {
    const overloads = [...new Set(args.filter((a) => a.function === fn).map((a) => a.overload))];
    if (overloads.length === 0) {
      problems.push(`${schema}.${fn}(): function missing`);
      continue;
    }
    // Some overload must take every argument we pass, by name, with the type we pass.
    const misses = overloads.map((oid) => {
      const has = args.filter((a) => a.overload === oid);
      return Object.entries(expected).flatMap(([arg, type]) => {
        const got = has.find((a) => a.arg === arg);
        if (!got) return [`${schema}.${fn}(${arg}): argument missing (expected ${type})`];
        return got.type === type ? [] : [`${schema}.${fn}(${arg}): type is ${got.type}, expected ${type}`];
      });
    });
    if (!misses.some((m) => m.length === 0)) problems.push(...misses.sort((a, b) => a.length - b.length)[0]!);
  }
  return problems;
}

export class GraphileSchemaMismatchError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(
      `graphile-worker's schema is not the one app/db/graphile-jobs.ts was written against (graphile-worker ${GRAPHILE_WORKER_VERSION}; ADR 022):\n` +
        problems.map((p) => `  - ${p}`).join('\n'),
    );
    this.name = 'GraphileSchemaMismatchError';
  }
}

/** Throws GraphileSchemaMismatchError listing every difference checkGraphileSchema() finds. */
export async function assertGraphileSchema(db: Db, schema: string = SCHEMA): Promise<void> {
  const problems = await checkGraphileSchema(db, schema);
  if (problems.length > 0) throw new GraphileSchemaMismatchError(problems);
}
