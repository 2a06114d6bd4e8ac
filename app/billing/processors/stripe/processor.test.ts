// The error -> outcome mapping, on the SDK's own error classes (the wire paths are in test/stripe-reporting.test.ts).
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { STRIPE_API_VERSION } from './api-version';
import { classify, stripeClientConfig } from './processor';

const apiError = (Cls: typeof Stripe.errors.StripeError, raw: Record<string, unknown>) => new Cls(raw as never);

describe('classify', () => {
  it('maps Stripe answers to outcomes, keeping the code and message', () => {
    expect(classify(apiError(Stripe.errors.StripeRateLimitError, { statusCode: 429, code: 'rate_limit', message: 'slow down' }))).toMatchObject({ outcome: 'rate_limited', httpStatus: 429, code: 'rate_limit' });
    expect(classify(apiError(Stripe.errors.StripeAPIError, { statusCode: 503, type: 'api_error', message: 'oops' }))).toMatchObject({ outcome: 'transient', httpStatus: 503 });
    expect(classify(apiError(Stripe.errors.StripeIdempotencyError, { statusCode: 409, code: 'idempotency_key_in_use', message: 'in flight' }))).toMatchObject({ outcome: 'transient' });
    expect(classify(apiError(Stripe.errors.StripeAuthenticationError, { statusCode: 401, message: 'Invalid API Key' }))).toMatchObject({ outcome: 'transient' });
    expect(classify(apiError(Stripe.errors.StripeInvalidRequestError, { statusCode: 400, message: 'An event already exists with identifier x.' }))).toMatchObject({ outcome: 'duplicate', code: 'duplicate_identifier' });
    const rejected = classify(apiError(Stripe.errors.StripeInvalidRequestError, { statusCode: 400, code: 'resource_missing', type: 'invalid_request_error', message: "No such customer: 'cus_x'", param: 'payload[stripe_customer_id]' }));
    expect(rejected).toMatchObject({ outcome: 'rejected', httpStatus: 400, code: 'resource_missing', message: "No such customer: 'cus_x'" });
    expect(rejected.response).toMatchObject({ status: 400, error: { code: 'resource_missing', param: 'payload[stripe_customer_id]' } });
    // No code at all: the error type stands in, so the desk still has something to group by.
    expect(classify(apiError(Stripe.errors.StripeInvalidRequestError, { statusCode: 400, type: 'invalid_request_error', message: 'Timestamp must be within the past 35 calendar days.' }))).toMatchObject({ outcome: 'rejected', code: 'invalid_request_error' });
    expect(classify(apiError(Stripe.errors.StripeInvalidRequestError, { statusCode: 404, message: 'Unrecognized request URL' }))).toMatchObject({ outcome: 'transient' });
  });

  it('treats timeouts and dropped connections as ambiguous, refused connections as transient', () => {
    expect(classify(new Stripe.errors.StripeConnectionError({ message: 'Request aborted due to timeout being reached (300ms)' } as never))).toMatchObject({ outcome: 'ambiguous', code: 'timeout' });
    expect(classify(new Stripe.errors.StripeConnectionError({ message: 'An error occurred with our connection to Stripe.', detail: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) } as never))).toMatchObject({ outcome: 'ambiguous', code: 'connection_error' });
    expect(classify(new Stripe.errors.StripeConnectionError({ message: 'An error occurred with our connection to Stripe.', detail: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) } as never))).toMatchObject({ outcome: 'transient', code: 'connection_refused' });
    expect(classify(new Error('socket hang up'))).toMatchObject({ outcome: 'ambiguous', code: 'unexpected_error' });
  });
});

describe('stripeClientConfig', () => {
  it('reads scheme, host and port from a base URL, and always pins the API version', () => {
    const apiVersion = STRIPE_API_VERSION;
    expect(stripeClientConfig('http://127.0.0.1:12111')).toEqual({ host: '127.0.0.1', port: 12111, protocol: 'http', apiVersion });
    expect(stripeClientConfig('https://stripe.internal')).toEqual({ host: 'stripe.internal', port: 443, protocol: 'https', apiVersion });
    expect(stripeClientConfig(undefined)).toEqual({ apiVersion });
    expect(() => stripeClientConfig('http://127.0.0.1:1/v1')).toThrow(/path/);
  });
});
