// The identifier a retry of an asynchronously rejected Stripe event is sent under (ADR 033). Stripe documents
// identifier uniqueness "within a rolling period of at least 24 hours" with no exception for events it rejected
// later, and a v1 re-send with the same Idempotency-Key is answered from the first call: a re-send under the same
// identifier may count nothing. So such a retry sends `<identifier>:r<n>`, a new event to Stripe, recorded on the row
// (`meter_events.sent_identifier`) before it is sent.
import { createHash } from 'node:crypto';

/** Stripe's documented limit for `identifier` (v1 "Max length: 100"; the v2 stream refuses longer ones too). */
export const STRIPE_IDENTIFIER_MAX = 100;

const SUFFIX = /:r([1-9][0-9]*)$/;

/**
 * The `n`th identifier derived from `identifier`: `<identifier>:r<n>`, or, when that would pass Stripe's 100
 * characters, a prefix of it, `~`, 16 hex digits of its SHA-256 and `:r<n>` (the prefix keeps it readable, the hash
 * keeps two long identifiers with one prefix apart).
 */
export function derivedIdentifier(identifier: string, n: number): string {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`resend number must be a positive integer, got ${n}`);
  const suffix = `:r${n}`;
  if (identifier.length + suffix.length <= STRIPE_IDENTIFIER_MAX) return `${identifier}${suffix}`;
  const tail = `~${createHash('sha256').update(identifier).digest('hex').slice(0, 16)}${suffix}`;
  return `${identifier.slice(0, STRIPE_IDENTIFIER_MAX - tail.length)}${tail}`;
}

/** Which resend `sent` is of `identifier` (0 when it is sent as itself or `sent` is not derived from it). */
export function resendNumber(identifier: string, sent: string | null): number {
  if (sent === null || sent === identifier) return 0;
  const m = SUFFIX.exec(sent);
  if (!m) return 0;
  const n = Number(m[1]);
  return derivedIdentifier(identifier, n) === sent ? n : 0;
}

/** Every identifier an event may have been sent under, up to its current one (the invariant checks count them all). */
export function identifiersSent(identifier: string, sent: string | null): string[] {
  const out = [identifier];
  for (let n = 1; n <= resendNumber(identifier, sent); n++) out.push(derivedIdentifier(identifier, n));
  return out;
}
