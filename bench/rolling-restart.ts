// `npm run bench -- rolling-restart [--rate 2000] [--single-share 0.25] [--batch 10] [--steady 10]`: a rolling restart
// of two web processes (`web`, as the image runs it, MIGRATE_ON_START=false) behind the loopback round-robin proxy
// that follows /readyz, under an open-loop offered load: `rate` events a second, `single-share` of them as single
// events (POST /api/v1/events, 202), the rest in batches of `batch` (200 with a result per event), sent on a clock
// whether or not earlier requests have been answered. Each process in turn gets SIGTERM and is replaced on its port;
// then `steady` seconds more. It prints what was offered and accepted, lost events (answered accepted, absent from the
// ledger), connection resets, 5xx, and latency in steady traffic against latency while a process restarts.
// Target (issue 16): 2,000 events/s offered, 0 lost, 0 connection resets, 0 5xx.
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createPrisma } from '../app/db/clients';
import { benchDatabase, fmt, machine, percentile } from './_support';
import { freePort } from '../test/support/free-port';
import { logLines, startWebBehindProxy, type CliProcess } from '../test/support/process-output';
import { startRoundRobinProxy } from '../test/support/round-robin-proxy';

const TICK_MS = 5;
/** Requests in flight beyond this are not sent, and counted as shed: an open loop must not grow without bound. */
const MAX_IN_FLIGHT = 2_000;
const CUSTOMERS = 20;

interface Sample {
  ms: number;
  restarting: boolean;
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { rate: { type: 'string', default: '2000' }, 'single-share': { type: 'string', default: '0.25' }, batch: { type: 'string', default: '10' }, steady: { type: 'string', default: '10' } },
  });
  const rate = Number(values.rate);
  const singleShare = Number(values['single-share']);
  const batchSize = Number(values.batch);
  const steadyS = Number(values.steady);
  if (!(rate > 0) || !(singleShare >= 0 && singleShare <= 1) || !Number.isInteger(batchSize) || batchSize < 2 || batchSize > 1000 || !(steadyS > 0)) {
    throw new Error('--rate > 0, --single-share in [0, 1], --batch an integer 2..1000, --steady > 0');
  }
  console.log(`rolling-restart bench — ${machine()}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} at the start`);
  console.log(`offered: ${fmt(rate)} events/s, ${Math.round(singleShare * 100)} % as single events, the rest in batches of ${batchSize}`);

  const db = await benchDatabase();
  const apiKey = `md_bench_roll_${randomBytes(24).toString('base64url')}`;
  const prisma = createPrisma(db.connectionString);
  const plan = await prisma.plan.findUniqueOrThrow({ where: { code: 'essential' } });
  for (let i = 0; i < CUSTOMERS; i++) {
    const c = await prisma.customer.create({ data: { externalId: `roll-${i}`, processor: 'stripe', processorCustomerId: `cus_roll_${i}` } });
    await prisma.subscription.create({
      data: {
        customerId: c.id,
        planId: plan.id,
        processor: 'stripe',
        processorSubscriptionId: `sub_roll_${i}`,
        currentPeriodStart: new Date(Date.now() - 86_400_000),
        currentPeriodEnd: new Date(Date.now() + 86_400_000),
      },
    });
  }
  await prisma.$disconnect();

  const ports = [await freePort(), await freePort()];
  const sessionSecret = randomBytes(32).toString('hex');
  const startWeb = (port: number) => startWebBehindProxy({ connectionString: db.connectionString, port, apiKey, sessionSecret });
  const webs: CliProcess[] = await Promise.all(ports.map(startWeb));
  const everyWeb = [...webs];
  const proxy = await startRoundRobinProxy(ports.map((p) => `http://127.0.0.1:${p}`));
  while (proxy.ready().length < 2) await sleep(25);

  const accepted: string[] = [];
  const problems: string[] = [];
  const samples: Sample[] = [];
  let offered = 0;
  let shed = 0;
  let resets = 0;
  let serverErrors = 0;
  let otherAnswers = 0;
  let inFlight = 0;
  let restarting = false;
  let seq = 0;

  const send = async (events: Array<Record<string, unknown>>, single: boolean) => {
    const at = performance.now();
    const during = restarting;
    inFlight++;
    try {
      const res = await fetch(`${proxy.url}/api/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(single ? events[0] : { events }),
        signal: AbortSignal.timeout(30_000),
      });
      const body = (await res.json()) as { results?: Array<{ result: string; identifier: string }> };
      samples.push({ ms: performance.now() - at, restarting: during || restarting });
      if (res.status >= 500) {
        serverErrors++;
        if (problems.length < 10) problems.push(`${res.status} ${JSON.stringify(body).slice(0, 200)}`);
      } else if (single && res.status === 202) accepted.push(events[0]!.identifier as string);
      else if (!single && res.status === 200) {
        for (const r of body.results ?? []) {
          if (r.result === 'accepted') accepted.push(r.identifier);
          else otherAnswers++;
        }
      } else {
        otherAnswers++;
        if (problems.length < 10) problems.push(`${res.status} ${JSON.stringify(body).slice(0, 200)}`);
      }
    } catch (error) {
      resets++;
      if (problems.length < 10) problems.push(`${(error as Error).message}: ${String((error as { cause?: unknown }).cause)}`);
    } finally {
      inFlight--;
    }
  };
  const event = () => {
    const n = seq++;
    return { customer: `roll-${n % CUSTOMERS}`, event_name: 'ai_tokens', value: 1 + (n % 97), identifier: `roll-${n}` };
  };

  // The open loop: on every tick, the events due by now go out, whatever is still unanswered.
  const started = performance.now();
  const pending: Array<Promise<void>> = [];
  let singles = 0;
  const clock = setInterval(() => {
    const due = Math.floor(((performance.now() - started) / 1000) * rate) - offered - shed;
    for (let left = due; left > 0; ) {
      // `single-share` of the events go singly, the rest in batches.
      const single = singles < singleShare * (offered + shed + 1);
      if (single) singles++;
      const n = single ? 1 : Math.min(batchSize, Math.max(left, 1));
      left -= n;
      if (inFlight >= MAX_IN_FLIGHT) {
        shed += n;
        continue;
      }
      offered += n;
      const p = send(Array.from({ length: n }, event), single);
      pending.push(p);
    }
  }, TICK_MS);

  const restarts: Array<{ slot: number; drainMs: number; exit: number | null; replaceMs: number }> = [];
  try {
    await sleep(5_000); // steady before the first restart
    for (const slot of [0, 1]) {
      restarting = true;
      const old = webs[slot]!;
      const t0 = performance.now();
      old.child.kill('SIGTERM');
      const exit = await old.exited;
      const drainMs = performance.now() - t0;
      const t1 = performance.now();
      webs[slot] = await startWeb(ports[slot]!);
      everyWeb.push(webs[slot]!);
      const upstream = `127.0.0.1:${ports[slot]}`;
      while (!proxy.ready().includes(upstream)) await sleep(25);
      restarts.push({ slot, drainMs, exit, replaceMs: performance.now() - t1 });
      restarting = false;
      await sleep(2_000); // the replacement serves its share before the next one goes
    }
    await sleep(steadyS * 1000);
  } finally {
    clearInterval(clock);
  }
  const elapsedS = (performance.now() - started) / 1000;
  await Promise.all(pending);
  const stats = proxy.stats();
  await proxy.close();
  await Promise.all(webs.map((w) => w.stop()));

  const client = new pg.Client({ connectionString: db.connectionString });
  await client.connect();
  let lost: string[];
  let storedTotal: number;
  try {
    const { rows } = await client.query<{ identifier: string }>('SELECT identifier FROM meter_events WHERE identifier = ANY($1)', [accepted]);
    const stored = new Set(rows.map((r) => r.identifier));
    lost = accepted.filter((id) => !stored.has(id));
    storedTotal = Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM meter_events')).rows[0]!.n);
  } finally {
    await client.end();
  }
  await db.stop();

  const lat = (during: boolean) => samples.filter((s) => s.restarting === during).map((s) => s.ms).sort((a, b) => a - b);
  const steady = lat(false);
  const inRestart = lat(true);
  const row = (name: string, xs: number[]) =>
    `| ${name} | ${fmt(xs.length)} | ${fmt(percentile(xs, 50), 1)} | ${fmt(percentile(xs, 99), 1)} | ${fmt(xs.at(-1) ?? NaN, 1)} |`;
  console.log('');
  console.log(`| ran | offered | offered/s | accepted | stored in the ledger | lost | connection resets | 5xx | other answers | shed (over ${MAX_IN_FLIGHT} in flight) |`);
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  console.log(
    `| ${fmt(elapsedS, 1)} s | ${fmt(offered)} | ${fmt(offered / elapsedS)} | ${fmt(accepted.length)} | ${fmt(storedTotal)} | ${fmt(lost.length)} | ${fmt(resets)} | ${fmt(serverErrors)} | ${fmt(otherAnswers)} | ${fmt(shed)} |`,
  );
  console.log('');
  console.log('| requests | answered | p50 ms | p99 ms | max ms |');
  console.log('|---|---|---|---|---|');
  console.log(row('steady', steady));
  console.log(row('while a process restarts', inRestart));
  console.log('');
  for (const r of restarts) {
    console.log(`web-${r.slot + 1}: SIGTERM to exit ${fmt(r.drainMs)} ms (exit ${r.exit}), replacement started and ready in ${fmt(r.replaceMs)} ms`);
  }
  console.log(`proxy: ${fmt(stats.requests)} requests, connects refused and sent to the other process ${fmt(stats.connectRetries)}, failed ${fmt(stats.failed)}`);
  for (const p of problems) console.log(`  problem: ${p}`);
  const errors = everyWeb.flatMap((w) => logLines(w.output()).filter((l) => l.level === 'error'));
  for (const e of errors.slice(0, 5)) console.log(`  web error: ${JSON.stringify(e).slice(0, 300)}`);
  const met = lost.length === 0 && resets === 0 && serverErrors === 0 && shed === 0 && offered / elapsedS >= rate * 0.98;
  console.log(`target (${fmt(rate)} events/s offered: 0 lost, 0 connection resets, 0 5xx): ${met ? 'met' : 'missed'}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
