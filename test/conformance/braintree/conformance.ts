// The classification of braintree_node's spec cases (classification.json), its comparison with a run, and the
// generated Braintree section of docs/conformance.md. A case is
//   in_scope      it touches what Meterdesk uses: it runs and must pass;
//   out_of_scope  it needs a feature Meterdesk does not use (one-line reason): listed, not run;
//   departs       the simulator deliberately behaves otherwise (reason): it runs and must fail, so a departure that
//                 disappears is noticed;
//   failing       in scope but not passing yet (reason): it runs and must fail; none remain once the simulator is fixed.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PEER_DIR, PROJECT_ROOT, type PeerCase } from './harness';

export type CaseStatus = 'in_scope' | 'out_of_scope' | 'departs' | 'failing';

export interface CaseClass {
  status: CaseStatus;
  /** Why it is out of scope, departs or still fails (required for those). */
  reason?: string;
  /** What Meterdesk uses that the case exercises (keys of USES). */
  covers?: string[];
  /** For an in-scope case: anything a reader should know (e.g. it checks the SDK alone, not the simulator). */
  note?: string;
}

export type Classification = Record<string, CaseClass>;

export const CLASSIFICATION_FILE = join(PROJECT_ROOT, 'test/conformance/braintree/classification.json');
export const DOC_FILE = join(PROJECT_ROOT, 'docs/conformance.md');
const BEGIN = '<!-- braintree:begin -->\n';
const END = '<!-- braintree:end -->';

/** `doc` with its Braintree section (between the markers) replaced by `section`; throws without the markers. */
export function withBraintreeSection(doc: string, section: string): string {
  const [before, rest] = doc.split(BEGIN);
  const after = rest?.split(END)[1];
  if (before === undefined || after === undefined) throw new Error(`${DOC_FILE} has no ${BEGIN.trim()} / ${END} markers`);
  return `${before}${BEGIN}${section}${END}${after}`;
}

/** What Meterdesk uses of Braintree (and the simulator serves), keyed as `covers` names them. */
export const USES: Record<string, { what: string; where: string }> = {
  'transaction.sale': {
    what: '`Transaction.sale` (POST /transactions): payment method token or customer id, order id, merchant account, `submitForSettlement`',
    where: 'app/billing/processors/braintree/processor.ts',
  },
  'transaction.sale.declined': {
    what: 'processor declines: response codes 2000-2999 with their soft/hard type, as the settlement classifies them',
    where: 'processor.ts, app/billing/windows/settlement.ts',
  },
  'transaction.sale.rejected': { what: 'gateway rejections (`gateway_rejected` with its reason)', where: 'processor.ts' },
  'transaction.sale.idempotency': { what: 'idempotent sales (`apiRequestKey`)', where: 'simulator; not yet sent by Meterdesk' },
  'transaction.search': {
    what: '`Transaction.search` (advanced_search_ids + advanced_search) by order id before any retry, and by status / created-at / amount',
    where: 'processor.ts `findByOrderId`, reconciliation',
  },
  'transaction.find': { what: '`Transaction.find`', where: 'simulator (tests, desk)' },
  'transaction.submit_for_settlement': {
    what: '`Transaction.submitForSettlement` of an authorized sale (amount, order id)',
    where: 'simulator only: Meterdesk submits in the sale itself',
  },
  'transaction.void': { what: '`Transaction.void`', where: 'simulator only: Meterdesk never voids' },
  'customer.create': { what: '`Customer.create` with a card or a PayPal nonce (the vault Meterdesk charges from)', where: 'simulator (tests, demo)' },
  'customer.find': { what: '`Customer.find`', where: 'simulator (tests, demo)' },
  'customer.delete': { what: '`Customer.delete`', where: 'simulator (tests)' },
  'payment_method.create': { what: '`PaymentMethod.create` from a nonce', where: 'simulator (tests, demo)' },
  'payment_method.find': { what: '`PaymentMethod.find`', where: 'simulator (tests)' },
  'payment_method.delete': { what: '`PaymentMethod.delete`', where: 'simulator (tests)' },
  'webhook.parse': { what: '`webhookNotification.parse`: bt_signature / bt_payload verification', where: 'app/billing/processors/braintree/webhooks.ts' },
  'webhook.verify': { what: '`webhookNotification.verify`: the bt_challenge answer', where: 'processor.ts `verifyChallenge`' },
  'webhook.subscription': { what: '`subscription_*` notifications (renewals, status changes)', where: 'webhooks.ts' },
  'webhook.check': { what: 'the `check` notification', where: 'webhooks.ts' },
};

/** What Meterdesk uses that no peer case at this commit exercises, and the project's own tests that do. */
export const GAPS: Array<{ what: string; coveredBy: string }> = [
  {
    what: 'gateway rejections for `duplicate`, `fraud`, `cvv`, `avs` and `application_incomplete` (the peer specs reject only for `risk_threshold` and Venmo `token_issuance`)',
    coveredBy: 'simulators/braintree/simulator.test.ts (gateway-rejects tokens named gateway_rejected, with a reason), peer-deviations.test.ts (fraud test card and nonce), test/braintree-settlement.test.ts (gateway_rejected -> failed_exhausted)',
  },
  {
    what: 'duplicate transaction checking (a second sale of the same amount on the same method within the window)',
    coveredBy: 'simulators/braintree/simulator.test.ts (rejects a duplicate within the duplicate window when checking is on); processor.ts treats the rejection, and decline 2016, as ambiguous: search by order id',
  },
  {
    what: '3000 processor network unavailable (a `failed` sale), retried as an error',
    coveredBy: 'app/billing/processors/braintree/processor.test.ts (3000 ... is an error to retry)',
  },
  {
    what: 'search by order id after a sale whose answer was lost (timeout, reset)',
    coveredBy: 'simulators/braintree/simulator.test.ts (faults), test/braintree-settlement.test.ts (timeout after the sale was applied -> search finds it)',
  },
  {
    what: '`subscription_went_active`, `subscription_canceled`, `subscription_expired` notifications',
    coveredBy: 'test/braintree-windows.test.ts, test/security/hostile-webhooks.test.ts (parsed by the SDK from what the simulator sends)',
  },
];

export function loadClassification(file = CLASSIFICATION_FILE): Classification {
  return JSON.parse(readFileSync(file, 'utf8')) as Classification;
}

/** Case ids the runner registers as pending (not run). */
export function notRun(c: Classification): string[] {
  return Object.entries(c)
    .filter(([, v]) => v.status === 'out_of_scope')
    .map(([id]) => id);
}

/** Everything wrong between a run and the classification, one line each; empty when they agree. */
export function compare(cases: readonly PeerCase[], c: Classification): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const r of cases) {
    seen.add(r.id);
    const k = c[r.id];
    if (!k) {
      problems.push(`unclassified case (new upstream?): ${r.id} [${r.state}${r.error ? `: ${r.error.split('\n')[0]}` : ''}]`);
      continue;
    }
    if (k.status !== 'in_scope' && !k.reason) problems.push(`${k.status} without a reason: ${r.id}`);
    if (k.status === 'in_scope' && !(k.covers && k.covers.length > 0)) problems.push(`in_scope without covers: ${r.id}`);
    for (const cover of k.covers ?? []) if (!USES[cover]) problems.push(`unknown covers "${cover}": ${r.id}`);
    if (r.skippedUpstream && k.status !== 'out_of_scope') problems.push(`skipped upstream but classified ${k.status}: ${r.id}`);
    switch (k.status) {
      case 'in_scope':
        if (r.state !== 'passed') problems.push(`in-scope case ${r.state}: ${r.id}\n    ${(r.error ?? '').split('\n').join('\n    ')}`);
        break;
      case 'departs':
      case 'failing':
        if (r.state === 'passed') problems.push(`${k.status} case now passes (classify it in_scope): ${r.id}`);
        else if (r.state !== 'failed') problems.push(`${k.status} case did not run: ${r.id}`);
        break;
      case 'out_of_scope':
        if (r.state !== 'pending') problems.push(`out-of-scope case ran: ${r.id}`);
        break;
    }
  }
  for (const id of Object.keys(c)) if (!seen.has(id)) problems.push(`classified case no longer in the peer specs (stale): ${id}`);
  return problems;
}

/** The peer commit, from the peer-suites README's table. */
export function peerCommit(): string {
  try {
    const readme = readFileSync(resolve(PEER_DIR, '../README.md'), 'utf8');
    return /braintree\/braintree_node @ ([0-9a-f]{40})/.exec(readme)?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The status a case shows on the page. */
function shown(k: CaseClass, r: PeerCase | undefined): string {
  if (k.status === 'out_of_scope') return 'out of scope';
  if (k.status === 'departs') return 'departs-because';
  if (!r) return 'not run';
  return r.state === 'passed' ? 'pass' : r.state === 'failed' ? 'FAIL' : 'not run';
}

/** The Braintree section of docs/conformance.md from the classification and a run (deterministic: no times, no error texts). */
export function renderDoc(cases: readonly PeerCase[], c: Classification): string {
  const byId = new Map(cases.map((r) => [r.id, r]));
  const ids = cases.map((r) => r.id);
  const count = (f: (k: CaseClass, r: PeerCase) => boolean) => ids.filter((id) => c[id] && f(c[id]!, byId.get(id)!)).length;
  const run = count((_k, r) => r.state !== 'pending');
  const passed = count((_k, r) => r.state === 'passed');
  const out = count((k) => k.status === 'out_of_scope');
  const upstream = count((k, r) => k.status === 'out_of_scope' && r.skippedUpstream);
  const inScope = count((k) => k.status === 'in_scope');
  const departs = count((k) => k.status === 'departs');
  const failing = count((k) => k.status === 'failing');
  const files = [...new Set(cases.map((r) => r.file))];
  const lines: string[] = [];
  lines.push('## Braintree: braintree_node\'s own specs against our simulator');
  lines.push('');
  lines.push(
    'Generated by `npm run conformance:braintree:docs` from `test/conformance/braintree/classification.json` and a run; ' +
      '`test/conformance/braintree/braintree-conformance.test.ts` (part of `npm test`) runs the same specs and fails when ' +
      'an in-scope case fails, when a case appears or disappears upstream, or when this section is not what they produce.',
  );
  lines.push('');
  lines.push(
    `The specs are braintree/braintree_node's, at commit \`${peerCommit()}\`, read in place from ` +
      '`../shared/reference/peer-suites/braintree_node/` (never copied here), run by mocha with braintree_node\'s own ' +
      '`spec_helper.js` through the real `braintree` SDK against `simulators/braintree` on loopback (the SDK\'s ' +
      'Development environment pointed at it, spec_helper\'s credentials and merchant accounts). The webhook spec\'s ' +
      'sample notifications are built by the simulator (`POST /__simulator/webhooks/build`), not by the SDK, so its ' +
      'assertions judge what the simulator sends. Files: ' +
      files.map((f) => `\`${f}\``).join(', ') +
      '.',
  );
  lines.push('');
  lines.push('| cases in the specs | run | passed | out of scope | of which skipped upstream | departs-because | in scope, not passing yet |');
  lines.push('|---|---|---|---|---|---|---|');
  lines.push(`| ${ids.length} | ${run} | ${passed} | ${out} | ${upstream} | ${departs} | ${failing} |`);
  lines.push('');
  lines.push(`In scope: ${inScope} cases, every one of which must pass.`);
  lines.push('');
  lines.push('### What Meterdesk uses, the peer cases that cover it, and their result');
  lines.push('');
  lines.push('| what we use | where | peer cases | result |');
  lines.push('|---|---|---|---|');
  for (const [key, use] of Object.entries(USES)) {
    const covering = ids.filter((id) => c[id]?.covers?.includes(key));
    const results = covering.map((id) => shown(c[id]!, byId.get(id)));
    const pass = results.filter((s) => s === 'pass').length;
    const result = covering.length === 0 ? 'no peer case' : pass === covering.length ? `all ${pass} pass` : `${pass} of ${covering.length} pass`;
    const names = covering.length === 0 ? '—' : covering.map((id) => cell(id.split(' › ').slice(1).join(' › '))).join('<br>');
    lines.push(`| ${cell(use.what)} | ${cell(use.where)} | ${names} | ${result} |`);
  }
  lines.push('');
  lines.push('### What no peer case covers, and the tests that do');
  lines.push('');
  lines.push('| what we use | covered by |');
  lines.push('|---|---|');
  for (const g of GAPS) lines.push(`| ${cell(g.what)} | ${cell(g.coveredBy)} |`);
  lines.push('');
  lines.push('### Every case');
  lines.push('');
  lines.push('| case | file | status | reason |');
  lines.push('|---|---|---|---|');
  for (const id of ids) {
    const k = c[id];
    const r = byId.get(id)!;
    if (!k) {
      lines.push(`| ${cell(id.split(' › ').slice(1).join(' › '))} | ${r.file} | unclassified | |`);
      continue;
    }
    const reason = k.status === 'in_scope' ? [(k.covers ?? []).join(', '), k.note].filter(Boolean).join('; ') : (k.reason ?? '');
    lines.push(`| ${cell(id.split(' › ').slice(1).join(' › '))} | ${r.file} | ${shown(k, r)} | ${cell(reason)} |`);
  }
  lines.push('');
  return lines.join('\n');
}
