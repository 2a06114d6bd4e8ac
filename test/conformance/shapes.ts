// Compares the shape of a simulator's answer with the processor's own example of it: the same keys, each with the
// same JSON type, recursively (arrays by their first item). `null` in either is compatible with any type (Stripe's
// examples null out optional objects). Free-form maps (metadata, payload) are compared as maps, not key by key.

const OPAQUE_KEYS = new Set(['metadata', 'payload']);
/** An event's object is whatever resource the event is about: compared on its own, not with the example's. */
const OPAQUE_PATHS = new Set(['data.object', 'data.previous_attributes']);

function jsonType(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/**
 * Each difference as one line: `missing key a.b`, `extra key c`, `a.d: number, expected string`. `allowExtra`: the
 * reference is a minimal example (stripe-node's generated examples leave out nullable fields), so keys it lacks are
 * not differences.
 */
export function shapeDifferences(expected: unknown, actual: unknown, opts: { allowExtra?: boolean } = {}, path = ''): string[] {
  const te = jsonType(expected);
  const ta = jsonType(actual);
  if (te === 'null' || ta === 'null') return [];
  if (te !== ta) return [`${path || '(root)'}: ${ta}, expected ${te}`];
  if (te === 'array') {
    const [e] = expected as unknown[];
    const [a] = actual as unknown[];
    return e === undefined || a === undefined ? [] : shapeDifferences(e, a, opts, `${path}[]`);
  }
  if (te !== 'object') return [];
  const key = path.split('.').at(-1) ?? '';
  if (OPAQUE_KEYS.has(key) || OPAQUE_PATHS.has(path)) return [];
  const e = expected as Record<string, unknown>;
  const a = actual as Record<string, unknown>;
  const out: string[] = [];
  for (const k of Object.keys(e)) {
    const p = path ? `${path}.${k}` : k;
    if (!(k in a)) out.push(`missing key ${p}`);
    else out.push(...shapeDifferences(e[k], a[k], opts, p));
  }
  if (!opts.allowExtra) for (const k of Object.keys(a)) if (!(k in e)) out.push(`extra key ${path ? `${path}.${k}` : k}`);
  return out;
}
