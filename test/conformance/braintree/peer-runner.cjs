// Runs braintree_node's own published specs (read in place from the peer-suites folder, never copied) under mocha,
// with braintree_node's own spec_helper, against whatever gateway GATEWAY_HOST / GATEWAY_PORT name (the SDK's
// Development environment reads them): our Braintree simulator on loopback. One child process per run; the parent
// (harness.ts) starts the simulator and reads the results file this writes.
//
// The peer files expect to sit inside a braintree_node checkout: they require `../../../lib/braintree/...` and
// `chai`. A resolver hook sends those to the installed `braintree` package (the SDK under test) and to chai 4
// (`chai4`, the version braintree_node's own devDependencies name; the project's chai is vitest's).
//
// Environment:
//   BT_PEER_DIR         the braintree_node peer folder (required)
//   BT_PEER_SPECS       spec files relative to BT_PEER_DIR/test, comma-separated (required)
//   BT_PEER_SKIP        a JSON file: case ids to register as pending (out of scope: listed, not run)
//   BT_PEER_OUTPUT      where to write the results JSON (required)
//   BT_PEER_LIST_ONLY   "1": collect the case ids without running anything
//   BT_PEER_TIMEOUT_MS  per case (default 10000)
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');

// Real path: module filenames are real paths, so a symlinked peer folder must compare as its target.
const peerDir = fs.realpathSync(path.resolve(required('BT_PEER_DIR')));
const specs = required('BT_PEER_SPECS').split(',').map((s) => s.trim()).filter(Boolean);
const output = path.resolve(required('BT_PEER_OUTPUT'));
const listOnly = process.env.BT_PEER_LIST_ONLY === '1';
const timeoutMs = Number(process.env.BT_PEER_TIMEOUT_MS ?? 10_000);
const skip = new Set(process.env.BT_PEER_SKIP ? JSON.parse(fs.readFileSync(process.env.BT_PEER_SKIP, 'utf8')) : []);

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
}

// ---------------------------------------------------------------- module resolution for the peer files

const sdkLib = path.join(path.dirname(require.resolve('braintree/package.json')), 'lib');
const peerLib = path.join(peerDir, 'lib');
const chai4 = require.resolve('chai4');
const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function resolvePeer(request, parent, ...rest) {
  const from = parent && parent.filename ? parent.filename : '';
  if (from.startsWith(peerDir + path.sep)) {
    if (request === 'chai') return chai4;
    if (request.startsWith('.')) {
      const target = path.resolve(path.dirname(from), request);
      if (target === peerLib || target.startsWith(peerLib + path.sep)) {
        return resolveFilename.call(this, path.join(sdkLib, path.relative(peerLib, target)), parent, ...rest);
      }
    }
  }
  return resolveFilename.call(this, request, parent, ...rest);
};

// The SDK calls callbacks through @braintree/wrap-promise's `deferred`, which catches an exception thrown in the
// callback, logs "Error in callback function" and drops it: a failing assertion would only show as a timeout, a
// minute later. Let it through instead, so mocha fails the case with the assertion's own message. Each case runs in
// its own async context, so a callback that fires after its case has ended (a timed-out case, a spec that calls
// done() before its assertions) fails the case it belongs to, not whichever case happens to be running.
const { AsyncLocalStorage } = require('node:async_hooks');
const caseContext = new AsyncLocalStorage();
let runningCase = null;
const deferredModule = require(require.resolve('@braintree/wrap-promise/dist/lib/deferred', { paths: [path.dirname(require.resolve('braintree/package.json'))] }));
deferredModule.deferred = (fn) => (...args) =>
  setTimeout(() => {
    const owner = caseContext.getStore();
    if (owner === undefined || owner === runningCase) return fn(...args);
    try {
      fn(...args);
    } catch (err) {
      lateFailure(owner, err);
    }
  }, 1);

// ---------------------------------------------------------------- mocha

const Mocha = require('mocha');
const { EVENT_TEST_BEGIN, EVENT_TEST_END, EVENT_TEST_PASS, EVENT_TEST_FAIL, EVENT_TEST_PENDING } = Mocha.Runner.constants;

// braintree_node's own helper: globals `specHelper` and `assert` (chai), gateways on the Development environment.
require(path.join(peerDir, 'test', 'spec_helper.js'));

// The webhook spec asks `gateway.webhookTesting.sampleNotification(kind, id)` for a signed notification and checks
// what `webhookNotification.parse` makes of it. That builder is the SDK's own; here it asks the running simulator
// instead (POST /__simulator/webhooks/build, signed with the simulator's keys, which are spec_helper's), so the
// spec's assertions judge the notifications our simulator sends. The builder is synchronous in the SDK, hence a
// synchronous child process for the HTTP call.
const simulatorUrl = process.env.BT_SIMULATOR_URL;
if (simulatorUrl) {
  const { execFileSync } = require('node:child_process');
  const WebhookTestingGateway = require(path.join(sdkLib, 'braintree', 'webhook_testing_gateway.js')).WebhookTestingGateway;
  const fetchScript = `fetch(process.argv[1], { method: 'POST', headers: { 'content-type': 'application/json' }, body: process.argv[2] })
    .then(async (r) => { const t = await r.text(); if (!r.ok) { process.stderr.write(t); process.exit(1); } process.stdout.write(t); })
    .catch((e) => { process.stderr.write(String(e)); process.exit(1); });`;
  WebhookTestingGateway.prototype.sampleNotification = function simulatorNotification(kind, id, sourceMerchantId) {
    // Subscription kinds name a subscription; `check` has no subject; any other kind is one the simulator does not
    // send, and its refusal fails the case.
    const body = { kind };
    if (kind.startsWith('subscription_')) body.subject = { subscription: { id } };
    if (sourceMerchantId) body.source_merchant_id = sourceMerchantId;
    const answer = execFileSync(process.execPath, ['-e', fetchScript, `${simulatorUrl}/__simulator/webhooks/build`, JSON.stringify(body)], { encoding: 'utf8' });
    const built = JSON.parse(answer);
    return { bt_signature: built.bt_signature, bt_payload: built.bt_payload }; // eslint-disable-line camelcase
  };
}

const mocha = new Mocha({ timeout: timeoutMs, reporter: function Silent() {}, allowUncaught: false });
for (const spec of specs) mocha.addFile(path.join(peerDir, 'test', spec));
mocha.loadFiles();

/** `file › describe › ... › it`, with ` (2)` ... for a repeated title in the same file. */
const ids = new Map();
const seen = new Map();
function walk(suite) {
  for (const test of suite.tests) {
    const file = path.relative(path.join(peerDir, 'test'), test.file ?? suite.file ?? '');
    const base = [file, ...test.titlePath()].join(' › ');
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    const id = n === 1 ? base : `${base} (${n})`;
    // `xit` / `it.skip` upstream: braintree_node itself does not run it.
    ids.set(test, { id, file, skippedUpstream: test.isPending() });
    const fn = test.fn;
    // Same arity: mocha decides from it whether the case takes `done`.
    if (fn) test.fn = fn.length > 0 ? function (done) { return caseContext.run(id, () => fn.call(this, done)); } : function () { return caseContext.run(id, () => fn.call(this)); };
  }
  // Cases not run leave their suite altogether, so a suite with nothing to run runs none of its hooks either
  // (an out-of-scope suite's `before` would otherwise call the simulator for features it does not have).
  suite.tests = suite.tests.filter((test) => !(listOnly || skip.has(ids.get(test).id)));
  // Hooks belong to no case: code they start is judged by mocha as usual.
  for (const hooks of [suite._beforeAll, suite._beforeEach, suite._afterEach, suite._afterAll]) {
    for (const hook of hooks) {
      const fn = hook.fn;
      if (fn) hook.fn = fn.length > 0 ? function (done) { return caseContext.exit(() => fn.call(this, done)); } : function () { return caseContext.exit(() => fn.call(this)); };
    }
  }
  for (const child of suite.suites) walk(child);
}
walk(mocha.suite);

const results = new Map();
for (const [, { id, file, skippedUpstream }] of ids) results.set(id, { id, file, state: 'pending', skippedUpstream, error: null });

function lateFailure(id, err) {
  const r = results.get(id);
  if (!r || r.state === 'failed') return;
  r.state = 'failed';
  r.error = `after the case ended: ${message(err)}`;
}

function message(err) {
  const text = err && err.message ? String(err.message) : String(err);
  return text.split('\n').slice(0, 6).join('\n').slice(0, 600);
}

function write() {
  fs.mkdirSync(path.dirname(output), { recursive: true });
  fs.writeFileSync(output, JSON.stringify({ cases: [...results.values()] }, null, 1));
}

if (listOnly) {
  write();
  process.exit(0);
}

const runner = mocha.run(() => {
  write();
  // A spec that leaves a socket or timer behind must not keep the run alive.
  process.exit(0);
});
const record = (test, state, err) => {
  const known = ids.get(test);
  if (!known) return;
  const r = results.get(known.id);
  // A failure stands: mocha reports an error thrown after a case passed (a callback run twice) as its failure.
  if (r.state === 'failed') return;
  r.state = state;
  r.error = err ? message(err) : null;
};
runner.on(EVENT_TEST_BEGIN, (test) => (runningCase = ids.get(test)?.id ?? null));
runner.on(EVENT_TEST_END, () => (runningCase = null));
runner.on(EVENT_TEST_PASS, (test) => record(test, 'passed'));
runner.on(EVENT_TEST_PENDING, (test) => record(test, 'pending'));
runner.on(EVENT_TEST_FAIL, (test, err) => {
  // A failing hook fails the tests it guards: mark every test of the hook's suite that has not run.
  if (test.type === 'hook') {
    const suite = test.parent;
    const mark = (s) => {
      for (const t of s.tests) {
        const r = ids.get(t) && results.get(ids.get(t).id);
        if (r && r.state === 'pending' && !t.pending) {
          r.state = 'failed';
          r.error = `hook failed: ${test.title}: ${message(err)}`;
        }
      }
      for (const c of s.suites) mark(c);
    };
    if (suite) mark(suite);
    return;
  }
  record(test, 'failed', err);
});
