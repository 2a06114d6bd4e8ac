// docs/conformance.md from a conformance run: counts, the endpoint and webhook map, every in-scope case with its
// result, and the out-of-scope cases grouped by reason. Deterministic (sorted, no timings), so a test can check
// that the committed file is current.
import type { CaseResult } from './harness';
import { STRIPE_DEPARTURES } from './departures';

export type CaseStatus = 'pass' | 'out of scope' | 'departs';

export interface ClassifiedCase {
  file: string;
  id: string;
  status: CaseStatus;
  reason: string;
  evidence: string[];
}

/** What Meterdesk uses at Stripe, and how to find the peer cases that cover it (by request line or fixture). */
export const STRIPE_SURFACE: Array<{ use: string; match: (c: ClassifiedCase) => boolean }> = [
  { use: 'POST /v1/billing/meter_events (reporter, v1)', match: (c) => c.id.startsWith('billing.meter_event — POST') },
  { use: 'POST /v2/billing/meter_event_session (reporter, v2)', match: (c) => c.evidence.some((e) => e.startsWith('POST /v2/billing/meter_event_session')) || c.id.endsWith('test_v2_billing_meter_event_session_post') },
  { use: 'POST /v2/billing/meter_event_stream (reporter, v2; expired session)', match: (c) => c.evidence.some((e) => e.startsWith('POST /v2/billing/meter_event_stream')) },
  { use: 'POST /v2/billing/meter_events', match: (c) => c.evidence.some((e) => e.startsWith('POST /v2/billing/meter_events')) },
  { use: 'meter event adjustments (v1, v2)', match: (c) => c.id.startsWith('billing.meter_event_adjustment') || c.evidence.some((e) => e.includes('meter_event_adjustments')) },
  { use: 'GET /v1/billing/meters/:id/event_summaries (reconciliation)', match: (c) => c.id.startsWith('billing.meter_event_summary') },
  { use: 'meters (create, retrieve)', match: (c) => c.id.startsWith('billing.meter — ') },
  { use: 'GET /v2/core/events/:id (thin event fetch)', match: (c) => c.evidence.some((e) => /^GET \/v2\/core\/events\/\S+ /.test(e)) },
  { use: 'customers (simulator demo and tests)', match: (c) => c.id.startsWith('customer — ') || c.evidence.some((e) => / \/v1\/customers/.test(e)) },
  { use: 'Stripe-Signature on snapshot events (constructEvent)', match: (c) => c.file.endsWith('Webhook.spec.ts') && /constructEvent/.test(c.id) && c.status !== 'out of scope' },
  { use: 'Stripe-Signature verification (verifyHeader, both event kinds)', match: (c) => c.file.endsWith('Webhook.spec.ts') && /verifySignatureHeader/.test(c.id) && c.status !== 'out of scope' },
  { use: 'customer.subscription.* snapshot events', match: (c) => c.id.startsWith('event — ') || c.id.startsWith('subscription — ') },
];

export function classify(results: readonly CaseResult[], baseline: ReadonlyMap<string, string>): ClassifiedCase[] {
  return results.map((r) => {
    const departure = STRIPE_DEPARTURES[r.id];
    if (r.file.endsWith('Webhook.spec.ts')) {
      if (!r.touchesSimulator) return { ...base(r), status: 'out of scope', reason: "the SDK's own verifier or signer only: no header signed as Stripe signs" };
      if (r.status !== 'passed' && baseline.get(r.id) === r.status) {
        return { ...base(r), status: 'out of scope', reason: 'fails the same with the SDK\'s own signer: stripe-node 23.1.0 checks a default tolerance that the spec\'s commit no longer has' };
      }
    }
    if (r.file.endsWith('generated_examples_test.spec.js') && !r.touchesSimulator) {
      return { ...base(r), status: 'out of scope', reason: r.evidence.length === 0 ? 'makes no request the simulator could answer' : 'an endpoint Meterdesk does not use (the simulator does not serve it)' };
    }
    if (departure) return { ...base(r), status: 'departs', reason: departure };
    return { ...base(r), status: 'pass', reason: r.status === 'passed' ? '' : `FAILS: ${r.error ?? r.status}` };
  });
}

function base(r: CaseResult): Omit<ClassifiedCase, 'status' | 'reason'> {
  return { file: r.file, id: r.id, evidence: r.evidence };
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function renderStripeConformance(cases: readonly ClassifiedCase[]): string {
  const files = [...new Set(cases.map((c) => c.file))].sort();
  const count = (f: (c: ClassifiedCase) => boolean) => cases.filter(f).length;
  const lines: string[] = [];
  lines.push('## Stripe', '');
  lines.push('| peer file | cases | in scope | pass | departs | out of scope |', '|---|---|---|---|---|---|');
  for (const file of files) {
    const mine = (c: ClassifiedCase) => c.file === file;
    lines.push(
      `| ${file} | ${count(mine)} | ${count((c) => mine(c) && c.status !== 'out of scope')} | ${count((c) => mine(c) && c.status === 'pass')} | ${count((c) => mine(c) && c.status === 'departs')} | ${count((c) => mine(c) && c.status === 'out of scope')} |`,
    );
  }
  lines.push(
    `| **all** | ${cases.length} | ${count((c) => c.status !== 'out of scope')} | ${count((c) => c.status === 'pass')} | ${count((c) => c.status === 'departs')} | ${count((c) => c.status === 'out of scope')} |`,
    '',
  );
  lines.push('### What Meterdesk uses → the peer cases that cover it', '', '| endpoint or webhook | peer cases | result |', '|---|---|---|');
  for (const s of STRIPE_SURFACE) {
    const covering = cases.filter((c) => c.status !== 'out of scope' && s.match(c));
    const result = covering.length === 0 ? 'no peer case' : covering.every((c) => c.status === 'pass') ? 'pass' : 'departs (see below)';
    lines.push(`| ${cell(s.use)} | ${covering.length === 0 ? '—' : covering.map((c) => `\`${cell(shortId(c))}\``).join('<br>')} | ${result} |`);
  }
  lines.push('', '### In scope', '', '| case | file | status | reason or evidence |', '|---|---|---|---|');
  for (const c of cases.filter((x) => x.status !== 'out of scope').sort(byFileThenId)) {
    lines.push(`| ${cell(c.id)} | ${c.file} | ${c.status} | ${cell(c.reason || c.evidence.join('; ').replace(/t=\d+/g, 't=…'))} |`);
  }
  lines.push('', '### Out of scope, by reason', '');
  const byReason = new Map<string, ClassifiedCase[]>();
  for (const c of cases.filter((x) => x.status === 'out of scope')) byReason.set(`${c.file}: ${c.reason}`, [...(byReason.get(`${c.file}: ${c.reason}`) ?? []), c]);
  for (const [reason, list] of [...byReason].sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`<details><summary>${list.length} — ${cell(reason)}</summary>`, '');
    for (const c of list.sort(byFileThenId)) lines.push(`- ${c.id}`);
    lines.push('', '</details>', '');
  }
  return `${lines.join('\n').trimEnd()}\n`;
}

function shortId(c: ClassifiedCase): string {
  return c.id.replace(/^Generated tests > /, '').replace(/^Webhooks on /, '');
}

function byFileThenId(a: ClassifiedCase, b: ClassifiedCase): number {
  return a.file.localeCompare(b.file) || a.id.localeCompare(b.id);
}
