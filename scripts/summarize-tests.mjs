#!/usr/bin/env node
// Sums the runners' JSON reports into the one closing line CI recognises: `N passed, N failed[, N skipped]`.
// Anything that went wrong without a failed test to show for it (a missing report, a file that did not load, a
// runner that exited non-zero, a failed build step) counts as one failure, so the line can never read clean while
// the exit code is not.
//
//   node scripts/summarize-tests.mjs --vitest reports/vitest.json --playwright reports/playwright.json \
//     [--exit vitest=1] [--exit playwright=0] [--step-failed "react-router build"]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    vitest: { type: 'string' },
    playwright: { type: 'string' },
    exit: { type: 'string', multiple: true, default: [] },
    'step-failed': { type: 'string', multiple: true, default: [] },
  },
});

let passed = 0;
let failed = 0;
let skipped = 0;
const problems = [];

function problem(message) {
  failed += 1;
  problems.push(message);
}

function readReport(label, file) {
  if (!file) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    problem(`${label}: no usable report at ${file} (${error.code ?? error.message})`);
    return undefined;
  }
}

const exitCodes = new Map(
  values.exit.map((pair) => {
    const [runner, code] = pair.split('=');
    return [runner, Number(code)];
  }),
);

function countVitest(report) {
  passed += report.numPassedTests ?? 0;
  failed += report.numFailedTests ?? 0;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  for (const file of report.testResults ?? []) {
    const failedTests = (file.assertionResults ?? []).filter((test) => test.status === 'failed').length;
    if (file.status === 'failed' && failedTests === 0) {
      problem(`vitest: ${file.name} failed outside any test: ${String(file.message ?? '').split('\n')[0]}`);
    }
  }
  return (report.numFailedTests ?? 0) > 0;
}

function countPlaywright(report) {
  const stats = report.stats ?? {};
  passed += (stats.expected ?? 0) + (stats.flaky ?? 0);
  failed += stats.unexpected ?? 0;
  skipped += stats.skipped ?? 0;
  // Errors outside tests: global setup, a spec that does not compile, a worker crash.
  for (const error of report.errors ?? []) {
    problem(`playwright: ${String(error.message ?? error.value ?? 'error outside tests').split('\n')[0]}`);
  }
  return (stats.unexpected ?? 0) > 0 || (report.errors ?? []).length > 0;
}

const runners = [
  ['vitest', values.vitest, countVitest],
  ['playwright', values.playwright, countPlaywright],
];
for (const [runner, file, count] of runners) {
  if (!file) continue;
  const before = failed;
  const report = readReport(runner, file);
  const reportedFailure = report ? count(report) : true;
  const code = exitCodes.get(runner);
  if (code !== undefined && code !== 0 && !reportedFailure && failed === before) {
    problem(`${runner}: exited with code ${code} although its report shows no failed test`);
  }
}

for (const step of values['step-failed']) problem(`step failed: ${step}`);

for (const message of problems) console.log(message);
console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`);
process.exitCode = failed > 0 ? 1 : 0;
