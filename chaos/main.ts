// `npm run chaos -- --seeds N [--seed S] [--events E] [--braintree-events B] [--faults F] [--verbose]`: runs N seeds (1..N, or the one seed S), prints a
// line per seed and a summary with the faults injected per kind, and exits 1 on any violation, naming the seeds to
// replay with --seed. What it does and checks: chaos/campaign.ts, chaos/invariants.ts, docs/reliability.md.
import os from 'node:os';
import { parseArgs } from 'node:util';
import type { AlertStats } from './alerts';
import { FAULT_KINDS, runSeed, type SeedResult } from './campaign';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '5' },
    seed: { type: 'string' },
    events: { type: 'string', default: '1500' },
    faults: { type: 'string', default: '6' },
    'braintree-events': { type: 'string' },
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
    r = await runSeed({
      seed,
      events: Number(values.events),
      faults: Number(values.faults),
      ...(values['braintree-events'] !== undefined ? { braintreeEvents: Number(values['braintree-events']) } : {}),
      log: values.verbose ? (l) => console.log(l) : undefined,
    });
  } catch (error) {
    console.log(`seed ${seed}: ERROR — ${(error as Error).stack ?? error}`);
    failed.push(seed);
    continue;
  }
  results.push(r);
  const injected = FAULT_KINDS.filter((k) => r.faults[k] > 0).map((k) => `${k} ${r.faults[k]}`).join(', ') || 'none';
  const processor = Object.entries(r.processorFaults).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  const list = (o: Record<string, number>) => Object.entries(o).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  const b = r.braintree;
  const head =
    `seed ${seed}: ${r.violations.length === 0 ? 'ok' : 'VIOLATION'} — ${r.accepted.toLocaleString('en-US')} events accepted in ${r.requests} requests (${r.retriedRequests} resent), ${r.seconds.toFixed(1)} s; ` +
    `faults: ${injected}; processor faults fired: ${processor}; processes that exited on their own: worker ${r.unexpectedExits.worker}, web ${r.unexpectedExits.web}\n` +
    `    Braintree: ${b.subscriptions} subscriptions, windows ${list(b.windows)}; ${b.sales} sales (${b.approved} approved); events ${list(b.events)} (${b.lateBilled} billed late)\n` +
    `    desk: ${r.deskActions.sent} operator actions sent (${list(r.deskActions.byKind)}), ${r.deskActions.ok} ok, ${r.deskActions.refused} refused, ${r.deskActions.retried} resent; ` +
    `proxy: ${r.proxy.proxied} proxied, ${r.proxy.skipped} refused connections skipped, ${r.proxy.badGateway} answered 502\n` +
    `    ${alertLine(r.alerts)}`;
  console.log(head);
  for (const v of r.violations) console.log(`    ${v}`);
  if (r.violations.length > 0) failed.push(seed);
}

/** The seed line's alert figures (chaos/alerts.ts): passes, firings, deliveries per channel, receiver answers. */
function alertLine(a: AlertStats): string {
  const list = (o: Record<string, number>) => Object.entries(o).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  const states = (o: Record<string, number>) => ['delivered', 'failed', 'pending'].map((k) => `${o[k] ?? 0} ${k}`).join(', ');
  return (
    `alerts: passes ${a.passes.ok} here (${a.passes.failed} cut by faults) + ${a.workerPasses.ran} of ${a.workerPasses.queued} queued to workers, ${a.toggles} rule toggles, ` +
    `${a.monitorChecks} checks during the seed; firings ${a.firings.opened} opened, ${a.firings.resolved} resolved (${list(a.firings.byKind)}); ` +
    `deliveries random ${states(a.deliveries.random)} (${a.unrecorded} answered 2xx, record lost), healthy ${states(a.deliveries.healthy)}; ${a.stuck} stuck behind a dead worker's lock; ` +
    `receiver answers random: ${list(a.answers.random)}; healthy: ${list(a.answers.healthy)}`
  );
}

const total = (k: (typeof FAULT_KINDS)[number]) => results.reduce((n, r) => n + r.faults[k], 0);
const sumInto = (into: Record<string, number>, from: Record<string, number>) => {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
};
const processorTotals: Record<string, number> = {};
const windowTotals: Record<string, number> = {};
for (const r of results) {
  sumInto(processorTotals, r.processorFaults);
  sumInto(windowTotals, r.braintree.windows);
}
console.log(
  `summary: ${seeds.length} seeds, ${failed.length} failed; ${results.reduce((n, r) => n + r.accepted, 0).toLocaleString('en-US')} events accepted; ` +
    `faults: ${FAULT_KINDS.map((k) => `${k} ${total(k)}`).join(', ')}; processor faults fired: ${Object.entries(processorTotals).sort().map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}; ` +
    `Braintree windows: ${Object.entries(windowTotals).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}, ${results.reduce((n, r) => n + r.braintree.approved, 0)} approved sales; ` +
    `processes that exited on their own: worker ${results.reduce((n, r) => n + r.unexpectedExits.worker, 0)}, web ${results.reduce((n, r) => n + r.unexpectedExits.web, 0)}; ` +
    `desk actions: ${results.reduce((n, r) => n + r.deskActions.sent, 0)} sent, ${results.reduce((n, r) => n + r.deskActions.ok, 0)} ok, ${results.reduce((n, r) => n + r.deskActions.refused, 0)} refused, ${results.reduce((n, r) => n + r.deskActions.retried, 0)} resent; ` +
    alertTotals(results.map((r) => r.alerts)),
);
function alertTotals(all: AlertStats[]): string {
  const sum = (f: (a: AlertStats) => number) => all.reduce((n, a) => n + f(a), 0);
  const merge = (f: (a: AlertStats) => Record<string, number>) => {
    const into: Record<string, number> = {};
    for (const a of all) sumInto(into, f(a));
    return Object.entries(into).sort().map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  };
  return (
    `alerts: ${sum((a) => a.passes.ok)} passes here + ${sum((a) => a.workerPasses.ran)} by workers, firings ${sum((a) => a.firings.opened)} opened, ${sum((a) => a.firings.resolved)} resolved; ` +
    `deliveries random ${merge((a) => a.deliveries.random)}, healthy ${merge((a) => a.deliveries.healthy)}; random receiver ${merge((a) => a.answers.random)}`
  );
}
if (failed.length > 0) {
  console.log(`replay: ${failed.map((s) => `npm run chaos -- --seed ${s}`).join('  |  ')}`);
  process.exit(1);
}
process.exit(0);
