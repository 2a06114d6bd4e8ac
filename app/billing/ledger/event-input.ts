// The shape and static rules of one usage event, shared by the HTTP API and the TypeScript library.
// Field names are the API's (snake_case) so an error names the field the caller actually sent.
import { z } from 'zod';
import type { FieldError } from '../errors';
import { isStorableText, STORABLE_TEXT_MESSAGE, typeError, zodFieldErrors } from '../validation';

export const EVENT_NAME_PATTERN = /^[a-z0-9_.:-]{1,100}$/;
export const MAX_IDENTIFIER_LENGTH = 100;
export const MAX_PROPERTIES_BYTES = 16 * 1024;
export const MAX_PROPERTIES_DEPTH = 8;
export const MAX_BATCH_SIZE = 1000;

// PostgreSQL text and jsonb cannot hold U+0000; other control characters are refused in keys and names too,
// so a stored identifier always prints the way the caller sees it.
const CONTROL = /[\u0000-\u001f\u007f]/;

const identifierSchema = z
  .string({ error: typeError('must be a string') })
  .min(1, 'must not be empty')
  .max(MAX_IDENTIFIER_LENGTH, `must be at most ${MAX_IDENTIFIER_LENGTH} characters`)
  .refine((s) => !CONTROL.test(s), { message: 'must not contain control characters', abort: true })
  .refine(isStorableText, STORABLE_TEXT_MESSAGE);

const keySchema = z
  .string({ error: typeError('must be a string') })
  .min(1, 'must not be empty')
  .max(255, 'must be at most 255 characters')
  .refine((s) => !CONTROL.test(s), { message: 'must not contain control characters', abort: true })
  .refine(isStorableText, STORABLE_TEXT_MESSAGE);

const valueSchema = z.union([z.number(), z.string()], { error: 'must be an integer' }).transform((v, ctx) => {
  const n = typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n)) {
    ctx.addIssue({ code: 'custom', message: 'must be an integer' });
    return z.NEVER;
  }
  if (n < 0) {
    ctx.addIssue({ code: 'custom', message: 'must be >= 0' });
    return z.NEVER;
  }
  if (n > Number.MAX_SAFE_INTEGER) {
    ctx.addIssue({ code: 'custom', message: `must be <= ${Number.MAX_SAFE_INTEGER}` });
    return z.NEVER;
  }
  return n;
});

/** Unix seconds (Stripe's convention), an ISO 8601 string with a zone, or a Date (library only). */
const timestampSchema = z.union([z.number(), z.string(), z.date()], { error: 'must be unix seconds or an ISO 8601 time' })
  .transform((v, ctx) => {
    let ms: number;
    if (v instanceof Date) ms = v.getTime();
    else if (typeof v === 'number') ms = Number.isFinite(v) ? Math.trunc(v) * 1000 : NaN;
    else if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i.test(v)) ms = Date.parse(v);
    else ms = NaN;
    if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) {
      ctx.addIssue({ code: 'custom', message: 'must be unix seconds or an ISO 8601 time with a zone' });
      return z.NEVER;
    }
    return new Date(ms);
  });

function depthAndClean(value: unknown, depth: number): string | null {
  if (depth > MAX_PROPERTIES_DEPTH) return `must be nested at most ${MAX_PROPERTIES_DEPTH} levels deep`;
  if (typeof value === 'string') return isStorableText(value) ? null : STORABLE_TEXT_MESSAGE;
  if (typeof value === 'number') return Number.isFinite(value) ? null : 'must contain finite numbers only';
  if (value === null || typeof value === 'boolean') return null;
  if (Array.isArray(value)) {
    for (const item of value) {
      const problem = depthAndClean(item, depth + 1);
      if (problem) return problem;
    }
    return null;
  }
  if (typeof value === 'object') {
    for (const [k, item] of Object.entries(value as Record<string, unknown>)) {
      if (!isStorableText(k)) return STORABLE_TEXT_MESSAGE;
      const problem = depthAndClean(item, depth + 1);
      if (problem) return problem;
    }
    return null;
  }
  return 'must be JSON';
}

const propertiesSchema = z
  .record(z.string(), z.unknown(), { error: 'must be a JSON object' })
  .superRefine((obj, ctx) => {
    const problem = depthAndClean(obj, 1);
    if (problem) {
      ctx.addIssue({ code: 'custom', message: problem });
      return;
    }
    if (Buffer.byteLength(JSON.stringify(obj)) > MAX_PROPERTIES_BYTES) {
      ctx.addIssue({ code: 'custom', message: `must be at most ${MAX_PROPERTIES_BYTES} bytes as JSON` });
    }
  });

export const eventInputSchema = z.strictObject(
  {
    customer: keySchema,
    event_name: z
      .string({ error: typeError('must be a string') })
      .regex(EVENT_NAME_PATTERN, 'must be 1-100 characters of a-z, 0-9, _ . : -'),
    value: valueSchema.optional(),
    identifier: identifierSchema.optional(),
    timestamp: timestampSchema.optional(),
    subscription: keySchema.optional(),
    properties: propertiesSchema.optional().nullable(),
  },
  { error: (issue) => (issue.code === 'unrecognized_keys' ? undefined : 'must be a JSON object') },
);

export type EventInput = z.input<typeof eventInputSchema>;

/** An event that passed the static rules; the database rules (customer, subscription, meter) come next. */
export interface ParsedEvent {
  customer: string;
  eventName: string;
  value: number;
  identifier: string | undefined;
  timestamp: Date | undefined;
  subscription: string | undefined;
  properties: Record<string, unknown> | null;
}

export type ParseResult = { ok: true; event: ParsedEvent } | { ok: false; errors: FieldError[] };

export function parseEvent(input: unknown): ParseResult {
  const parsed = eventInputSchema.safeParse(input);
  if (!parsed.success) return { ok: false, errors: zodFieldErrors(parsed.error) };
  const d = parsed.data;
  return {
    ok: true,
    event: {
      customer: d.customer,
      eventName: d.event_name,
      value: d.value ?? 1,
      identifier: d.identifier,
      timestamp: d.timestamp,
      subscription: d.subscription,
      properties: d.properties ?? null,
    },
  };
}
