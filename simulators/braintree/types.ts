// The Braintree simulator's public shapes: its options, what it records and reports, and the handle tests and the
// demo drive it with (simulator.ts builds it).
import type { FaultControls } from '../kit/faults';
import type { FaultKind, FaultRule } from './faults';
import type { SignedWebhook, WebhookDelivery, WebhookSubject } from './webhooks';
import type { CardDetails, PaymentMethodKind, ProcessorResponseType, TransactionStatus } from './wire';

export interface BraintreeSimulatorOptions {
  /** 0 = pick a free port (default). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  merchantId?: string;
  publicKey?: string;
  privateKey?: string;
  /**
   * Further merchants whose API keys are accepted (each only on its own merchant id). Simulator choice: they share
   * the one vault and transaction store; they exist for tests that need a second merchant to answer at all.
   */
  otherMerchants?: Array<{ merchantId: string; publicKey: string; privateKey: string }>;
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
  /** The API user's public id, recorded on every transaction (`user` in its status history and search). Default `meterdesk_simulator`. */
  apiUser?: string;
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
  phone?: string;
  fax?: string;
  website?: string;
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

export interface BraintreeSimulator extends FaultControls<FaultRule> {
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
