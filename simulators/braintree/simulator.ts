// A loopback HTTP server speaking the Braintree gateway's wire format (JSON requests with underscored keys,
// XML responses, Basic auth with the public and private keys) for customers, vaulted payment methods,
// Transaction.sale / find / search / void / submit_for_settlement and the sandbox testing calls, plus signed
// webhooks and scriptable faults. The real `braintree` SDK talks to it through
// `new braintree.Environment(host, port, url, false, host, port)` (see `gatewayFor` in test/support/braintree-gateway.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { LoopbackServer, RouteTable, TokenBucket, argValue, isObject, serveControl, sleep, splitUrl, stopOnSignals, str, type ControlHandler } from '../kit/server';
import { FAULT_KINDS, FaultBook, ruleMatches, seededRandom, validateFaultRule, type FaultKind, type FaultRule, type FaultSubjects, type Operation } from './faults';
import { buildSignedWebhook, postSignedWebhook, type SignedWebhook, type WebhookDelivery, type WebhookSubject } from './webhooks';
import {
  PATH_SAFE_ID,
  apiErrorResponseXml,
  customerXml,
  decisionForAmount,
  decisionForToken,
  parseAmount,
  paymentMethodXml,
  processorResponse,
  randomId,
  searchIdsXml,
  searchPageXml,
  transactionError,
  transactionXml,
  validationMessage,
  type CardDetails,
  type CustomerRecord,
  type PaymentMethodKind,
  type PaymentMethodRecord,
  type ProcessorResponseType,
  type SaleDecision,
  type TransactionRecord,
  type TransactionStatus,
  type ValidationError,
} from './wire';
import { compileSearch, UnsupportedSearch, type Criterion } from './search';
import { document } from './xml';

export type { FaultKind, FaultMatch, FaultRule, Operation } from './faults';
export { FAULT_KINDS, OPERATIONS } from './faults';
export type { SignedWebhook, SubscriptionSubject, WebhookDelivery, WebhookKeys, WebhookSubject } from './webhooks';
export { buildSignedWebhook, encodePayload, signPayload, subscriptionXml } from './webhooks';
export type { CardDetails, PaymentMethodKind, ProcessorResponseType, TransactionStatus } from './wire';

export const SIMULATOR_MERCHANT_ID = 'meterdesk_sim';
export const SIMULATOR_PUBLIC_KEY = 'sim_public_key';
export const SIMULATOR_PRIVATE_KEY = 'sim_private_key';
export const SIMULATOR_MERCHANT_ACCOUNT_ID = 'meterdesk_usd';

/** Transactions per page of `advanced_search` (and the page size announced by `advanced_search_ids`). */
export const SEARCH_PAGE_SIZE = 50;

const APPROVED_STATUSES: ReadonlySet<TransactionStatus> = new Set([
  'authorized',
  'submitted_for_settlement',
  'settling',
  'settlement_pending',
  'settled',
  'settlement_confirmed',
]);

export interface BraintreeSimulatorOptions {
  /** 0 = pick a free port (default). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  merchantId?: string;
  publicKey?: string;
  privateKey?: string;
  /** Merchant account id -> currency. The first is the default. Default `{ meterdesk_usd: 'USD' }`. */
  merchantAccounts?: Record<string, string>;
  /** Where `sendWebhook` POSTs (form-encoded bt_signature / bt_payload). Can be set later with configure(). */
  webhookUrl?: string;
  /** Webhook POST timeout (default 10 s). */
  webhookTimeoutMs?: number;
  /** Added latency for every gateway call, ms (default 0). */
  latencyMs?: number;
  /** Further latency for sales only, ms (default 0): the gateway's processing time, during which the sale is in flight. */
  saleLatencyMs?: number;
  /** Braintree's sandbox test amounts (2000.00-2999.99 decline, 3000.xx fail, 5001.00 rejected). Default true. */
  amountRules?: boolean;
  /** Declines chosen by the token's name (`soft_decline`, `insufficient`, `hard_decline`, `gateway_rejected` ...). Default true. */
  tokenRules?: boolean;
  /**
   * Duplicate transaction checking: a sale with the same token and amount as an approved one within this many ms
   * is gateway_rejected (reason `duplicate`). Default 0 = off, so a double charge shows up as two sales.
   */
  duplicateWindowMs?: number;
  /** Token bucket for all gateway calls; above it -> 429. Default 0 = unlimited (Braintree publishes no fixed rate). */
  ratePerSecond?: number;
  /** Business clock in ms (created-at, status history, duplicate window). Default Date.now. */
  clock?: () => number;
  /** Seed for fault probabilities, so a chaos run can be replayed. */
  seed?: number;
  /** Gzip responses when the client accepts it, as the gateway does (default true). */
  gzip?: boolean;
}

export interface ConfigureOptions {
  webhookUrl?: string | null;
  latencyMs?: number;
  saleLatencyMs?: number;
  amountRules?: boolean;
  tokenRules?: boolean;
  duplicateWindowMs?: number;
  ratePerSecond?: number;
}

export interface CustomerDetails {
  firstName?: string;
  lastName?: string;
  email?: string;
  company?: string;
}

export interface PaymentMethodOptions {
  /** Default `credit_card`. */
  kind?: PaymentMethodKind;
  /** Default: true for the customer's first payment method, else false. */
  makeDefault?: boolean;
  card?: Partial<CardDetails>;
  paypalEmail?: string;
}

/** One transaction as the simulator recorded it (every sale attempt that passed validation, declined or not). */
export interface SaleRecord {
  id: string;
  orderId: string | null;
  amount: string;
  currencyIsoCode: string;
  merchantAccountId: string;
  customerId: string | null;
  paymentMethodToken: string | null;
  status: TransactionStatus;
  processorResponseCode: string | null;
  processorResponseText: string | null;
  processorResponseType: ProcessorResponseType | null;
  gatewayRejectionReason: string | null;
  transactionSource: string | null;
  /** Business clock ms. */
  createdAt: number;
  /** `timeout_applied` / `reset_applied` when the client never got this sale's answer. */
  fault: FaultKind | null;
}

export interface CustomerView {
  id: string;
  firstName: string | null;
  lastName: string | null;
  email: string | null;
  company: string | null;
  defaultPaymentMethodToken: string | null;
  paymentMethods: Array<{ token: string; kind: PaymentMethodKind; default: boolean }>;
}

export interface BraintreeSimulatorStats {
  requests: number;
  byStatus: Record<string, number>;
  byOperation: Record<string, number>;
  /** Transactions created (all outcomes). */
  sales: number;
  approved: number;
  processorDeclined: number;
  gatewayRejected: number;
  failed: number;
  /** 422s with validation errors (no transaction created). */
  validationErrors: number;
  duplicatesRejected: number;
  searches: number;
  authFailures: number;
  rateLimited: number;
  serverErrors: number;
  timeoutsHeld: number;
  connectionsReset: number;
  webhooksSent: number;
  webhooksFailed: number;
  faultsApplied: Record<FaultKind, number>;
}

export interface SendWebhookResult {
  status: number;
  ok: boolean;
  webhook: SignedWebhook;
}

export interface BraintreeSimulator {
  url: string;
  host: string;
  port: number;
  readonly merchantId: string;
  readonly publicKey: string;
  readonly privateKey: string;
  /** `new braintree.Environment(...sim.environmentArgs)`. */
  readonly environmentArgs: [server: string, port: string, authUrl: string, ssl: boolean, graphQLServer: string, graphQLPort: string];
  /** `{ url, merchantId, publicKey, privateKey }`, for `gatewayFor(sim.gatewayTarget, { timeoutMs })`. */
  readonly gatewayTarget: { url: string; merchantId: string; publicKey: string; privateKey: string };
  readonly defaultMerchantAccountId: string;
  stop(): Promise<void>;

  /** Idempotent; returns the id (random when absent). Ids must match /^[A-Za-z0-9_-]{1,36}$/ like Braintree's. */
  addCustomer(id?: string, details?: CustomerDetails): string;
  /** Vaults a payment method for the customer (created if missing); idempotent for the same owner. Returns the token. */
  addPaymentMethod(customerId: string, token?: string, opts?: PaymentMethodOptions): string;
  removePaymentMethod(token: string): boolean;
  setDefaultPaymentMethod(token: string): void;
  customer(id: string): CustomerView | undefined;

  addFault(rule: FaultRule): FaultRule;
  removeFault(id: string): boolean;
  faults(): FaultRule[];
  clearFaults(): void;
  /** Clears transactions, faults, webhook deliveries, stats and the clock offset; `all` also forgets customers and payment methods. */
  reset(opts?: { all?: boolean }): void;
  configure(opts: ConfigureOptions): void;
  advanceClock(ms: number): void;
  now(): number;

  sales(filter?: { orderId?: string; status?: TransactionStatus }): SaleRecord[];
  transaction(id: string): SaleRecord | undefined;
  /** Transactions per order id, any outcome. */
  salesByOrderId(): Map<string, number>;
  /** Approved transactions (authorized, submitted_for_settlement, settling, settled ...) per order id: a double charge shows as 2. */
  approvedSalesByOrderId(): Map<string, number>;
  /** Moves submitted_for_settlement transactions to settled (one, or all when no id); returns how many moved. */
  settle(transactionId?: string): number;
  stats(): BraintreeSimulatorStats;

  /** A signed bt_signature / bt_payload pair, not sent. */
  buildWebhook(kind: string, subject: WebhookSubject): SignedWebhook;
  /** Builds and POSTs a signed webhook (form-encoded) to the configured webhook URL. */
  sendWebhook(kind: string, subject: WebhookSubject): Promise<SendWebhookResult>;
  webhookDeliveries(): WebhookDelivery[];
}

interface RequestContext {
  method: string;
  /** Path after `/merchants/<id>`. */
  path: string;
  pathId: string | undefined;
  params: Record<string, unknown>;
}

interface WireResponse {
  status: number;
  /** XML root element; absent for bodiless answers (401, 404, 5xx ...). */
  xml?: string;
}

interface Outcome {
  response: WireResponse;
  /** The transaction a sale created, to mark it when its answer is lost. */
  sale?: TransactionRecord;
}

interface Route {
  operation: Operation;
  subjects?: (params: Record<string, unknown>) => FaultSubjects | undefined;
  handle: (ctx: RequestContext) => Outcome;
}

type Resolved =
  | { ok: true; method: PaymentMethodRecord | undefined; nonce: NonceInfo | undefined; customerId: string | null }
  | { ok: false; errors: ValidationError[] };

interface NonceInfo {
  nonce: string;
  kind: PaymentMethodKind;
  card: CardDetails | null;
  paypalEmail: string | null;
}

const truthy = (v: unknown): boolean => v === true || v === 'true' || v === 1 || v === '1';

const CARD_BRANDS: Record<string, CardDetails> = {
  visa: { bin: '411111', last4: '1111', cardType: 'Visa', expirationMonth: '12', expirationYear: '2030', cardholderName: null },
  mastercard: { bin: '555555', last4: '4444', cardType: 'MasterCard', expirationMonth: '12', expirationYear: '2030', cardholderName: null },
  amex: { bin: '378282', last4: '0005', cardType: 'American Express', expirationMonth: '12', expirationYear: '2030', cardholderName: null },
  discover: { bin: '601111', last4: '1117', cardType: 'Discover', expirationMonth: '12', expirationYear: '2030', cardholderName: null },
};

/** The sandbox's fake nonces: `fake-valid-nonce`, `fake-valid-<brand>-nonce`, `fake-paypal-*-nonce`. */
function nonceInfo(nonce: string): NonceInfo | 'consumed' | 'unknown' {
  if (nonce === 'fake-consumed-nonce') return 'consumed';
  if (/^fake-paypal-[a-z-]+-nonce$/.test(nonce)) return { nonce, kind: 'paypal_account', card: null, paypalEmail: 'payer@example.com' };
  const m = /^fake-(?:valid|processor-declined)-(?:([a-z]+)-)?nonce$/.exec(nonce);
  if (m) return { nonce, kind: 'credit_card', card: { ...(CARD_BRANDS[m[1] ?? 'visa'] ?? CARD_BRANDS.visa!) }, paypalEmail: null };
  return 'unknown';
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

function saleView(tx: TransactionRecord): SaleRecord {
  return {
    id: tx.id,
    orderId: tx.orderId,
    amount: tx.amount,
    currencyIsoCode: tx.currencyIsoCode,
    merchantAccountId: tx.merchantAccountId,
    customerId: tx.customerId,
    paymentMethodToken: tx.paymentMethodToken,
    status: tx.status,
    processorResponseCode: tx.processorResponseCode,
    processorResponseText: tx.processorResponseText,
    processorResponseType: tx.processorResponseType,
    gatewayRejectionReason: tx.gatewayRejectionReason,
    transactionSource: tx.transactionSource,
    createdAt: tx.createdAt,
    fault: tx.fault,
  };
}

class Simulator implements BraintreeSimulator {
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
  private readonly merchantAccounts: Map<string, string>;
  private readonly baseClock: () => number;
  private clockOffset = 0;
  private webhookUrl: string | undefined;
  private readonly webhookTimeoutMs: number;
  private latencyMs: number;
  private saleLatencyMs: number;
  private amountRules: boolean;
  private tokenRules: boolean;
  private duplicateWindowMs: number;
  private readonly gzip: boolean;
  private readonly random: () => number;
  private readonly bucket: TokenBucket;

  private readonly faultBook = new FaultBook<FaultRule>();
  private customers = new Map<string, CustomerRecord>();
  private methods = new Map<string, PaymentMethodRecord>();
  private transactions = new Map<string, TransactionRecord>();
  /** Creation order, for listing and search results. */
  private transactionOrder: TransactionRecord[] = [];
  private deliveries: WebhookDelivery[] = [];
  private statsData = emptyStats();
  private statusCounts = new Map<number, number>();

  private readonly routes = new RouteTable<Route>();

  constructor(private readonly opts: BraintreeSimulatorOptions) {
    this.host = opts.host ?? '127.0.0.1';
    this.merchantId = opts.merchantId ?? SIMULATOR_MERCHANT_ID;
    this.publicKey = opts.publicKey ?? SIMULATOR_PUBLIC_KEY;
    this.privateKey = opts.privateKey ?? SIMULATOR_PRIVATE_KEY;
    const accounts = Object.entries(opts.merchantAccounts ?? { [SIMULATOR_MERCHANT_ACCOUNT_ID]: 'USD' });
    if (accounts.length === 0) throw new Error('merchantAccounts must name at least one merchant account');
    this.merchantAccounts = new Map(accounts);
    this.defaultMerchantAccountId = accounts[0]![0];
    this.baseClock = opts.clock ?? Date.now;
    this.webhookUrl = opts.webhookUrl;
    this.webhookTimeoutMs = opts.webhookTimeoutMs ?? 10_000;
    this.latencyMs = opts.latencyMs ?? 0;
    this.saleLatencyMs = opts.saleLatencyMs ?? 0;
    this.amountRules = opts.amountRules ?? true;
    this.tokenRules = opts.tokenRules ?? true;
    this.duplicateWindowMs = opts.duplicateWindowMs ?? 0;
    this.gzip = opts.gzip ?? true;
    this.random = opts.seed === undefined ? Math.random : seededRandom(opts.seed);
    this.bucket = new TokenBucket(opts.ratePerSecond ?? 0);
    this.gatewayTarget = { url: '', merchantId: this.merchantId, publicKey: this.publicKey, privateKey: this.privateKey };
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
    const customerId = id ?? randomId(9, '0123456789');
    if (!PATH_SAFE_ID.test(customerId)) throw new Error(`customer id ${JSON.stringify(customerId)} must match ${PATH_SAFE_ID} (Braintree's rule)`);
    const existing = this.customers.get(customerId);
    if (existing) {
      if (details.firstName !== undefined) existing.firstName = details.firstName;
      if (details.lastName !== undefined) existing.lastName = details.lastName;
      if (details.email !== undefined) existing.email = details.email;
      if (details.company !== undefined) existing.company = details.company;
      return customerId;
    }
    const now = this.now();
    this.customers.set(customerId, {
      id: customerId,
      firstName: details.firstName ?? null,
      lastName: details.lastName ?? null,
      email: details.email ?? null,
      company: details.company ?? null,
      createdAt: now,
      updatedAt: now,
      tokens: [],
      defaultToken: null,
    });
    return customerId;
  }

  addPaymentMethod(customerId: string, token?: string, opts: PaymentMethodOptions = {}): string {
    const pmToken = token ?? randomId(7);
    if (!PATH_SAFE_ID.test(pmToken)) throw new Error(`payment method token ${JSON.stringify(pmToken)} must match ${PATH_SAFE_ID} (Braintree's rule)`);
    const existing = this.methods.get(pmToken);
    if (existing && existing.customerId !== customerId) throw new Error(`payment method token ${pmToken} already belongs to customer ${existing.customerId}`);
    this.addCustomer(customerId);
    const customer = this.customers.get(customerId)!;
    if (!existing) {
      const kind = opts.kind ?? 'credit_card';
      const now = this.now();
      this.methods.set(pmToken, {
        token: pmToken,
        customerId,
        kind,
        card: kind === 'credit_card' ? { ...CARD_BRANDS.visa!, ...opts.card } : null,
        paypalEmail: kind === 'paypal_account' ? (opts.paypalEmail ?? 'payer@example.com') : null,
        createdAt: now,
        updatedAt: now,
      });
      customer.tokens.push(pmToken);
    }
    if (opts.makeDefault === true || (opts.makeDefault === undefined && customer.defaultToken === null)) customer.defaultToken = pmToken;
    return pmToken;
  }

  removePaymentMethod(token: string): boolean {
    const pm = this.methods.get(token);
    if (!pm) return false;
    this.methods.delete(token);
    const customer = this.customers.get(pm.customerId);
    if (customer) {
      customer.tokens = customer.tokens.filter((t) => t !== token);
      // Simulator choice: another vaulted method (the oldest) takes over as default, if any remains.
      if (customer.defaultToken === token) customer.defaultToken = customer.tokens[0] ?? null;
    }
    return true;
  }

  setDefaultPaymentMethod(token: string): void {
    const pm = this.methods.get(token);
    if (!pm) throw new Error(`no payment method ${token}`);
    this.customers.get(pm.customerId)!.defaultToken = token;
  }

  customer(id: string): CustomerView | undefined {
    const c = this.customers.get(id);
    if (!c) return undefined;
    return {
      id: c.id,
      firstName: c.firstName,
      lastName: c.lastName,
      email: c.email,
      company: c.company,
      defaultPaymentMethodToken: c.defaultToken,
      paymentMethods: c.tokens.map((t) => ({ token: t, kind: this.methods.get(t)!.kind, default: t === c.defaultToken })),
    };
  }

  private methodsOf(c: CustomerRecord): PaymentMethodRecord[] {
    return c.tokens.map((t) => this.methods.get(t)!).filter(Boolean);
  }

  private deleteCustomer(id: string): boolean {
    const c = this.customers.get(id);
    if (!c) return false;
    for (const t of c.tokens) this.methods.delete(t);
    this.customers.delete(id);
    return true;
  }

  // ---------------------------------------------------------------- faults and control

  addFault(rule: FaultRule): FaultRule {
    return this.faultBook.add(validateFaultRule(rule));
  }

  removeFault(id: string): boolean {
    return this.faultBook.remove(id);
  }

  faults(): FaultRule[] {
    return this.faultBook.list();
  }

  clearFaults(): void {
    this.faultBook.clear();
  }

  configure(opts: ConfigureOptions): void {
    if (opts.webhookUrl !== undefined) this.webhookUrl = opts.webhookUrl ?? undefined;
    if (opts.latencyMs !== undefined) this.latencyMs = opts.latencyMs;
    if (opts.saleLatencyMs !== undefined) this.saleLatencyMs = opts.saleLatencyMs;
    if (opts.amountRules !== undefined) this.amountRules = opts.amountRules;
    if (opts.tokenRules !== undefined) this.tokenRules = opts.tokenRules;
    if (opts.duplicateWindowMs !== undefined) this.duplicateWindowMs = opts.duplicateWindowMs;
    if (opts.ratePerSecond !== undefined) {
      this.bucket.setRate(opts.ratePerSecond);
      this.bucket.refill();
    }
  }

  reset(opts: { all?: boolean } = {}): void {
    this.faultBook.clear();
    this.transactions.clear();
    this.transactionOrder = [];
    this.deliveries = [];
    this.server.releaseHeld();
    this.statsData = emptyStats();
    this.statusCounts.clear();
    this.clockOffset = 0;
    this.bucket.refill();
    if (opts.all) {
      this.customers.clear();
      this.methods.clear();
    }
  }

  sales(filter: { orderId?: string; status?: TransactionStatus } = {}): SaleRecord[] {
    return this.transactionOrder
      .filter((tx) => (filter.orderId === undefined || tx.orderId === filter.orderId) && (filter.status === undefined || tx.status === filter.status))
      .map(saleView);
  }

  transaction(id: string): SaleRecord | undefined {
    const tx = this.transactions.get(id);
    return tx ? saleView(tx) : undefined;
  }

  salesByOrderId(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const tx of this.transactionOrder) if (tx.orderId !== null) counts.set(tx.orderId, (counts.get(tx.orderId) ?? 0) + 1);
    return counts;
  }

  approvedSalesByOrderId(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const tx of this.transactionOrder) {
      if (tx.orderId !== null && APPROVED_STATUSES.has(tx.status)) counts.set(tx.orderId, (counts.get(tx.orderId) ?? 0) + 1);
    }
    return counts;
  }

  settle(transactionId?: string): number {
    const targets = transactionId === undefined ? this.transactionOrder : [this.transactions.get(transactionId)].filter((t): t is TransactionRecord => t !== undefined);
    let moved = 0;
    for (const tx of targets) {
      if (tx.status === 'submitted_for_settlement' || tx.status === 'settling' || tx.status === 'settlement_pending') {
        this.transition(tx, 'settled');
        moved += 1;
      }
    }
    return moved;
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

  // ---------------------------------------------------------------- transactions

  private transition(tx: TransactionRecord, status: TransactionStatus): void {
    const now = this.now();
    tx.status = status;
    tx.updatedAt = now;
    tx.statusHistory.push({ status, amount: tx.amount, timestamp: now });
  }

  /** The payment method a sale charges: a token, a fake nonce, or the customer's default. */
  private resolvePaymentMethod(t: Record<string, unknown>): Resolved {
    const token = str(t.payment_method_token);
    const nonce = str(t.payment_method_nonce);
    const customerId = str(t.customer_id) ?? null;
    if (customerId !== null && !this.customers.has(customerId)) {
      return { ok: false, errors: [transactionError('customer_id', '91510', 'Customer ID is invalid.')] };
    }
    if (token) {
      const pm = this.methods.get(token);
      if (!pm) return { ok: false, errors: [transactionError('payment_method_token', '91518', 'Payment method token is invalid.')] };
      if (customerId !== null && pm.customerId !== customerId) {
        return {
          ok: false,
          errors: [transactionError('base', '91516', 'Cannot provide both payment_method_token and customer_id unless the payment_method belongs to the customer.')],
        };
      }
      return { ok: true, method: pm, nonce: undefined, customerId: pm.customerId };
    }
    if (nonce) {
      const info = nonceInfo(nonce);
      if (info === 'consumed') return { ok: false, errors: [transactionError('payment_method_nonce', '91564', 'Cannot use a payment_method_nonce more than once.')] };
      if (info === 'unknown') return { ok: false, errors: [transactionError('payment_method_nonce', '91565', 'Unknown payment_method_nonce.')] };
      return { ok: true, method: undefined, nonce: info, customerId };
    }
    if (customerId !== null) {
      const c = this.customers.get(customerId)!;
      const pm = c.defaultToken ? this.methods.get(c.defaultToken) : undefined;
      if (!pm) return { ok: false, errors: [transactionError('customer_id', '91511', 'Customer specified by customer_id does not have any credit cards.')] };
      return { ok: true, method: pm, nonce: undefined, customerId };
    }
    return { ok: false, errors: [transactionError('base', '91508', 'Cannot determine payment method.')] };
  }

  private saleSubjects(params: Record<string, unknown>): FaultSubjects | undefined {
    const t = isObject(params.transaction) ? params.transaction : undefined;
    if (!t) return undefined;
    const resolved = this.resolvePaymentMethod(t);
    const amount = parseAmount(t.amount);
    return {
      orderId: str(t.order_id),
      token: resolved.ok ? resolved.method?.token : str(t.payment_method_token),
      customerId: resolved.ok ? (resolved.customerId ?? undefined) : str(t.customer_id),
      amount: amount.ok ? amount.amount : undefined,
    };
  }

  private validation(errors: ValidationError[], params: unknown): Outcome {
    this.statsData.validationErrors += 1;
    return { response: { status: 422, xml: apiErrorResponseXml({ errors, message: validationMessage(errors), params }) } };
  }

  private createTransaction(ctx: RequestContext): Outcome {
    const params = ctx.params;
    const t = isObject(params.transaction) ? params.transaction : undefined;
    if (!t || str(t.type) === undefined) return this.validation([transactionError('type', '91524', 'Transaction type is required.')], params);
    // Credits (refund-like payouts) are outside what Meterdesk does; the simulator only takes sales.
    if (t.type !== 'sale') return this.validation([transactionError('type', '91523', 'Transaction type is invalid.')], params);

    const errors: ValidationError[] = [];
    const amount = parseAmount(t.amount);
    if (!amount.ok) errors.push(amount.error);
    const orderId = str(t.order_id) ?? null;
    if (orderId !== null && orderId.length > 255) errors.push(transactionError('order_id', '91501', 'Order ID is too long.'));
    const merchantAccountId = str(t.merchant_account_id) ?? this.defaultMerchantAccountId;
    const currency = this.merchantAccounts.get(merchantAccountId);
    if (currency === undefined) errors.push(transactionError('merchant_account_id', '91513', 'Merchant account ID is invalid.'));
    const resolved = this.resolvePaymentMethod(t);
    if (!resolved.ok) errors.push(...resolved.errors);
    if (errors.length > 0 || !amount.ok || !resolved.ok || currency === undefined) return this.validation(errors, params);

    const pm = resolved.method;
    const token = pm?.token ?? null;
    const subjects: FaultSubjects = { orderId: orderId ?? undefined, token: token ?? undefined, customerId: resolved.customerId ?? undefined, amount: amount.amount };
    const req = { method: ctx.method, path: ctx.path, operation: 'transaction.sale' as const };
    const fault = this.faultBook.pick((rule) => ruleMatches(rule, 'sale_outcome', req, subjects), this.random);
    if (fault) this.statsData.faultsApplied[fault.kind] += 1;
    const now = this.now();

    let decision: SaleDecision | undefined =
      fault?.kind === 'processor_declined'
        ? { kind: 'processor_declined', code: fault.responseCode ?? '2000', ...(fault.responseType ? { type: fault.responseType } : {}) }
        : fault?.kind === 'gateway_rejected'
          ? { kind: 'gateway_rejected', reason: fault.reason ?? 'fraud' }
          : undefined;
    if (!decision && this.tokenRules) {
      decision = decisionForToken(token) ?? (resolved.nonce?.nonce.includes('processor-declined') ? { kind: 'processor_declined', code: '2000' } : undefined);
    }
    if (!decision && this.amountRules) decision = decisionForAmount(amount.cents);
    if (!decision && this.duplicateWindowMs > 0 && token !== null) {
      const since = now - this.duplicateWindowMs;
      const dup = this.transactionOrder.some((tx) => tx.paymentMethodToken === token && tx.amount === amount.amount && tx.createdAt >= since && APPROVED_STATUSES.has(tx.status));
      if (dup) {
        this.statsData.duplicatesRejected += 1;
        decision = { kind: 'gateway_rejected', reason: 'duplicate' };
      }
    }
    decision ??= { kind: 'approved' };

    const transactionSource = str(t.transaction_source) ?? null;
    const tx: TransactionRecord = {
      id: this.newTransactionId(),
      type: 'sale',
      status: 'authorized',
      amount: amount.amount,
      currencyIsoCode: currency,
      merchantAccountId,
      orderId,
      customerId: resolved.customerId,
      paymentMethodToken: token,
      paymentInstrumentType: pm?.kind ?? resolved.nonce?.kind ?? 'credit_card',
      card: pm?.card ?? resolved.nonce?.card ?? null,
      paypalEmail: pm?.paypalEmail ?? resolved.nonce?.paypalEmail ?? null,
      processorResponseCode: null,
      processorResponseText: null,
      processorResponseType: null,
      processorAuthorizationCode: null,
      gatewayRejectionReason: null,
      transactionSource,
      recurring: transactionSource === 'recurring' || truthy(t.recurring),
      createdAt: now,
      updatedAt: now,
      statusHistory: [],
      fault: null,
    };
    let message = '';
    switch (decision.kind) {
      case 'approved': {
        const r = processorResponse('1000');
        tx.processorResponseCode = '1000';
        tx.processorResponseText = r.text;
        tx.processorResponseType = r.type;
        tx.processorAuthorizationCode = randomId(6, 'ABCDEFGHJKLMNPQRSTUVWXYZ0123456789');
        this.transition(tx, 'authorized');
        if (isObject(t.options) && truthy(t.options.submit_for_settlement)) this.transition(tx, 'submitted_for_settlement');
        this.statsData.approved += 1;
        break;
      }
      case 'processor_declined': {
        const r = processorResponse(decision.code);
        tx.processorResponseCode = decision.code;
        tx.processorResponseText = r.text;
        tx.processorResponseType = decision.type ?? (r.type === 'approved' ? 'soft_declined' : r.type);
        this.transition(tx, 'processor_declined');
        message = r.text;
        this.statsData.processorDeclined += 1;
        break;
      }
      case 'failed': {
        const r = processorResponse(decision.code);
        tx.processorResponseCode = decision.code;
        tx.processorResponseText = r.text;
        tx.processorResponseType = 'soft_declined';
        this.transition(tx, 'failed');
        message = r.text;
        this.statsData.failed += 1;
        break;
      }
      case 'gateway_rejected': {
        tx.gatewayRejectionReason = decision.reason;
        this.transition(tx, 'gateway_rejected');
        message = `Gateway Rejected: ${decision.reason}`;
        this.statsData.gatewayRejected += 1;
        break;
      }
    }
    this.transactions.set(tx.id, tx);
    this.transactionOrder.push(tx);
    this.statsData.sales += 1;

    const xml = transactionXml(tx, tx.customerId ? this.customers.get(tx.customerId) : undefined);
    // Declines and rejections are 422 api-error-responses that carry the recorded transaction, with no errors.
    return {
      response: decision.kind === 'approved' ? { status: 201, xml } : { status: 422, xml: apiErrorResponseXml({ errors: [], message, params, transactionXml: xml }) },
      sale: tx,
    };
  }

  private newTransactionId(): string {
    for (;;) {
      const id = randomId(8);
      if (!this.transactions.has(id)) return id;
    }
  }

  private transactionResponse(tx: TransactionRecord, status = 200): WireResponse {
    return { status, xml: transactionXml(tx, tx.customerId ? this.customers.get(tx.customerId) : undefined) };
  }

  private search(ctx: RequestContext, withIds: boolean): Outcome {
    this.statsData.searches += 1;
    const search = isObject(ctx.params.search) ? ctx.params.search : {};
    let criteria: Criterion[];
    try {
      criteria = compileSearch(search);
    } catch (err) {
      if (err instanceof UnsupportedSearch) return { response: { status: 400, xml: `<error><message>${err.message}</message></error>` } };
      throw err;
    }
    const found = this.transactionOrder.filter((tx) => criteria.every((c) => c(tx)));
    if (!withIds) return { response: { status: 200, xml: searchIdsXml(found.map((tx) => tx.id), SEARCH_PAGE_SIZE) } };
    // A page holds the transactions named by `ids`, in the order the SDK asked for them.
    const ids = Array.isArray(search.ids) ? search.ids.map((v) => str(v) ?? '') : [];
    const byId = new Map(found.map((tx) => [tx.id, tx]));
    const page = ids.map((id) => byId.get(id)).filter((tx): tx is TransactionRecord => tx !== undefined).slice(0, SEARCH_PAGE_SIZE);
    const xmls = page.map((tx) => transactionXml(tx, tx.customerId ? this.customers.get(tx.customerId) : undefined));
    return { response: { status: 200, xml: searchPageXml(xmls, SEARCH_PAGE_SIZE, page.length) } };
  }

  private voidTransaction(ctx: RequestContext): Outcome {
    const tx = this.transactions.get(ctx.pathId ?? '');
    if (!tx) return { response: { status: 404 } };
    if (tx.status !== 'authorized' && tx.status !== 'submitted_for_settlement' && tx.status !== 'settlement_pending') {
      return this.validation(
        [transactionError('base', '91504', 'Transaction can only be voided if status is authorized, submitted_for_settlement, or - for PayPal - settlement_pending.')],
        ctx.params,
      );
    }
    this.transition(tx, 'voided');
    return { response: this.transactionResponse(tx) };
  }

  private submitForSettlement(ctx: RequestContext): Outcome {
    const tx = this.transactions.get(ctx.pathId ?? '');
    if (!tx) return { response: { status: 404 } };
    if (tx.status !== 'authorized') return this.validation([transactionError('base', '91507', 'Cannot submit for settlement unless status is authorized.')], ctx.params);
    const t = isObject(ctx.params.transaction) ? ctx.params.transaction : {};
    if (t.amount !== undefined && t.amount !== null) {
      const amount = parseAmount(t.amount);
      if (!amount.ok) return this.validation([amount.error], ctx.params);
      if (Number(amount.amount) > Number(tx.amount)) return this.validation([transactionError('amount', '91522', 'Settlement amount cannot be more than the authorized amount.')], ctx.params);
      tx.amount = amount.amount;
    }
    this.transition(tx, 'submitted_for_settlement');
    return { response: this.transactionResponse(tx) };
  }

  private testingTransition(ctx: RequestContext, operation: string): Outcome {
    const tx = this.transactions.get(ctx.pathId ?? '');
    if (!tx) return { response: { status: 404 } };
    const settleable = tx.status === 'submitted_for_settlement' || tx.status === 'settling' || tx.status === 'settlement_pending';
    const target: TransactionStatus | undefined =
      operation === 'settle' && settleable
        ? 'settled'
        : operation === 'settlement_pending' && settleable
          ? 'settlement_pending'
          : operation === 'settlement_decline' && (settleable || tx.status === 'settled')
            ? 'settlement_declined'
            : operation === 'settlement_confirm' && (settleable || tx.status === 'settled')
              ? 'settlement_confirmed'
              : undefined;
    if (!target) return this.validation([transactionError('base', '91575', 'Cannot simulate transaction settlement.')], ctx.params);
    this.transition(tx, target);
    return { response: this.transactionResponse(tx) };
  }

  // ---------------------------------------------------------------- customers and payment methods over the wire

  private createCustomer(ctx: RequestContext): Outcome {
    const c = isObject(ctx.params.customer) ? ctx.params.customer : {};
    const customerError = (attribute: string, code: string, message: string): ValidationError => ({ scope: ['customer'], attribute, code, message });
    const id = str(c.id);
    const errors: ValidationError[] = [];
    if (id !== undefined) {
      if (id.length > 36) errors.push(customerError('id', '91612', 'Customer ID has a maximum length of 36 characters.'));
      else if (!PATH_SAFE_ID.test(id)) errors.push(customerError('id', '91610', 'Customer ID is invalid (use only letters, numbers, "-", and "_").'));
      else if (this.customers.has(id)) errors.push(customerError('id', '91609', 'Customer ID has already been taken.'));
    }
    const nonce = str(c.payment_method_nonce);
    const info = nonce === undefined ? undefined : nonceInfo(nonce);
    if (info === 'consumed') errors.push({ scope: ['customer', 'credit_card'], attribute: 'payment_method_nonce', code: '91731', message: 'Cannot use a payment_method_nonce more than once.' });
    if (info === 'unknown') errors.push({ scope: ['customer', 'credit_card'], attribute: 'payment_method_nonce', code: '91732', message: 'Unknown payment_method_nonce.' });
    if (errors.length > 0) return this.validation(errors, ctx.params);
    const details: CustomerDetails = {};
    if (str(c.first_name) !== undefined) details.firstName = str(c.first_name)!;
    if (str(c.last_name) !== undefined) details.lastName = str(c.last_name)!;
    if (str(c.email) !== undefined) details.email = str(c.email)!;
    if (str(c.company) !== undefined) details.company = str(c.company)!;
    const customerId = this.addCustomer(id, details);
    if (info && typeof info === 'object') this.vaultNonce(customerId, info, undefined, true);
    const customer = this.customers.get(customerId)!;
    return { response: { status: 201, xml: customerXml(customer, this.methodsOf(customer)) } };
  }

  private vaultNonce(customerId: string, info: NonceInfo, token: string | undefined, makeDefault: boolean | undefined): string {
    const opts: PaymentMethodOptions = { kind: info.kind };
    if (info.card) opts.card = info.card;
    if (info.paypalEmail) opts.paypalEmail = info.paypalEmail;
    if (makeDefault !== undefined) opts.makeDefault = makeDefault;
    return this.addPaymentMethod(customerId, token, opts);
  }

  private createPaymentMethod(ctx: RequestContext): Outcome {
    const p = isObject(ctx.params.payment_method) ? ctx.params.payment_method : {};
    const pmError = (attribute: string, code: string, message: string, scope = ['payment_method']): ValidationError => ({ scope, attribute, code, message });
    const customerId = str(p.customer_id);
    const nonce = str(p.payment_method_nonce);
    const token = str(p.token);
    const errors: ValidationError[] = [];
    if (customerId === undefined) errors.push(pmError('customer_id', '93104', 'Customer ID is required.'));
    else if (!this.customers.has(customerId)) errors.push(pmError('customer_id', '93105', 'Customer ID is invalid.'));
    let info: NonceInfo | undefined;
    if (nonce === undefined) errors.push(pmError('payment_method_nonce', '93103', 'A payment method nonce is required.'));
    else {
      const n = nonceInfo(nonce);
      if (n === 'consumed') errors.push(pmError('payment_method_nonce', '93107', 'Cannot use a payment_method_nonce more than once.'));
      else if (n === 'unknown') errors.push(pmError('payment_method_nonce', '93108', 'Unknown or expired payment_method_nonce.'));
      else info = n;
    }
    if (token !== undefined) {
      if (!PATH_SAFE_ID.test(token)) errors.push(pmError('token', '91718', 'Token is invalid (use only letters, numbers, "-", and "_").', ['credit_card']));
      else if (this.methods.has(token)) errors.push(pmError('token', '91719', 'Token is already in use.', ['credit_card']));
    }
    if (errors.length > 0 || customerId === undefined || !info) return this.validation(errors, ctx.params);
    const options = isObject(p.options) ? p.options : {};
    const created = this.vaultNonce(customerId, info, token, options.make_default === undefined ? undefined : truthy(options.make_default));
    const pm = this.methods.get(created)!;
    return { response: { status: 201, xml: paymentMethodXml(pm, this.customers.get(customerId)!.defaultToken === created) } };
  }

  // ---------------------------------------------------------------- routes

  private registerRoutes(): void {
    const add = (method: string, path: string | RegExp, route: Route) => this.routes.add(method, path, route);
    add('POST', '/transactions', { operation: 'transaction.sale', subjects: (p) => this.saleSubjects(p), handle: (ctx) => this.createTransaction(ctx) });
    add('POST', '/transactions/advanced_search_ids', { operation: 'transaction.search_ids', handle: (ctx) => this.search(ctx, false) });
    add('POST', '/transactions/advanced_search', { operation: 'transaction.search', handle: (ctx) => this.search(ctx, true) });
    add('GET', /^\/transactions\/([^/]+)$/, {
      operation: 'transaction.find',
      handle: (ctx) => {
        const tx = this.transactions.get(ctx.pathId ?? '');
        return { response: tx ? this.transactionResponse(tx) : { status: 404 } };
      },
    });
    add('PUT', /^\/transactions\/([^/]+)\/void$/, { operation: 'transaction.void', handle: (ctx) => this.voidTransaction(ctx) });
    add('PUT', /^\/transactions\/([^/]+)\/submit_for_settlement$/, { operation: 'transaction.submit_for_settlement', handle: (ctx) => this.submitForSettlement(ctx) });
    for (const op of ['settle', 'settlement_confirm', 'settlement_decline', 'settlement_pending']) {
      add('PUT', new RegExp(`^/transactions/([^/]+)/${op}$`), { operation: 'transaction.testing', handle: (ctx) => this.testingTransition(ctx, op) });
    }
    add('POST', '/customers', { operation: 'customer.create', handle: (ctx) => this.createCustomer(ctx) });
    add('GET', /^\/customers\/([^/]+)$/, {
      operation: 'customer.find',
      handle: (ctx) => {
        const c = this.customers.get(ctx.pathId ?? '');
        return { response: c ? { status: 200, xml: customerXml(c, this.methodsOf(c)) } : { status: 404 } };
      },
    });
    add('DELETE', /^\/customers\/([^/]+)$/, { operation: 'customer.delete', handle: (ctx) => ({ response: { status: this.deleteCustomer(ctx.pathId ?? '') ? 200 : 404 } }) });
    add('POST', '/payment_methods', { operation: 'payment_method.create', handle: (ctx) => this.createPaymentMethod(ctx) });
    add('GET', /^\/payment_methods\/any\/([^/]+)$/, {
      operation: 'payment_method.find',
      handle: (ctx) => {
        const pm = this.methods.get(ctx.pathId ?? '');
        return { response: pm ? { status: 200, xml: paymentMethodXml(pm, this.customers.get(pm.customerId)?.defaultToken === pm.token) } : { status: 404 } };
      },
    });
    add('DELETE', /^\/payment_methods\/any\/([^/]+)$/, {
      operation: 'payment_method.delete',
      handle: (ctx) => ({ response: { status: this.removePaymentMethod(ctx.pathId ?? '') ? 200 : 404 } }),
    });
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

  private authorized(header: string | undefined): boolean {
    const m = /^Basic\s+(.+)$/i.exec(header ?? '');
    if (!m) return false;
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    return i !== -1 && decoded.slice(0, i) === this.publicKey && decoded.slice(i + 1) === this.privateKey;
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

    if (!this.authorized(req.headers.authorization)) {
      this.statsData.authFailures += 1;
      return this.reply(req, res, { status: 401 });
    }
    // Simulator choice: valid keys for another merchant id are an authorization failure (the SDK's 403).
    if (m[1] !== this.merchantId) return this.reply(req, res, { status: 403 });

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
    if (wait > 0) await sleep(wait);
    const outcome = route.handle({ method, path, pathId, params });

    if (fault?.kind === 'timeout_applied' || fault?.kind === 'reset_applied') {
      if (outcome.sale) outcome.sale.fault = fault.kind;
      return fault.kind === 'timeout_applied' ? this.hold(res) : this.resetSocket(req);
    }
    this.reply(req, res, outcome.response);
  }

  // ---------------------------------------------------------------- control API (/__simulator/*)

  private control(req: IncomingMessage, res: ServerResponse, rawBody: string): Promise<void> {
    const subjectFrom = (b: Record<string, unknown>): WebhookSubject => {
      const subject = isObject(b.subject) ? b.subject : b;
      const out: WebhookSubject = {};
      if (isObject(subject.subscription)) out.subscription = subject.subscription as unknown as WebhookSubject['subscription'];
      if (typeof subject.xml === 'string') out.xml = subject.xml;
      return out;
    };
    const routes: Record<string, ControlHandler> = {
      'GET /__simulator/sales': ({ query }) => {
        const orderId = query.get('order_id') ?? undefined;
        const status = (query.get('status') ?? undefined) as TransactionStatus | undefined;
        const filter: { orderId?: string; status?: TransactionStatus } = {};
        if (orderId !== undefined) filter.orderId = orderId;
        if (status !== undefined) filter.status = status;
        return [
          200,
          { data: this.sales(filter), counts: Object.fromEntries(this.salesByOrderId()), approved_counts: Object.fromEntries(this.approvedSalesByOrderId()) },
        ];
      },
      'GET /__simulator/sales/:id': (_c, id) => {
        const view = this.transaction(id);
        return view ? [200, view] : [404, { error: 'no such transaction' }];
      },
      'POST /__simulator/customers': ({ fields: b }) => {
        const details: CustomerDetails = {};
        if (typeof b.first_name === 'string') details.firstName = b.first_name;
        if (typeof b.last_name === 'string') details.lastName = b.last_name;
        if (typeof b.email === 'string') details.email = b.email;
        if (typeof b.company === 'string') details.company = b.company;
        return [200, { id: this.addCustomer(str(b.id), details) }];
      },
      'GET /__simulator/customers/:id': (_c, id) => {
        const view = this.customer(id);
        return view ? [200, view] : [404, { error: 'no such customer' }];
      },
      'POST /__simulator/payment_methods': ({ fields: b }) => {
        const customerId = str(b.customer_id);
        if (!customerId) return [400, { error: 'customer_id is required' }];
        const opts: PaymentMethodOptions = {};
        if (b.kind === 'credit_card' || b.kind === 'paypal_account') opts.kind = b.kind;
        if (typeof b.make_default === 'boolean') opts.makeDefault = b.make_default;
        return [200, { token: this.addPaymentMethod(customerId, str(b.token), opts) }];
      },
      'DELETE /__simulator/payment_methods/:id': (_c, id) => [200, { deleted: this.removePaymentMethod(id) }],
      'POST /__simulator/webhooks': async ({ fields: b }) => {
        const kind = str(b.kind);
        if (!kind) return [400, { error: 'kind is required' }];
        const r = await this.sendWebhook(kind, subjectFrom(b));
        return [200, { status: r.status, ok: r.ok, bt_signature: r.webhook.bt_signature, bt_payload: r.webhook.bt_payload }];
      },
      'POST /__simulator/webhooks/build': ({ fields: b }) => {
        const kind = str(b.kind);
        if (!kind) return [400, { error: 'kind is required' }];
        const w = this.buildWebhook(kind, subjectFrom(b));
        return [200, { bt_signature: w.bt_signature, bt_payload: w.bt_payload }];
      },
      'GET /__simulator/webhook_deliveries': () => [200, { data: this.webhookDeliveries() }],
      'POST /__simulator/settle': ({ fields: b }) => [200, { settled: this.settle(str(b.transaction_id)) }],
      'POST /__simulator/config': ({ fields: b }) => {
        const opts: ConfigureOptions = {};
        if (b.webhook_url === null || typeof b.webhook_url === 'string') opts.webhookUrl = b.webhook_url;
        if (typeof b.latency_ms === 'number') opts.latencyMs = b.latency_ms;
        if (typeof b.sale_latency_ms === 'number') opts.saleLatencyMs = b.sale_latency_ms;
        if (typeof b.amount_rules === 'boolean') opts.amountRules = b.amount_rules;
        if (typeof b.token_rules === 'boolean') opts.tokenRules = b.token_rules;
        if (typeof b.duplicate_window_ms === 'number') opts.duplicateWindowMs = b.duplicate_window_ms;
        if (typeof b.rate_per_second === 'number') opts.ratePerSecond = b.rate_per_second;
        this.configure(opts);
        return [
          200,
          {
            webhook_url: this.webhookUrl ?? null,
            latency_ms: this.latencyMs,
            sale_latency_ms: this.saleLatencyMs,
            amount_rules: this.amountRules,
            token_rules: this.tokenRules,
            duplicate_window_ms: this.duplicateWindowMs,
          },
        ];
      },
    };
    return serveControl(req, res, rawBody, this, validateFaultRule, routes, { merchant_id: this.merchantId });
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
