// Stripe's published tests against our Stripe simulator, through the real SDK: stripe-node's Webhook.spec.ts and
// generated request/response examples, and Stripe's fixtures3.json objects (harness.ts says how each is run). Every
// in-scope case is one test here; docs/conformance.md is generated from the same run (UPDATE_CONFORMANCE=1, or
// `npm run conformance:docs`) and checked to be current.
import { readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { STRIPE_DEPARTURES } from './departures';
import { runFixtureChecks, runGeneratedExamples, runWebhookSpec } from './harness';
import { classify, renderStripeConformance } from './report';
import { summaryRow } from '../summary';

const webhook = await runWebhookSpec();
const baseline = new Map((await runWebhookSpec('sdk')).map((r) => [r.id, r.status]));
const generated = await runGeneratedExamples();
const fixtures = await runFixtureChecks();
const results = [...webhook, ...generated.results, ...fixtures];
const cases = classify(results, baseline);
const outcome = new Map(results.map((r) => [`${r.file}::${r.id}`, r]));

describe('stripe conformance: in-scope peer cases', () => {
  for (const c of cases.filter((x) => x.status !== 'out of scope')) {
    it(`${c.file} › ${c.id}`, () => {
      const r = outcome.get(`${c.file}::${c.id}`)!;
      if (c.status === 'departs') {
        // A departure is a known difference: it must still differ (else the entry is stale and goes).
        expect(r.status, `listed as a departure but passes now: remove it from departures.ts`).toBe('failed');
      } else {
        expect(r.error ?? '', r.evidence.join('; ')).toBe('');
        expect(r.status).toBe('passed');
      }
    });
  }
});

describe('stripe conformance: the scope itself', () => {
  it('runs every case of the peer files, and a meaningful part of them is about the simulator', () => {
    expect(webhook.length).toBeGreaterThan(100);
    expect(generated.results.length).toBeGreaterThan(400);
    expect(cases.filter((c) => c.file.endsWith('Webhook.spec.ts') && c.status !== 'out of scope').length).toBeGreaterThan(20);
    expect(cases.filter((c) => c.file.endsWith('generated_examples_test.spec.js') && c.status !== 'out of scope').length).toBeGreaterThanOrEqual(10);
  });

  it('every departure names an in-scope case of this run', () => {
    for (const id of Object.keys(STRIPE_DEPARTURES)) expect(cases.find((c) => c.id === id)?.status, id).toBe('departs');
  });

  it('the endpoints the simulator does not serve are ones Meterdesk does not call', () => {
    const used = ['/v1/billing/meter_events', '/v2/billing/meter_event', '/v1/billing/meters', '/v2/core/events'];
    for (const line of generated.unservedPaths) expect(used.some((u) => line.includes(u)), line).toBe(false);
  });

  it('docs/conformance.md is current', async () => {
    const path = new URL('../../../docs/conformance.md', import.meta.url);
    const doc = await readFile(path, 'utf8');
    const section = renderStripeConformance(cases);
    const [before, rest] = doc.split('<!-- stripe:begin -->\n');
    const after = rest?.split('<!-- stripe:end -->')[1];
    expect(after, 'docs/conformance.md has the <!-- stripe:begin --> / <!-- stripe:end --> markers').toBeDefined();
    const next = `${before}<!-- stripe:begin -->\n${section}<!-- stripe:end -->${after}`;
    if (process.env.UPDATE_CONFORMANCE === '1') await writeFile(path, next);
    else expect(doc, 'run UPDATE_CONFORMANCE=1 npx vitest run test/conformance').toBe(next);
  });

  it('the summary at the top of docs/conformance.md has this run\'s counts', async () => {
    const doc = await readFile(new URL('../../../docs/conformance.md', import.meta.url), 'utf8');
    const count = (status?: string) => cases.filter((c) => status === undefined || c.status === status).length;
    const departs = count('departs');
    expect(summaryRow(doc, 'Stripe')).toEqual({
      cases: count(),
      inScope: count('pass') + departs,
      pass: count('pass'),
      departs,
      outOfScope: count() - count('pass') - departs,
    });
  });
});
