// The desk's money formatting: unit prices keep every significant decimal (ADR 030), in the currency's style.
import { describe, expect, it } from 'vitest';
import { formatMoney, formatUnitPrice } from './money';

describe('formatUnitPrice', () => {
  it('shows sub-cent prices in the currency major unit with every digit, per unit or per block of units', () => {
    expect(formatUnitPrice('0.015', 'usd')).toBe('$0.00015 / unit');
    expect(formatUnitPrice('5', 'usd', '1000')).toBe('$0.05 / 1,000 units');
    expect(formatUnitPrice('50', 'USD', 15_000n)).toBe('$0.50 / 15,000 units');
    expect(formatUnitPrice('0.000000000001', 'eur')).toBe('€0.00000000000001 / unit');
    expect(formatUnitPrice('0.5', 'jpy')).toBe('¥0.5 / unit');
    expect(formatUnitPrice('7', 'jpy')).toBe('¥7 / unit');
    expect(formatUnitPrice('1234.5', 'kwd')).toBe('KWD\u00a01.2345 / unit'); // Intl puts a no-break space after a code
    expect(formatUnitPrice('9223372036854775807.999999999999', 'usd')).toBe('$92,233,720,368,547,758.07999999999999 / unit');
    expect(formatUnitPrice(null, 'usd')).toBe('—');
  });

  it('agrees with formatMoney on whole minor amounts', () => {
    for (const minor of ['0', '5', '123456', '9223372036854775807']) expect(formatUnitPrice(minor, 'usd')).toBe(`${formatMoney(minor, 'usd')} / unit`);
  });
});
