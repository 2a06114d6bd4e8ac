// `npm run chaos -- --seeds N [--seed S] [--events E] [--faults F]`: runs N seeds (1..N, or the one seed S), prints a
// line per seed and a summary with the faults injected per kind, and exits 1 on any violation, naming the seeds to
// replay with --seed. What it does and checks: chaos/campaign.ts, chaos/invariants.ts, docs/reliability.md.
import os from 'node:os';
import { parseArgs } from 'node:util';
import { FAULT_KINDS, runSeed, type SeedResult } from './campaign';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '5' },
    seed: { type: 'string' },
    events: { type: 'string', default: '1500' },
    faults: { type: 'string', default: '6' },
    verbose: { type: 'boolean', default: false },
  },
});
const seeds = values.seed !== undefined ? [Number(values.seed)] : Array.from({ length: Number(values.seeds) }, (_, i) => i + 1);
if (seeds.some((s) => !Number.isInteger(s) || s < 0)) {
  console.error('--seed and --seeds take whole numbers');
  process.exit(2);
}

console.log(`chaos campaign — ${seeds.length} seed(s), ${values.events} events and ${values.faults} faults each — ${os.cpus().length} cores, Node ${process.version}, ${new Date().toISOString()}`);
const results: SeedResult[] = [];
const failed: number[] = [];
for (const seed of seeds) {
  let r: SeedResult;
  try {
    r = await runSeed({ seed, events: Number(values.events), faults: Number(values.faults), log: values.verbose ? (l) => console.log(l) : undefined });
  } catch (error) {
    console.log(`seed ${seed}: ERROR — ${(error as Error).stack ?? error}`);
    failed.push(seed);
    continue;
  }
  results.push(r);
  const injected = FAULT_KINDS.filter((k) => r.faults[k] > 0).map((k) => `${k} ${r.faults[k]}`).join(', ') || 'none';
  const processor = Object.entries(r.processorFaults).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  const head = `seed ${seed}: ${r.violations.length === 0 ? 'ok' : 'VIOLATION'} — ${r.accepted.toLocaleString('en-US')} events accepted in ${r.requests} requests (${r.retriedRequests} resent), ${r.seconds.toFixed(1)} s; faults: ${injected}; processor faults fired: ${processor}`;
  console.log(head);
  for (const v of r.violations) console.log(`    ${v}`);
  if (r.violations.length > 0) failed.push(seed);
}

const total = (k: (typeof FAULT_KINDS)[number]) => results.reduce((n, r) => n + r.faults[k], 0);
const processorTotals: Record<string, number> = {};
for (const r of results) for (const [k, v] of Object.entries(r.processorFaults)) processorTotals[k] = (processorTotals[k] ?? 0) + v;
console.log(
  `summary: ${seeds.length} seeds, ${failed.length} failed; ${results.reduce((n, r) => n + r.accepted, 0).toLocaleString('en-US')} events accepted; ` +
    `faults: ${FAULT_KINDS.map((k) => `${k} ${total(k)}`).join(', ')}; processor faults fired: ${Object.entries(processorTotals).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
);
if (failed.length > 0) {
  console.log(`replay: ${failed.map((s) => `npm run chaos -- --seed ${s}`).join('  |  ')}`);
  process.exit(1);
}
process.exit(0);
