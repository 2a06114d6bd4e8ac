// The processor seam: what the billing core asks of a payment processor. Stripe reports usage event by event
// (meter events); Braintree charges a window's invoice once (sale, then find by order id after an ambiguous
// failure). Reconciliation asks what each one holds: Stripe's per-day meter totals, Braintree's sales by order id.
// Implementations take their configuration in the constructor and never read the environment.

export type ProcessorName = 'stripe' | 'braintree';

/** One ledger event as the processor needs it: nothing the ledger has not already validated. */
export interface MeterEventToReport {
  /** Ledger id: outcomes are matched back to rows by it. */
  id: string;
  /** Sent as Stripe's `identifier` (and the root of the v1 Idempotency-Key): the same on every retry, new only after an
   * operator retry of an asynchronous rejection (the sent identifier, ADR 033). */
  identifier: string;
  eventName: string;
  /** The processor's customer id (`cus_...`). */
  processorCustomerId: string;
  /** Integer >= 0, at most 2^53 - 1. */
  value: number;
  /** Usage time, sent as the event's timestamp. */
  occurredAt: Date;
}

/**
 * What happened to one event in one processor call. The first five are the `attempt_outcome` enum:
 * - reported: the processor took it;
 * - duplicate: the processor already has this identifier (Stripe: "An event already exists with identifier"):
 *   it counts as reported, because the earlier call was counted;
 * - rejected: a definitive refusal (unknown customer, no meter, ...): retrying the same request cannot help;
 * - rate_limited: 429; retry after a backoff with the same identifier;
 * - transient: 5xx, 409 in-flight, authentication or connection refused before sending: retry with backoff;
 * - ambiguous: timeout or dropped connection after sending: it may have been applied, so only the same
 *   identifier may be retried (the processor dedupes it).
 * `not_attempted` is not a processor answer: the call stopped before sending this event (a backoff began or
 * the deadline passed); nothing is recorded for it and the event is simply released.
 */
export type ReportOutcomeKind = 'reported' | 'duplicate' | 'rejected' | 'rate_limited' | 'transient' | 'ambiguous' | 'not_attempted';

export interface ReportOutcome {
  eventId: string;
  outcome: ReportOutcomeKind;
  startedAt: Date;
  durationMs: number;
  httpStatus: number | null;
  /** The processor's error code (open-ended: unknown codes are kept as they are), else a local one. */
  code: string | null;
  message: string | null;
  /** The processor's raw answer (error JSON, or a small summary of a success), for the desk's attempt timeline. */
  response: unknown;
}

export interface ReportOptions {
  /** Events not started by then come back `not_attempted`, so a claim is never held for long. */
  deadline?: number;
}

/** Reports usage events one by one (Stripe meter events). */
export interface MeterEventReporter {
  readonly processor: ProcessorName;
  /** Which wire API is used (e.g. `v1` | `v2` for Stripe); a telemetry attribute. */
  readonly api: string;
  /** How many events one claim should hold so a report call finishes in well under a second at full speed. */
  readonly preferredBatchSize: number;
  /** One outcome per input event, in input order. Never throws for per-event failures. */
  reportMeterEvents(events: readonly MeterEventToReport[], options?: ReportOptions): Promise<ReportOutcome[]>;
  close(): Promise<void>;
}

// ───────────────────────────── Braintree: one sale per window (app/billing/processors/braintree) ─────────────────────────────

export interface SaleRequest {
  /** Derived from the window id: the only handle for finding a sale after an ambiguous failure. */
  orderId: string;
  amountMinor: bigint;
  currency: string;
  /** The vaulted payment method charged (the customer's default). */
  paymentMethodToken: string;
  /** The processor's customer id, sent with the sale so the gateway checks the token belongs to it. */
  customerId: string;
}

/** Braintree transaction statuses (open-ended: an unknown status is kept as it is). */
export type SaleStatus =
  | 'authorized'
  | 'authorizing'
  | 'submitted_for_settlement'
  | 'settling'
  | 'settlement_pending'
  | 'settled'
  | 'settlement_confirmed'
  | 'processor_declined'
  | 'gateway_rejected'
  | 'settlement_declined'
  | 'failed'
  | 'voided'
  | (string & {});

/**
 * What one sale request came to:
 * - succeeded: approved (authorized or submitted for settlement);
 * - soft_declined: the issuer declined for now (e.g. 2000, 2001): retried within the budget;
 * - hard_declined: the issuer will keep declining (e.g. 2004 expired card): never re-charged automatically;
 * - gateway_rejected: Braintree's own rules refused it (fraud, cvv, avs, ...);
 * - validation_error: the request itself is wrong (422 without a transaction);
 * - error: the sale was certainly not applied (refused before processing: 429, auth, connection refused);
 *   retried with backoff;
 * - ambiguous: timeout, 5xx, connection reset, or Braintree pointing at a duplicate: the sale may exist, so the
 *   order id is searched before any new sale.
 */
export type SaleResult =
  | { outcome: 'succeeded'; transactionId: string; status: SaleStatus; responseCode: string | null; response: unknown }
  | { outcome: 'soft_declined' | 'hard_declined'; transactionId: string | null; status: SaleStatus; responseCode: string; message: string; response: unknown }
  | { outcome: 'gateway_rejected'; transactionId: string | null; reason: string; message: string; response: unknown }
  | { outcome: 'validation_error'; code: string; message: string; response: unknown }
  | { outcome: 'error'; code: string; message: string; error: unknown }
  | { outcome: 'ambiguous'; code: string; message: string; error: unknown };

export interface FoundSale {
  transactionId: string;
  orderId: string;
  status: SaleStatus;
  amountMinor: bigint;
  currency: string;
  responseCode: string | null;
  /** `approved` | `soft_declined` | `hard_declined` as the gateway classifies the processor response, if it says. */
  responseType: string | null;
  gatewayRejectionReason: string | null;
  createdAt: Date | null;
}

export type FindSaleResult =
  /** Every transaction carrying the order id, oldest first. */
  | { outcome: 'found'; sales: FoundSale[] }
  | { outcome: 'not_found' }
  /** The search itself failed: nothing is known, so no new sale may be sent. */
  | { outcome: 'error'; code: string; message: string; error: unknown };

/** Charges a window's invoice (Braintree). */
export interface ChargeProcessor {
  readonly processor: ProcessorName;
  sale(request: SaleRequest): Promise<SaleResult>;
  /** The sales made with this order id (used after an ambiguous failure, before any new sale). */
  findByOrderId(orderId: string): Promise<FindSaleResult>;
}

// ───────────────────────────── Reconciliation: what the processor counted (app/billing/reconciliation.ts) ─────────────────────────────

/** How the processor aggregates a meter's events into one value (Stripe's `default_aggregation.formula`). */
export type MeterAggregation = 'sum' | 'count' | 'last';

export interface MeterTotalsQuery {
  /** The processor's customer id (`cus_...`). */
  processorCustomerId: string;
  eventName: string;
  /** Whole UTC days: [from, to), both at 00:00 UTC. */
  from: Date;
  to: Date;
}

export interface MeterDayTotal {
  /** 00:00 UTC of the day. */
  periodStart: Date;
  /** The meter's aggregation of the events the processor counted with a usage time in that day. */
  value: number;
}

export type MeterTotalsResult =
  /**
   * `days` holds the days with counted usage (a missing day counted nothing). `meterId` null: the processor has no
   * meter for the event name, so it counted nothing at all.
   */
  | { outcome: 'found'; meterId: string | null; aggregation: MeterAggregation | null; days: MeterDayTotal[] }
  /** The processor could not say: nothing is concluded for this customer and meter. */
  | { outcome: 'error'; code: string; message: string };

/**
 * What the processor counted per customer, meter and UTC day (Stripe: meter event summaries, eventually consistent),
 * for comparison with the ledger. Implementations pace their own calls so reconciliation never starves reporting.
 */
export interface MeterEventSource {
  readonly processor: ProcessorName;
  dailyTotals(query: MeterTotalsQuery): Promise<MeterTotalsResult>;
}
