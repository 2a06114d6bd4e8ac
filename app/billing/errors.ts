// Typed errors of the billing domain. The HTTP layer maps them to problem details; nothing here knows HTTP.

export interface FieldError {
  /** Dotted path of the offending field, e.g. `value` or `properties.plan`. */
  field: string;
  code: string;
  message: string;
}

export abstract class BillingError extends Error {
  abstract readonly kind: 'validation' | 'not_found' | 'conflict' | 'forbidden' | 'state';
}

/** The input is wrong; nothing was written. */
export class ValidationError extends BillingError {
  readonly kind = 'validation' as const;
  constructor(
    readonly errors: FieldError[],
    message = errors.map((e) => `${e.field}: ${e.message}`).join('; '),
  ) {
    super(message);
    this.name = 'ValidationError';
  }
}

export class NotFoundError extends BillingError {
  readonly kind = 'not_found' as const;
  constructor(readonly entity: string, readonly key: string) {
    super(`${entity} ${JSON.stringify(key)} was not found`);
    this.name = 'NotFoundError';
  }
}

/** The request contradicts what is stored (e.g. the same external id with different data). */
export class ConflictError extends BillingError {
  readonly kind = 'conflict' as const;
  constructor(message: string, readonly errors: FieldError[] = []) {
    super(message);
    this.name = 'ConflictError';
  }
}

/** An operation not allowed in the subject's current state (e.g. re-authoring a charged window). */
export class StateError extends BillingError {
  readonly kind = 'state' as const;
  constructor(message: string) {
    super(message);
    this.name = 'StateError';
  }
}
