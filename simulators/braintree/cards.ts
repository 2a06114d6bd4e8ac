// Raw card data as a sale or a customer carries it (`credit_card: {number, expiration_date | expiration_month +
// expiration_year, cvv, cardholder_name, token, billing_address}`), validated with the gateway's error codes and
// turned into the card the simulator records. In the sandbox a card number decides no sale (the amount does;
// numbers only decide verifications), so any Luhn-valid number is accepted.
import { createHash } from 'node:crypto';
import { isObject, str } from '../kit/server';
import { randomId, type AddressRecord, type CardDetails, type ValidationError } from './wire';

export type CardCheck =
  | { ok: true; card: CardDetails; number: string; token: string | undefined }
  | { ok: false; errors: ValidationError[] };

function luhn(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** The card brand a number's prefix names, as the gateway spells it in `card-type`. */
export function cardType(number: string): string {
  if (/^4/.test(number)) return 'Visa';
  if (/^(5[1-5]|2(2[2-9]|[3-6]\d|7[01]|720))/.test(number)) return 'MasterCard';
  if (/^3[47]/.test(number)) return 'American Express';
  if (/^(6011|65|64[4-9])/.test(number)) return 'Discover';
  if (/^35/.test(number)) return 'JCB';
  if (/^62/.test(number)) return 'UnionPay';
  if (/^(5[06-9]|6)/.test(number)) return 'Maestro';
  return 'Unknown';
}

/** The same number always has the same identifier, as on the gateway (32 hex characters). */
export function uniqueNumberIdentifier(number: string): string {
  return createHash('sha256').update(`bt-sim-card:${number}`).digest('hex').slice(0, 32);
}

/** `05/12`, `05/2012`, `5/2012` -> month and four-digit year. */
function expiration(raw: Record<string, unknown>): { month: string; year: string } | 'missing' | 'invalid' {
  const date = str(raw.expiration_date);
  const monthRaw = str(raw.expiration_month);
  const yearRaw = str(raw.expiration_year);
  if (date === undefined && monthRaw === undefined && yearRaw === undefined) return 'missing';
  let month: string | undefined;
  let year: string | undefined;
  if (date !== undefined) {
    const m = /^\s*(\d{1,2})\s*\/\s*(\d{2}|\d{4})\s*$/.exec(date);
    if (!m) return 'invalid';
    [month, year] = [m[1]!, m[2]!];
  } else {
    [month, year] = [monthRaw, yearRaw];
    if (month === undefined || year === undefined || !/^\d{1,2}$/.test(month) || !/^(\d{2}|\d{4})$/.test(year)) return 'invalid';
  }
  const mm = Number(month);
  if (mm < 1 || mm > 12) return 'invalid';
  return { month: String(mm).padStart(2, '0'), year: year.length === 2 ? `20${year}` : year };
}

/** Country codes the gateway takes in `country_name` too, stored as its country names. */
const COUNTRY_NAMES: Readonly<Record<string, string>> = { US: 'United States of America', CA: 'Canada', GB: 'United Kingdom', MX: 'Mexico' };

export function addressFromParams(raw: unknown, customerId: string | null): AddressRecord | null {
  if (!isObject(raw)) return null;
  const f = (k: string) => str(raw[k]) ?? null;
  return {
    id: randomId(2, 'abcdefghijklmnopqrstuvwxyz'),
    customerId,
    firstName: f('first_name'),
    lastName: f('last_name'),
    company: f('company'),
    streetAddress: f('street_address'),
    extendedAddress: f('extended_address'),
    locality: f('locality'),
    region: f('region'),
    postalCode: f('postal_code'),
    countryName: ((c) => (c !== null ? (COUNTRY_NAMES[c] ?? c) : null))(f('country_name')),
    phoneNumber: f('phone_number'),
  };
}

/** Validates `credit_card` params; errors are scoped under `scope` (e.g. `['transaction', 'credit_card']`). */
export function cardFromParams(raw: Record<string, unknown>, scope: string[], customerId: string | null): CardCheck {
  const errors: ValidationError[] = [];
  const error = (attribute: string, code: string, message: string) => errors.push({ scope, attribute, code, message });
  const number = (str(raw.number) ?? '').replace(/[\s-]/g, '');
  if (number === '') error('number', '81714', 'Credit card number is required.');
  else if (!/^\d+$/.test(number) || !luhn(number)) error('number', '81715', 'Credit card number is invalid.');
  else if (number.length < 12 || number.length > 19) error('number', '81716', 'Credit card number must be 12-19 digits.');
  const exp = expiration(raw);
  if (exp === 'missing') error('expiration_date', '81709', 'Expiration date is required.');
  else if (exp === 'invalid') error('expiration_date', '81710', 'Expiration date is invalid.');
  const cvv = str(raw.cvv);
  if (cvv !== undefined && !/^\d{3,4}$/.test(cvv)) error('cvv', '81707', 'CVV must be 4 digits for American Express and 3 digits for other card types.');
  const cardholderName = str(raw.cardholder_name) ?? null;
  if (cardholderName !== null && cardholderName.length > 255) error('cardholder_name', '81723', 'Cardholder name is too long.');
  if (errors.length > 0 || typeof exp === 'string') return { ok: false, errors };
  return {
    ok: true,
    number,
    token: str(raw.token),
    card: {
      bin: number.slice(0, 6),
      last4: number.slice(-4),
      cardType: cardType(number),
      expirationMonth: exp.month,
      expirationYear: exp.year,
      cardholderName,
      uniqueNumberIdentifier: uniqueNumberIdentifier(number),
      billingAddress: addressFromParams(raw.billing_address, customerId),
    },
  };
}
