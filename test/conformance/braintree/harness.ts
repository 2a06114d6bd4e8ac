// One conformance run: our Braintree simulator on loopback with the credentials braintree_node's spec_helper uses,
// and braintree_node's published specs run against it by peer-runner.cjs (mocha in a child process, the real
// `braintree` SDK). The peer files are read in place from ../shared/reference/peer-suites/braintree_node.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBraintreeSimulator } from '../../../simulators/braintree/simulator';

const here = dirname(fileURLToPath(import.meta.url));
export const PROJECT_ROOT = resolve(here, '../../..');

/** The peer folder: `BRAINTREE_PEER_SUITE`, else `../shared/reference/peer-suites/braintree_node` beside the checkout. */
export const PEER_DIR = process.env.BRAINTREE_PEER_SUITE ?? resolve(PROJECT_ROOT, '../shared/reference/peer-suites/braintree_node');

/** The specs run, relative to the peer folder's `test/`. */
export const PEER_SPECS = [
  'integration/braintree/transaction_gateway_spec.js',
  'integration/braintree/transaction_search_spec.js',
  'integration/braintree/transaction_idempotency_spec.js',
  'integration/braintree/customer_gateway_spec.js',
  'integration/braintree/payment_method_gateway_spec.js',
  'unit/braintree/webhook_notification_gateway_spec.js',
  'unit/braintree/transaction_gateway_spec.js',
] as const;

/** braintree_node's spec_helper `defaultConfig` (its gateways are built there, on the Development environment). */
export const SPEC_CREDENTIALS = {
  merchantId: 'integration_merchant_id',
  publicKey: 'integration_public_key',
  privateKey: 'integration_private_key',
} as const;

/** The public id of braintree_node's sandbox API user (the `user` its transaction search looks for). */
export const SPEC_API_USER = 'integration_user_public_id';

/** spec_helper's `fraudProtectionEnterpriseConfig`: the second merchant its gateway-rejection cases sell on. */
export const SPEC_OTHER_MERCHANTS = [
  {
    merchantId: 'fraud_protection_enterprise_integration_merchant_id',
    publicKey: 'fraud_protection_enterprise_integration_public_key',
    privateKey: 'fraud_protection_enterprise_integration_private_key',
  },
];

/** The sandbox merchant accounts spec_helper names (`defaultMerchantAccountId` first: it is the default). */
export const SPEC_MERCHANT_ACCOUNTS: Record<string, string> = {
  sandbox_credit_card: 'USD',
  sandbox_credit_card_non_default: 'USD',
};

export type CaseState = 'passed' | 'failed' | 'pending';

export interface PeerCase {
  /** `file › describe › ... › it` (` (2)` for a title repeated in one file). */
  id: string;
  /** Relative to the peer folder's `test/`. */
  file: string;
  state: CaseState;
  /** `xit` / `it.skip` in the peer file: braintree_node does not run it either. */
  skippedUpstream: boolean;
  error: string | null;
}

export interface PeerRun {
  cases: PeerCase[];
  /** The runner's stderr (the specs' own console output), for diagnosing a failure. */
  stderr: string;
}

/**
 * Runs the peer specs against a fresh simulator. `skip`: case ids registered as pending (listed, not run);
 * `listOnly`: collect the case ids without starting a simulator or running anything.
 */
export async function runPeerSuite(opts: { skip?: readonly string[]; listOnly?: boolean; timeoutMs?: number } = {}): Promise<PeerRun> {
  const work = mkdtempSync(join(tmpdir(), 'bt-conformance-'));
  const sim = opts.listOnly
    ? undefined
    : await startBraintreeSimulator({ ...SPEC_CREDENTIALS, otherMerchants: SPEC_OTHER_MERCHANTS, apiUser: SPEC_API_USER, merchantAccounts: SPEC_MERCHANT_ACCOUNTS, host: '127.0.0.1' });
  try {
    const skipFile = join(work, 'skip.json');
    writeFileSync(skipFile, JSON.stringify(opts.skip ?? []));
    const output = join(work, 'results.json');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      BT_PEER_DIR: PEER_DIR,
      BT_PEER_SPECS: PEER_SPECS.join(','),
      BT_PEER_SKIP: skipFile,
      BT_PEER_OUTPUT: output,
      BT_PEER_LIST_ONLY: opts.listOnly ? '1' : '0',
      BT_PEER_TIMEOUT_MS: String(opts.timeoutMs ?? 10_000),
      // The SDK's Development environment (spec_helper's) is http://GATEWAY_HOST:GATEWAY_PORT.
      GATEWAY_HOST: sim?.host ?? '127.0.0.1',
      GATEWAY_PORT: String(sim?.port ?? 9),
      GATEWAY_SSL: 'false',
      BT_SIMULATOR_URL: sim?.url ?? '',
    };
    const stderr = await new Promise<string>((resolvePromise, reject) => {
      const child = spawn(process.execPath, [join(here, 'peer-runner.cjs')], { cwd: PROJECT_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stdout.on('data', (c: Buffer) => (err += c.toString('utf8')));
      child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        if (code === 0) resolvePromise(err);
        else reject(new Error(`peer runner exited with ${code ?? signal}:\n${err.slice(-4000)}`));
      });
    });
    const parsed = JSON.parse(readFileSync(output, 'utf8')) as { cases: PeerCase[] };
    return { cases: parsed.cases, stderr };
  } finally {
    await sim?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
