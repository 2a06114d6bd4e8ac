// The ledger's monthly partitions (docs/decisions/032-ledger-partitions.md). meter_events is range-partitioned on its
// UUIDv7 id, one partition per month of receipt: created ahead by the crontab (and by `migrate`), listed, and archived
// when old and settled: written to files, then detached and dropped in one transaction.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { writeAudit, type Actor } from '../audit';
import type { Queryable } from '../db';
import { NotFoundError, StateError } from '../errors';
import { uuidv7Time } from '../ids';

/** Months created ahead of the current one: the daily crontab keeps this many, so a missed day or three changes nothing. */
export const PARTITIONS_AHEAD = 3;

/**
 * A partition can be archived once every event in it is older than this: Stripe accepts usage up to 35 days back
 * and the nightly reconciliation compares the last 35 days, so nothing still compares with or changes an event
 * received before then.
 */
export const ARCHIVE_MIN_AGE_DAYS = 35;

const DAY_MS = 86_400_000;

export interface LedgerPartition {
  name: string;
  /** Receipt time of the first id it holds; null for the first partition (every id before `to`). */
  from: Date | null;
  /** Receipt time its ids stop before. */
  to: Date;
  /** PostgreSQL's estimate (exact counts need a scan; the archive plan makes one). */
  estimatedRows: number;
  bytes: number;
}

/** Creates the partitions up to `ahead` months after the current one (UTC); returns the names it created. */
export async function createPartitionsAhead(db: Queryable, ahead = PARTITIONS_AHEAD): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>('SELECT meter_events_create_partitions($1::int) AS name', [ahead]);
  return rows.map((r) => r.name);
}

/** Every partition of meter_events, oldest first. */
export async function listPartitions(db: Queryable): Promise<LedgerPartition[]> {
  const { rows } = await db.query<{ name: string; bound: string; estimated: number; bytes: string }>(
    `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound, greatest(c.reltuples, 0)::float8 AS estimated,
            pg_total_relation_size(c.oid)::text AS bytes
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'meter_events'::regclass`,
  );
  return rows
    .map((r) => {
      const m = /FROM \((MINVALUE|'([0-9a-f-]{36})')\) TO \('([0-9a-f-]{36})'\)/.exec(r.bound);
      if (!m) throw new Error(`unexpected bound of partition ${r.name}: ${r.bound}`);
      return {
        name: r.name,
        from: m[2] ? new Date(uuidv7Time(m[2])) : null,
        to: new Date(uuidv7Time(m[3]!)),
        estimatedRows: r.estimated,
        bytes: Number(r.bytes),
      };
    })
    .sort((a, b) => a.to.getTime() - b.to.getTime());
}

export interface PartitionCheck {
  partition: LedgerPartition;
  events: number;
  /** Sentences saying why it cannot be archived yet; empty when it can. */
  blockers: string[];
}

/** Scans one partition: what it holds and what keeps it from being archived at `now`. */
export async function checkPartition(db: Queryable, partition: LedgerPartition, now: Date): Promise<PartitionCheck> {
  const blockers: string[] = [];
  const oldest = new Date(now.getTime() - ARCHIVE_MIN_AGE_DAYS * DAY_MS);
  if (partition.to > oldest) {
    blockers.push(`it holds events received after ${oldest.toISOString()} (${ARCHIVE_MIN_AGE_DAYS} days ago), which Stripe and the reconciliation still compare`);
  }
  const { rows } = await db.query<{ events: number; pending: number; failed: number; recorded: number; unsettled: number }>(
    `SELECT count(*)::int AS events,
            count(*) FILTER (WHERE e.status = 'pending')::int AS pending,
            count(*) FILTER (WHERE e.status = 'failed')::int AS failed,
            count(*) FILTER (WHERE e.status = 'recorded')::int AS recorded,
            count(*) FILTER (WHERE e.window_id IS NOT NULL AND w.state NOT IN ('paid', 'written_off'))::int AS unsettled
       FROM ${quoteIdent(partition.name)} e LEFT JOIN windows w ON w.id = e.window_id`,
  );
  const r = rows[0]!;
  if (r.pending > 0) blockers.push(`${r.pending} event(s) are still pending (not yet reported to Stripe)`);
  if (r.failed > 0) blockers.push(`${r.failed} event(s) failed and may still be retried: retry or resolve them first`);
  if (r.recorded > 0) blockers.push(`${r.recorded} event(s) are recorded but in no invoice yet`);
  if (r.unsettled > 0) blockers.push(`${r.unsettled} event(s) are in windows not yet paid or written off`);
  return { partition, events: r.events, blockers };
}

export interface ArchivePlan {
  /** Partitions whose every id lies before the cutoff, each with its check. */
  partitions: PartitionCheck[];
  archivable: boolean;
}

/** What archiving the partitions that end on or before `before` would do; changes nothing. */
export async function planArchive(db: Queryable, opts: { before: Date; now?: Date }): Promise<ArchivePlan> {
  const now = opts.now ?? new Date();
  const candidates = (await listPartitions(db)).filter((p) => p.to <= opts.before);
  const partitions: PartitionCheck[] = [];
  for (const p of candidates) partitions.push(await checkPartition(db, p, now));
  return { partitions, archivable: partitions.length > 0 && partitions.every((p) => p.blockers.length === 0) };
}

export interface ArchivedFile {
  file: string;
  rows: number;
  sha256: string;
}

export interface ArchivedPartition {
  name: string;
  from: string | null;
  to: string;
  events: ArchivedFile;
  attempts: ArchivedFile;
  conflicts: ArchivedFile;
  identifiersForgotten: number;
}

/**
 * Archives one partition: under a SHARE lock on it (its rows cannot change meanwhile) its events, their attempt log
 * and their differing duplicates are written to gzipped CSV files in `dir` with a manifest; then, in the same
 * transaction, the attempts and conflicts are deleted, the partition detached and dropped, and the archive audited.
 * Nothing is dropped unless every file was written and synced; a failure leaves the database as it was.
 * Identifiers stay claimed (a re-sent identifier is still a duplicate) unless `forgetIdentifiers`.
 */
export async function archivePartition(
  client: pg.ClientBase,
  name: string,
  opts: { dir: string; actor: Actor; now?: Date; forgetIdentifiers?: boolean; lockTimeoutMs?: number },
): Promise<ArchivedPartition> {
  const now = opts.now ?? new Date();
  const partition = (await listPartitions(client)).find((p) => p.name === name);
  if (!partition) throw new NotFoundError('ledger partition', name);
  const table = quoteIdent(name);
  const dir = path.join(opts.dir, name);
  await fs.mkdir(dir, { recursive: true });
  await client.query('BEGIN');
  try {
    await client.query(`LOCK TABLE ${table} IN SHARE MODE`);
    const check = await checkPartition(client, partition, now);
    if (check.blockers.length > 0) throw new StateError(`${name} cannot be archived: ${check.blockers.join('; ')}`);
    const events = await copyToFile(client, `SELECT * FROM ${table} ORDER BY id`, path.join(dir, 'meter_events.csv.gz'));
    const attempts = await copyToFile(
      client,
      `SELECT a.* FROM event_attempts a WHERE a.meter_event_id IN (SELECT id FROM ${table}) ORDER BY a.meter_event_id, a.started_at`,
      path.join(dir, 'event_attempts.csv.gz'),
    );
    const conflicts = await copyToFile(
      client,
      `SELECT c.* FROM meter_event_conflicts c WHERE c.event_id IN (SELECT id FROM ${table}) ORDER BY c.event_id, c.received_at`,
      path.join(dir, 'meter_event_conflicts.csv.gz'),
    );
    if (events.rows !== check.events) throw new StateError(`${name}: wrote ${events.rows} events of ${check.events}`);
    const archived: ArchivedPartition = {
      name,
      from: partition.from?.toISOString() ?? null,
      to: partition.to.toISOString(),
      events,
      attempts,
      conflicts,
      identifiersForgotten: 0,
    };
    await client.query(`DELETE FROM event_attempts WHERE meter_event_id IN (SELECT id FROM ${table})`);
    await client.query(`DELETE FROM meter_event_conflicts WHERE event_id IN (SELECT id FROM ${table})`);
    if (opts.forgetIdentifiers) {
      const forgotten = await client.query(`DELETE FROM meter_event_identifiers WHERE event_id IN (SELECT id FROM ${table})`);
      archived.identifiersForgotten = forgotten.rowCount ?? 0;
    }
    // Detaching takes an exclusive lock on meter_events for an instant; a short lock timeout keeps ingest from
    // queueing behind it when a long read holds the table (the command fails and can be run again).
    await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(opts.lockTimeoutMs ?? 2000))}`);
    await client.query(`ALTER TABLE meter_events DETACH PARTITION ${table}`);
    await client.query(`DROP TABLE ${table}`);
    await writeManifest(dir, archived);
    await writeAudit(client, {
      actor: opts.actor,
      action: 'ledger.archive_partition',
      subjectType: 'ledger_partition',
      subjectId: name,
      reason: null,
      before: { from: archived.from, to: archived.to, events: events.rows },
      after: {
        directory: dir,
        events: events.rows,
        attempts: attempts.rows,
        conflicts: conflicts.rows,
        events_sha256: events.sha256,
        identifiers_forgotten: archived.identifiersForgotten,
      },
    });
    await client.query('COMMIT');
    return archived;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

async function copyToFile(client: pg.ClientBase, select: string, file: string): Promise<ArchivedFile> {
  const hash = createHash('sha256');
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const copy = client.query(copyTo(`COPY (${select}) TO STDOUT WITH (FORMAT csv, HEADER)`));
  await pipeline(copy, createGzip(), hashing, createWriteStream(file));
  await syncFile(file);
  return { file: path.basename(file), rows: copy.rowCount, sha256: hash.digest('hex') };
}

async function writeManifest(dir: string, archived: ArchivedPartition): Promise<void> {
  const file = path.join(dir, 'manifest.json');
  await fs.writeFile(file, `${JSON.stringify({ format: 'meterdesk-ledger-partition/1', ...archived }, null, 2)}\n`);
  await syncFile(file);
}

async function syncFile(file: string): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function quoteIdent(name: string): string {
  if (!/^meter_events_[a-z0-9_]+$/.test(name)) throw new StateError(`not a ledger partition name: ${name}`);
  return `"${name}"`;
}
