// `npm run bench -- scale [--sizes 1m,10m,50m] [--ingest-events N] [--ingest-single N] [--samples N] [--warmup N]
//                         [--chunk N]`:
// the cost curve of the ledger's size. One database grown in steps: the scale seed at the first size (seedScale: the
// last 30 days, S/10 windows), then history and older windows up to each next size (growScale: set-based INSERT ...
// SELECT, S/10 windows at every size: 1M windows at 10M events), VACUUM (ANALYZE) after each step. At each size:
//   - every desk page's p95 (bench/desk.ts measureDesk: the same PAGES, target p95 < 100 ms);
//   - ingest into the grown table, with all its indexes (bench/ingest.ts measureIngest): the raw unnest INSERT
//     baseline, (a) library batches, (b) HTTP batches of 1,000, (c) HTTP single events at concurrency 64, a fixed
//     count each; the rows they wrote are deleted afterwards, so the next size starts from the ledger alone.
// Then a cost-curve table: each figure at size N over the same figure at the first size.
// Targets (issue "Scale figures"): desk p95 < 100 ms on every page at 10M events / 1M windows; (b) >= 60,000
// events/s; (a)/(b)/(c) at 50M within 10 % of their 1M figures.
import { existsSync, statfsSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { uuidv7Floor } from '../app/billing/ids';
import { growScale } from '../app/seed/scale-growth';
import { parseScale, seedScale } from '../app/seed/scale';
import { createServices } from '../app/server/services';
import { benchDatabase, fmt, machine } from './_support';
import { measureDesk, type PageFigure } from './desk';
import { measureIngest, type IngestFigures } from './ingest';

const GiB = 2 ** 30;
/**
 * Bytes per event of the whole database (ledger with its indexes, windows, invoices, attempts) before the first size
 * has been measured: a deliberately high prior; from the first step on, the measured figure replaces it.
 */
const PRIOR_BYTES_PER_EVENT = 1200;
/** Free space kept beyond the estimate: WAL, sorts, the growth step's own transaction. */
const HEADROOM = (bytes: number) => bytes * 0.15 + 2 * GiB;
const DESK_TARGET_MS = 100;
const BATCH_TARGET = 60_000;
const DRIFT_LIMIT = 0.1;

interface SizeFigures {
  events: number;
  windows: number;
  bytes: number;
  fillSeconds: number;
  desk: PageFigure[];
  ingest: IngestFigures;
}

/** The data directory cannot hold the next size: said plainly, without a stack. */
class NotEnoughDisk extends Error {}

export async function run(args: string[]) {
  try {
    await runScale(args);
  } catch (error) {
    if (!(error instanceof NotEnoughDisk)) throw error;
    console.error(`\nscale: ${error.message}`);
    process.exit(1);
  }
}

async function runScale(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      sizes: { type: 'string', default: '1m,10m,50m' },
      'ingest-events': { type: 'string', default: '100000' },
      'ingest-single': { type: 'string', default: '20000' },
      samples: { type: 'string', default: '60' },
      warmup: { type: 'string', default: '5' },
      chunk: { type: 'string', default: '1000000' },
    },
  });
  const sizes = values.sizes.split(',').map((s) => parseScale(s));
  if (sizes.some((s, i) => i > 0 && s <= sizes[i - 1]!)) throw new Error(`--sizes must increase (got ${values.sizes})`);
  const ingest = { total: parseScale(values['ingest-events']), singleTotal: parseScale(values['ingest-single']) };
  const desk = { samples: Number(values.samples), warmup: Number(values.warmup) };
  const chunk = parseScale(values.chunk);
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');

  const db = await benchDatabase();
  const services = createServices({ connectionString: db.connectionString });
  const pool = new pg.Pool({ connectionString: db.connectionString, max: 4 });
  pool.on('error', () => undefined);
  const results: SizeFigures[] = [];
  try {
    console.log(`scale benchmark — ${machine()} — ${db.label}`);
    console.log(`started ${new Date().toISOString()}, load average ${load}`);
    console.log(`command: npm run bench -- scale ${args.join(' ')}`.trimEnd());
    console.log(`sizes ${sizes.map((s) => fmt(s)).join(' → ')} events (windows = events / 10); ingest ${fmt(ingest.total)} events per (baseline, a, b), ${fmt(ingest.singleTotal)} requests for (c)`);
    const disk = await diskOf(pool);
    const emptyBytes = await databaseBytes(pool);
    let perEvent = PRIOR_BYTES_PER_EVENT;
    for (const [index, size] of sizes.entries()) {
      const windows = Math.floor(size / 10);
      const estimate = emptyBytes + size * perEvent;
      const current = await databaseBytes(pool);
      checkDisk(disk, index === 0 ? emptyBytes + sizes.at(-1)! * perEvent - current : estimate - current, perEvent, index === 0 ? sizes.at(-1)! : size);
      console.log(`\n=== ${fmt(size)} events / ${fmt(windows)} windows — database estimated ${gib(estimate)} (${fmt(perEvent)} B/event${index === 0 ? ', prior' : ''}) ===`);
      const t0 = performance.now();
      if (index === 0) {
        const seeded = await seedScale(pool, { events: size, windows, log: (line) => console.log(line) });
        if (seeded.status === 'skipped') throw new Error(`scale needs a database of its own: ${seeded.reason}`);
      } else {
        const grown = await growScale(pool, { events: size, windows, chunk, log: (line) => console.log(line) });
        console.log(`  grew by ${fmt(grown.addedEvents)} events and ${fmt(grown.addedWindows)} windows in ${fmt(grown.seconds, 1)} s`);
        const tv = performance.now();
        await pool.query(`VACUUM (ANALYZE) meter_events, windows, invoices, invoice_lines, charge_attempts`);
        console.log(`  VACUUM (ANALYZE) ${fmt((performance.now() - tv) / 1000, 1)} s`);
      }
      const fillSeconds = (performance.now() - t0) / 1000;
      const counts = await pool.query<{ events: string; windows: string; ledger: string }>(
        `SELECT (SELECT count(*) FROM meter_events)::text AS events, (SELECT count(*) FROM windows)::text AS windows,
                pg_size_pretty(pg_total_relation_size('meter_events')) AS ledger`,
      );
      const bytes = await databaseBytes(pool);
      const events = Number(counts.rows[0]!.events);
      perEvent = Math.max(1, Math.round((bytes - emptyBytes) / events));
      console.log(`filled in ${fmt(fillSeconds, 1)} s: ${fmt(events)} meter_events (${counts.rows[0]!.ledger} with indexes), ${fmt(Number(counts.rows[0]!.windows))} windows; ` +
        `database ${gib(bytes)} actual vs ${gib(estimate)} estimated (${fmt(perEvent)} B/event measured)${disk ? `; ${gib(free(disk))} free` : ''}`);

      console.log(`\n-- desk at ${fmt(events)} events`);
      const pages = await measureDesk(pool, db.connectionString, desk);
      console.log(`\n-- ingest into the ledger of ${fmt(events)} events`);
      const before = Date.now();
      const figures = await measureIngest(services, db.connectionString, ingest);
      // The ingest's own rows: ids are UUIDv7 minted from now on (everything seeded or grown is older).
      const removed = await pool.query(`DELETE FROM meter_events WHERE id >= $1::uuid`, [uuidv7Floor(before)]);
      await pool.query(`DELETE FROM meter_event_identifiers WHERE event_id >= $1::uuid`, [uuidv7Floor(before)]);
      await pool.query('VACUUM ANALYZE meter_events, meter_event_identifiers');
      console.log(`removed the ${fmt(removed.rowCount ?? 0)} events the ingest wrote`);
      results.push({ events, windows: Number(counts.rows[0]!.windows), bytes, fillSeconds, desk: pages, ingest: figures });
    }
    report(results);
  } finally {
    await pool.end();
    await services.close();
    await db.stop();
  }
}

function report(results: SizeFigures[]) {
  const first = results[0]!;
  const last = results.at(-1)!;
  const label = (r: SizeFigures) => `${compact(r.events)} ev`;
  const rows: Array<{ name: string; values: number[]; digits: number }> = [
    { name: 'database GiB', values: results.map((r) => r.bytes / GiB), digits: 2 },
    { name: 'fill s', values: results.map((r) => r.fillSeconds), digits: 0 },
    { name: 'baseline raw INSERT events/s', values: results.map((r) => r.ingest.raw), digits: 0 },
    { name: '(a) library events/s', values: results.map((r) => r.ingest.library), digits: 0 },
    { name: '(b) HTTP batches events/s', values: results.map((r) => r.ingest.httpBatch), digits: 0 },
    { name: '(c) HTTP single requests/s', values: results.map((r) => r.ingest.httpSingle), digits: 0 },
    { name: '(c) p99 ms', values: results.map((r) => r.ingest.singleP99), digits: 1 },
    { name: '(a) % of raw', values: results.map((r) => (r.ingest.library / r.ingest.raw) * 100), digits: 0 },
    { name: '(b) % of raw', values: results.map((r) => (r.ingest.httpBatch / r.ingest.raw) * 100), digits: 0 },
    { name: '(c) % of raw', values: results.map((r) => (r.ingest.httpSingle / r.ingest.raw) * 100), digits: 1 },
    ...first.desk.map((p, i) => ({ name: `p95 ms ${p.label}`, values: results.map((r) => r.desk[i]!.p95), digits: 1 })),
  ];
  console.log(`\n=== cost curve: each figure, and (×) over the same figure at ${fmt(first.events)} events ===`);
  console.log(`${'figure'.padEnd(46)} ${results.map((r) => `${label(r).padStart(10)} ${'×'.padStart(6)}`).join(' ')}`);
  for (const row of rows) {
    const cells = row.values.map((v) => `${fmt(v, row.digits).padStart(10)} ${fmt(v / row.values[0]!, 2).padStart(6)}`);
    console.log(`${row.name.slice(0, 46).padEnd(46)} ${cells.join(' ')}`);
  }

  console.log(`\n=== targets ===`);
  for (const r of results) {
    const misses = r.desk.filter((p) => p.p95 >= DESK_TARGET_MS).map((p) => `${p.label} ${fmt(p.p95, 1)} ms`);
    console.log(`desk at ${fmt(r.events)} events / ${fmt(r.windows)} windows: ${misses.length ? `MISS — ${misses.join('; ')}` : `ok, every page p95 < ${DESK_TARGET_MS} ms`}`);
  }
  for (const r of results) {
    const b = r.ingest.httpBatch;
    console.log(`(b) HTTP batches at ${fmt(r.events)} events: ${fmt(b)} events/s ${b >= BATCH_TARGET ? 'ok' : 'MISS'} (target >= ${fmt(BATCH_TARGET)})`);
  }
  if (results.length > 1) {
    const drift = (name: string, pick: (f: IngestFigures) => number) => {
      const ratio = pick(last.ingest) / pick(first.ingest);
      return `${name} ${fmt(ratio * 100)} % ${ratio >= 1 - DRIFT_LIMIT ? 'ok' : 'MISS'}`;
    };
    console.log(`ingest at ${fmt(last.events)} over ${fmt(first.events)} events (target: no more than ${DRIFT_LIMIT * 100} % below; the issue compares 50M with 1M): ` +
      [drift('(a)', (f) => f.library), drift('(b)', (f) => f.httpBatch), drift('(c)', (f) => f.httpSingle)].join(', '));
  }
}

async function databaseBytes(pool: pg.Pool): Promise<number> {
  const r = await pool.query<{ b: string }>(`SELECT pg_database_size(current_database())::text AS b`);
  return Number(r.rows[0]!.b);
}

/** The local directory holding the database's files, when it is on this machine (the embedded PostgreSQL). */
async function diskOf(pool: pg.Pool): Promise<string | null> {
  const dir = await pool.query<{ dir: string }>(`SELECT current_setting('data_directory') AS dir`).then((r) => r.rows[0]!.dir, () => null);
  if (dir && existsSync(dir)) {
    console.log(`data directory ${dir}: ${gib(free(dir))} free`);
    return dir;
  }
  console.log(`data directory not on this machine (${dir ?? 'not readable'}): free disk cannot be checked here — make sure the server has room`);
  return null;
}

function free(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

function checkDisk(dir: string | null, growth: number, perEvent: number, upTo: number) {
  if (!dir) return;
  const need = Math.max(0, growth) + HEADROOM(Math.max(0, growth));
  const available = free(dir);
  if (available < need) {
    throw new NotEnoughDisk(
      `not enough free disk for the scale benchmark: growing the database to ${fmt(upTo)} events needs about ${gib(need)} ` +
        `(${gib(Math.max(0, growth))} at ${fmt(perEvent)} B/event, plus headroom for WAL and sorts), and ${dir} has ${gib(available)} free. ` +
        `Free some space, point TMPDIR (embedded PostgreSQL) at a larger disk, or choose smaller --sizes.`,
    );
  }
}

function gib(bytes: number): string {
  return `${fmt(bytes / GiB, 2)} GiB`;
}

function compact(n: number): string {
  return n >= 1_000_000 ? `${fmt(n / 1_000_000, n % 1_000_000 ? 1 : 0)}M` : n >= 1000 ? `${fmt(n / 1000, n % 1000 ? 1 : 0)}k` : String(n);
}
