// Transaction search as the gateway's advanced_search_ids / advanced_search take it: the SDK sends
// `{search: {order_id: {is: "x"}, status: ["settled"], amount: {min: "1"}, ids: [...]}}` (underscored keys).
// Criteria the simulator does not implement are refused, never ignored (ignoring one would return too much).
import type { TransactionRecord, TransactionStatus } from './wire';

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined);
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Thrown by search criteria the simulator does not implement: answered 400, never silently ignored. */
export class UnsupportedSearch extends Error {}

export type Criterion = (tx: TransactionRecord) => boolean;

const ADDRESS_FIELDS = ['company', 'country_name', 'extended_address', 'first_name', 'last_name', 'locality', 'postal_code', 'region', 'street_address'] as const;
const camel = (s: string) => s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
const CONTACT_FIELDS = ['company', 'email', 'fax', 'first_name', 'last_name', 'phone', 'website'] as const;

const TEXT_FIELDS: Record<string, (tx: TransactionRecord) => string | null> = {
  id: (tx) => tx.id,
  order_id: (tx) => tx.orderId,
  customer_id: (tx) => tx.customerId,
  payment_method_token: (tx) => tx.paymentMethodToken,
  currency: (tx) => tx.currencyIsoCode,
  processor_authorization_code: (tx) => tx.processorAuthorizationCode,
  credit_card_cardholder_name: (tx) => tx.card?.cardholderName ?? null,
  credit_card_unique_identifier: (tx) => tx.card?.uniqueNumberIdentifier ?? null,
  credit_card_expiration_date: (tx) => (tx.card ? `${tx.card.expirationMonth}/${tx.card.expirationYear}` : null),
  acquirer_reference_number: (tx) => tx.acquirerReferenceNumber,
  settlement_batch_id: (tx) => tx.settlementBatchId,
  // The simulator has no stores: matches nothing.
  store_id: () => null,
  ...Object.fromEntries(
    ADDRESS_FIELDS.flatMap((f) => [
      [`billing_${f}`, (tx: TransactionRecord) => (tx.billing?.[camel(f) as keyof NonNullable<TransactionRecord['billing']>] as string | null | undefined) ?? null],
      [`shipping_${f}`, (tx: TransactionRecord) => (tx.shipping?.[camel(f) as keyof NonNullable<TransactionRecord['shipping']>] as string | null | undefined) ?? null],
    ]),
  ),
  ...Object.fromEntries(
    CONTACT_FIELDS.map((f) => [`customer_${f}`, (tx: TransactionRecord) => (tx.customerDetails?.[camel(f) as keyof NonNullable<TransactionRecord['customerDetails']>] as string | null | undefined) ?? null]),
  ),
};

const MULTI_FIELDS: Record<string, (tx: TransactionRecord) => string> = {
  ids: (tx) => tx.id,
  status: (tx) => tx.status,
  type: (tx) => tx.type,
  merchant_account_id: (tx) => tx.merchantAccountId,
  // The gateway searches instruments by their detail names (CreditCardDetail, PayPalDetail ...).
  payment_instrument_type: (tx) => (tx.paymentInstrumentType === 'paypal_account' ? 'PayPalDetail' : 'CreditCardDetail'),
  source: () => 'api',
  created_using: (tx) => tx.createdUsing,
  credit_card_card_type: (tx) => tx.card?.cardType ?? '',
  credit_card_customer_location: (tx) => (tx.card ? 'us' : ''),
  user: (tx) => tx.user,
};

/** Yes/no criteria (`refund: false`): a sale is never a refund, and the simulator makes no refunds. */
const KEY_VALUE_FIELDS: Record<string, (tx: TransactionRecord) => boolean> = {
  refund: () => false,
};

const statusTime = (status: TransactionStatus) => (tx: TransactionRecord) => tx.statusHistory.find((e) => e.status === status)?.timestamp ?? null;

const RANGE_FIELDS: Record<string, { value: (tx: TransactionRecord) => number | null; parse: (raw: string) => number }> = {
  amount: { value: (tx) => Number(tx.amount), parse: (raw) => Number(raw) },
  created_at: { value: (tx) => tx.createdAt, parse: Date.parse },
  authorized_at: { value: statusTime('authorized'), parse: Date.parse },
  submitted_for_settlement_at: { value: statusTime('submitted_for_settlement'), parse: Date.parse },
  settled_at: { value: statusTime('settled'), parse: Date.parse },
  processor_declined_at: { value: statusTime('processor_declined'), parse: Date.parse },
  gateway_rejected_at: { value: statusTime('gateway_rejected'), parse: Date.parse },
  failed_at: { value: statusTime('failed'), parse: Date.parse },
  voided_at: { value: statusTime('voided'), parse: Date.parse },
};

export function compileSearch(search: Record<string, unknown>): Criterion[] {
  const criteria: Criterion[] = [];
  for (const [field, raw] of Object.entries(search)) {
    const textField = TEXT_FIELDS[field];
    if (textField) {
      if (!isObject(raw)) throw new UnsupportedSearch(`search ${field}: expected an operator object`);
      for (const [op, v] of Object.entries(raw)) {
        const want = str(v) ?? '';
        // Exact, case-sensitive matching: order ids are ours, and adopting the wrong sale is worse than missing one.
        const test: ((s: string) => boolean) | undefined =
          op === 'is' ? (s) => s === want : op === 'is_not' ? (s) => s !== want : op === 'starts_with' ? (s) => s.startsWith(want) : op === 'ends_with' ? (s) => s.endsWith(want) : op === 'contains' ? (s) => s.includes(want) : undefined;
        if (!test) throw new UnsupportedSearch(`search ${field}: unsupported operator ${op}`);
        criteria.push((tx) => {
          const value = textField(tx);
          return value === null ? op === 'is_not' : test(value);
        });
      }
      continue;
    }
    if (field === 'credit_card_number') {
      // Only the first six and last four digits are kept, as on the gateway: a longer prefix cannot be matched.
      if (!isObject(raw)) throw new UnsupportedSearch('search credit_card_number: expected starts_with / ends_with');
      for (const [op, v] of Object.entries(raw)) {
        const want = str(v) ?? '';
        if (op === 'starts_with' && want.length <= 6) criteria.push((tx) => tx.card?.bin.startsWith(want) ?? false);
        else if (op === 'ends_with' && want.length <= 4) criteria.push((tx) => tx.card?.last4.endsWith(want) ?? false);
        else throw new UnsupportedSearch(`search credit_card_number: unsupported ${op} ${want}`);
      }
      continue;
    }
    const keyValue = KEY_VALUE_FIELDS[field];
    if (keyValue) {
      const want = raw === true || raw === 'true';
      criteria.push((tx) => keyValue(tx) === want);
      continue;
    }
    const multiField = MULTI_FIELDS[field];
    if (multiField) {
      const values = new Set((Array.isArray(raw) ? raw : [raw]).map((v) => str(v) ?? ''));
      criteria.push((tx) => values.has(multiField(tx)));
      continue;
    }
    const rangeField = RANGE_FIELDS[field];
    if (rangeField) {
      if (!isObject(raw)) throw new UnsupportedSearch(`search ${field}: expected min/max/is`);
      for (const [op, v] of Object.entries(raw)) {
        const bound = rangeField.parse(str(v) ?? '');
        if (!Number.isFinite(bound)) throw new UnsupportedSearch(`search ${field}: cannot read ${String(v)}`);
        // The gateway refuses a negative amount (the SDK reports it as an unexpectedError).
        if (field === 'amount' && bound < 0) throw new UnsupportedSearch('search amount: an amount cannot be negative');
        const cmp: ((n: number) => boolean) | undefined = op === 'min' ? (n) => n >= bound : op === 'max' ? (n) => n <= bound : op === 'is' ? (n) => n === bound : undefined;
        if (!cmp) throw new UnsupportedSearch(`search ${field}: unsupported operator ${op}`);
        criteria.push((tx) => {
          const n = rangeField.value(tx);
          return n !== null && cmp(n);
        });
      }
      continue;
    }
    throw new UnsupportedSearch(`search field ${field} is not supported by the simulator`);
  }
  return criteria;
}
