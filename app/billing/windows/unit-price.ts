// Unit prices as exact decimals of the currency's minor unit (Stripe's `unit_amount_decimal`): a string with at most
// 19 integer digits and 12 decimal places, the range of the `numeric(31,12)` columns. Arithmetic happens on the value
// scaled by 10^12 as a BigInt, never on floats. Decision: docs/decisions/030-sub-cent-prices.md.

export const UNIT_PRICE_PLACES = 12;
const SCALE = 10n ** BigInt(UNIT_PRICE_PLACES);
const HALF = SCALE / 2n;

/** A non-negative decimal with 1-19 integer digits and, optionally, 1-12 decimal places (no sign, exponent or spaces). */
export const UNIT_AMOUNT_DECIMAL_PATTERN = /^(\d{1,19})(?:\.(\d{1,12}))?$/;

export function isUnitAmountDecimal(text: string): boolean {
  return UNIT_AMOUNT_DECIMAL_PATTERN.test(text);
}

/** `'0.015'` → 15_000_000_000n (the value × 10^12). Throws RangeError on anything else than the pattern above. */
export function scaledUnitAmount(decimal: string): bigint {
  const match = UNIT_AMOUNT_DECIMAL_PATTERN.exec(decimal);
  if (!match) throw new RangeError(`not a unit amount decimal: ${JSON.stringify(decimal)}`);
  const [, whole, frac = ''] = match;
  return BigInt(whole!) * SCALE + BigInt(frac.padEnd(UNIT_PRICE_PLACES, '0'));
}

/** The canonical decimal string of a scaled value: no leading zeros, no trailing decimal zeros (`15n * 10n**9n` → `'0.015'`). */
export function unitAmountFromScaled(scaled: bigint): string {
  if (scaled < 0n) throw new RangeError('a unit amount is never negative');
  const whole = scaled / SCALE;
  const frac = (scaled % SCALE).toString().padStart(UNIT_PRICE_PLACES, '0').replace(/0+$/, '');
  return frac ? `${whole}.${frac}` : whole.toString();
}

/** The canonical form of a unit amount decimal (PostgreSQL prints `numeric(31,12)` with all 12 places). */
export function canonicalUnitAmount(decimal: string): string {
  return unitAmountFromScaled(scaledUnitAmount(decimal));
}

/**
 * The integer minor amount of `units` billed units at `unitAmountDecimal` each: the exact product, rounded to the
 * nearest minor unit, halves up (Stripe rounds once per line item, after multiplying: 30 × 0.05 = 1.5 → 2).
 */
export function amountForUnits(units: bigint, unitAmountDecimal: string): bigint {
  if (units < 0n) throw new RangeError('billed units must not be negative');
  return (units * scaledUnitAmount(unitAmountDecimal) + HALF) / SCALE;
}

/** The unit price in the currency's major unit, exactly (`'0.015'` minor with exponent 2 → `'0.00015'`). */
export function unitAmountInMajor(unitAmountDecimal: string, exponent: number): string {
  const scaled = scaledUnitAmount(unitAmountDecimal);
  const places = UNIT_PRICE_PLACES + exponent;
  const digits = scaled.toString().padStart(places + 1, '0');
  const frac = digits.slice(-places).replace(/0+$/, '');
  const whole = digits.slice(0, -places);
  return frac ? `${whole}.${frac}` : whole;
}
