// `npm run bench -- alerts [--events 10m] [--seed-events N] [--rules 1000] [--passes 20] [--baseline-passes 1]
//                          [--chunk 1m]`:
// the cost of one alert evaluation pass (ADR 036; issue 18: 1,000 rules at 10M events, one pass < 1 s).
//   - Fill: an embedded PostgreSQL (or DATABASE_URL) filled as bench/scale.ts fills it (fillScaleStep): the scale seed
//     at --seed-events (default the smaller of --events and 1M: the last 30 days), then history up to --events
//     (windows = events / 10), then the rollups the desk__rollup_events task keeps (event_rollups, usage_rollups).
//   - Rules: --rules enabled rules spread round-robin over every kind of RULE_PARAMS, with parameters drawn from the
//     values a team would set (alertRuleInputs: one exhaustive switch over the kinds), every one through parseRule,
//     written in one INSERT. Two enabled channels (webhook, Slack) point at an HTTP receiver in this process, so
//     firings queue deliveries as in production (no worker runs them).
//   - Passes: evaluateAlerts on one connection: the first pass (cold: opens firings, queues deliveries), then
//     --passes warm ones; p50/p95/max ms, the SQL statements a pass sends (a wrapper counting the client's query
//     calls), the rules firing.
//   - Baseline, same run: the same rules evaluated one by one, each with a fresh Measures (nothing shared), against
//     the same evaluation with one shared Measures (as evaluateAlerts), both read-only (rolled back): the ratio.
//   - Measures: each distinct measure's statement replayed alone, the slowest listed, and each statement shape
//     EXPLAINed (ANALYZE, BUFFERS) at its slowest parameters, with any sequential scan named.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createChannel } from '../app/billing/alerts/channels';
import { evaluateAlerts, evaluateRule, Measures, type EvaluationResult } from '../app/billing/alerts/evaluate';
import { ANOMALY_PERIODS, BUDGET_PERCENTS, loadRules, parseRule, RULE_PARAMS, type AlertRule, type RuleInput, type RuleKind, type RuleParams } from '../app/billing/alerts/rules';
import type { Actor } from '../app/billing/audit';
import { OPS_EVENT_TYPES } from '../app/billing/ops-events';
import { rollupEvents, rollupUsage } from '../app/billing/rollups';
import { parseScale, SCALE_ERROR_CODES } from '../app/seed/scale';
import {
  PRIOR_BYTES_PER_EVENT,
  benchDatabase,
  checkDisk,
  compact,
  databaseBytes,
  diskOf,
  fillScaleStep,
  fmt,
  gib,
  machine,
  percentile,
  exitOnNotEnoughDisk,
} from './_support';
import { alertRuleInputs, BRAINTREE_DECLINE_CODES, distinctMeasures, measureCount, type RuleContext } from './_alert-rules';

export { alertRuleInputs, BRAINTREE_DECLINE_CODES, distinctMeasures, type RuleContext };

const TARGET_MS = 1000;
/** Braintree processor response codes a failure-rate rule on sales may name (2001 insufficient funds, 2004 expired card…). */
const SEED_EVENTS_MAX = 1_000_000;
const actor: Actor = { userId: null, label: 'bench:alerts', role: 'operator' };

// ───────────── the rules: what a team sets, per kind ─────────────

/** What the generator may point a rule at: values from the seeded data. */
interface Statement {
  text: string;
  values: unknown[] | undefined;
}

/** Wraps `client.query` so the statements sent between start() and stop() are recorded (text and parameters). */
function recordQueries(client: pg.PoolClient) {
  const log: Statement[] = [];
  let on = false;
  const original = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    if (on) {
      const [first, second] = args;
      const config = typeof first === 'string' ? { text: first, values: Array.isArray(second) ? second : undefined } : (first as { text: string; values?: unknown[] });
      log.push({ text: config.text, values: config.values });
    }
    return original(...args);
  };
  return {
    start() {
      log.length = 0;
      on = true;
    },
    stop(): Statement[] {
      on = false;
      return [...log];
    },
  };
}

// ───────────── the bench ─────────────

interface Pass {
  ms: number;
  statements: number;
  result: EvaluationResult;
}

export function run(args: string[]) {
  return exitOnNotEnoughDisk('alerts', () => runAlerts(args));
}

async function runAlerts(args: string[]) {
  const started = performance.now();
  const { values } = parseArgs({
    args,
    options: {
      events: { type: 'string', default: '10m' },
      'seed-events': { type: 'string' },
      rules: { type: 'string', default: '1000' },
      passes: { type: 'string', default: '20' },
      'baseline-passes': { type: 'string', default: '1' },
      chunk: { type: 'string', default: '1000000' },
    },
  });
  const events = parseScale(values.events);
  const seedEvents = Math.min(events, values['seed-events'] ? parseScale(values['seed-events']) : SEED_EVENTS_MAX);
  const ruleCount = parseScale(values.rules);
  const passes = Math.max(1, Number(values.passes));
  const baselinePasses = Math.max(1, Number(values['baseline-passes']));
  const chunk = parseScale(values.chunk);
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');

  const db = await benchDatabase();
  const pool = new pg.Pool({ connectionString: db.connectionString, max: 4 });
  pool.on('error', () => undefined);
  const receiver = await startReceiver();
  try {
    console.log(`alerts benchmark — ${machine()} — ${db.label}`);
    console.log(`started ${new Date().toISOString()}, load average ${load} (${os.cpus().length} cores)`);
    console.log(`command: npm run bench -- alerts ${args.join(' ')}`.trimEnd());

    // Fill.
    const disk = await diskOf(pool);
    checkDisk(disk, events * PRIOR_BYTES_PER_EVENT, PRIOR_BYTES_PER_EVENT, events, { bench: 'alerts', smaller: 'a smaller --events' });
    const steps = seedEvents < events ? [seedEvents, events] : [events];
    console.log(`\n=== fill: ${steps.map((s, i) => `${i === 0 ? 'scale seed' : 'grown'} to ${fmt(s)} events`).join(', then ')} (windows = events / 10) ===`);
    const tFill = performance.now();
    for (const [index, size] of steps.entries()) {
      await fillScaleStep(pool, { events: size, first: index === 0, chunk, log: (line) => console.log(line) });
    }
    const fillSeconds = (performance.now() - tFill) / 1000;
    const tRollups = performance.now();
    for (const [name, rollup] of [['event_rollups', rollupEvents], ['usage_rollups', rollupUsage]] as const) {
      const t = performance.now();
      const client = await pool.connect();
      try {
        const r = await rollup(client);
        console.log(`  ${`rollup ${name}`.padEnd(34)} ${fmt(r.written).padStart(9)} rows  ${fmt((performance.now() - t) / 1000, 1)} s  [${r.from.toISOString()}, ${r.to.toISOString()})`);
      } finally {
        client.release();
      }
    }
    const rollupSeconds = (performance.now() - tRollups) / 1000;
    const counts = await pool.query<{ events: string; windows: string; ops: string }>(
      `SELECT (SELECT count(*) FROM meter_events)::text AS events, (SELECT count(*) FROM windows)::text AS windows, (SELECT count(*) FROM ops_events)::text AS ops`,
    );
    const c = counts.rows[0]!;
    console.log(`filled in ${fmt(fillSeconds, 1)} s + rollups ${fmt(rollupSeconds, 1)} s: ${fmt(Number(c.events))} meter_events, ${fmt(Number(c.windows))} windows, ` +
      `${fmt(Number(c.ops))} ops_events; database ${gib(await databaseBytes(pool))}`);

    // Rules and channels.
    const ctx = await ruleContext(pool);
    const inputs = alertRuleInputs(ruleCount, ctx);
    const tRules = performance.now();
    const parsed = inputs.map((input) => {
      const p = parseRule(input);
      if (!p.ok) throw new Error(`generated rule ${String(input.name)} refused: ${p.field ?? ''} ${p.message}`);
      return p.value;
    });
    await pool.query(
      `INSERT INTO alert_rules (id, name, kind, params) SELECT gen_random_uuid(), n, k, p FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS t(n, k, p)`,
      [parsed.map((r) => r.name), parsed.map((r) => r.kind), parsed.map((r) => JSON.stringify(r.params))],
    );
    const rulesMs = performance.now() - tRules;
    for (const [kind, url] of [['webhook', `${receiver.url}/webhook`], ['slack', `${receiver.url}/slack`]] as const) {
      const channel = await createChannel(pool, actor, { name: `bench ${kind}`, kind, url });
      if (!channel.ok) throw new Error(`channel ${kind} refused: ${channel.message}`);
    }
    const rules = await loadRules(pool, { enabledOnly: true });
    if (rules.length !== ruleCount) throw new Error(`expected ${ruleCount} enabled rules, loadRules read ${rules.length}`);
    const byKind = new Map<RuleKind, AlertRule[]>();
    for (const r of rules) byKind.set(r.kind, [...(byKind.get(r.kind) ?? []), r]);
    const distinct = await distinctMeasures(rules);
    const perKind = await Promise.all([...byKind].map(async ([kind, rs]) => `${kind} ${fmt(rs.length)} rules/${fmt(await distinctMeasures(rs))}`));
    console.log(`\n=== ${fmt(rules.length)} enabled rules over ${byKind.size} kinds, ${fmt(distinct)} distinct measures ===`);
    console.log(`  rules/measures by kind: ${perKind.join(', ')}`);
    console.log(`  (a measure is one question a pass asks once and shares, a customer lookup included; one two kinds ask counts once in the total)`);
    console.log(`  created in ${fmt(rulesMs, 1)} ms: each through parseRule, one INSERT; 2 enabled channels (webhook, slack) → ${receiver.url}`);

    // Passes.
    const client = await pool.connect();
    const recorder = recordQueries(client);
    const pass = async (): Promise<Pass> => {
      recorder.start();
      const t = performance.now();
      const result = await evaluateAlerts(client);
      const ms = performance.now() - t;
      return { ms, statements: recorder.stop().length, result };
    };
    try {
      const cold = await pass();
      const warm: Pass[] = [];
      for (let i = 0; i < passes; i++) warm.push(await pass());
      const warmMs = warm.map((p) => p.ms).sort((a, b) => a - b);
      const p95 = percentile(warmMs, 95);
      const firingByKind = await pool.query<{ kind: string; n: number }>(
        `SELECT r.kind, count(*)::int AS n FROM alert_firings f JOIN alert_rules r ON r.id = f.rule_id WHERE f.resolved_at IS NULL GROUP BY 1 ORDER BY 1`,
      );
      // Each delivery row is queued with its alerts__deliver job in the same statement (queueDeliveries).
      const queued = await pool.query<{ deliveries: number }>(`SELECT count(*)::int AS deliveries FROM alert_deliveries`);
      const last = warm.at(-1)!;
      const statementsWarm = [...new Set(warm.map((p) => p.statements))].join('/');
      console.log(`\n=== evaluateAlerts: one pass over ${fmt(cold.result.rules)} rules ===`);
      console.log(`  cold pass ${fmt(cold.ms, 1)} ms, ${fmt(cold.statements)} SQL statements: opened ${fmt(cold.result.fired.length)} firings, queued ${fmt(cold.result.deliveries)} deliveries`);
      console.log(`  ${passes} warm passes: p50 ${fmt(percentile(warmMs, 50), 1)} ms, p95 ${fmt(p95, 1)} ms, max ${fmt(warmMs.at(-1)!, 1)} ms; ` +
        `${statementsWarm} SQL statements a pass (${fmt(distinct)} measures, then the transaction, lock, rules, open firings and writes)`);
      console.log(`  rules firing after the last pass: ${fmt(last.result.stillFiring + last.result.fired.length)} of ${fmt(last.result.rules)} ` +
        `(${firingByKind.rows.map((r) => `${r.kind} ${r.n}`).join(', ') || 'none'}); warm passes opened ${fmt(warm.reduce((s, p) => s + p.result.fired.length, 0))}, ` +
        `resolved ${fmt(warm.reduce((s, p) => s + p.result.resolved.length, 0))}`);
      console.log(`  queued: ${fmt(queued.rows[0]!.deliveries)} alert_deliveries, each with its alerts__deliver job (no worker runs them; the receiver got ${receiver.received()} requests)`);

      // Baseline: the same rules, nothing shared, against the same evaluation sharing one Measures; both read-only.
      // The shared one as many times as the warm passes; the per-rule one (slow: one statement per rule or more)
      // --baseline-passes times.
      const shared: number[] = [];
      const perRule: number[] = [];
      let sharedRun: Awaited<ReturnType<typeof readOnlyPass>> | undefined;
      let perRuleStatements = 0;
      for (let i = 0; i < passes; i++) {
        sharedRun = await readOnlyPass(client, recorder, 'shared');
        shared.push(sharedRun.ms);
      }
      for (let i = 0; i < baselinePasses; i++) {
        const p = await readOnlyPass(client, recorder, 'per-rule');
        perRule.push(p.ms);
        perRuleStatements = p.statements.length;
      }
      const sharedP50 = percentile(shared.sort((a, b) => a - b), 50);
      const perRuleP50 = percentile(perRule.sort((a, b) => a - b), 50);
      const warmP50 = percentile(warmMs, 50);
      console.log(`\n=== baseline: one fresh Measures per rule vs one shared Measures (read-only evaluation, rolled back) ===`);
      console.log(`  per rule, one by one: p50 ${fmt(perRuleP50, 1)} ms of ${baselinePasses} (${perRule.map((ms) => fmt(ms, 0)).join(', ')} ms), ${fmt(perRuleStatements)} SQL statements`);
      console.log(`  shared (as evaluateAlerts): p50 ${fmt(sharedP50, 1)} ms of ${passes}, ${fmt(sharedRun!.statements.length)} SQL statements for ${fmt(sharedRun!.memo)} measures`);
      console.log(`  ratio shared/per-rule = ${fmt(sharedP50 / perRuleP50, 3)} (${fmt(perRuleP50 / sharedP50, 1)}× faster); ` +
        `a whole warm pass (with its writes) / per-rule evaluation = ${fmt(warmP50 / perRuleP50, 3)}`);

      await reportMeasures(client, sharedRun!.measures);

      console.log(`\n=== verdict (${fmt(Number(c.events))} events, ${fmt(rules.length)} rules, ${fmt(distinct)} distinct measures) ===`);
      console.log(`one pass p95 = ${fmt(p95, 1)} ms (target < ${TARGET_MS} ms): ${p95 < TARGET_MS ? 'met' : 'missed'}`);
      console.log(`cold pass = ${fmt(cold.ms, 1)} ms (${cold.ms < TARGET_MS ? 'also' : 'not'} under the target)`);
    } finally {
      client.release();
    }
    console.log(`\nrun took ${fmt((performance.now() - started) / 1000, 1)} s (fill ${fmt(fillSeconds, 1)} s, rollups ${fmt(rollupSeconds, 1)} s) at ${compact(events)} events`);
  } finally {
    await receiver.close();
    await pool.end();
    await db.stop();
  }
}

/**
 * One evaluation without its writes, in a transaction rolled back: BEGIN, the pass's lock, the rules, then every
 * rule's measures, either through one shared Measures (as evaluateAlerts) or a fresh one per rule, one by one.
 */
async function readOnlyPass(client: pg.PoolClient, recorder: ReturnType<typeof recordQueries>, mode: 'shared' | 'per-rule') {
  recorder.start();
  const t = performance.now();
  let measuresFrom = 0;
  let memo = 0;
  let statements: Statement[] = [];
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('meterdesk.alerts'))`);
    const rules = await loadRules(client, { enabledOnly: true });
    const now = new Date();
    measuresFrom = 3;
    if (mode === 'shared') {
      const measures = new Measures(client, now);
      await Promise.all(rules.map((rule) => evaluateRule(rule, measures)));
      memo = measureCount(measures);
    } else {
      for (const rule of rules) await evaluateRule(rule, new Measures(client, now));
    }
  } finally {
    await client.query('ROLLBACK');
    statements = recorder.stop();
  }
  return { ms: performance.now() - t, statements, measures: statements.slice(measuresFrom, -1), memo };
}

/** Each distinct measure's statement replayed alone (the slowest listed), and each statement shape EXPLAINed once. */
async function reportMeasures(client: pg.PoolClient, statements: Statement[]) {
  const now = Date.now();
  const timed: Array<Statement & { ms: number }> = [];
  for (const s of statements) {
    const runs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      await client.query(s.text, s.values);
      runs.push(performance.now() - t);
    }
    timed.push({ ...s, ms: runs.sort((a, b) => a - b)[1]! });
  }
  timed.sort((a, b) => b.ms - a.ms);
  const total = timed.reduce((sum, s) => sum + s.ms, 0);
  console.log(`\n=== the ${fmt(timed.length)} distinct measures, each replayed alone (median of 3): ${fmt(total, 1)} ms in all ===`);
  for (const s of timed.slice(0, 8)) console.log(`  ${fmt(s.ms, 2).padStart(8)} ms  ${describe(s, now)}`);
  const shapes = new Map<string, Array<Statement & { ms: number }>>();
  for (const s of timed) shapes.set(normalize(s.text), [...(shapes.get(normalize(s.text)) ?? []), s]);
  console.log(`\n-- plans: each statement shape at its slowest parameters (EXPLAIN ANALYZE, BUFFERS)`);
  for (const [shape, list] of shapes) {
    const slowest = list[0]!;
    const { rows } = await client.query<{ 'QUERY PLAN': PlanNode[] }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${slowest.text}`, slowest.values);
    const root = rows[0]!['QUERY PLAN'][0] as unknown as { Plan: PlanNode; 'Execution Time': number };
    const scans = new Map<string, { count: number; rows: number }>();
    const sorted = { rows: 0 };
    collectScans(root.Plan, scans, sorted);
    const read = [...scans.values()].reduce((sum, v) => sum + v.rows, 0);
    console.log(`  ${shape.slice(0, 110)}${shape.length > 110 ? '…' : ''}`);
    console.log(`    ${fmt(list.length)} measures of this shape; slowest ${fmt(slowest.ms, 2)} ms (${describe(slowest, now)}), executed in ${fmt(root['Execution Time'], 2)} ms, ` +
      `${fmt(read)} rows read by its scans, buffers hit ${fmt(root.Plan['Shared Hit Blocks'] ?? 0)} read ${fmt(root.Plan['Shared Read Blocks'] ?? 0)}`);
    console.log(`    scans: ${[...scans].map(([k, v]) => `${k}${v.count > 1 ? ` ×${v.count}` : ''} (${fmt(v.rows)} rows)`).join('; ')}`);
    const seq = [...scans].filter(([k, v]) => k.startsWith('Seq Scan') && v.rows > 0).map(([k, v]) => `${k} reads ${fmt(v.rows)} rows`);
    if (seq.length) console.log(`    NOTE: sequential scan — ${seq.join('; ')}`);
    if (sorted.rows > SORT_NOTE_ROWS) console.log(`    NOTE: sorts ${fmt(sorted.rows)} rows${/ORDER BY/i.test(slowest.text) && /LIMIT 1\b/i.test(slowest.text) ? ' to return one (a probe would read a few: does the ORDER BY name an index column, not a computed output column?)' : ''}`);
  }
}

/** A Sort over more rows than this is named: a measure is meant to be an index probe or a bounded range. */
const SORT_NOTE_ROWS = 1000;

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  Plans?: PlanNode[];
}

/**
 * Every scan node of the plan as "Index Only Scan using <index> on <table>" → how many (a month's partitions count as
 * one) and the rows it read (returned plus removed by a filter, over all loops); the rows fed to Sort nodes.
 */
function collectScans(node: PlanNode, into: Map<string, { count: number; rows: number }>, sorted: { rows: number }) {
  const rows = (n: PlanNode) => ((n['Actual Rows'] ?? 0) + (n['Rows Removed by Filter'] ?? 0)) * (n['Actual Loops'] ?? 1);
  if (node['Relation Name']) {
    const table = node['Relation Name'].replace(PARTITION, '_*');
    const key = `${node['Node Type']}${node['Index Name'] ? ` using ${node['Index Name'].replace(PARTITION, '_*')}` : ''} on ${table}`;
    const entry = into.get(key) ?? { count: 0, rows: 0 };
    into.set(key, { count: entry.count + 1, rows: entry.rows + Math.round(rows(node)) });
  }
  if (node['Node Type'] === 'Sort') sorted.rows += Math.round((node.Plans ?? []).reduce((sum, child) => sum + rows(child), 0));
  for (const child of node.Plans ?? []) collectScans(child, into, sorted);
}

const PARTITION = /_(?:before_)?\d{4}_\d{2}(?=_|$)/;
const normalize = (sql: string) => sql.replace(/\s+/g, ' ').trim();

/** The statement's table and parameters, times shown relative to now. */
function describe(s: Statement, now: number): string {
  const table = /\bFROM\s+(\w+)/i.exec(s.text)?.[1] ?? '?';
  const values = (s.values ?? []).map((v) =>
    v instanceof Date ? `now${v.getTime() - now >= 0 ? '+' : '-'}${fmt(Math.abs(v.getTime() - now) / 60_000)}m` : Array.isArray(v) ? `[${v.length}]` : JSON.stringify(v),
  );
  return `${table}(${values.join(', ')})`;
}

/** The watched customers (the 12 largest, as the seed's squared spread makes the lowest indexes), meters and codes. */
async function ruleContext(pool: pg.Pool): Promise<RuleContext> {
  const customers = await pool.query<{ external_id: string; processor: 'stripe' | 'braintree' }>(
    `SELECT external_id, processor::text AS processor FROM customers WHERE external_id LIKE 'scale-%' ORDER BY external_id LIMIT 12`,
  );
  const meters = await pool.query<{ event_name: string }>(`SELECT event_name FROM meters ORDER BY event_name`);
  return {
    errorCodes: SCALE_ERROR_CODES.map((c) => c[0]),
    saleCodes: BRAINTREE_DECLINE_CODES,
    customers: customers.rows.map((r) => ({ externalId: r.external_id, processor: r.processor })),
    eventNames: meters.rows.map((r) => r.event_name),
  };
}

/** The channels' receiver: answers 200 and counts (the bench runs no worker, so it should stay at 0). */
async function startReceiver(): Promise<{ url: string; received(): number; close(): Promise<void> }> {
  let received = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received += 1;
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received: () => received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
