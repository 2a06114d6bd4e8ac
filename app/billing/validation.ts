// Zod issues as the domain's FieldErrors (field path as the caller sent it, a stable code, a readable message).
import type { z } from 'zod';
import type { FieldError } from './errors';

/** Zod error option: "is required" when the field is absent, else the given message. */
export const typeError = (message: string) => (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : message);

export function zodFieldErrors(error: z.ZodError): FieldError[] {
  return error.issues.map((issue) => {
    const unknownKeys = issue.code === 'unrecognized_keys' ? (issue as { keys: string[] }).keys : null;
    return {
      field: issue.path.length ? issue.path.map(String).join('.') : unknownKeys ? unknownKeys.join(',') : '(body)',
      code: issue.message === 'is required' ? 'required' : issue.code === 'custom' ? 'invalid' : issue.code,
      message: unknownKeys ? `unknown field(s): ${unknownKeys.join(', ')}` : issue.message,
    };
  });
}

/**
 * Text PostgreSQL stores exactly as it was sent: no U+0000 (text and jsonb refuse it, failing the whole write) and
 * no lone surrogate (it has no UTF-8 form; the driver would store U+FFFD, so two different inputs, e.g. two
 * idempotency keys, would become one stored value).
 */
export function isStorableText(s: string): boolean {
  return !s.includes('\u0000') && s.isWellFormed();
}

export const STORABLE_TEXT_MESSAGE = 'must be valid Unicode text (no U+0000, no lone surrogates)';

/** The text with what PostgreSQL cannot store replaced by U+FFFD: for telemetry, which must record any input. */
export function toStorableText(s: string): string {
  return s.toWellFormed().replaceAll('\u0000', '\ufffd');
}

/** A desk change refused on its first invalid field (the shape of AdminResult's refusal), from a Zod error. */
export function firstFieldRefusal(error: z.ZodError): { ok: false; field: string; message: string } {
  const [first] = zodFieldErrors(error);
  return { ok: false, field: first?.field ?? '(body)', message: first?.message ?? 'is invalid' };
}
