// A loopback HTTP server speaking the Braintree gateway's wire format (JSON requests with underscored keys,
// XML responses, Basic auth with the public and private keys) for customers, vaulted payment methods,
// Transaction.sale / find / search / void / submit_for_settlement and the sandbox testing calls, plus signed
// webhooks and scriptable faults. The real `braintree` SDK talks to it through
// `new braintree.Environment(host, port, url, false, host, port)` (see `gatewayFor` in test/support/braintree-gateway.ts).
// The parts: vault.ts (customers, payment methods), transactions.ts (sales, search), sandbox.ts (test values),
// wire.ts / xml.ts (the XML), webhooks.ts, faults.ts, control.ts (/__simulator/*), types.ts (public shapes).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { LoopbackServer, RouteTable, TokenBucket, argValue, isObject, serveControl, sleep, splitUrl, stopOnSignals } from '../kit/server';
import { controlRoutes } from './control';
import type { Core, Outcome, RequestContext, WireResponse } from './exchange';
import { FAULT_KINDS, ruleMatches, seededRandom, validateFaultRule, type FaultKind, type FaultRule, type FaultSubjects, type Operation } from './faults';
import { APPROVED_STATUSES, SEARCH_PAGE_SIZE, Transactions, saleView, type SaleSettings } from './transactions';
import type {
  BraintreeSimulator,
  BraintreeSimulatorOptions,
  BraintreeSimulatorStats,
  ConfigureOptions,
  CustomerDetails,
  CustomerView,
  PaymentMethodOptions,
  SaleRecord,
  SendWebhookResult,
} from './types';
import { Vault } from './vault';
import { buildSignedWebhook, postSignedWebhook, type SignedWebhook, type WebhookDelivery, type WebhookSubject } from './webhooks';
import { randomId, type TransactionStatus } from './wire';
import { document } from './xml';
import { WithFaultBook } from '../kit/faults';

export type { FaultKind, FaultMatch, FaultRule, Operation } from './faults';
export { FAULT_KINDS, OPERATIONS } from './faults';
export type { SignedWebhook, SubscriptionSubject, WebhookDelivery, WebhookKeys, WebhookSubject } from './webhooks';
export { buildSignedWebhook, encodePayload, signPayload, subscriptionXml } from './webhooks';
export type { CardDetails, PaymentMethodKind, ProcessorResponseType, TransactionStatus } from './wire';
export type {
  BraintreeSimulator,
  BraintreeSimulatorOptions,
  BraintreeSimulatorStats,
  ConfigureOptions,
  CustomerDetails,
  CustomerView,
  PaymentMethodOptions,
  SaleRecord,
  SendWebhookResult,
} from './types';
export { SEARCH_PAGE_SIZE } from './transactions';

export const SIMULATOR_MERCHANT_ID = 'meterdesk_sim';
export const SIMULATOR_PUBLIC_KEY = 'sim_public_key';
export const SIMULATOR_PRIVATE_KEY = 'sim_private_key';
export const SIMULATOR_MERCHANT_ACCOUNT_ID = 'meterdesk_usd';

interface Route {
  operation: Operation;
  subjects?: (params: Record<string, unknown>) => FaultSubjects | undefined;
  /** Before the gateway's processing time: may refuse the request at once, else holds what it needs until release. */
  admit?: (params: Record<string, unknown>) => { refuse?: Outcome; release: () => void };
  handle: (ctx: RequestContext) => Outcome;
}

function emptyStats(): BraintreeSimulatorStats {
  const faultsApplied = {} as Record<FaultKind, number>;
  for (const k of FAULT_KINDS) faultsApplied[k] = 0;
  return {
    requests: 0,
    byStatus: {},
    byOperation: {},
    sales: 0,
    approved: 0,
    processorDeclined: 0,
    gatewayRejected: 0,
    failed: 0,
    validationErrors: 0,
    duplicatesRejected: 0,
    searches: 0,
    authFailures: 0,
    rateLimited: 0,
    serverErrors: 0,
    timeoutsHeld: 0,
    connectionsReset: 0,
    webhooksSent: 0,
    webhooksFailed: 0,
    faultsApplied,
  };
}

class Simulator extends WithFaultBook<FaultRule> implements BraintreeSimulator {
  url = '';
  host: string;
  port = 0;
  readonly merchantId: string;
  readonly publicKey: string;
  readonly privateKey: string;
  readonly defaultMerchantAccountId: string;
  environmentArgs: BraintreeSimulator['environmentArgs'] = ['', '', '', false, '', ''];
  gatewayTarget: BraintreeSimulator['gatewayTarget'];

  private readonly server: LoopbackServer;
  private readonly baseClock: () => number;
  private clockOffset = 0;
  private webhookUrl: string | undefined;
  private readonly webhookTimeoutMs: number;
  private latencyMs: number;
  private saleLatencyMs: number;
  private readonly settings: SaleSettings;
  private readonly gzip: boolean;
  private readonly random: () => number;
  private readonly bucket: TokenBucket;

  private readonly vault: Vault;
  private readonly transactions: Transactions;
  private deliveries: WebhookDelivery[] = [];
  private statsData = emptyStats();
  private statusCounts = new Map<number, number>();

  private readonly routes = new RouteTable<Route>();

  constructor(private readonly opts: BraintreeSimulatorOptions) {
    super(validateFaultRule);
    this.host = opts.host ?? '127.0.0.1';
    this.merchantId = opts.merchantId ?? SIMULATOR_MERCHANT_ID;
    this.publicKey = opts.publicKey ?? SIMULATOR_PUBLIC_KEY;
    this.privateKey = opts.privateKey ?? SIMULATOR_PRIVATE_KEY;
    const accounts = Object.entries(opts.merchantAccounts ?? { [SIMULATOR_MERCHANT_ACCOUNT_ID]: 'USD' });
    if (accounts.length === 0) throw new Error('merchantAccounts must name at least one merchant account');
    this.defaultMerchantAccountId = accounts[0]![0];
    this.baseClock = opts.clock ?? Date.now;
    this.webhookUrl = opts.webhookUrl;
    this.webhookTimeoutMs = opts.webhookTimeoutMs ?? 10_000;
    this.latencyMs = opts.latencyMs ?? 0;
    this.saleLatencyMs = opts.saleLatencyMs ?? 0;
    this.settings = { apiUser: opts.apiUser ?? 'meterdesk_simulator', amountRules: opts.amountRules ?? true, tokenRules: opts.tokenRules ?? true, duplicateWindowMs: opts.duplicateWindowMs ?? 0 };
    this.gzip = opts.gzip ?? true;
    this.random = opts.seed === undefined ? Math.random : seededRandom(opts.seed);
    this.bucket = new TokenBucket(opts.ratePerSecond ?? 0);
    this.gatewayTarget = { url: '', merchantId: this.merchantId, publicKey: this.publicKey, privateKey: this.privateKey };
    const core: Core = { now: () => this.now(), stats: () => this.statsData };
    this.vault = new Vault(core);
    this.transactions = new Transactions(core, this.vault, this.settings, new Map(accounts), this.defaultMerchantAccountId, { book: this.faultBook, random: this.random });
    this.registerRoutes();
    this.server = new LoopbackServer(this.host, {
      api: (req, res, body) => this.dispatch(req, res, body),
      control: (req, res, body) => this.control(req, res, body),
      tooLarge: (req, res) => this.reply(req, res, { status: 413 }),
      failed: (req, res, err) => {
        const message = err instanceof Error ? err.message : String(err);
        this.reply(req, res, { status: 500, xml: `<error><message>Simulator error: ${message.replace(/[<&]/g, ' ')}</message></error>` });
      },
    });
  }

  async listen(): Promise<void> {
    await this.server.listen(this.opts.port ?? 0);
    this.port = this.server.port;
    this.url = this.server.url;
    const port = String(this.port);
    this.environmentArgs = [this.host, port, this.url, false, this.host, port];
    this.gatewayTarget = { url: this.url, merchantId: this.merchantId, publicKey: this.publicKey, privateKey: this.privateKey };
  }

  async stop(): Promise<void> {
    await this.server.stop();
  }

  now(): number {
    return this.baseClock() + this.clockOffset;
  }

  advanceClock(ms: number): void {
    this.clockOffset += ms;
  }

  // ---------------------------------------------------------------- vault

  addCustomer(id?: string, details: CustomerDetails = {}): string {
    return this.vault.addCustomer(id, details);
  }

  addPaymentMethod(customerId: string, token?: string, opts: PaymentMethodOptions = {}): string {
    return this.vault.addPaymentMethod(customerId, token, opts);
  }

  removePaymentMethod(token: string): boolean {
    return this.vault.removePaymentMethod(token);
  }

  setDefaultPaymentMethod(token: string): void {
    this.vault.setDefaultPaymentMethod(token);
  }

  customer(id: string): CustomerView | undefined {
    return this.vault.customer(id);
  }

  // ---------------------------------------------------------------- faults, configuration, records


  configure(opts: ConfigureOptions): void {
    if (opts.webhookUrl !== undefined) this.webhookUrl = opts.webhookUrl ?? undefined;
    if (opts.latencyMs !== undefined) this.latencyMs = opts.latencyMs;
    if (opts.saleLatencyMs !== undefined) this.saleLatencyMs = opts.saleLatencyMs;
    if (opts.amountRules !== undefined) this.settings.amountRules = opts.amountRules;
    if (opts.tokenRules !== undefined) this.settings.tokenRules = opts.tokenRules;
    if (opts.duplicateWindowMs !== undefined) this.settings.duplicateWindowMs = opts.duplicateWindowMs;
    if (opts.ratePerSecond !== undefined) {
      this.bucket.setRate(opts.ratePerSecond);
      this.bucket.refill();
    }
  }

  reset(opts: { all?: boolean } = {}): void {
    this.faultBook.clear();
    this.transactions.clear();
    this.deliveries = [];
    this.server.releaseHeld();
    this.statsData = emptyStats();
    this.statusCounts.clear();
    this.clockOffset = 0;
    this.bucket.refill();
    if (opts.all) this.vault.clear();
  }

  sales(filter: { orderId?: string; status?: TransactionStatus } = {}): SaleRecord[] {
    return this.transactions.order
      .filter((tx) => (filter.orderId === undefined || tx.orderId === filter.orderId) && (filter.status === undefined || tx.status === filter.status))
      .map(saleView);
  }

  transaction(id: string): SaleRecord | undefined {
    const tx = this.transactions.byId.get(id);
    return tx ? saleView(tx) : undefined;
  }

  salesByOrderId(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const tx of this.transactions.order) if (tx.orderId !== null) counts.set(tx.orderId, (counts.get(tx.orderId) ?? 0) + 1);
    return counts;
  }

  approvedSalesByOrderId(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const tx of this.transactions.order) {
      if (tx.orderId !== null && APPROVED_STATUSES.has(tx.status)) counts.set(tx.orderId, (counts.get(tx.orderId) ?? 0) + 1);
    }
    return counts;
  }

  settle(transactionId?: string): number {
    return this.transactions.settle(transactionId);
  }

  stats(): BraintreeSimulatorStats {
    const byStatus: Record<string, number> = {};
    for (const [status, n] of this.statusCounts) byStatus[String(status)] = n;
    return { ...this.statsData, byStatus, byOperation: { ...this.statsData.byOperation }, faultsApplied: { ...this.statsData.faultsApplied } };
  }

  buildWebhook(kind: string, subject: WebhookSubject): SignedWebhook {
    return buildSignedWebhook({ publicKey: this.publicKey, privateKey: this.privateKey }, kind, subject, this.now());
  }

  async sendWebhook(kind: string, subject: WebhookSubject): Promise<SendWebhookResult> {
    const webhook = this.buildWebhook(kind, subject);
    const delivery = await postSignedWebhook(this.webhookUrl, webhook, this.webhookTimeoutMs);
    this.deliveries.push(delivery);
    if (delivery.ok) this.statsData.webhooksSent += 1;
    else this.statsData.webhooksFailed += 1;
    return { status: delivery.status, ok: delivery.ok, webhook };
  }

  webhookDeliveries(): WebhookDelivery[] {
    return this.deliveries.map((d) => ({ ...d }));
  }

  // ---------------------------------------------------------------- routes

  private registerRoutes(): void {
    const add = (method: string, path: string | RegExp, route: Route) => this.routes.add(method, path, route);
    const tx = this.transactions;
    const vault = this.vault;
    add('POST', '/transactions', { operation: 'transaction.sale', subjects: (p) => tx.saleSubjects(p), admit: (p) => tx.admitSale(p), handle: (ctx) => tx.create(ctx) });
    add('POST', '/transactions/advanced_search_ids', { operation: 'transaction.search_ids', handle: (ctx) => tx.search(ctx, false) });
    add('POST', '/transactions/advanced_search', { operation: 'transaction.search', handle: (ctx) => tx.search(ctx, true) });
    add('GET', /^\/transactions\/([^/]+)$/, { operation: 'transaction.find', handle: (ctx) => tx.find(ctx) });
    add('PUT', /^\/transactions\/([^/]+)\/void$/, { operation: 'transaction.void', handle: (ctx) => tx.void(ctx) });
    add('PUT', /^\/transactions\/([^/]+)\/submit_for_settlement$/, { operation: 'transaction.submit_for_settlement', handle: (ctx) => tx.submitForSettlement(ctx) });
    for (const op of ['settle', 'settlement_confirm', 'settlement_decline', 'settlement_pending']) {
      add('PUT', new RegExp(`^/transactions/([^/]+)/${op}$`), { operation: 'transaction.testing', handle: (ctx) => tx.testingTransition(ctx, op) });
    }
    add('POST', '/customers', { operation: 'customer.create', handle: (ctx) => vault.createCustomer(ctx) });
    add('GET', /^\/customers\/([^/]+)$/, { operation: 'customer.find', handle: (ctx) => vault.findCustomer(ctx) });
    add('DELETE', /^\/customers\/([^/]+)$/, { operation: 'customer.delete', handle: (ctx) => vault.deleteCustomerOverWire(ctx) });
    add('POST', '/payment_methods', { operation: 'payment_method.create', handle: (ctx) => vault.createPaymentMethod(ctx) });
    add('GET', /^\/payment_methods\/any\/([^/]+)$/, { operation: 'payment_method.find', handle: (ctx) => vault.findPaymentMethod(ctx) });
    add('DELETE', /^\/payment_methods\/any\/([^/]+)$/, { operation: 'payment_method.delete', handle: (ctx) => vault.deletePaymentMethod(ctx) });
  }

  // ---------------------------------------------------------------- HTTP plumbing

  private reply(req: IncomingMessage, res: ServerResponse, r: WireResponse): void {
    this.statusCounts.set(r.status, (this.statusCounts.get(r.status) ?? 0) + 1);
    if (r.status === 429) this.statsData.rateLimited += 1;
    if (r.status >= 500) this.statsData.serverErrors += 1;
    if (res.destroyed || res.writableEnded) return;
    const headers: Record<string, string | number> = { 'x-request-id': randomId(16) };
    if (r.xml === undefined) {
      headers['content-length'] = 0;
      res.writeHead(r.status, headers);
      res.end();
      return;
    }
    let body = Buffer.from(document(r.xml), 'utf8');
    headers['content-type'] = 'application/xml; charset=utf-8';
    if (this.gzip && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) {
      body = gzipSync(body);
      headers['content-encoding'] = 'gzip';
    }
    headers['content-length'] = body.length;
    res.writeHead(r.status, headers);
    res.end(body);
  }

  private hold(res: ServerResponse): void {
    this.statsData.timeoutsHeld += 1;
    this.server.hold(res);
  }

  private resetSocket(req: IncomingMessage): void {
    this.statsData.connectionsReset += 1;
    this.server.resetSocket(req);
  }

  /** The merchant id the Basic credentials belong to, or undefined when they are nobody's. */
  private authorized(header: string | undefined): string | undefined {
    const m = /^Basic\s+(.+)$/i.exec(header ?? '');
    if (!m) return undefined;
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i === -1) return undefined;
    const [publicKey, privateKey] = [decoded.slice(0, i), decoded.slice(i + 1)];
    if (publicKey === this.publicKey && privateKey === this.privateKey) return this.merchantId;
    return this.opts.otherMerchants?.find((o) => o.publicKey === publicKey && o.privateKey === privateKey)?.merchantId;
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, rawBody: string): Promise<void> {
    this.statsData.requests += 1;
    const method = req.method ?? 'GET';
    const m = /^\/merchants\/([^/]+)(\/.*)$/.exec(splitUrl(req.url).path);
    if (!m) return this.reply(req, res, { status: 404 });
    const path = m[2]!;
    const found = this.routes.find(method, path);
    if (!found) return this.reply(req, res, { status: 404 });
    const { route, pathId } = found;
    this.statsData.byOperation[route.operation] = (this.statsData.byOperation[route.operation] ?? 0) + 1;

    const merchant = this.authorized(req.headers.authorization);
    if (merchant === undefined) {
      this.statsData.authFailures += 1;
      return this.reply(req, res, { status: 401 });
    }
    // Simulator choice: valid keys for another merchant id are an authorization failure (the SDK's 403).
    if (m[1] !== merchant) return this.reply(req, res, { status: 403 });

    let params: Record<string, unknown> = {};
    if (rawBody.length > 0) {
      try {
        const parsed: unknown = JSON.parse(rawBody);
        if (!isObject(parsed)) throw new Error('not an object');
        params = parsed;
      } catch {
        return this.reply(req, res, { status: 400, xml: '<error><message>Request body must be a JSON object.</message></error>' });
      }
    }

    let fault: FaultRule | undefined;
    if (this.faultBook.size > 0) {
      const subjects = route.subjects?.(params);
      const exchange = { method, path, operation: route.operation };
      fault = this.faultBook.pick((rule) => ruleMatches(rule, 'exchange', exchange, subjects), this.random);
      if (fault) {
        this.statsData.faultsApplied[fault.kind] += 1;
        switch (fault.kind) {
          case 'timeout_not_applied':
            return this.hold(res);
          case 'reset_not_applied':
            return this.resetSocket(req);
          case 'rate_limit':
            return this.reply(req, res, { status: 429 });
          case 'server_error':
            return this.reply(req, res, { status: fault.status ?? 500 });
          default:
            break;
        }
      }
    }
    if (this.bucket.enabled && !this.bucket.take()) return this.reply(req, res, { status: 429 });

    // The gateway keeps processing a request whose client went away: the sale below is recorded regardless.
    const wait = (fault?.kind === 'slow' ? (fault.delayMs ?? 1000) : 0) + this.latencyMs + (route.operation === 'transaction.sale' ? this.saleLatencyMs : 0);
    const admitted = route.admit?.(params);
    if (admitted?.refuse) return this.reply(req, res, admitted.refuse.response);
    let outcome: Outcome;
    try {
      if (wait > 0) await sleep(wait);
      outcome = route.handle({ method, path, pathId, params });
    } finally {
      admitted?.release();
    }

    if (fault?.kind === 'timeout_applied' || fault?.kind === 'reset_applied') {
      if (outcome.sale) outcome.sale.fault = fault.kind;
      return fault.kind === 'timeout_applied' ? this.hold(res) : this.resetSocket(req);
    }
    this.reply(req, res, outcome.response);
  }

  // ---------------------------------------------------------------- control API (/__simulator/*)

  private control(req: IncomingMessage, res: ServerResponse, rawBody: string): Promise<void> {
    const config = () => ({
      webhook_url: this.webhookUrl ?? null,
      latency_ms: this.latencyMs,
      sale_latency_ms: this.saleLatencyMs,
      amount_rules: this.settings.amountRules,
      token_rules: this.settings.tokenRules,
      duplicate_window_ms: this.settings.duplicateWindowMs,
    });
    return serveControl(req, res, rawBody, this, validateFaultRule, controlRoutes(this, config), { merchant_id: this.merchantId });
  }
}

export async function startBraintreeSimulator(opts: BraintreeSimulatorOptions = {}): Promise<BraintreeSimulator> {
  const sim = new Simulator(opts);
  await sim.listen();
  return sim;
}

/** Options from `--port N --host H --webhook-url U --merchant-id M --public-key K --private-key P --seed S ...`. */
export function simulatorOptionsFromArgs(args: readonly string[]): BraintreeSimulatorOptions {
  const arg = (name: string): string | undefined => argValue(args, name);
  const num = (name: string): number | undefined => {
    const v = arg(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`--${name} must be a number`);
    return n;
  };
  const options: BraintreeSimulatorOptions = {};
  const set = <K extends keyof BraintreeSimulatorOptions>(key: K, value: BraintreeSimulatorOptions[K] | undefined) => {
    if (value !== undefined) options[key] = value;
  };
  set('port', num('port'));
  set('host', arg('host'));
  set('webhookUrl', arg('webhook-url'));
  set('merchantId', arg('merchant-id'));
  set('publicKey', arg('public-key'));
  set('privateKey', arg('private-key'));
  set('seed', num('seed'));
  set('latencyMs', num('latency-ms'));
  set('saleLatencyMs', num('sale-latency-ms'));
  set('duplicateWindowMs', num('duplicate-window-ms'));
  if (args.includes('--no-amount-rules')) options.amountRules = false;
  if (args.includes('--no-token-rules')) options.tokenRules = false;
  return options;
}

/** Starts a simulator from CLI args, prints one JSON line (url and credentials) and runs until SIGINT/SIGTERM. */
export async function runSimulatorCli(args: readonly string[]): Promise<BraintreeSimulator> {
  const sim = await startBraintreeSimulator(simulatorOptionsFromArgs(args));
  process.stdout.write(
    `${JSON.stringify({ url: sim.url, host: sim.host, port: sim.port, merchantId: sim.merchantId, publicKey: sim.publicKey, privateKey: sim.privateKey })}\n`,
  );
  stopOnSignals(() => sim.stop());
  return sim;
}

// Out-of-process use: `npx tsx simulators/braintree/simulator.ts --port 4010` (or `npm run cli -- simulator braintree`).
const entry = process.argv[1];
if (entry && import.meta.url === pathToFileURL(resolvePath(entry)).href) {
  await runSimulatorCli(process.argv.slice(2));
}
