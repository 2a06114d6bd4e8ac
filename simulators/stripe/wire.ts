// Stripe wire-format helpers for the simulator: ids, form decoding, error bodies.
// Message texts marked "verified" were checked against Stripe's docs or integrations that match on
// them; the others follow Stripe's usual style and are documented as simulator wording.
import { randomBytes } from 'node:crypto';

const ALPHANUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export function randomId(prefix: string, length = 24): string {
  const bytes = randomBytes(length);
  let out = prefix;
  for (let i = 0; i < length; i++) out += ALPHANUM[bytes[i]! % ALPHANUM.length];
  return out;
}

let requestCounter = 0;
const requestPrefix = randomId('req_', 6);
// Cheap, unique per process: real Request-Ids are random, but nothing relies on their entropy.
export function nextRequestId(): string {
  requestCounter += 1;
  return `${requestPrefix}${requestCounter.toString(36).padStart(8, '0')}`;
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Decodes Stripe's form encoding (`payload[value]=1`, `expand[0]=x`) into nested objects and arrays. */
export function parseForm(body: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (body.length === 0) return out;
  for (const [rawKey, value] of new URLSearchParams(body)) {
    const open = rawKey.indexOf('[');
    if (open === -1) {
      if (!FORBIDDEN_KEYS.has(rawKey)) out[rawKey] = value;
      continue;
    }
    const segments = [rawKey.slice(0, open)];
    const re = /\[([^\]]*)\]/g;
    re.lastIndex = open;
    let m: RegExpExecArray | null;
    while ((m = re.exec(rawKey)) !== null) segments.push(m[1] ?? '');
    if (segments.some((s) => FORBIDDEN_KEYS.has(s))) continue;
    let node: Record<string, unknown> | unknown[] = out;
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i]!;
      const last = i === segments.length - 1;
      const nextSeg = segments[i + 1];
      const makeChild = (): Record<string, unknown> | unknown[] =>
        nextSeg === '' || (nextSeg !== undefined && /^\d+$/.test(nextSeg)) ? [] : {};
      if (Array.isArray(node)) {
        const idx = seg === '' ? node.length : Number(seg);
        if (last) node[idx] = value;
        else {
          const existing = node[idx];
          const child = existing !== null && typeof existing === 'object' ? existing : makeChild();
          node[idx] = child;
          node = child as Record<string, unknown> | unknown[];
        }
      } else if (last) {
        node[seg] = value;
      } else {
        const existing = node[seg];
        const child = existing !== null && typeof existing === 'object' ? existing : makeChild();
        node[seg] = child;
        node = child as Record<string, unknown> | unknown[];
      }
    }
  }
  return out;
}

export interface WireResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface StripeErrorFields {
  type: string;
  message: string;
  code?: string;
  param?: string;
  doc_url?: string;
}

export function v1Error(status: number, fields: StripeErrorFields, headers?: Record<string, string>): WireResponse {
  const error: Record<string, unknown> = {};
  if (fields.code !== undefined) error.code = fields.code;
  if (fields.doc_url !== undefined) error.doc_url = fields.doc_url;
  else if (fields.code !== undefined) error.doc_url = `https://stripe.com/docs/error-codes/${fields.code.replace(/_/g, '-')}`;
  error.message = fields.message;
  if (fields.param !== undefined) error.param = fields.param;
  error.type = fields.type;
  return headers ? { status, body: { error }, headers } : { status, body: { error } };
}

/** v2 errors carry `type` as the discriminator the SDK switches on (generateV2Error). */
export function v2Error(status: number, fields: StripeErrorFields, headers?: Record<string, string>): WireResponse {
  const error: Record<string, unknown> = { type: fields.type };
  if (fields.code !== undefined) error.code = fields.code;
  error.message = fields.message;
  if (fields.param !== undefined) error.param = fields.param;
  return headers ? { status, body: { error }, headers } : { status, body: { error } };
}

export type ApiMode = 'v1' | 'v2';

export function invalidRequest(api: ApiMode, message: string, extra: { code?: string; param?: string } = {}): WireResponse {
  return (api === 'v1' ? v1Error : v2Error)(400, { type: 'invalid_request_error', message, ...extra });
}

export function missingParam(api: ApiMode, param: string): WireResponse {
  return invalidRequest(api, `Missing required param: ${param}.`, { code: 'parameter_missing', param });
}

// verified: Stripe's standard 429 body.
export const RATE_LIMIT_MESSAGE =
  'Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.';

export function rateLimited(api: ApiMode, message = RATE_LIMIT_MESSAGE): WireResponse {
  // Stripe-Should-Retry is deliberately absent: the SDK then decides by status, as with real 429s.
  if (api === 'v2') return v2Error(429, { type: 'rate_limit', code: 'rate_limit', message });
  return v1Error(429, { type: 'invalid_request_error', code: 'rate_limit', message });
}

export function serverError(api: ApiMode, status: number): WireResponse {
  const message = 'An unknown error occurred';
  return api === 'v2'
    ? v2Error(status, { type: 'api_error', message })
    : v1Error(status, { type: 'api_error', message });
}

export function authenticationError(header: string | undefined): WireResponse {
  if (!header) {
    return v1Error(401, {
      type: 'invalid_request_error',
      message:
        "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
    });
  }
  const key = header.replace(/^(Bearer|Basic)\s+/i, '');
  const masked = key.length > 12 ? `${key.slice(0, 8)}${'*'.repeat(key.length - 12)}${key.slice(-4)}` : '****';
  return v1Error(401, { type: 'invalid_request_error', message: `Invalid API Key provided: ${masked}` });
}

export function notFoundRoute(method: string, path: string): WireResponse {
  return v1Error(404, {
    type: 'invalid_request_error',
    message: `Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`,
  });
}

export function resourceMissing(api: ApiMode, kind: string, id: string, param = 'id'): WireResponse {
  const status = 404;
  const fields = { type: 'invalid_request_error', code: 'resource_missing', message: `No such ${kind}: '${id}'`, param };
  // v2 answers the same type: stripe-node's generateV2Error knows no 'not_found' type (it would surface as
  // StripeUnknownError); invalid_request_error gives StripeInvalidRequestError with statusCode 404, as for v1.
  return (api === 'v1' ? v1Error : v2Error)(status, fields);
}

export function idempotencyMismatch(api: ApiMode, key: string): WireResponse {
  const message = `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`;
  return (api === 'v1' ? v1Error : v2Error)(400, { type: 'idempotency_error', message });
}

export function idempotencyInFlight(api: ApiMode): WireResponse {
  const message =
    'There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): please try again later.';
  return (api === 'v1' ? v1Error : v2Error)(409, { type: 'idempotency_error', code: 'idempotency_key_in_use', message });
}

/** `Bearer sk_test_...` / `Basic base64(sk_test_...:)` → the key, or undefined. */
export function extractKey(header: string | undefined): string | undefined {
  if (!header) return undefined;
  if (header.startsWith('Bearer ')) return header.slice(7).trim();
  if (header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon === -1 ? decoded : decoded.slice(0, colon);
  }
  return undefined;
}

const SECRET_KEY_RE = /^(sk|rk)_(test|live)_[A-Za-z0-9_]+$/;
export function isSecretKey(key: string | undefined): key is string {
  return key !== undefined && SECRET_KEY_RE.test(key);
}
