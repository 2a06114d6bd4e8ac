// Braintree gateway records and their XML: transactions, customers, vaulted payment methods, validation errors
// and processor responses. Element names and shapes follow the gateway's responses as the braintree SDKs parse
// them (`<transaction>`, `<api-error-response>` with `<errors>`, `<params>`, `<message>` and, for declines,
// the declined `<transaction>`). Processor response texts are the commonly published ones, ASCII-only.
import { randomBytes } from 'node:crypto';
import type { FaultKind } from './faults';
import { array, bool, datetime, int, nil, node, paramsXml, text } from './xml';

const LOWER_ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';

export function randomId(length = 8, alphabet = LOWER_ALNUM): string {
  const bytes = randomBytes(length);
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[bytes[i]! % alphabet.length];
  return out;
}

/** Ids the SDK (3.40+) lets through in a URL path: `Util.isInvalidPathSegment` rejects anything else client-side. */
export const PATH_SAFE_ID = /^[A-Za-z0-9_-]{1,36}$/;

export type TransactionStatus =
  | 'authorized'
  | 'submitted_for_settlement'
  | 'settling'
  | 'settlement_pending'
  | 'settled'
  | 'settlement_confirmed'
  | 'settlement_declined'
  | 'processor_declined'
  | 'gateway_rejected'
  | 'failed'
  | 'voided';

export type ProcessorResponseType = 'approved' | 'soft_declined' | 'hard_declined';

export type PaymentMethodKind = 'credit_card' | 'paypal_account';

export interface CardDetails {
  bin: string;
  last4: string;
  cardType: string;
  expirationMonth: string;
  expirationYear: string;
  cardholderName: string | null;
  /** Braintree's per-number identifier (32 word characters); derived from the token when absent. */
  uniqueNumberIdentifier?: string;
  /** The card's billing address, when one was given with it. */
  billingAddress?: AddressRecord | null;
}

/** A postal address as the gateway keeps it (billing address of a card, a transaction's billing or shipping). */
export interface AddressRecord {
  id: string;
  customerId: string | null;
  firstName: string | null;
  lastName: string | null;
  company: string | null;
  streetAddress: string | null;
  extendedAddress: string | null;
  locality: string | null;
  region: string | null;
  postalCode: string | null;
  countryName: string | null;
  phoneNumber: string | null;
}

export interface PaymentMethodRecord {
  token: string;
  customerId: string;
  kind: PaymentMethodKind;
  card: CardDetails | null;
  paypalEmail: string | null;
  createdAt: number;
  updatedAt: number;
}

/** A customer's contact details, as the vault keeps them and a transaction records them. */
export interface CustomerContact {
  firstName: string | null;
  lastName: string | null;
  email: string | null;
  company: string | null;
  phone: string | null;
  fax: string | null;
  website: string | null;
}

export interface CustomerRecord extends CustomerContact {
  id: string;
  createdAt: number;
  updatedAt: number;
  /** Vaulted payment method tokens, oldest first. */
  tokens: string[];
  defaultToken: string | null;
}

export interface StatusEvent {
  status: TransactionStatus;
  amount: string;
  timestamp: number;
}

export interface TransactionRecord {
  id: string;
  type: 'sale';
  status: TransactionStatus;
  /** Normalised to two decimals, e.g. `12.30`. */
  amount: string;
  currencyIsoCode: string;
  merchantAccountId: string;
  orderId: string | null;
  customerId: string | null;
  paymentMethodToken: string | null;
  paymentInstrumentType: PaymentMethodKind;
  card: CardDetails | null;
  paypalEmail: string | null;
  processorResponseCode: string | null;
  processorResponseText: string | null;
  processorResponseType: ProcessorResponseType | null;
  processorAuthorizationCode: string | null;
  /** `<code> : <text>` of a declined authorization, as the processor put it. */
  additionalProcessorResponse: string | null;
  /** Until when an approved authorization can be captured (business clock ms). */
  authorizationExpiresAt: number | null;
  gatewayRejectionReason: string | null;
  transactionSource: string | null;
  recurring: boolean;
  /** `full_information` (card data in the request) or `token` (a vaulted method or a nonce). */
  createdUsing: 'full_information' | 'token';
  /** The API user the sale was made with (the status history's `user`). */
  user: string;
  billing: AddressRecord | null;
  shipping: AddressRecord | null;
  /** Set when the sale settles: its settlement batch (`<date>_<merchant account>`) and the acquirer's reference number. */
  settlementBatchId: string | null;
  acquirerReferenceNumber: string | null;
  /** The customer details sent with the sale, when it named any (else the vault's customer is shown). */
  customerDetails: CustomerContact | null;
  createdAt: number;
  updatedAt: number;
  statusHistory: StatusEvent[];
  /**
   * The exchange fault the sale request met after it was applied (`timeout_applied`, `reset_applied`): the
   * client never saw this transaction's answer. Simulator bookkeeping, not part of the wire format.
   */
  fault: FaultKind | null;
}

// ---------------------------------------------------------------- amounts

export type AmountCheck = { ok: true; amount: string; cents: bigint } | { ok: false; error: ValidationError };

/** Amounts arrive as strings ("12.34") or JSON numbers; at most two decimals, positive. */
export function parseAmount(raw: unknown): AmountCheck {
  if (raw === undefined || raw === null || raw === '') return { ok: false, error: transactionError('amount', '81502', 'Amount is required.') };
  const s = typeof raw === 'number' ? (Number.isFinite(raw) ? String(raw) : 'NaN') : typeof raw === 'string' ? raw.trim() : 'invalid';
  const m = /^(-)?(\d+)(?:\.(\d{1,2}))?$/.exec(s);
  if (!m) return { ok: false, error: transactionError('amount', '81503', 'Amount is an invalid format.') };
  const cents = BigInt(m[2]!) * 100n + BigInt((m[3] ?? '').padEnd(2, '0') || '0');
  if (m[1] && cents > 0n) return { ok: false, error: transactionError('amount', '81501', 'Amount cannot be negative.') };
  if (cents === 0n) return { ok: false, error: transactionError('amount', '81531', 'Amount must be greater than zero.') };
  if (cents > 9_999_999_999_999n) return { ok: false, error: transactionError('amount', '81528', 'Amount is too large.') };
  return { ok: true, amount: `${cents / 100n}.${String(cents % 100n).padStart(2, '0')}`, cents };
}

// ---------------------------------------------------------------- validation errors

export interface ValidationError {
  /** Nesting under `<errors>`, e.g. `['transaction']` or `['customer']`. */
  scope: string[];
  attribute: string;
  code: string;
  message: string;
}

export const transactionError = (attribute: string, code: string, message: string): ValidationError => ({ scope: ['transaction'], attribute, code, message });

function errorsXml(errors: readonly ValidationError[]): string {
  interface Tree {
    errors: ValidationError[];
    children: Map<string, Tree>;
  }
  const root: Tree = { errors: [], children: new Map() };
  for (const e of errors) {
    let t = root;
    for (const s of e.scope) {
      let child = t.children.get(s);
      if (!child) {
        child = { errors: [], children: new Map() };
        t.children.set(s, child);
      }
      t = child;
    }
    t.errors.push(e);
  }
  const render = (name: string, t: Tree): string =>
    node(name, [
      array(
        'errors',
        t.errors.map((e) => node('error', [text('code', e.code), `<attribute type="symbol">${e.attribute}</attribute>`, text('message', e.message)])),
      ),
      ...[...t.children].map(([k, c]) => render(k.replace(/_/g, '-'), c)),
    ]);
  return render('errors', root);
}

/**
 * The 422 body. Validation failures carry errors and no transaction; declines and rejections carry no errors,
 * the processor's message and the transaction that was recorded.
 */
export function apiErrorResponseXml(opts: { errors: readonly ValidationError[]; message: string; params: unknown; transactionXml?: string }): string {
  const parts = [errorsXml(opts.errors), paramsXml('params', opts.params ?? {}), text('message', opts.message)];
  if (opts.transactionXml) parts.push(opts.transactionXml);
  return node('api-error-response', parts);
}

export function validationMessage(errors: readonly ValidationError[]): string {
  return errors.map((e) => e.message).join('\n');
}

// ---------------------------------------------------------------- resources

export function addressXml(name: string, a: AddressRecord | null | undefined): string {
  if (!a) return nil(name);
  return node(name, [
    text('id', a.id),
    text('customer-id', a.customerId),
    text('first-name', a.firstName),
    text('last-name', a.lastName),
    text('company', a.company),
    text('street-address', a.streetAddress),
    text('extended-address', a.extendedAddress),
    text('locality', a.locality),
    text('region', a.region),
    text('postal-code', a.postalCode),
    text('country-name', a.countryName),
    text('phone-number', a.phoneNumber),
  ]);
}

function cardXml(token: string | null, card: CardDetails | null, extra: readonly string[] = []): string {
  const c = card;
  return node('credit-card', [
    text('token', token),
    text('bin', c?.bin),
    text('last-4', c?.last4),
    text('card-type', c?.cardType),
    text('expiration-month', c?.expirationMonth),
    text('expiration-year', c?.expirationYear),
    text('customer-location', c ? 'US' : null),
    text('cardholder-name', c?.cardholderName),
    text('image-url', c ? `https://assets.braintreegateway.com/payment_method_logo/${c.cardType.toLowerCase().replace(/ /g, '_')}.png?environment=sandbox` : null),
    text('prepaid', c ? 'Unknown' : null),
    text('healthcare', c ? 'Unknown' : null),
    text('debit', c ? 'Unknown' : null),
    text('durbin-regulated', c ? 'Unknown' : null),
    text('commercial', c ? 'Unknown' : null),
    text('payroll', c ? 'Unknown' : null),
    text('issuing-bank', c ? 'Unknown' : null),
    text('country-of-issuance', c ? 'Unknown' : null),
    text('product-id', c ? 'Unknown' : null),
    text('unique-number-identifier', c ? (c.uniqueNumberIdentifier ?? (token ? randomIdFor(token) : null)) : null),
    bool('venmo-sdk', false),
    ...extra,
  ]);
}

export function transactionXml(tx: TransactionRecord, customer: CustomerRecord | undefined): string {
  const contact: CustomerContact | undefined = tx.customerDetails ?? customer;
  // Non-card transactions still carry an all-nil <credit-card>, as the gateway sends them.
  const card = tx.paymentInstrumentType === 'credit_card' ? cardXml(tx.paymentMethodToken, tx.card) : cardXml(null, null);
  const paypal =
    tx.paymentInstrumentType === 'paypal_account'
      ? node('paypal', [text('token', tx.paymentMethodToken), text('payer-email', tx.paypalEmail), text('payment-id', `PAYID-${tx.id.toUpperCase()}`)])
      : '';
  return node('transaction', [
    text('id', tx.id),
    text('status', tx.status),
    text('type', tx.type),
    text('currency-iso-code', tx.currencyIsoCode),
    text('amount', tx.amount),
    text('merchant-account-id', tx.merchantAccountId),
    text('order-id', tx.orderId),
    datetime('created-at', tx.createdAt),
    datetime('updated-at', tx.updatedAt),
    node('customer', [
      text('id', tx.customerId),
      text('first-name', contact?.firstName),
      text('last-name', contact?.lastName),
      text('company', contact?.company),
      text('email', contact?.email),
      text('website', contact?.website),
      text('phone', contact?.phone),
      text('fax', contact?.fax),
    ]),
    tx.billing ? addressXml('billing', tx.billing) : node('billing', [nil('id'), nil('first-name'), nil('last-name'), nil('postal-code'), nil('country-name')]),
    nil('refund-id'),
    array('refund-ids', []),
    nil('refunded-transaction-id'),
    array('partial-settlement-transaction-ids', []),
    nil('authorized-transaction-id'),
    text('settlement-batch-id', tx.settlementBatchId),
    text('acquirer-reference-number', tx.acquirerReferenceNumber),
    tx.shipping ? addressXml('shipping', tx.shipping) : node('shipping', [nil('id'), nil('first-name'), nil('last-name'), nil('postal-code'), nil('country-name')]),
    '<custom-fields/>',
    nil('avs-error-response-code'),
    text('avs-postal-code-response-code', tx.status === 'gateway_rejected' ? null : 'I'),
    text('avs-street-address-response-code', tx.status === 'gateway_rejected' ? null : 'I'),
    text('cvv-response-code', tx.status === 'gateway_rejected' ? null : 'I'),
    text('gateway-rejection-reason', tx.gatewayRejectionReason),
    text('processor-authorization-code', tx.processorAuthorizationCode),
    text('processor-response-code', tx.processorResponseCode),
    text('processor-response-text', tx.processorResponseText),
    text('processor-response-type', tx.processorResponseType),
    text('additional-processor-response', tx.additionalProcessorResponse),
    datetime('authorization-expires-at', tx.authorizationExpiresAt),
    nil('voice-referral-number'),
    nil('purchase-order-number'),
    nil('tax-amount'),
    bool('tax-exempt', false),
    card,
    paypal,
    array(
      'status-history',
      tx.statusHistory.map((e) =>
        node('status-event', [datetime('timestamp', e.timestamp), text('status', e.status), text('amount', e.amount), text('user', tx.user), text('transaction-source', 'api')]),
      ),
    ),
    nil('plan-id'),
    nil('subscription-id'),
    node('subscription', [nil('billing-period-end-date'), nil('billing-period-start-date')]),
    array('add-ons', []),
    array('discounts', []),
    node('descriptor', [nil('name'), nil('phone'), nil('url')]),
    bool('recurring', tx.recurring),
    text('transaction-source', tx.transactionSource),
    nil('channel'),
    nil('service-fee-amount'),
    nil('escrow-status'),
    node('disbursement-details', [nil('disbursement-date'), nil('settlement-amount'), nil('settlement-currency-iso-code'), nil('settlement-currency-exchange-rate'), nil('funds-held'), nil('success')]),
    array('disputes', []),
    array('authorization-adjustments', []),
    text('payment-instrument-type', tx.paymentInstrumentType),
    nil('processor-settlement-response-code'),
    nil('processor-settlement-response-text'),
    nil('network-response-code'),
    nil('network-response-text'),
    text('global-id', globalId('transaction', tx.id)),
  ]);
}

export function paymentMethodXml(pm: PaymentMethodRecord, isDefault: boolean): string {
  if (pm.kind === 'paypal_account') {
    return node('paypal-account', [
      text('token', pm.token),
      text('email', pm.paypalEmail),
      bool('default', isDefault),
      text('customer-id', pm.customerId),
      text('billing-agreement-id', `B-${pm.token.toUpperCase()}`),
      text('image-url', 'https://assets.braintreegateway.com/payment_method_logo/paypal.png?environment=sandbox'),
      datetime('created-at', pm.createdAt),
      datetime('updated-at', pm.updatedAt),
      array('subscriptions', []),
    ]);
  }
  const c = pm.card!;
  return cardXml(pm.token, c, [
    bool('default', isDefault),
    bool('expired', false),
    text('customer-id', pm.customerId),
    text('masked-number', `${c.bin}******${c.last4}`),
    ...(c.billingAddress ? [addressXml('billing-address', c.billingAddress)] : []),
    datetime('created-at', pm.createdAt),
    datetime('updated-at', pm.updatedAt),
    array('subscriptions', []),
    array('verifications', []),
  ]);
}

/** Stable per token, like Braintree's per-card unique number identifier. */
function randomIdFor(token: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < token.length; i++) h = Math.imul(h ^ token.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0').repeat(4);
}

export function customerXml(c: CustomerRecord, methods: readonly PaymentMethodRecord[]): string {
  const isDefault = (pm: PaymentMethodRecord) => pm.token === c.defaultToken;
  return node('customer', [
    text('id', c.id),
    text('first-name', c.firstName),
    text('last-name', c.lastName),
    text('company', c.company),
    text('email', c.email),
    text('phone', c.phone),
    text('fax', c.fax),
    text('website', c.website),
    datetime('created-at', c.createdAt),
    datetime('updated-at', c.updatedAt),
    text('global-id', globalId('customer', c.id)),
    '<custom-fields/>',
    array('credit-cards', methods.filter((m) => m.kind === 'credit_card').map((m) => paymentMethodXml(m, isDefault(m)))),
    array('paypal-accounts', methods.filter((m) => m.kind === 'paypal_account').map((m) => paymentMethodXml(m, isDefault(m)))),
    array(
      'addresses',
      methods.flatMap((m) => (m.card?.billingAddress ? [addressXml('address', m.card.billingAddress)] : [])),
    ),
  ]);
}

/** Braintree's GraphQL ids: base64 of `<kind>_<id>` without padding. */
export function globalId(kind: string, id: string): string {
  return Buffer.from(`${kind}_${id}`).toString('base64').replace(/=+$/, '');
}

/** Search ids page: the SDK reads `searchResults.ids` and `searchResults.pageSize`. */
export function searchIdsXml(ids: readonly string[], pageSize: number): string {
  return node('search-results', [int('page-size', pageSize), array('ids', ids.map((id) => text('item', id)))]);
}

export function searchPageXml(transactions: readonly string[], pageSize: number, total: number): string {
  return `<credit-card-transactions type="collection">${int('current-page-number', 1)}${int('page-size', pageSize)}${int('total-items', total)}${transactions.join('')}</credit-card-transactions>`;
}
