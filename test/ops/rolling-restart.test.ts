// A rolling restart under load: two real web processes (`web`, as the image runs it) behind a round-robin proxy that
// follows /readyz, steady event traffic over HTTP with an API key, and each process in turn sent SIGTERM and replaced
// on its port. Every accepted event (2xx) is in the ledger afterwards, no request sees a connection reset, and none
// gets a 5xx (ADR 020).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import pg from 'pg';
import { prepareDatabase } from '../../app/seed/prepare';
import { createPrisma } from '../../app/db/clients';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { freePort } from '../support/free-port';
import { logLines, startWebBehindProxy, type CliProcess } from '../support/process-output';
import { startRoundRobinProxy, type RoundRobinProxy } from '../support/round-robin-proxy';

let db: TestDatabase;
const apiKey = `md_rolling_${randomBytes(24).toString('base64url')}`;
const sessionSecret = randomBytes(32).toString('hex');

beforeAll(async () => {
  db = await createTestDatabase();
  const prisma = createPrisma(db.connectionString);
  // What `migrate` does before the processes start (compose's one-shot), as they run with MIGRATE_ON_START=false.
  await prepareDatabase(db.connectionString);
  const plan = await prisma.plan.findUniqueOrThrow({ where: { code: 'essential' } });
  const c = await prisma.customer.create({ data: { externalId: 'acme', processor: 'stripe', processorCustomerId: 'cus_acme' } });
  await prisma.subscription.create({
    data: {
      customerId: c.id,
      planId: plan.id,
      processor: 'stripe',
      processorSubscriptionId: 'sub_acme',
      currentPeriodStart: new Date(Date.now() - 86_400_000),
      currentPeriodEnd: new Date(Date.now() + 86_400_000),
    },
  });
  await prisma.$disconnect();
});
afterAll(() => db?.drop());

async function until(what: string, check: () => boolean, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const startWeb = (port: number) => startWebBehindProxy({ connectionString: db.connectionString, port, apiKey, sessionSecret });

it('loses no accepted event and gives no reset and no 5xx across a rolling restart of two web processes', async () => {
  const ports = [await freePort(), await freePort()];
  const webs: CliProcess[] = await Promise.all(ports.map(startWeb));
  const everyWeb = [...webs];
  const proxy: RoundRobinProxy = await startRoundRobinProxy(ports.map((p) => `http://127.0.0.1:${p}`));
  const accepted: string[] = [];
  const problems: string[] = [];
  let resets = 0;
  let serverErrors = 0;
  let sent = 0;
  let stop = false;
  let senders: Array<Promise<void>> = [];
  try {
    await until('both upstreams ready', () => proxy.ready().length === 2);

    // Eight senders, each a single event or a batch of ten at a time, paced to a few hundred events a second.
    const sender = async (n: number) => {
      for (let i = 0; !stop; i++) {
        const batch = i % 4 === 3;
        const ids = Array.from({ length: batch ? 10 : 1 }, (_, k) => `roll-${n}-${i}-${k}`);
        const events = ids.map((identifier) => ({ customer: 'acme', event_name: 'ai_tokens', value: 1, identifier }));
        sent += ids.length;
        try {
          const res = await fetch(`${proxy.url}/api/v1/events`, {
            method: 'POST',
            headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
            body: JSON.stringify(batch ? { events } : events[0]),
            signal: AbortSignal.timeout(30_000),
          });
          const body = (await res.json()) as { results?: Array<{ result: string; identifier: string }> };
          if (res.status >= 500) {
            serverErrors++;
            problems.push(`${res.status} ${JSON.stringify(body)}`);
          } else if (batch && res.status === 200) {
            for (const r of body.results ?? []) if (r.result === 'accepted') accepted.push(r.identifier);
          } else if (!batch && res.status === 202) accepted.push(ids[0]!);
          else problems.push(`${res.status} ${JSON.stringify(body)}`);
        } catch (error) {
          resets++;
          problems.push(`${(error as Error).message}: ${String((error as { cause?: unknown }).cause)}`);
        }
        await new Promise((r) => setTimeout(r, 15));
      }
    };
    senders = Array.from({ length: 8 }, (_, n) => sender(n));

    await until('traffic to flow', () => accepted.length >= 500);
    for (const slot of [0, 1]) {
      const before = proxy.stats().served;
      const old = webs[slot]!;
      old.child.kill('SIGTERM');
      expect(await old.exited, old.output()).toBe(0);
      expect(old.output()).toContain('"msg":"stopped"');
      webs[slot] = await startWeb(ports[slot]!);
      everyWeb.push(webs[slot]!);
      const upstream = `127.0.0.1:${ports[slot]}`;
      await until(`the new process on ${upstream} to be ready`, () => proxy.ready().includes(upstream));
      // The replacement serves its share before the next one goes.
      await until(`the new process on ${upstream} to serve`, () => (proxy.stats().served[upstream] ?? 0) > (before[upstream] ?? 0) + 200);
    }
    const total = accepted.length;
    await until('more traffic after the restarts', () => accepted.length >= total + 300);
  } finally {
    stop = true;
  }
  await Promise.all(senders);
  await proxy.close();
  await Promise.all(webs.map((w) => w.stop()));

  // What the processes logged as errors, to say why when a request failed.
  const errors = everyWeb.flatMap((w) => logLines(w.output()).filter((l) => l.level === 'error'));
  expect(problems.slice(0, 10), JSON.stringify(errors.slice(0, 5))).toEqual([]);
  expect(resets).toBe(0);
  expect(serverErrors).toBe(0);
  expect(proxy.stats().failed).toBe(0);
  expect(accepted.length).toBeGreaterThan(1000);
  expect(sent).toBeGreaterThanOrEqual(accepted.length);

  const client = new pg.Client({ connectionString: db.connectionString });
  await client.connect();
  try {
    const { rows } = await client.query<{ identifier: string }>('SELECT identifier FROM meter_events WHERE identifier = ANY($1)', [accepted]);
    const stored = new Set(rows.map((r) => r.identifier));
    expect(accepted.filter((id) => !stored.has(id))).toEqual([]);
    expect(stored.size).toBe(accepted.length);
  } finally {
    await client.end();
  }
}, 300_000);
