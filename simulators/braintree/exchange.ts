// What the simulator's parts share about one gateway exchange: the request as routed, the answer, and the few
// services (clock, stats, the 422 answer) every handler needs.
import type { BraintreeSimulatorStats } from './types';
import { apiErrorResponseXml, validationMessage, type TransactionRecord, type ValidationError } from './wire';

export interface RequestContext {
  method: string;
  /** Path after `/merchants/<id>`. */
  path: string;
  pathId: string | undefined;
  params: Record<string, unknown>;
}

export interface WireResponse {
  status: number;
  /** XML root element; absent for bodiless answers (401, 404, 5xx ...). */
  xml?: string;
}

export interface Outcome {
  response: WireResponse;
  /** The transaction a sale created, to mark it when its answer is lost. */
  sale?: TransactionRecord;
}

export interface Core {
  /** Business clock, ms. */
  now(): number;
  stats(): BraintreeSimulatorStats;
}

export const truthy = (v: unknown): boolean => v === true || v === 'true' || v === 1 || v === '1';

/** A 422 api-error-response with validation errors (nothing recorded). */
export function invalid(core: Core, errors: ValidationError[], params: unknown): Outcome {
  core.stats().validationErrors += 1;
  return { response: { status: 422, xml: apiErrorResponseXml({ errors, message: validationMessage(errors), params }) } };
}
