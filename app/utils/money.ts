// Money as the desk shows it: integer minor units plus an ISO currency, formatted with Intl.NumberFormat. The
// minor units go in as an exact decimal string (Intl accepts strings), so amounts beyond 2^53 keep every digit.
import { formatMinor } from '../billing/windows/invoice-math';

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
