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
import os from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { uuidv7Floor } from '../app/billing/ids';
import { parseScale } from '../app/seed/scale';
import { createServices } from '../app/server/services';
import {
  PRIOR_BYTES_PER_EVENT,
  benchDatabase,
  checkDisk,
  compact,
  databaseBytes,
  diskOf,
  fillScaleStep,
  fmt,
  freeBytes,
  gib,
  machine,
  exitOnNotEnoughDisk,
} from './_support';
import { measureDesk, type PageFigure } from './desk';
import { measureIngest, type IngestFigures } from './ingest';

const GiB = 2 ** 30;
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

export function run(args: string[]) {
  return exitOnNotEnoughDisk('scale', () => runScale(args));
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
      checkDisk(disk, index === 0 ? emptyBytes + sizes.at(-1)! * perEvent - current : estimate - current, perEvent, index === 0 ? sizes.at(-1)! : size, {
        bench: 'scale',
        smaller: 'smaller --sizes',
      });
      console.log(`\n=== ${fmt(size)} events / ${fmt(windows)} windows — database estimated ${gib(estimate)} (${fmt(perEvent)} B/event${index === 0 ? ', prior' : ''}) ===`);
      const t0 = performance.now();
      await fillScaleStep(pool, { events: size, first: index === 0, chunk, log: (line) => console.log(line) });
      const fillSeconds = (performance.now() - t0) / 1000;
      const counts = await pool.query<{ events: string; windows: string; ledger: string }>(
        `SELECT (SELECT count(*) FROM meter_events)::text AS events, (SELECT count(*) FROM windows)::text AS windows,
                pg_size_pretty(pg_total_relation_size('meter_events')) AS ledger`,
      );
      const bytes = await databaseBytes(pool);
      const events = Number(counts.rows[0]!.events);
      perEvent = Math.max(1, Math.round((bytes - emptyBytes) / events));
      console.log(`filled in ${fmt(fillSeconds, 1)} s: ${fmt(events)} meter_events (${counts.rows[0]!.ledger} with indexes), ${fmt(Number(counts.rows[0]!.windows))} windows; ` +
        `database ${gib(bytes)} actual vs ${gib(estimate)} estimated (${fmt(perEvent)} B/event measured)${disk ? `; ${gib(freeBytes(disk))} free` : ''}`);

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
