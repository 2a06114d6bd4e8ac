// The ledger's month partitions (ADR 032) on a real PostgreSQL: identifiers unique across partitions, keyset pages
// across partition bounds, partitions created ahead by concurrent callers, and the archive of a settled month
// (files first, then detach and drop in one transaction; refused with its reasons, changing nothing, while not settled).
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StateError } from '../app/billing/errors';
import { uuidv7Floor } from '../app/billing/ids';
import { EventListPresenter, parseEventFilters } from '../app/billing/ledger/event-list';
import { archivePartition, createPartitionsAhead, listPartitions, planArchive } from '../app/billing/ledger/partitions';
import { partitionsCommand } from '../app/cli/partitions';
import { seedCustomers, startTestApp, type TestApp } from './support/app';

const MONTH_MS = (y: number, m: number) => Date.UTC(y, m - 1, 1);
const CLI_ACTOR = { userId: null, label: 'test', role: null };

let app: TestApp;
let acme: string;
let tmp: string;

/** A UUIDv7 for a millisecond, with random low bits. */
const idAt = (ms: number) => {
  const r = randomBytes(8).toString('hex');
  return `${uuidv7Floor(ms).slice(0, 13)}-7${r.slice(0, 3)}-8${r.slice(3, 6)}-${r.slice(4, 16)}`;
};

/** Events written straight into the ledger as an old month would hold them, each identifier claimed as ingest claims it. */
async function plant(events: Array<{ ms: number; identifier: string; status?: string; customerId?: string }>): Promise<string[]> {
  const ids = events.map((e) => idAt(e.ms));
  await app.services.pool.query(
    `WITH e AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[]) AS e(id, identifier, status, customer_id)),
          claimed AS (INSERT INTO meter_event_identifiers (identifier, event_id) SELECT identifier, id FROM e)
     INSERT INTO meter_events (id, identifier, customer_id, event_name, value, occurred_at, received_at, processor, status)
     SELECT id, identifier, customer_id, 'ai_tokens', 3, meterdesk_uuidv7_time(id), meterdesk_uuidv7_time(id), 'stripe', status::meter_event_status FROM e`,
    [ids, events.map((e) => e.identifier), events.map((e) => e.status ?? 'reported'), events.map((e) => e.customerId ?? acme)],
  );
  return ids;
}

const partitionOf = async (id: string) =>
  (await app.services.pool.query<{ name: string }>('SELECT tableoid::regclass::text AS name FROM meter_events WHERE id = $1', [id])).rows[0]?.name;

beforeAll(async () => {
  app = await startTestApp();
  await seedCustomers(app);
  acme = (await app.services.pool.query<{ id: string }>(`SELECT id FROM customers WHERE external_id = 'acme'`)).rows[0]!.id;
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'meterdesk-partitions-'));
});
afterAll(async () => {
  await app?.close();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('meter_events partitioned by month of receipt', () => {
  it('is partitioned on id, with the current month and three ahead', async () => {
    const kind = await app.services.pool.query<{ relkind: string }>(`SELECT relkind FROM pg_class WHERE oid = 'meter_events'::regclass`);
    expect(kind.rows[0]!.relkind).toBe('p');
    const partitions = await listPartitions(app.services.pool);
    const now = Date.now();
    const current = partitions.find((p) => (p.from === null || p.from.getTime() <= now) && now < p.to.getTime());
    expect(current).toBeDefined();
    const d = new Date();
    expect(partitions.at(-1)!.to.getTime()).toBe(MONTH_MS(d.getUTCFullYear(), d.getUTCMonth() + 1 + 4));
  });

  it('routes an ingested event to the partition of its receipt and keeps identifiers unique across partitions', async () => {
    const [planted] = await plant([{ ms: MONTH_MS(2027, 2) + 5_000, identifier: 'part-unique' }]);
    expect(await partitionOf(planted!)).toBe('meter_events_2027_02');
    const again = await app.services.ledger.reportUsage('acme', 'ai_tokens', { identifier: 'part-unique', value: 99 });
    expect(again.duplicate).toBe(true);
    expect(again.event).toMatchObject({ id: planted, value: 3 });
    const fresh = await app.services.ledger.reportUsage('acme', 'ai_tokens', { identifier: 'part-fresh' });
    expect(fresh.duplicate).toBe(false);
    const name = await partitionOf(fresh.event.id);
    const p = (await listPartitions(app.services.pool)).find((x) => x.name === name)!;
    expect(p.from === null || p.from <= fresh.event.receivedAt).toBe(true);
    expect(fresh.event.receivedAt < p.to).toBe(true);
    const counted = await app.count(`SELECT count(*) FROM meter_events WHERE identifier IN ('part-unique', 'part-fresh')`);
    expect(counted).toBe(2);
    // The API's lookup by identifier goes through the identifiers table too.
    const byIdentifier = await app.get('/api/v1/events?identifier=part-unique');
    expect(byIdentifier.status).toBe(200);
    expect(await byIdentifier.json()).toMatchObject({ id: planted, identifier: 'part-unique' });
  });

  it('pages newest first across partition bounds with nothing skipped or repeated', async () => {
    const customer = (
      await app.services.pool.query<{ id: string }>(
        `INSERT INTO customers (id, external_id, processor, processor_customer_id, updated_at)
         VALUES (gen_random_uuid(), 'part-keyset', 'stripe', 'cus_part_keyset', now()) RETURNING id`,
      )
    ).rows[0]!.id;
    const months = [MONTH_MS(2026, 11), MONTH_MS(2027, 1), MONTH_MS(2027, 3)];
    const planted = await plant(Array.from({ length: 120 }, (_, i) => ({ ms: months[i % 3]! + i * 1000, identifier: `part-keyset-${i}`, customerId: customer })));
    expect(new Set(await Promise.all(planted.map(partitionOf))).size).toBe(3);
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 5; page++) {
      const filters = { ...parseEventFilters(new URLSearchParams({ customer: 'part-keyset' })), ...(cursor ? { cursor } : {}) };
      const result = await EventListPresenter.call(app.services.pool, filters);
      seen.push(...result.events.map((e) => e.id));
      if (!result.older) break;
      cursor = result.older;
    }
    expect(seen).toEqual([...planted].sort().reverse());
  });

  it('reads only the partitions a received-time range names', async () => {
    const { rows } = await app.services.pool.query<{ 'QUERY PLAN': unknown }>(
      `EXPLAIN (FORMAT JSON) SELECT id FROM meter_events WHERE id >= $1::uuid AND id < $2::uuid ORDER BY id DESC LIMIT 50`,
      [uuidv7Floor(MONTH_MS(2027, 1) + 86_400_000), uuidv7Floor(MONTH_MS(2027, 1) + 2 * 86_400_000)],
    );
    const scanned = [...JSON.stringify(rows[0]!['QUERY PLAN']).matchAll(/"Relation Name":"(meter_events_[a-z0-9_]+)"/g)].map((m) => m[1]);
    expect(new Set(scanned)).toEqual(new Set(['meter_events_2027_01']));
  });

  it('creates partitions ahead once when called concurrently, each with fillfactor 50, and refuses impossible numbers', async () => {
    const last = (await listPartitions(app.services.pool)).at(-1)!;
    const both = await Promise.all([createPartitionsAhead(app.services.pool, 6), createPartitionsAhead(app.services.pool, 6)]);
    const created = both.flat();
    const next = new Date(last.to);
    const expected = [0, 1, 2].map((k) => {
      const d = new Date(Date.UTC(next.getUTCFullYear(), next.getUTCMonth() + k, 1));
      return `meter_events_${d.getUTCFullYear()}_${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
    });
    expect(created.sort()).toEqual(expected);
    expect(await createPartitionsAhead(app.services.pool, 6)).toEqual([]);
    const options = await app.services.pool.query<{ reloptions: string[] }>(`SELECT reloptions FROM pg_class WHERE relname = $1`, [expected[2]]);
    expect(options.rows[0]!.reloptions).toEqual(['fillfactor=50']);
    await expect(createPartitionsAhead(app.services.pool, 99)).rejects.toMatchObject({ code: '22023' });
  });
});

describe('archiving a month', () => {
  const month = 'meter_events_2027_01';
  const at = (day: number) => MONTH_MS(2027, 1) + day * 86_400_000;
  let ids: string[];

  beforeAll(async () => {
    ids = await plant([
      { ms: at(1), identifier: 'arch-1' },
      { ms: at(2), identifier: 'arch-2' },
      { ms: at(3), identifier: 'arch-3', status: 'failed' },
    ]);
    await app.services.pool.query(
      `INSERT INTO event_attempts (id, meter_event_id, source, outcome, http_status) VALUES (gen_random_uuid(), $1, 'sync', 'reported', 200)`,
      [ids[0]],
    );
    await app.services.pool.query(
      `INSERT INTO meter_event_conflicts (event_id, identifier, customer_id, event_name, value, occurred_at, differs)
       VALUES ($1, 'arch-2', $2, 'ai_tokens', 4, now(), 'value')`,
      [ids[1], acme],
    );
  });

  const counts = async () =>
    (
      await app.services.pool.query<{ events: number; attempts: number; identifiers: number }>(
        `SELECT (SELECT count(*) FROM meter_events WHERE id = ANY($1::uuid[]))::int AS events,
                (SELECT count(*) FROM event_attempts WHERE meter_event_id = ANY($1::uuid[]))::int AS attempts,
                (SELECT count(*) FROM meter_event_identifiers WHERE event_id = ANY($1::uuid[]))::int AS identifiers`,
        [ids],
      )
    ).rows[0]!;

  it('says why a month cannot be archived yet: too recent, or events not settled', async () => {
    const tooSoon = await planArchive(app.services.pool, { before: new Date(MONTH_MS(2027, 2)), now: new Date(MONTH_MS(2027, 2) + 86_400_000) });
    const check = tooSoon.partitions.find((p) => p.partition.name === month)!;
    expect(check.events).toBe(43); // its three plus the 40 keyset events planted in January
    expect(check.blockers.join('\n')).toMatch(/received after .* \(35 days ago\)/);
    expect(check.blockers.join('\n')).toMatch(/1 event\(s\) failed and may still be retried/);
    expect(tooSoon.archivable).toBe(false);
  });

  it('refuses to archive while an event is unsettled and changes nothing', async () => {
    const before = await counts();
    const client = await app.services.pool.connect();
    try {
      const error = await archivePartition(client, month, { dir: tmp, actor: CLI_ACTOR, now: new Date(MONTH_MS(2027, 4)) }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StateError);
      expect((error as Error).message).toMatch(/1 event\(s\) failed/);
    } finally {
      client.release();
    }
    expect(await counts()).toEqual(before);
    expect((await listPartitions(app.services.pool)).some((p) => p.name === month)).toBe(true);
    await expect(fs.readdir(path.join(tmp, month))).resolves.toEqual([]);
  });

  it('writes the month to files, then detaches and drops it; its identifiers stay duplicates', async () => {
    await app.services.pool.query(`UPDATE meter_events SET status = 'reported' WHERE id = $1`, [ids[2]]);
    const client = await app.services.pool.connect();
    let archived;
    try {
      archived = await archivePartition(client, month, { dir: tmp, actor: CLI_ACTOR, now: new Date(MONTH_MS(2027, 4)) });
    } finally {
      client.release();
    }
    expect(archived.events.rows).toBe(43);
    expect(archived.attempts.rows).toBe(1);
    expect(archived.conflicts.rows).toBe(1);
    const dir = path.join(tmp, month);
    const eventsFile = await fs.readFile(path.join(dir, 'meter_events.csv.gz'));
    expect(createHash('sha256').update(eventsFile).digest('hex')).toBe(archived.events.sha256);
    const lines = gunzipSync(eventsFile).toString('utf8').trim().split('\n');
    expect(lines[0]!.split(',').slice(0, 3)).toEqual(['id', 'identifier', 'customer_id']);
    expect(lines).toHaveLength(44);
    for (const id of ids) expect(lines.some((l) => l.startsWith(`${id},`))).toBe(true);
    expect(gunzipSync(await fs.readFile(path.join(dir, 'event_attempts.csv.gz'))).toString('utf8')).toContain(ids[0]!);
    const manifest = JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ format: 'meterdesk-ledger-partition/1', name: month, events: { rows: 43, sha256: archived.events.sha256 } });

    expect((await listPartitions(app.services.pool)).some((p) => p.name === month)).toBe(false);
    expect(await counts()).toEqual({ events: 0, attempts: 0, identifiers: 3 });
    const audit = await app.services.pool.query(`SELECT actor_label, after FROM audit_log WHERE action = 'ledger.archive_partition' AND subject_id = $1`, [month]);
    expect(audit.rows).toEqual([{ actor_label: 'test', after: expect.objectContaining({ events: 43, events_sha256: archived.events.sha256 }) }]);

    const again = await app.services.ledger.reportUsage('acme', 'ai_tokens', { identifier: 'arch-1', value: 3 });
    expect(again).toMatchObject({ duplicate: true, event: { id: ids[0], status: 'archived' } });
    expect(await app.count(`SELECT count(*) FROM meter_events WHERE identifier = 'arch-1'`)).toBe(0);
  });

  it('the CLI lists partitions, plans a dry run with its reasons, and refuses a bad month', async () => {
    const out: string[] = [];
    expect(await partitionsCommand(app.connectionString, ['list'], (l) => out.push(l))).toBe(0);
    expect(out.join('\n')).toMatch(/meter_events_2027_02\t2027-02-01\t2027-03-01/);
    out.length = 0;
    expect(await partitionsCommand(app.connectionString, ['archive', '--before', '2027-03', '--dry-run'], (l) => out.push(l))).toBe(1);
    expect(out.join('\n')).toMatch(/meter_events_2027_02: \d+ event\(s\).*\n  not yet: it holds events received after/);
    expect(await partitionsCommand(app.connectionString, ['archive', '--before', '2027-13', '--dry-run'], () => {})).toBe(2);
    expect(await partitionsCommand(app.connectionString, ['archive', '--before', '2027-03'], () => {})).toBe(2);
  });
});
