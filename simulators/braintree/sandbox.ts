// Braintree's sandbox test values as the simulator honours them: processor responses and their soft/hard type, the
// decisions that test amounts, card numbers, fake nonces and descriptive vault tokens lead to, and the cards behind
// the fake nonces.
import type { CardDetails, PaymentMethodKind } from './wire';

export { processorResponse } from './processor-responses';

export const GATEWAY_REJECTION_REASONS = [
  'application_incomplete',
  'avs',
  'avs_and_cvv',
  'cvv',
  'duplicate',
  'fraud',
  'risk_threshold',
  'three_d_secure',
  'token_issuance',
] as const;

/** How a sale ends, before it is recorded. */
export type SaleDecision =
  | { kind: 'approved' }
  | { kind: 'processor_declined'; code: string; type?: 'soft_declined' | 'hard_declined' }
  | { kind: 'failed'; code: string }
  | { kind: 'gateway_rejected'; reason: string };

/**
 * Declines chosen by the vaulted token's name, so fixtures read as what they do: `pm_soft_decline` (2000),
 * `pm_insufficient_funds` (2001), `pm_hard_decline` (2004), `pm_decline_2057` (any code),
 * `pm_gateway_rejected` (fraud) or `pm_gateway_rejected_duplicate` (a named reason), `pm_processor_failed` (3000).
 */
export function decisionForToken(token: string | null): SaleDecision | undefined {
  if (!token) return undefined;
  const t = token.toLowerCase();
  const coded = /decline_(\d{4})/.exec(t);
  if (coded) return { kind: 'processor_declined', code: coded[1]! };
  if (t.includes('hard_decline')) return { kind: 'processor_declined', code: '2004' };
  if (t.includes('soft_decline')) return { kind: 'processor_declined', code: '2000' };
  if (t.includes('insufficient')) return { kind: 'processor_declined', code: '2001' };
  if (t.includes('processor_failed')) return { kind: 'failed', code: '3000' };
  if (t.includes('gateway_rejected')) {
    const reason = GATEWAY_REJECTION_REASONS.find((r) => t.includes(`gateway_rejected_${r}`));
    return { kind: 'gateway_rejected', reason: reason ?? 'fraud' };
  }
  return undefined;
}

/**
 * Braintree's sandbox test amounts: 2000.00-2999.99 decline with the amount's integer part as the processor
 * response code, 3000.00-3000.99 fail with 3000, 5001.00 is gateway rejected (application_incomplete).
 */
export function decisionForAmount(cents: bigint): SaleDecision | undefined {
  if (cents >= 200_000n && cents <= 299_999n) return { kind: 'processor_declined', code: String(cents / 100n) };
  if (cents >= 300_000n && cents <= 300_099n) return { kind: 'failed', code: '3000' };
  if (cents === 500_100n) return { kind: 'gateway_rejected', reason: 'application_incomplete' };
  return undefined;
}

// ---------------------------------------------------------------- nonces

export interface NonceInfo {
  nonce: string;
  kind: PaymentMethodKind;
  card: CardDetails | null;
  paypalEmail: string | null;
  /** A PayPal account authorized for one payment only (`fake-paypal-one-time-nonce`): it cannot be vaulted. */
  oneTime?: boolean;
  /** A sale on it is gateway rejected for this reason (`fake-gateway-rejected-fraud-nonce` ...). */
  gatewayRejection?: string;
}

/**
 * Sandbox card numbers and nonces whose sales the gateway's fraud tools reject (braintree's
 * test_values CardTypeIndicators.Fraud / RiskThresholds and Nonces.GatewayRejectedFraud / RiskThresholds).
 * Simulator choice: on every merchant, where the sandbox needs Advanced Fraud Protection turned on.
 */
export const REJECTED_CARD_NUMBERS: Readonly<Record<string, string>> = {
  '4000111111111511': 'fraud',
  '4111130000000003': 'risk_threshold',
};
const REJECTED_NONCES: Readonly<Record<string, string>> = {
  'fake-gateway-rejected-fraud-nonce': 'fraud',
  'fake-gateway-rejected-risk-thresholds-nonce': 'risk_threshold',
};

export const CARD_BRANDS: Record<string, CardDetails> = {
  visa: { bin: '411111', last4: '1111', cardType: 'Visa', expirationMonth: '12', expirationYear: '2030', cardholderName: null },
  mastercard: { bin: '555555', last4: '4444', cardType: 'MasterCard', expirationMonth: '12', expirationYear: '2030', cardholderName: null },
  amex: { bin: '378282', last4: '0005', cardType: 'American Express', expirationMonth: '12', expirationYear: '2030', cardholderName: null },
  discover: { bin: '601111', last4: '1117', cardType: 'Discover', expirationMonth: '12', expirationYear: '2030', cardholderName: null },
};

/** The sandbox's fake nonces: `fake-valid-nonce`, `fake-valid-<brand>-nonce`, `fake-paypal-*-nonce`. */
export function nonceInfo(nonce: string): NonceInfo | 'consumed' | 'unknown' {
  if (nonce === 'fake-consumed-nonce') return 'consumed';
  if (nonce === 'fake-paypal-one-time-nonce') return { nonce, kind: 'paypal_account', card: null, paypalEmail: 'payer@example.com', oneTime: true };
  if (/^fake-paypal-[a-z-]+-nonce$/.test(nonce)) return { nonce, kind: 'paypal_account', card: null, paypalEmail: 'payer@example.com' };
  const rejection = REJECTED_NONCES[nonce];
  if (rejection) return { nonce, kind: 'credit_card', card: { ...CARD_BRANDS.visa! }, paypalEmail: null, gatewayRejection: rejection };
  const m = /^fake-(?:valid|processor-declined)-(?:([a-z]+)-)?nonce$/.exec(nonce);
  if (m) return { nonce, kind: 'credit_card', card: { ...(CARD_BRANDS[m[1] ?? 'visa'] ?? CARD_BRANDS.visa!) }, paypalEmail: null };
  return 'unknown';
}
