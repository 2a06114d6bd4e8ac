// Money as the desk shows it: integer minor units plus an ISO currency, formatted with Intl.NumberFormat. The
// minor units go in as an exact decimal string (Intl accepts strings), so amounts beyond 2^53 keep every digit.
import { currencyExponent, formatMinor } from '../billing/windows/invoice-math';
import { UNIT_PRICE_PLACES, unitAmountInMajor } from '../billing/windows/unit-price';

const formatters = new Map<string, Intl.NumberFormat>();

/** `formatMoney('123456', 'usd')` → `$1,234.56`. Accepts minor units as a string, bigint or number. */
export function formatMoney(minor: string | bigint | number | null | undefined, currency: string): string {
  if (minor === null || minor === undefined || minor === '') return '—';
  const code = currency.trim().toUpperCase();
  let formatter = formatters.get(code);
  if (!formatter) {
    formatter = new Intl.NumberFormat('en-US', { style: 'currency', currency: code });
    formatters.set(code, formatter);
  }
  const decimal = formatMinor(BigInt(minor), code) as `${number}`;
  return formatter.format(decimal);
}

const unitFormatters = new Map<string, Intl.NumberFormat>();

/**
 * A unit price (minor-unit decimal, ADR 030) in the currency's style with every significant digit, per its unit
 * count: `formatUnitPrice('0.015', 'usd')` → `$0.00015 / unit`, `formatUnitPrice('5', 'usd', '1000')` → `$0.05 / 1,000 units`.
 */
export function formatUnitPrice(unitAmountDecimal: string | null | undefined, currency: string, perUnits: string | bigint = '1'): string {
  if (unitAmountDecimal === null || unitAmountDecimal === undefined || unitAmountDecimal === '') return '—';
  const code = currency.trim().toUpperCase();
  const exponent = currencyExponent(code);
  let formatter = unitFormatters.get(code);
  if (!formatter) {
    formatter = new Intl.NumberFormat('en-US', { style: 'currency', currency: code, maximumFractionDigits: exponent + UNIT_PRICE_PLACES });
    unitFormatters.set(code, formatter);
  }
  const per = BigInt(perUnits);
  const amount = formatter.format(unitAmountInMajor(unitAmountDecimal, exponent) as `${number}`);
  return per === 1n ? `${amount} / unit` : `${amount} / ${per.toLocaleString('en-US')} units`;
}
