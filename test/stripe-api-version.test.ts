// The Stripe API version is pinned in one place (app/billing/processors/stripe/api-version.ts). These checks fail
// on an SDK upgrade that moves its pinned version, on a simulator that speaks another one, on a client built
// without the pin, and on a README that states another.
import { readFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { STRIPE_API_VERSION } from '../app/billing/processors/stripe/api-version';
import { stripeClientConfig, StripeProcessor } from '../app/billing/processors/stripe/processor';
import { SIMULATOR_API_VERSION, SIMULATOR_SECRET_KEY, startStripeSimulator, type StripeSimulator } from '../simulators/stripe/simulator';

let sim: StripeSimulator;
/** A loopback hop in front of the simulator that notes the Stripe-Version of every request passing through. */
let hop: Server;
let hopUrl: string;
const seen: string[] = [];

beforeAll(async () => {
  sim = await startStripeSimulator();
  const target = new URL(sim.url);
  hop = createServer((req, res) => {
    seen.push(`${req.method} ${req.url?.split('?')[0]} ${String(req.headers['stripe-version'])}`);
    const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((r) => hop.listen(0, '127.0.0.1', r));
  hopUrl = `http://127.0.0.1:${(hop.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => hop?.close(r));
  await sim?.stop();
});

it('equals the version the installed stripe SDK is generated for, and the simulator speaks it', () => {
  expect(STRIPE_API_VERSION).toBe(Stripe.API_VERSION);
  expect(SIMULATOR_API_VERSION).toBe(STRIPE_API_VERSION);
});

it('every client Meterdesk builds sends it as Stripe-Version', async () => {
  for (const base of [sim.url, undefined]) expect(stripeClientConfig(base).apiVersion).toBe(STRIPE_API_VERSION);
  // On the wire: a client from stripeClientConfig, and the reporter's own clients (v1; v2 session and stream).
  const client = new Stripe(SIMULATOR_SECRET_KEY, { ...stripeClientConfig(hopUrl), maxNetworkRetries: 0 });
  await client.billing.meters.list();
  sim.addCustomer('cus_pin');
  sim.addMeter('pinned');
  const event = { eventName: 'pinned', processorCustomerId: 'cus_pin', value: 1, occurredAt: new Date() };
  for (const api of ['v1', 'v2'] as const) {
    const processor = new StripeProcessor({ secretKey: SIMULATOR_SECRET_KEY, apiBase: hopUrl, api });
    const outcomes = await processor.reportMeterEvents([{ ...event, id: `e-${api}`, identifier: `pin-${api}` }]);
    expect(outcomes.map((o) => o.outcome)).toEqual(['reported']);
    await processor.close();
  }
  expect(seen).toEqual([
    `GET /v1/billing/meters ${STRIPE_API_VERSION}`,
    `POST /v1/billing/meter_events ${STRIPE_API_VERSION}`,
    `POST /v2/billing/meter_event_session ${STRIPE_API_VERSION}`,
    `POST /v2/billing/meter_event_stream ${STRIPE_API_VERSION}`,
  ]);
});

it('the README states it', async () => {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
  expect(readme).toContain(`Stripe API version \`${STRIPE_API_VERSION}\``);
});
