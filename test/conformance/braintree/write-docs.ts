// `npm run conformance:braintree:docs`: runs braintree_node's specs against the simulator and writes
// the Braintree section of docs/conformance.md from the classification and this run. Prints what disagrees with the
// classification (the conformance test fails on the same list).
import { readFileSync, writeFileSync } from 'node:fs';
import { runPeerSuite } from './harness';
import { DOC_FILE, compare, loadClassification, notRun, renderDoc, withBraintreeSection } from './conformance';

const classification = loadClassification();
const run = await runPeerSuite({ skip: notRun(classification) });
writeFileSync(DOC_FILE, withBraintreeSection(readFileSync(DOC_FILE, 'utf8'), renderDoc(run.cases, classification)));
const problems = compare(run.cases, classification);
process.stdout.write(`${DOC_FILE} written; ${run.cases.filter((c) => c.state === 'passed').length} passed of ${run.cases.filter((c) => c.state !== 'pending').length} run\n`);
if (problems.length > 0) {
  process.stdout.write(`${problems.length} disagreement(s) with the classification:\n${problems.join('\n')}\n`);
  process.exitCode = 1;
}
