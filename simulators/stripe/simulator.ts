// A loopback HTTP server speaking Stripe's wire format for Billing Meters (v1 meter events, v2 meter event
// sessions/streams, adjustments, event summaries), customers, meters, thin/snapshot webhooks, with scriptable
// faults. The real `stripe` SDK talks to it: `new Stripe('sk_test_...', { host, port, protocol: 'http' })`. A
// non-default `host` also redirects the SDK's v2 meter event stream (normally meter-events.stripe.com) to the same
// server, because stripe-node's resolveBaseAddress returns the instance host for every api base once it is overridden.
//
// Rooms: ./api.ts (what each endpoint answers), ./meter-events.ts (meters, meter events, validation and the
// documented error codes), ./objects.ts (object shapes), ./webhooks.ts (envelopes, thin notifications, signing),
// ./server.ts (authentication, limits, idempotency, faults, error reports, delivery, control API), ./wire.ts (errors).
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { argValue, stopOnSignals } from '../kit/server';
import { Simulator } from './server';
import type { StripeSimulator, StripeSimulatorOptions } from './types';

export type { FaultKind, FaultMatch, FaultRule } from './faults';
export { FAULT_KINDS } from './faults';
export type { MeterErrorCode, MeterEventAdjustmentRecord, MeterEventStatus, MeterOptions, RecordedMeterEvent } from './meter-events';
export { METER_ERROR_CODES } from './meter-events';
export type * from './types';
export type { SimulatedEvent, ThinEventNotification, WebhookDelivery } from './webhooks';
export { SIMULATOR_API_VERSION, signatureHeader } from './webhooks';

/** Any `sk_test_*` key is accepted; this one is what the zero-setup demo uses. */
export const SIMULATOR_SECRET_KEY = 'sk_test_meterdesk_simulator';

export async function startStripeSimulator(opts: StripeSimulatorOptions = {}): Promise<StripeSimulator> {
  const sim = new Simulator(opts);
  await sim.listen();
  return sim;
}

// Out-of-process use: `npx tsx simulators/stripe/simulator.ts --port 12111 --webhook-url http://...` prints one JSON
// line {url, webhookSecret, secretKey} and runs until SIGINT/SIGTERM (`npm run cli -- simulator stripe` does the same).
const entry = process.argv[1];
if (entry && import.meta.url === pathToFileURL(resolvePath(entry)).href) {
  const args = process.argv.slice(2);
  const options: StripeSimulatorOptions = {};
  if (argValue(args, 'port')) options.port = Number(argValue(args, 'port'));
  if (argValue(args, 'host')) options.host = argValue(args, 'host')!;
  if (argValue(args, 'webhook-url')) options.webhookUrl = argValue(args, 'webhook-url')!;
  if (argValue(args, 'webhook-secret')) options.webhookSecret = argValue(args, 'webhook-secret')!;
  if (argValue(args, 'seed')) options.seed = Number(argValue(args, 'seed'));
  const sim = await startStripeSimulator(options);
  process.stdout.write(`${JSON.stringify({ url: sim.url, webhookSecret: sim.webhookSecret, secretKey: SIMULATOR_SECRET_KEY })}\n`);
  stopOnSignals(() => sim.stop());
}
