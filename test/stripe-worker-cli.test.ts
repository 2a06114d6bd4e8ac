// The production wiring end to end: `npm run cli -- worker` (app/cli/run.ts reading STRIPE_API_BASE and
// STRIPE_METER_API) reports ledger events to a Stripe-compatible base URL, and stops cleanly on SIGTERM.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SIMULATOR_SECRET_KEY, startStripeSimulator, type StripeSimulator } from '../simulators/stripe/simulator';
import { seedBase } from '../app/seed/base';
import { useTestServices } from './support/services';

const t = useTestServices();
let sim: StripeSimulator;

beforeAll(async () => {
  await seedBase(t.services.prisma);
  await t.services.prisma.customer.create({ data: { externalId: 'cli', processor: 'stripe', processorCustomerId: 'cus_cli' } });
  sim = await startStripeSimulator();
  sim.addCustomer('cus_cli');
  sim.addMeter('ai_tokens');
});
afterAll(async () => {
  await sim?.stop();
});

it('reports through the v2 stream with the key and base URL from the environment', async () => {
  await t.services.ledger.reportUsageBatch(Array.from({ length: 250 }, (_, i) => ({ customer: 'cli', eventName: 'ai_tokens', value: 2, identifier: `cli-${i}` })));
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/cli/main.ts', 'worker'], {
    env: {
      ...process.env,
      DATABASE_URL: t.db.connectionString,
      STRIPE_SECRET_KEY: SIMULATOR_SECRET_KEY,
      STRIPE_API_BASE: sim.url,
      STRIPE_METER_API: 'v2',
      NODE_ENV: 'production',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { rows } = await t.services.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM meter_events WHERE status = 'reported'`);
      if (rows[0]!.n === 250) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`worker did not report the events:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
  expect(sim.usageTotal('cus_cli', 'ai_tokens')).toBe(500);
  expect(sim.meterEvents().every((e) => e.api === 'v2_stream')).toBe(true);
  expect(output).not.toMatch(/Stripe\s+simulator in this process/);
}, 60_000);
