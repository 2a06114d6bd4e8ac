// The simulator's transactions: `Transaction.sale` (how a sale is decided: faults, sandbox tokens, nonces and
// amounts, duplicate checking), find, void, submit for settlement, the sandbox testing transitions and search.
import { invalid, truthy, type Core, type Outcome, type RequestContext, type WireResponse } from './exchange';
import { ruleMatches, type FaultBook, type FaultRule, type FaultSubjects } from './faults';
import { REJECTED_CARD_NUMBERS, decisionForAmount, decisionForToken, nonceInfo, processorResponse, type NonceInfo, type SaleDecision } from './sandbox';
import { compileSearch, UnsupportedSearch, type Criterion } from './search';
import { addressFromParams, cardFromParams } from './cards';
import type { CustomerDetails, SaleRecord } from './types';
import { customerDetails, type Vault } from './vault';
import { isObject, str } from '../kit/server';
import {
  apiErrorResponseXml,
  parseAmount,
  randomId,
  searchIdsXml,
  searchPageXml,
  transactionError,
  transactionXml,
  type CardDetails,
  type CustomerContact,
  type PaymentMethodRecord,
  type TransactionRecord,
  type TransactionStatus,
  type ValidationError,
} from './wire';

/** How long an approved authorization can be captured: the common card-not-present window, 7 days. */
const AUTHORIZATION_VALIDITY_MS = 7 * 86_400_000;

/** Transactions per page of `advanced_search` (and the page size announced by `advanced_search_ids`). */
export const SEARCH_PAGE_SIZE = 50;

export const APPROVED_STATUSES: ReadonlySet<TransactionStatus> = new Set([
  'authorized',
  'submitted_for_settlement',
  'settling',
  'settlement_pending',
  'settled',
  'settlement_confirmed',
]);

/** The sale rules a test can switch at run time (configure()). */
export interface SaleSettings {
  /** The API user's public id recorded on transactions. */
  readonly apiUser: string;
  amountRules: boolean;
  tokenRules: boolean;
  duplicateWindowMs: number;
}

type Resolved =
  | { ok: true; method: PaymentMethodRecord | undefined; nonce: NonceInfo | undefined; card: CardDetails | undefined; cardNumber?: string; customerId: string | null }
  | { ok: false; errors: ValidationError[] };

function contactOf(d: CustomerDetails): CustomerContact {
  return { firstName: d.firstName ?? null, lastName: d.lastName ?? null, email: d.email ?? null, company: d.company ?? null, phone: d.phone ?? null, fax: d.fax ?? null, website: d.website ?? null };
}

export function saleView(tx: TransactionRecord): SaleRecord {
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

/** Longest `api_request_key` the gateway takes (ValidationErrorCodes.Transaction.ApiRequestKeyTooLong beyond it). */
const API_REQUEST_KEY_MAX = 255;

/** A sale request's idempotency key, and what it must match on reuse: the request without the key. */
function apiRequestKey(params: Record<string, unknown>): { key: string; fingerprint: string } | undefined {
  const t = isObject(params.transaction) ? params.transaction : undefined;
  const key = t ? str(t.api_request_key) : undefined;
  if (!t || key === undefined || key === '') return undefined;
  const { api_request_key: _omit, ...rest } = t;
  return { key, fingerprint: canonical(rest) };
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObject(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  return JSON.stringify(v ?? null);
}

export class Transactions {
  readonly byId = new Map<string, TransactionRecord>();
  /** Creation order, for listing and search results. */
  order: TransactionRecord[] = [];
  /** Idempotency keys of sales: the request they were first used with and the answer it got. */
  private readonly keys = new Map<string, { fingerprint: string; response: WireResponse; sale: TransactionRecord | undefined }>();
  /** Keys whose first sale is still being processed. */
  private readonly inFlight = new Set<string>();

  constructor(
    private readonly core: Core,
    private readonly vault: Vault,
    private readonly settings: SaleSettings,
    private readonly merchantAccounts: ReadonlyMap<string, string>,
    private readonly defaultMerchantAccountId: string,
    private readonly faults: { book: FaultBook<FaultRule>; random: () => number },
  ) {}

  clear(): void {
    this.byId.clear();
    this.order = [];
    this.keys.clear();
    this.inFlight.clear();
  }

  /**
   * Before a sale is processed (and before any latency): a key already in flight is refused (915233, nothing
   * recorded); otherwise the key is held until `release`. A sale without a key is always admitted.
   */
  admitSale(params: Record<string, unknown>): { refuse?: Outcome; release: () => void } {
    const k = apiRequestKey(params);
    if (!k || k.key.length > API_REQUEST_KEY_MAX || this.keys.has(k.key)) return { release: () => undefined };
    if (this.inFlight.has(k.key)) {
      return { refuse: invalid(this.core, [transactionError('api_request_key', '915233', 'API request key is in flight: an earlier request with it has not finished.')], params), release: () => undefined };
    }
    this.inFlight.add(k.key);
    return { release: () => this.inFlight.delete(k.key) };
  }

  transition(tx: TransactionRecord, status: TransactionStatus): void {
    const now = this.core.now();
    tx.status = status;
    tx.updatedAt = now;
    tx.statusHistory.push({ status, amount: tx.amount, timestamp: now });
    if (status === 'settled' && tx.settlementBatchId === null) {
      tx.settlementBatchId = `${new Date(now).toISOString().slice(0, 10)}_${tx.merchantAccountId}`;
      tx.acquirerReferenceNumber = randomId(23, '0123456789');
    }
  }

  /** Moves submitted_for_settlement transactions to settled (one, or all when no id); returns how many moved. */
  settle(transactionId?: string): number {
    const targets = transactionId === undefined ? this.order : [this.byId.get(transactionId)].filter((t): t is TransactionRecord => t !== undefined);
    let moved = 0;
    for (const tx of targets) {
      if (tx.status === 'submitted_for_settlement' || tx.status === 'settling' || tx.status === 'settlement_pending') {
        this.transition(tx, 'settled');
        moved += 1;
      }
    }
    return moved;
  }

  private xml(tx: TransactionRecord): string {
    return transactionXml(tx, tx.customerId ? this.vault.customers.get(tx.customerId) : undefined);
  }

  private response(tx: TransactionRecord, status = 200): WireResponse {
    return { status, xml: this.xml(tx) };
  }

  /** The payment method a sale charges: a token, a fake nonce, or the customer's default. */
  private resolvePaymentMethod(t: Record<string, unknown>): Resolved {
    const token = str(t.payment_method_token);
    const nonce = str(t.payment_method_nonce);
    const customerId = str(t.customer_id) ?? null;
    if (customerId !== null && !this.vault.customers.has(customerId)) {
      return { ok: false, errors: [transactionError('customer_id', '91510', 'Customer ID is invalid.')] };
    }
    if (token) {
      const pm = this.vault.methods.get(token);
      if (!pm) return { ok: false, errors: [transactionError('payment_method_token', '91518', 'Payment method token is invalid.')] };
      if (customerId !== null && pm.customerId !== customerId) {
        return {
          ok: false,
          errors: [transactionError('base', '91516', 'Cannot provide both payment_method_token and customer_id unless the payment_method belongs to the customer.')],
        };
      }
      return { ok: true, method: pm, nonce: undefined, card: undefined, customerId: pm.customerId };
    }
    if (isObject(t.credit_card)) {
      const checked = cardFromParams(t.credit_card, ['transaction', 'credit_card'], customerId);
      if (!checked.ok) return { ok: false, errors: checked.errors };
      return { ok: true, method: undefined, nonce: undefined, card: checked.card, cardNumber: checked.number, customerId };
    }
    if (nonce) {
      const info = nonceInfo(nonce);
      if (info === 'consumed') return { ok: false, errors: [transactionError('payment_method_nonce', '91564', 'Cannot use a payment_method_nonce more than once.')] };
      if (info === 'unknown') return { ok: false, errors: [transactionError('payment_method_nonce', '91565', 'Unknown payment_method_nonce.')] };
      return { ok: true, method: undefined, nonce: info, card: undefined, customerId };
    }
    if (customerId !== null) {
      const c = this.vault.customers.get(customerId)!;
      const pm = c.defaultToken ? this.vault.methods.get(c.defaultToken) : undefined;
      if (!pm) return { ok: false, errors: [transactionError('customer_id', '91511', 'Customer specified by customer_id does not have any credit cards.')] };
      return { ok: true, method: pm, nonce: undefined, card: undefined, customerId };
    }
    return { ok: false, errors: [transactionError('base', '91508', 'Cannot determine payment method.')] };
  }

  saleSubjects(params: Record<string, unknown>): FaultSubjects | undefined {
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

  /**
   * `Transaction.sale`. With an `api_request_key`, the same request again gets the first answer again (the same
   * transaction, nothing new recorded); another request with that key is refused (915232).
   */
  create(ctx: RequestContext): Outcome {
    const k = apiRequestKey(ctx.params);
    if (!k) return this.decide(ctx);
    if (k.key.length > API_REQUEST_KEY_MAX) return invalid(this.core, [transactionError('api_request_key', '915230', 'API request key is too long.')], ctx.params);
    const first = this.keys.get(k.key);
    if (first) {
      if (first.fingerprint !== k.fingerprint) {
        return invalid(this.core, [transactionError('api_request_key', '915232', 'API request key can be reused only with the same request.')], ctx.params);
      }
      return { response: first.response, ...(first.sale ? { sale: first.sale } : {}) };
    }
    const outcome = this.decide(ctx);
    // Validation errors record nothing and leave the key free (the gateway keeps keys of processed requests).
    if (outcome.sale) this.keys.set(k.key, { fingerprint: k.fingerprint, response: outcome.response, sale: outcome.sale });
    return outcome;
  }

  private decide(ctx: RequestContext): Outcome {
    const params = ctx.params;
    const stats = this.core.stats();
    const t = isObject(params.transaction) ? params.transaction : undefined;
    if (!t || str(t.type) === undefined) return invalid(this.core, [transactionError('type', '91524', 'Transaction type is required.')], params);
    // Credits (refund-like payouts) are outside what Meterdesk does; the simulator only takes sales.
    if (t.type !== 'sale') return invalid(this.core, [transactionError('type', '91523', 'Transaction type is invalid.')], params);

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
    const customerParams = isObject(t.customer) ? t.customer : undefined;
    // storeInVault: the card data of the sale is vaulted, for the customer it names (created) or a new one.
    const vaulting = isObject(t.options) && truthy(t.options.store_in_vault) && resolved.ok && resolved.card !== undefined;
    if (vaulting) {
      const newCustomerId = customerParams ? str(customerParams.id) : undefined;
      if (newCustomerId !== undefined && this.vault.customers.has(newCustomerId)) errors.push({ scope: ['transaction', 'customer'], attribute: 'id', code: '91609', message: 'Customer ID has already been taken.' });
      const cardToken = isObject(t.credit_card) ? str(t.credit_card.token) : undefined;
      if (cardToken !== undefined && this.vault.methods.has(cardToken)) errors.push({ scope: ['transaction', 'credit_card'], attribute: 'token', code: '91719', message: 'Token is already in use.' });
    }
    if (errors.length > 0 || !amount.ok || !resolved.ok || currency === undefined) return invalid(this.core, errors, params);

    const pm = resolved.method;
    const token = pm?.token ?? null;
    const subjects: FaultSubjects = { orderId: orderId ?? undefined, token: token ?? undefined, customerId: resolved.customerId ?? undefined, amount: amount.amount };
    const req = { method: ctx.method, path: ctx.path, operation: 'transaction.sale' as const };
    const fault = this.faults.book.pick((rule) => ruleMatches(rule, 'sale_outcome', req, subjects), this.faults.random);
    if (fault) stats.faultsApplied[fault.kind] += 1;
    const now = this.core.now();

    let decision: SaleDecision | undefined =
      fault?.kind === 'processor_declined'
        ? { kind: 'processor_declined', code: fault.responseCode ?? '2000', ...(fault.responseType ? { type: fault.responseType } : {}) }
        : fault?.kind === 'gateway_rejected'
          ? { kind: 'gateway_rejected', reason: fault.reason ?? 'fraud' }
          : undefined;
    if (!decision && this.settings.tokenRules) {
      decision = decisionForToken(token) ?? (resolved.nonce?.nonce.includes('processor-declined') ? { kind: 'processor_declined', code: '2000' } : undefined);
    }
    const rejection = resolved.nonce?.gatewayRejection ?? (resolved.cardNumber ? REJECTED_CARD_NUMBERS[resolved.cardNumber] : undefined);
    if (!decision && rejection) decision = { kind: 'gateway_rejected', reason: rejection };
    if (!decision && this.settings.amountRules) decision = decisionForAmount(amount.cents);
    if (!decision && this.settings.duplicateWindowMs > 0 && token !== null) {
      const since = now - this.settings.duplicateWindowMs;
      const dup = this.order.some((tx) => tx.paymentMethodToken === token && tx.amount === amount.amount && tx.createdAt >= since && APPROVED_STATUSES.has(tx.status));
      if (dup) {
        stats.duplicatesRejected += 1;
        decision = { kind: 'gateway_rejected', reason: 'duplicate' };
      }
    }
    decision ??= { kind: 'approved' };

    let customerId = resolved.customerId;
    let vaultedToken: string | null = null;
    const details = customerParams ? customerDetails(customerParams) : undefined;
    if (vaulting && resolved.card) {
      customerId = this.vault.addCustomer(customerId ?? (customerParams ? str(customerParams.id) : undefined), details);
      const cardToken = isObject(t.credit_card) ? str(t.credit_card.token) : undefined;
      vaultedToken = this.vault.addPaymentMethod(customerId, cardToken, { kind: 'credit_card', card: resolved.card, makeDefault: true });
    }
    const transactionSource = str(t.transaction_source) ?? null;
    const tx: TransactionRecord = {
      id: this.newId(),
      type: 'sale',
      status: 'authorized',
      amount: amount.amount,
      currencyIsoCode: currency,
      merchantAccountId,
      orderId,
      customerId,
      paymentMethodToken: token ?? vaultedToken,
      paymentInstrumentType: pm?.kind ?? resolved.nonce?.kind ?? 'credit_card',
      card: pm?.card ?? resolved.card ?? resolved.nonce?.card ?? null,
      paypalEmail: pm?.paypalEmail ?? resolved.nonce?.paypalEmail ?? null,
      processorResponseCode: null,
      processorResponseText: null,
      processorResponseType: null,
      processorAuthorizationCode: null,
      additionalProcessorResponse: null,
      authorizationExpiresAt: null,
      gatewayRejectionReason: null,
      transactionSource,
      recurring: transactionSource === 'recurring' || truthy(t.recurring),
      createdUsing: resolved.card ? 'full_information' : 'token',
      user: this.settings.apiUser,
      billing: addressFromParams(t.billing, customerId),
      shipping: addressFromParams(t.shipping, customerId),
      customerDetails: details ? contactOf(details) : this.contactSnapshot(customerId),
      settlementBatchId: null,
      acquirerReferenceNumber: null,
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
        tx.authorizationExpiresAt = now + AUTHORIZATION_VALIDITY_MS;
        this.transition(tx, 'authorized');
        if (isObject(t.options) && truthy(t.options.submit_for_settlement)) this.transition(tx, 'submitted_for_settlement');
        stats.approved += 1;
        break;
      }
      case 'processor_declined': {
        const r = processorResponse(decision.code);
        tx.processorResponseCode = decision.code;
        tx.processorResponseText = r.text;
        tx.processorResponseType = decision.type ?? (r.type === 'approved' ? 'soft_declined' : r.type);
        tx.additionalProcessorResponse = `${decision.code} : ${r.text}`;
        this.transition(tx, 'processor_declined');
        message = r.text;
        stats.processorDeclined += 1;
        break;
      }
      case 'failed': {
        const r = processorResponse(decision.code);
        tx.processorResponseCode = decision.code;
        tx.processorResponseText = r.text;
        tx.processorResponseType = 'soft_declined';
        tx.additionalProcessorResponse = `${decision.code} : ${r.text}`;
        this.transition(tx, 'failed');
        message = r.text;
        stats.failed += 1;
        break;
      }
      case 'gateway_rejected': {
        tx.gatewayRejectionReason = decision.reason;
        this.transition(tx, 'gateway_rejected');
        message = `Gateway Rejected: ${decision.reason}`;
        stats.gatewayRejected += 1;
        break;
      }
    }
    this.byId.set(tx.id, tx);
    this.order.push(tx);
    stats.sales += 1;

    const xml = this.xml(tx);
    // Declines and rejections are 422 api-error-responses that carry the recorded transaction, with no errors.
    return {
      response: decision.kind === 'approved' ? { status: 201, xml } : { status: 422, xml: apiErrorResponseXml({ errors: [], message, params, transactionXml: xml }) },
      sale: tx,
    };
  }

  /** A sale records its customer's details as they are at the time of the sale. */
  private contactSnapshot(customerId: string | null): CustomerContact | null {
    const c = customerId ? this.vault.customers.get(customerId) : undefined;
    return c ? { firstName: c.firstName, lastName: c.lastName, email: c.email, company: c.company, phone: c.phone, fax: c.fax, website: c.website } : null;
  }

  private newId(): string {
    for (;;) {
      const id = randomId(8);
      if (!this.byId.has(id)) return id;
    }
  }

  find(ctx: RequestContext): Outcome {
    const tx = this.byId.get(ctx.pathId ?? '');
    return { response: tx ? this.response(tx) : { status: 404 } };
  }

  search(ctx: RequestContext, withIds: boolean): Outcome {
    this.core.stats().searches += 1;
    const search = isObject(ctx.params.search) ? ctx.params.search : {};
    let criteria: Criterion[];
    try {
      criteria = compileSearch(search);
    } catch (err) {
      if (err instanceof UnsupportedSearch) return { response: { status: 400, xml: `<error><message>${err.message}</message></error>` } };
      throw err;
    }
    const found = this.order.filter((tx) => criteria.every((c) => c(tx)));
    if (!withIds) return { response: { status: 200, xml: searchIdsXml(found.map((tx) => tx.id), SEARCH_PAGE_SIZE) } };
    // A page holds the transactions named by `ids`, in the order the SDK asked for them.
    const ids = Array.isArray(search.ids) ? search.ids.map((v) => str(v) ?? '') : [];
    const byId = new Map(found.map((tx) => [tx.id, tx]));
    const page = ids.map((id) => byId.get(id)).filter((tx): tx is TransactionRecord => tx !== undefined).slice(0, SEARCH_PAGE_SIZE);
    return { response: { status: 200, xml: searchPageXml(page.map((tx) => this.xml(tx)), SEARCH_PAGE_SIZE, page.length) } };
  }

  void(ctx: RequestContext): Outcome {
    const tx = this.byId.get(ctx.pathId ?? '');
    if (!tx) return { response: { status: 404 } };
    if (tx.status !== 'authorized' && tx.status !== 'submitted_for_settlement' && tx.status !== 'settlement_pending') {
      return invalid(
        this.core,
        [transactionError('base', '91504', 'Transaction can only be voided if status is authorized, submitted_for_settlement, or - for PayPal - settlement_pending.')],
        ctx.params,
      );
    }
    this.transition(tx, 'voided');
    return { response: this.response(tx) };
  }

  submitForSettlement(ctx: RequestContext): Outcome {
    const tx = this.byId.get(ctx.pathId ?? '');
    if (!tx) return { response: { status: 404 } };
    if (tx.status !== 'authorized') return invalid(this.core, [transactionError('base', '91507', 'Cannot submit for settlement unless status is authorized.')], ctx.params);
    const t = isObject(ctx.params.transaction) ? ctx.params.transaction : {};
    let settleAmount: string | undefined;
    if (t.amount !== undefined && t.amount !== null) {
      const amount = parseAmount(t.amount);
      if (!amount.ok) return invalid(this.core, [amount.error], ctx.params);
      if (Number(amount.amount) > Number(tx.amount)) return invalid(this.core, [transactionError('amount', '91522', 'Settlement amount cannot be more than the authorized amount.')], ctx.params);
      settleAmount = amount.amount;
    }
    // The capture may name (or rename) the order, as the gateway allows.
    const orderId = str(t.order_id);
    if (orderId !== undefined && orderId.length > 255) return invalid(this.core, [transactionError('order_id', '91501', 'Order ID is too long.')], ctx.params);
    if (settleAmount !== undefined) tx.amount = settleAmount;
    if (orderId !== undefined) tx.orderId = orderId;
    this.transition(tx, 'submitted_for_settlement');
    return { response: this.response(tx) };
  }

  testingTransition(ctx: RequestContext, operation: string): Outcome {
    const tx = this.byId.get(ctx.pathId ?? '');
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
    if (!target) return invalid(this.core, [transactionError('base', '91575', 'Cannot simulate transaction settlement.')], ctx.params);
    this.transition(tx, target);
    return { response: this.response(tx) };
  }
}
