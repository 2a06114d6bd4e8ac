// Hostile values for the property tests under test/security: the strings and numbers that break naive code
// (NUL and control characters, lone surrogates, bidi overrides, injection payloads, oversized text, numbers past
// 2^53 and past PostgreSQL's ranges, deep JSON), mixed with valid values so a property sees both sides of a rule.
import fc from 'fast-check';

export const INJECTION_STRINGS = [
  "'; DROP TABLE meter_events; --",
  "' OR '1'='1",
  '" OR ""="',
  '1; SELECT pg_sleep(10)',
  '$1',
  '%s%s%s%n',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  'javascript:alert(1)',
  '{{7*7}}',
  '${7*7}',
  '../../etc/passwd',
  '\\\\evil\\share',
] as const;

export const AWKWARD_STRINGS = [
  '\u0000',
  'acme\u0000',
  'a\u0000b',
  '\u0001\u0002\u001f\u007f',
  '\r\n\r\nSet-Cookie: x=1',
  '\t',
  '\ud800',
  '\udfff',
  'x\ud83dy',
  '𝕬𝖈𝖒𝖊',
  '‮evil',
  '\u200b',
  '\ufeff',
  '\uffff',
  'e\u0301',
  '',
  ' ',
  '   padded   ',
  'NaN',
  'Infinity',
  '-0',
  '1e400',
  '0x1f',
  'null',
  'true',
  '[]',
  '{}',
  '__proto__',
  'constructor',
  'a'.repeat(101),
  'a'.repeat(256),
  'x'.repeat(5_000),
] as const;

export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 120 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.constantFrom(...INJECTION_STRINGS, ...AWKWARD_STRINGS),
  // Oversized: past every column limit, well below the 1 MiB body limit.
  fc.integer({ min: 201, max: 20_000 }).map((n) => 'Z'.repeat(n)),
);

export const hostileNumber: fc.Arbitrary<number> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -0, 1, -1, 2 ** 31, 2 ** 53 - 1, 2 ** 53, 2 ** 63, 2 ** 64, -(2 ** 63), 1e308, -1e308, 8.64e15, -8.64e15, 1e13, -1e13, -3e11, Number.MIN_VALUE, Number.EPSILON),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((b) => Number(b)),
);

/** JSON nested up to a few levels, with hostile keys. */
export const deepJson: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: 'small' },
    fc.jsonValue(),
    fc.array(tie('node'), { maxLength: 3 }),
    fc.dictionary(hostileString, tie('node'), { maxKeys: 3 }),
  ),
})).node;

/** `[[[[...]]]]` or `{"a":{"a":...}}` nested `depth` times: past recursion limits of naive walkers. */
export function nested(depth: number, kind: 'array' | 'object' = 'array'): string {
  return kind === 'array' ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

/** Any JSON-ish field value a hostile client might send. */
export const hostileField: fc.Arbitrary<unknown> = fc.oneof(hostileString, hostileNumber, fc.boolean(), fc.constant(null), deepJson);

/** Mostly `valid`, sometimes `hostile`: each payload is often accepted and often refused for a single reason. */
export function mostly<T, U>(valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<U>, weight = 4): fc.Arbitrary<T | U> {
  return fc.oneof({ arbitrary: valid, weight }, { arbitrary: hostile, weight: 1 });
}

/** A form field value as a browser (or a script) could send it: always a string on the wire. */
export const hostileFormValue: fc.Arbitrary<string> = fc.oneof(
  hostileString,
  hostileNumber.map(String),
  fc.constantFrom('on', 'true', '1', 'false', 'admin', 'operator', 'finance', 'support', '00000000-0000-4000-8000-000000000000'),
  deepJson.map((v) => JSON.stringify(v) ?? 'undefined'),
  fc.integer({ min: 10, max: 2_000 }).map((d) => nested(d, 'object')),
);

/** Runs a property with a short report: hostile counterexamples can be megabytes, which buries the failure. */
export async function check<Ts extends [unknown, ...unknown[]]>(property: fc.IAsyncProperty<Ts>, numRuns: number): Promise<void> {
  const details = await fc.check(property, { numRuns });
  if (!details.failed) return;
  const example = JSON.stringify(details.counterexample, (_k, v: unknown) => (typeof v === 'string' && v.length > 200 ? `${v.slice(0, 200)}…(${v.length} chars)` : v));
  const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
  throw new Error(`Property failed after ${details.numRuns} run(s) (seed ${details.seed}, path ${details.counterexamplePath}):\n  counterexample: ${example?.slice(0, 2_000)}\n  ${cause.slice(0, 2_000)}`);
}
