// `npm run conformance:braintree:docs`: runs braintree_node's specs against the simulator and writes
// docs/conformance-braintree.md from the classification and this run. Prints what disagrees with the
// classification (the conformance test fails on the same list).
import { writeFileSync } from 'node:fs';
import { runPeerSuite } from './harness';
import { DOC_FILE, compare, loadClassification, notRun, renderDoc } from './conformance';

const classification = loadClassification();
const run = await runPeerSuite({ skip: notRun(classification) });
writeFileSync(DOC_FILE, renderDoc(run.cases, classification));
const problems = compare(run.cases, classification);
process.stdout.write(`${DOC_FILE} written; ${run.cases.filter((c) => c.state === 'passed').length} passed of ${run.cases.filter((c) => c.state !== 'pending').length} run\n`);
if (problems.length > 0) {
  process.stdout.write(`${problems.length} disagreement(s) with the classification:\n${problems.join('\n')}\n`);
  process.exitCode = 1;
}
