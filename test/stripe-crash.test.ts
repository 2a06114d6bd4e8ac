// Invariants 1 and 2 under SIGKILL: 20,000 events reported by several worker processes (v1 and v2 mixed) that
// are killed at random points and replaced, against the Stripe simulator running in its own process. Every event
// must end reported (or failed with a reason), and the simulator must have counted each identifier exactly once.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { seedBase } from '../app/seed/base';
import type { Services } from '../app/server/services';
import type { TestDatabase } from './support/database';
import { seededRandom } from '../simulators/kit/faults';
import { waitForLine } from './support/process-output';
import { closeTestServices, openTestServices } from './support/services';

const EVENTS = 20_000;
const CUSTOMERS = 200;
const KILLS = 8;

let db: TestDatabase;
let services: Services;
let simulator: ChildProcess;
let simUrl: string;
const workers = new Set<ChildProcess>();
/** Workers that said `ready` and have not exited: the kill victims. */
const ready = new Set<ChildProcess>();
// Deterministic kill schedule per run order (mulberry32), so a failure is easier to reason about.
const random = seededRandom(0x5eed);


async function startWorkerProcess(api: 'v1' | 'v2'): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'test/support/stripe-worker.ts', '--database-url', db.connectionString, '--stripe-base', simUrl, '--api', api],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  workers.add(child);
  child.once('exit', () => {
    workers.delete(child);
    ready.delete(child);
  });
  await waitForLine(child, /^ready /, `worker (${api})`);
  ready.add(child);
  return child;
}

function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

async function control(path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${simUrl}/__simulator/${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`simulator ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

const pendingCount = async () =>
  Number((await services.pool.query<{ n: string }>(`SELECT count(*) AS n FROM meter_events WHERE status = 'pending'`)).rows[0]!.n);

beforeAll(async () => {
  ({ db, services } = await openTestServices());
  await seedBase(services.prisma);

  simulator = spawn(process.execPath, ['--import', 'tsx', 'app/cli/main.ts', 'simulator', 'stripe', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const line = await waitForLine(simulator, /^\{.*"url"/, 'simulator');
  simUrl = (JSON.parse(line) as { url: string }).url;
  // Slow enough that the run lasts several seconds (so kills land mid-flight), and a v1 limit above one worker's
  // pace but below three: a few bucket 429s exercise the backoff too.
  await control('config', { v1_rate_per_second: 3000, v2_events_per_second: 4000, latency_ms: 3 });
  await control('meters', { event_name: 'ai_tokens' });

  await services.prisma.customer.createMany({
    data: Array.from({ length: CUSTOMERS }, (_, i) => ({ externalId: `crash-${i}`, processor: 'stripe' as const, processorCustomerId: `cus_crash_${i}` })),
  });
  await Promise.all(Array.from({ length: CUSTOMERS }, (_, i) => control('customers', { id: `cus_crash_${i}` })));
}, 60_000);

afterAll(async () => {
  await Promise.all([...workers].map((w) => kill(w, 'SIGKILL')));
  if (simulator) await kill(simulator, 'SIGTERM');
  await closeTestServices(db, services);
});

it('reports 20,000 events exactly once while worker processes are SIGKILLed and restarted', async () => {
  const values = new Map<string, number>();
  for (let b = 0; b < EVENTS / 1000; b++) {
    const batch = Array.from({ length: 1000 }, (_, k) => {
      const i = b * 1000 + k;
      const value = 1 + (i % 97);
      values.set(`crash-evt-${i}`, value);
      return { customer: `crash-${i % CUSTOMERS}`, eventName: 'ai_tokens', value, identifier: `crash-evt-${i}` };
    });
    const results = await services.ledger.reportUsageBatch(batch);
    expect(results.every((r) => r.result === 'accepted')).toBe(true);
  }

  const apis: Array<'v1' | 'v2'> = ['v1', 'v2', 'v1'];
  let next = 0;
  await Promise.all(apis.map((api) => startWorkerProcess(api)));
  let kills = 0;
  const starting: Array<Promise<ChildProcess>> = [];
  while (kills < KILLS && (await pendingCount()) > 0) {
    await new Promise((r) => setTimeout(r, 200 + random() * 600));
    const live = [...ready];
    const victim = live[Math.floor(random() * live.length)];
    if (!victim) continue;
    await kill(victim, 'SIGKILL');
    kills++;
    // The replacement starts in the background: kills go on while it boots.
    starting.push(startWorkerProcess(apis[next++ % apis.length]!));
  }
  await Promise.all(starting);

  const deadline = Date.now() + 60_000;
  while ((await pendingCount()) > 0) {
    if (Date.now() > deadline) throw new Error(`still ${await pendingCount()} pending after the kills`);
    await new Promise((r) => setTimeout(r, 250));
  }
  await Promise.all([...workers].map((w) => kill(w, 'SIGTERM')));

  const { rows } = await services.pool.query<{ identifier: string; status: string; last_error_code: string | null }>(
    `SELECT identifier, status::text, last_error_code FROM meter_events`,
  );
  expect(rows).toHaveLength(EVENTS);
  const unexplained = rows.filter((r) => r.status !== 'reported' && !(r.status === 'failed' && r.last_error_code));
  expect(unexplained).toEqual([]);
  const reported = rows.filter((r) => r.status === 'reported');
  expect(reported.length).toBe(EVENTS);

  const sim = (await control('meter_events?status=accepted')) as { counts: Record<string, number>; data: Array<{ identifier: string; value: number }> };
  const wrong = rows.filter((r) => sim.counts[r.identifier] !== 1).map((r) => `${r.identifier}=${sim.counts[r.identifier] ?? 0}`);
  expect(wrong.slice(0, 10)).toEqual([]);
  expect(Object.keys(sim.counts)).toHaveLength(EVENTS);
  // Each identifier's value, exactly once.
  const valueMismatch = sim.data.filter((e) => values.get(e.identifier) !== e.value);
  expect(valueMismatch).toEqual([]);

  // The kills really hit work in progress: the reconciler had abandoned claims or lost jobs to recover.
  const recovered = Number(
    (await services.pool.query<{ n: string }>(`SELECT count(*) AS n FROM event_attempts WHERE outcome = 'duplicate' OR outcome = 'ambiguous'`)).rows[0]!.n,
  );
  const stats = (await control('stats')) as { duplicateIdentifiers: number; idempotentReplays: number; rateLimited: number };
  console.log(`[crash] ${kills} SIGKILLs; ${recovered} duplicate/ambiguous attempts; simulator: ${stats.duplicateIdentifiers} duplicate identifiers, ${stats.idempotentReplays} idempotent replays, ${stats.rateLimited} 429s`);
  const retried = Number((await services.pool.query<{ n: string }>(`SELECT count(*) AS n FROM meter_events WHERE attempts > 1`)).rows[0]!.n);
  console.log(`[crash] ${retried} events needed more than one attempt`);
  expect(kills).toBe(KILLS);
}, 150_000);
