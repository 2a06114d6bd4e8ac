// An accepted event survives the web process being SIGKILLed right after it answered: the answer is sent only
// after the commit. The web process is the real CLI (`web`) in a child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import pg from 'pg';
import { createApiKey } from '../../app/billing/access/api-keys';
import { createPrisma } from '../../app/db/clients';
import { seedBase } from '../../app/seed/base';
import { createTestDatabase } from '../support/database';
import { startedUrl } from '../support/process-output';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let key: string;

beforeAll(async () => {
  db = await createTestDatabase();
  const prisma = createPrisma(db.connectionString);
  await seedBase(prisma);
  key = (await createApiKey(prisma, { name: 'crash' })).key;
  const plan = await prisma.plan.findUniqueOrThrow({ where: { code: 'essential' } });
  const c = await prisma.customer.create({ data: { externalId: 'acme', processor: 'stripe', processorCustomerId: 'cus_acme' } });
  await prisma.subscription.create({
    data: { customerId: c.id, planId: plan.id, processor: 'stripe', processorSubscriptionId: 'sub_acme', currentPeriodStart: new Date(Date.now() - 86_400_000), currentPeriodEnd: new Date(Date.now() + 86_400_000) },
  });
  await prisma.$disconnect();
});
afterAll(() => db?.drop());

function startWeb(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/cli/main.ts', 'web'], {
    env: { ...process.env, DATABASE_URL: db.connectionString, PORT: '0', HOST: '127.0.0.1', NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`web did not start:\n${out}`)), 60_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const url = startedUrl(out);
      if (url) {
        clearTimeout(timer);
        resolve({ child, url });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`web exited with ${code}:\n${out}`)));
  });
}

it('keeps every event it acknowledged when killed with SIGKILL under load', async () => {
  const { child, url } = await startWeb();
  const acknowledged: string[] = [];
  let stop = false;
  const send = async (worker: number) => {
    for (let i = 0; !stop; i++) {
      const identifier = `crash-${worker}-${i}`;
      try {
        const res = await fetch(`${url}/api/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
          body: JSON.stringify({ customer: 'acme', event_name: 'ai_tokens', value: 1, identifier }),
        });
        if (res.status === 202) acknowledged.push(identifier);
        else expect(res.status).toBe(202);
      } catch {
        return; // the connection died with the process
      }
    }
  };
  const senders = Array.from({ length: 16 }, (_, w) => send(w));
  while (acknowledged.length < 300) await new Promise((r) => setTimeout(r, 5));
  child.kill('SIGKILL');
  stop = true;
  await Promise.all(senders);
  await new Promise((r) => child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r));

  const client = new pg.Client({ connectionString: db.connectionString });
  await client.connect();
  const { rows } = await client.query<{ identifier: string }>('SELECT identifier FROM meter_events WHERE identifier = ANY($1)', [acknowledged]);
  await client.end();
  expect(acknowledged.length).toBeGreaterThanOrEqual(300);
  expect(rows.length).toBe(acknowledged.length);
}, 120_000);
