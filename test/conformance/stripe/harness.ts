// Runs stripe-node's own published specs against the Stripe simulator through the real SDK (the CommonJS build, so
// that the error classes the specs import are the ones the SDK throws):
// - test/Webhook.spec.ts: every header the spec signs as Stripe would (`generateTestHeaderString` without a forced
//   signature, scheme or crypto provider) is signed by the simulator's signer instead; a case is about the
//   simulator when it verified at least one such header.
// - test/generated_examples_test.spec.js: every client the spec builds (stripe-mock's, the nock-backed "real" one,
//   and the canned-response mocks) talks to the simulator through a recording hop; a case is about the simulator
//   when every request it made is one the simulator serves. The answer's shape is compared with the canned response
//   the spec carries, and with Stripe's fixtures3.json for the objects stripe-mock would have answered.
import { createServer, request, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { SIMULATOR_SECRET_KEY, signatureHeader, startStripeSimulator, type StripeSimulator } from '../../../simulators/stripe/simulator';
import { collectPeerSpec, runPeerCases, type PeerCase, type PeerOutcome } from '../peer-runner';
import { shapeDifferences } from '../shapes';

const require = createRequire(import.meta.url);
export const PEER_ROOT = new URL('../../../../shared/reference/peer-suites/', import.meta.url).pathname;
export const WEBHOOK_SPEC = join(PEER_ROOT, 'stripe-node/test/Webhook.spec.ts');
export const GENERATED_SPEC = join(PEER_ROOT, 'stripe-node/test/generated_examples_test.spec.js');
export const FIXTURES = join(PEER_ROOT, 'stripe-openapi/fixtures3.json');

// The SDK's CommonJS build, and its modules the specs name by their source path.
const StripeCjs = require('stripe') as StripeFactory;
const sdkDir = dirname(require.resolve('stripe'));
const sdkErrors = require(join(sdkDir, 'Error.js')) as Record<string, unknown>;
const sdkCryptoProvider = require(join(sdkDir, 'crypto/CryptoProvider.js')) as { CryptoProvider: new () => object } & Record<string, unknown>;
const sdkShared = require(join(sdkDir, 'shared.js')) as Record<string, unknown>;

type StripeClient = Record<string, any>;
type StripeFactory = ((key: string, config?: Record<string, unknown>) => StripeClient) & { webhooks: Record<string, any> };

export interface CaseResult extends PeerOutcome {
  file: string;
  /** Webhook spec: headers signed by the simulator that the case verified; generated examples: requests it made. */
  evidence: string[];
  /** Whether the case exercised the simulator (see the header comment); cases that did not are out of scope. */
  touchesSimulator: boolean;
}

// ───────────────────────────── chai as the specs use it ─────────────────────────────

async function chaiWithPromises(): Promise<unknown> {
  const chai = (await import('chai')) as { use: (plugin: unknown) => unknown };
  // @ts-expect-error chai-as-promised 8 ships no types (only @types/chai-as-promised, for chai 4).
  const chaiAsPromised = (await import('chai-as-promised')).default as unknown;
  return chai.use(chaiAsPromised);
}

// ───────────────────────────── Webhook.spec.ts ─────────────────────────────

/** The SDK's webhooks object with Stripe's side of the exchange (signing) done by the simulator. */
function simulatorSignedWebhooks(original: Record<string, any>, signed: string[]): Record<string, any> {
  const bySimulator = (opts: Record<string, any> | undefined) => {
    if (!opts || opts.signature !== undefined || (opts.scheme !== undefined && opts.scheme !== 'v1') || opts.cryptoProvider) return undefined;
    const timestamp = opts.timestamp ?? Math.floor(Date.now() / 1000);
    const header = signatureHeader(opts.payload, opts.secret, timestamp);
    signed.push(header);
    return header;
  };
  const webhooks = Object.create(original) as Record<string, any>;
  webhooks.generateTestHeaderString = (opts?: Record<string, any>) => bySimulator(opts) ?? original.generateTestHeaderString(opts);
  webhooks.generateTestHeaderStringAsync = async (opts?: Record<string, any>) => bySimulator(opts) ?? original.generateTestHeaderStringAsync(opts);
  return webhooks;
}

/**
 * `signer: 'simulator'` is the conformance run; `'sdk'` runs the same cases with the SDK's own test signer, the
 * baseline that tells a simulator deviation (fails only with the simulator's headers) from a difference between
 * the spec's commit and the installed SDK (fails with both).
 */
export async function runWebhookSpec(signer: 'simulator' | 'sdk' = 'simulator'): Promise<CaseResult[]> {
  const signed: string[] = [];
  const chai = await chaiWithPromises();
  class FakeCryptoProvider extends sdkCryptoProvider.CryptoProvider {
    computeHMACSignature(): string {
      return 'fake signature';
    }
    computeHMACSignatureAsync(): Promise<string> {
      return Promise.resolve('fake signature');
    }
    computeSHA256Async(): Promise<Uint8Array> {
      return Promise.resolve(new Uint8Array(32));
    }
  }
  const withSignedWebhooks = <T extends object>(target: T): T =>
    signer === 'sdk' ? target : new Proxy(target, { get: (t, p, r) => (p === 'webhooks' ? simulatorSignedWebhooks(Reflect.get(t, p, r) as Record<string, any>, signed) : Reflect.get(t, p, r)) });
  const modules = {
    chai,
    '../src/Error.js': sdkErrors,
    '../src/crypto/CryptoProvider.js': sdkCryptoProvider,
    '../src/stripe.cjs.node.js': withSignedWebhooks(StripeCjs),
    './testUtils.js': { FakeCryptoProvider, getSpyableStripe: () => withSignedWebhooks(StripeCjs('sk_test_spyable')) },
  };
  const cases = collectPeerSpec(WEBHOOK_SPEC, modules);
  const evidence = new Map<string, string[]>();
  const outcomes = await runPeerCases(cases, {
    around: async (c, body) => {
      signed.length = 0;
      try {
        await body();
      } finally {
        evidence.set(c.id, [...signed]);
      }
    },
  });
  return outcomes.map((o) => {
    const headers = evidence.get(o.id) ?? [];
    return { ...o, file: 'stripe-node/test/Webhook.spec.ts', evidence: headers.map((h) => h.replace(/v1=[0-9a-f]+/, 'v1=…')), touchesSimulator: headers.length > 0 };
  });
}

// ───────────────────────────── generated_examples_test.spec.js ─────────────────────────────

interface Exchange {
  method: string;
  path: string;
  status: number;
  body: string;
}

/** A loopback hop in front of the simulator that keeps every request and answer passing through. */
async function recordingHop(target: string): Promise<{ url: string; exchanges: Exchange[]; close: () => Promise<void> }> {
  const upstream = new URL(target);
  const exchanges: Exchange[] = [];
  const server: Server = createServer((req, res) => {
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
      up.on('end', () => {
        const body = Buffer.concat(chunks);
        exchanges.push({ method: req.method ?? 'GET', path: (req.url ?? '').split('?')[0] ?? '', status: up.statusCode ?? 0, body: body.toString('utf8') });
        res.writeHead(up.statusCode ?? 502, up.headers);
        res.end(body);
      });
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, exchanges, close: () => new Promise((r) => server.close(() => r())) };
}

/** What stripe-mock would hold for the spec's fixed ids and names, seeded into the simulator before each case. */
function seed(sim: StripeSimulator): void {
  sim.addCustomer('cus_xxxxxxxxxxxxx');
  // test_v2_billing_meter_event_post / _stream_post send event_name "event_name" with payload {key: "payload"}.
  sim.addCustomer('payload');
  sim.addMeter('event_name', { customerPayloadKey: 'key', aggregation: 'count' });
  for (const id of ['id_123', 'll_123']) sim.holdThinEvent({ id, type: 'v1.billing.meter.no_meter_found', data: { reason: { error_count: 0, error_types: [] } } });
  sim.holdSnapshotEvent({ id: 'evt_xxxxxxxxxxxxx', type: 'customer.created', object: { id: 'cus_xxxxxxxxxxxxx', object: 'customer' } });
}

export async function runGeneratedExamples(): Promise<{ results: CaseResult[]; unservedPaths: Set<string> }> {
  const sim = await startStripeSimulator();
  const hop = await recordingHop(sim.url);
  const hopUrl = new URL(hop.url);
  const fixtures = (JSON.parse(readFileSync(FIXTURES, 'utf8')) as { resources: Record<string, Record<string, unknown>> }).resources;
  const client = (key = SIMULATOR_SECRET_KEY): StripeClient =>
    StripeCjs(key, { host: hopUrl.hostname, port: Number(hopUrl.port), protocol: 'http', maxNetworkRetries: 0, timeout: 3000, telemetry: false });
  let canned: Array<{ method: string; path: string; response: string }> = [];
  let arranged: Array<{ host: string; method: string; path: string; status: number; body: unknown }> = [];
  // The stream takes a meter event session token, never an API key (Stripe's rule, kept by the simulator).
  const sessionClient = async (): Promise<StripeClient> => client((await client().v2.billing.meterEventSession.create()).authentication_token);
  let streamClient = client();
  const nock = (host: string) => {
    const scope = (method: string) => (path: string) => ({
      reply: (status: number, body: unknown) => {
        arranged.push({ host, method, path, status, body });
        return scope;
      },
    });
    return { get: scope('GET'), post: scope('POST'), delete: scope('DELETE') };
  };
  const realStripe = new Proxy({} as StripeClient, { get: (_t, p) => (arranged.some((a) => a.path.includes('meter_event_stream')) ? streamClient : client())[p as string] });
  const modules = {
    chai: await chaiWithPromises(),
    nock,
    '../testUtils.js': {
      getStripeMockClient: () => new Proxy({} as StripeClient, { get: (_t, p) => client()[p as string] }),
      createMockClient: (responses: Array<{ method: string; path: string; response: string }>) => {
        canned = responses;
        return responses.some((r) => r.path === '/v2/billing/meter_event_stream') ? streamClient : client();
      },
    },
    '../../src/stripe.cjs.node.js': () => realStripe,
    '../../src/shared.js': sdkShared,
    '../../src/Error.js': sdkErrors,
  };
  const cases = collectPeerSpec(GENERATED_SPEC, modules);
  const results: CaseResult[] = [];
  const unservedPaths = new Set<string>();
  const outcomes = await runPeerCases(cases, {
    timeoutMs: 5000,
    around: async (c: PeerCase, body) => {
      sim.reset({ all: true });
      seed(sim);
      canned = [];
      arranged = [];
      streamClient = await sessionClient();
      if (c.id.endsWith('test_temporary_session_expired_error')) {
        // The spec has Stripe answer that the session expired: the simulator is made to, by letting it expire.
        sim.advanceClock(16 * 60_000);
      }
      hop.exchanges.length = 0;
      let failure: unknown;
      try {
        await body();
      } catch (err) {
        failure = err;
      }
      // The harness's own session (made before the case) is not in here: the exchanges were cleared after it.
      const mine = [...hop.exchanges];
      const unserved = mine.filter((e) => e.status === 404 && /Unrecognized request URL/.test(e.body));
      for (const e of unserved) unservedPaths.add(`${e.method} ${e.path}`);
      const evidence = mine.map((e) => `${e.method} ${e.path} → ${e.status}`);
      const touches = mine.length > 0 && unserved.length === 0;
      // Shapes: the canned answer the spec carries, else the fixture of the object stripe-mock would have answered.
      const shapeProblems: string[] = [];
      if (touches) {
        for (const e of mine) {
          if (e.status >= 400) continue;
          const answer = JSON.parse(e.body) as unknown;
          const reference = canned.find((r) => r.method === e.method && r.path === e.path);
          const expected = reference ? (JSON.parse(reference.response) as unknown) : fixtureFor(fixtures, answer);
          if (expected !== undefined) shapeProblems.push(...shapeDifferences(expected, answer, { allowExtra: reference !== undefined }).map((d) => `${e.method} ${e.path}: ${d}`));
        }
      }
      results.push({ id: c.id, status: 'passed', durationMs: 0, file: 'stripe-node/test/generated_examples_test.spec.js', evidence, touchesSimulator: touches });
      if (failure) throw failure;
      if (shapeProblems.length > 0) throw new Error(`shape differs from Stripe's: ${shapeProblems.join('; ')}`);
    },
  });
  await hop.close();
  await sim.stop();
  const byId = new Map(results.map((r) => [r.id, r]));
  return {
    results: outcomes.map((o) => ({ ...(byId.get(o.id) ?? { file: 'stripe-node/test/generated_examples_test.spec.js', evidence: [], touchesSimulator: false }), ...o })),
    unservedPaths,
  };
}

/** The fixtures3.json object whose `object` matches an answer (a list answers with its first item's). */
function fixtureFor(fixtures: Record<string, Record<string, unknown>>, answer: unknown): unknown {
  if (!answer || typeof answer !== 'object') return undefined;
  const obj = answer as Record<string, unknown>;
  if (obj.object === 'list') return undefined;
  return typeof obj.object === 'string' ? Object.values(fixtures).find((f) => f.object === obj.object) : undefined;
}

// ───────────────────────────── fixtures3.json ─────────────────────────────

/**
 * Every Stripe object the simulator answers that Meterdesk reads, compared key by key with Stripe's canonical example
 * of it (stripe/openapi fixtures3.json). No generated example covers the v1 meter event endpoints or the event
 * summaries, so these are their peer cases.
 */
export async function runFixtureChecks(): Promise<CaseResult[]> {
  const fixtures = (JSON.parse(readFileSync(FIXTURES, 'utf8')) as { resources: Record<string, Record<string, unknown>> }).resources;
  const sim = await startStripeSimulator();
  const stripe = StripeCjs(SIMULATOR_SECRET_KEY, { ...sim.clientConfig, maxNetworkRetries: 0, telemetry: false });
  const plain = (o: unknown) => JSON.parse(JSON.stringify(o)) as unknown;
  const nowSec = Math.floor(Date.now() / 1000);
  const checks: Array<{ resource: string; how: string; answer: () => Promise<unknown> }> = [
    { resource: 'billing.meter', how: 'POST /v1/billing/meters', answer: async () => stripe.billing.meters.create({ display_name: 'Tokens', event_name: 'fx_tokens', default_aggregation: { formula: 'sum' } }) },
    { resource: 'billing.meter', how: 'GET /v1/billing/meters/:id', answer: async () => stripe.billing.meters.retrieve((await stripe.billing.meters.list()).data[0].id) },
    {
      resource: 'billing.meter_event',
      how: 'POST /v1/billing/meter_events',
      answer: async () => stripe.billing.meterEvents.create({ event_name: 'fx_tokens', payload: { stripe_customer_id: 'cus_fx', value: '5' }, identifier: 'fx-1', timestamp: nowSec }),
    },
    { resource: 'billing.meter_event_adjustment', how: 'POST /v1/billing/meter_event_adjustments', answer: async () => stripe.billing.meterEventAdjustments.create({ event_name: 'fx_tokens', type: 'cancel', cancel: { identifier: 'fx-1' } }) },
    {
      resource: 'billing.meter_event_summary',
      how: 'GET /v1/billing/meters/:id/event_summaries',
      answer: async () => {
        const meter = (await stripe.billing.meters.list()).data[0];
        await stripe.billing.meterEvents.create({ event_name: 'fx_tokens', payload: { stripe_customer_id: 'cus_fx', value: '2' }, identifier: 'fx-2', timestamp: nowSec });
        const start = Math.floor(nowSec / 86_400) * 86_400;
        return (await stripe.billing.meters.listEventSummaries(meter.id, { customer: 'cus_fx', start_time: start, end_time: start + 86_400 })).data[0];
      },
    },
    { resource: 'customer', how: 'POST /v1/customers', answer: async () => stripe.customers.create({ email: 'fx@example.com' }) },
    { resource: 'customer', how: 'GET /v1/customers/:id', answer: async () => stripe.customers.retrieve('cus_fx') },
    {
      resource: 'event',
      how: 'snapshot webhook customer.subscription.updated (envelope)',
      answer: async () => (await sim.sendWebhook('customer.subscription.updated', { id: 'sub_fx', customer: 'cus_fx' })).event,
    },
    {
      resource: 'subscription',
      how: 'snapshot webhook customer.subscription.updated (data.object)',
      answer: async () => ((await sim.sendWebhook('customer.subscription.updated', { id: 'sub_fx', customer: 'cus_fx' })).event as { data: { object: unknown } }).data.object,
    },
  ];
  const results: CaseResult[] = [];
  try {
    sim.addCustomer('cus_fx');
    for (const check of checks) {
      const t0 = performance.now();
      const id = `${check.resource} — ${check.how}`;
      try {
        const answer = plain(await check.answer());
        const differences = shapeDifferences(fixtures[check.resource], answer);
        if (differences.length > 0) throw new Error(`shape differs from fixtures3.json: ${differences.join('; ')}`);
        results.push({ id, status: 'passed', durationMs: performance.now() - t0, file: 'stripe-openapi/fixtures3.json', evidence: [check.how], touchesSimulator: true });
      } catch (err) {
        results.push({ id, status: 'failed', error: err instanceof Error ? err.message.slice(0, 2000) : String(err), durationMs: performance.now() - t0, file: 'stripe-openapi/fixtures3.json', evidence: [check.how], touchesSimulator: true });
      }
    }
  } finally {
    await sim.stop();
  }
  return results;
}
