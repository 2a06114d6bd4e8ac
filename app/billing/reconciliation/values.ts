// Exact comparison of the ledger's decimals with a processor's numbers, and the key of a Stripe bucket.
import type { MeterAggregation } from '../processors/types';
import type { LedgerBucket } from './model';

export function bucketKey(customerId: string, eventName: string, day: Date): string {
  return `${customerId}\u0000${eventName}\u0000${day.getTime()}`;
}

/** The ledger's side of a bucket under Stripe's formula (no meter at Stripe: the sum, compared with nothing). */
export function ledgerValue(b: LedgerBucket | undefined, aggregation: MeterAggregation | null): string {
  if (!b) return '0';
  if (aggregation === 'count') return String(b.reportedCount);
  if (aggregation === 'last') return b.reportedLast ?? '0';
  return b.reportedSum;
}

/** The ledger's integers are exact; Stripe's aggregated_value is a double: compare exactly when it is an integer. */
export function equalValues(ledger: string, processor: number): boolean {
  if (Number.isInteger(processor)) return BigInt(ledger) === BigInt(processor);
  return false;
}

export function decimalText(value: number): string {
  if (Number.isInteger(value)) return BigInt(value).toString();
  return value.toFixed(6).replace(/0+$/, '').replace(/\.$/, '');
}

/** a - b for decimal texts with at most 6 decimals (the findings' numeric scale). */
export function subtract(a: string, b: string): string {
  const scaled = (t: string) => {
    const negative = t.startsWith('-');
    const [whole = '0', frac = ''] = (negative ? t.slice(1) : t).split('.');
    const v = BigInt(whole) * 1_000_000n + BigInt((frac + '000000').slice(0, 6));
    return negative ? -v : v;
  };
  const d = scaled(a) - scaled(b);
  const abs = d < 0n ? -d : d;
  const whole = (abs / 1_000_000n).toString();
  const frac = (abs % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${d < 0n ? '-' : ''}${whole}${frac ? `.${frac}` : ''}`;
}
