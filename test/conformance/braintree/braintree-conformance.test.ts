// braintree_node's published specs (transactions, search, idempotency, customers, payment methods, webhook
// notifications) against our Braintree simulator through the real SDK: every in-scope case passes, the
// classification names exactly the cases upstream has, and the Braintree section of docs/conformance.md is what this run produces.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PEER_DIR, PEER_SPECS, runPeerSuite, type PeerRun } from './harness';
import { DOC_FILE, compare, loadClassification, notRun, renderDoc, withBraintreeSection } from './conformance';
import { summaryRow } from '../summary';

describe('braintree_node specs against the Braintree simulator', () => {
  const classification = loadClassification();
  let run: PeerRun;

  beforeAll(async () => {
    // A missing peer folder is a broken checkout, never a skipped suite.
    for (const spec of PEER_SPECS) expect(existsSync(join(PEER_DIR, 'test', spec)), `${PEER_DIR}/test/${spec}`).toBe(true);
    run = await runPeerSuite({ skip: notRun(classification) });
  }, 180_000);

  it('runs every spec file and finds its cases', () => {
    const files = new Set(run.cases.map((c) => c.file));
    expect([...files].sort()).toEqual([...PEER_SPECS].sort());
    expect(run.cases.filter((c) => c.state === 'passed').length).toBeGreaterThan(0);
  });

  it('agrees with the classification: in-scope cases pass, departures and known failures fail, nothing new or gone', () => {
    const problems = compare(run.cases, classification);
    expect(problems, `${problems.join('\n')}\n--- runner output (tail) ---\n${run.stderr.slice(-3000)}`).toEqual([]);
  });

  it('the Braintree section of docs/conformance.md is current (npm run conformance:braintree:docs)', () => {
    const doc = readFileSync(DOC_FILE, 'utf8');
    expect(doc).toBe(withBraintreeSection(doc, renderDoc(run.cases, classification)));
  });

  it('the summary at the top of docs/conformance.md has this run\'s counts', () => {
    const doc = readFileSync(DOC_FILE, 'utf8');
    const status = (s: string) => run.cases.filter((c) => classification[c.id]?.status === s).length;
    const passed = run.cases.filter((c) => c.state === 'passed').length;
    const outOfScope = status('out_of_scope');
    expect(summaryRow(doc, 'Braintree')).toEqual({
      cases: run.cases.length,
      inScope: run.cases.length - outOfScope,
      pass: passed,
      departs: status('departs'),
      outOfScope,
    });
  });
});
