// The Stripe simulator's public face: its options, its stats and what a test can ask of it.
import type { FaultControls } from '../kit/faults';
import type { FaultKind, FaultRule } from './faults';
import type { MeterEventAdjustmentRecord, MeterOptions, RecordedMeterEvent } from './meter-events';
import type { RelatedObject, SimulatedEvent, WebhookDelivery } from './webhooks';

export interface StripeSimulatorOptions {
  /** 0 = pick a free port (default). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Where signed webhooks (snapshot and thin events) are POSTed. Can be set later with configure(). */
  webhookUrl?: string;
  /** whsec_... used to sign them; generated when absent (see `webhookSecret` on the simulator). */
  webhookSecret?: string;
  /** Token bucket for all v1 API calls (and v2 non-stream calls). Default 1000/s; above it -> 429 rate_limit. */
  v1RatePerSecond?: number;
  /** Token bucket for v2 meter event stream events. Default 10000 events/s. */
  v2EventsPerSecond?: number;
  /** Business clock in ms (timestamps window, 24 h identifier window, session expiry). Default Date.now. */
  clock?: () => number;
  /** Added latency for every API call, ms (default 0). Concurrent calls for one (customer, meter) overlap only while a call is in progress. */
  latencyMs?: number;
  /** Error report events are sent this long after the first queued error (default 100 ms). */
  errorReportDelayMs?: number;
  /**
   * At most this many sample_errors per error type in one report (default 100). Stripe only promises "samples"
   * (its cap is undocumented): set this low to test a consumer that must cope with identifiers it never hears of.
   */
  maxSampleErrorsPerType?: number;
  /** Seed for fault probabilities, so a chaos run can be replayed. */
  seed?: number;
  /** Webhook POST timeout (default 10 s). */
  webhookTimeoutMs?: number;
  /**
   * Deliveries that fail (no answer, or not 2xx) are sent again this many times, the first after
   * `webhookRetryBaseMs` and then twice as long each time, as Stripe retries for up to three days. Default 0, so a
   * test sees exactly the deliveries it caused; `npm run cli -- simulator stripe` retries 8 times from 250 ms.
   */
  webhookRetries?: number;
  webhookRetryBaseMs?: number;
}

export interface StripeSimulatorStats {
  requests: number;
  byStatus: Record<string, number>;
  /** All 429 answers (built-in limits and rate_limit faults). */
  rateLimited: number;
  /** 429s from the one-concurrent-call-per-(customer, meter) rule. */
  concurrencyRejected: number;
  /** 429s from the token buckets. */
  bucketRejected: number;
  /** All 5xx answers. */
  serverErrors: number;
  idempotentReplays: number;
  timeoutsHeld: number;
  connectionsReset: number;
  v1MeterEventsAccepted: number;
  v2EventsAccepted: number;
  v2EventsRejected: number;
  duplicateIdentifiers: number;
  rejectedAfterAccept: number;
  cancelled: number;
  errorReportsSent: number;
  webhooksSent: number;
  webhooksFailed: number;
  faultsApplied: Record<FaultKind, number>;
}

export interface SendWebhookOptions {
  previousAttributes?: Record<string, unknown>;
  /** Thin events: related_object. */
  relatedObject?: RelatedObject;
}

export interface SendWebhookResult {
  status: number;
  ok: boolean;
  event_id: string;
  event: SimulatedEvent;
}

export interface ConfigureOptions {
  webhookUrl?: string | null;
  webhookSecret?: string;
  v1RatePerSecond?: number;
  v2EventsPerSecond?: number;
  latencyMs?: number;
}

export interface StripeSimulator extends FaultControls<FaultRule> {
  url: string;
  host: string;
  port: number;
  /** Spread into `new Stripe(key, { ...sim.clientConfig })`. */
  clientConfig: { host: string; port: number; protocol: 'http' };
  readonly webhookSecret: string;
  stop(): Promise<void>;
  addCustomer(id?: string): string;
  /** Registers an active meter for eventName; returns its mtr_ id. */
  addMeter(eventName: string, opts?: MeterOptions): string;
  /**
   * Clears recorded traffic, faults, idempotency keys, sessions, queued error reports, webhooks, stats and the clock
   * offset, and refills the rate buckets; `all` also forgets customers and meters.
   */
  reset(opts?: { all?: boolean }): void;
  configure(opts: ConfigureOptions): void;
  /** Moves the business clock forward (session expiry, 24 h identifier window, timestamp window). */
  advanceClock(ms: number): void;
  now(): number;
  meterEvents(): RecordedMeterEvent[];
  countsByIdentifier(): Map<string, number>;
  /** Sum of counted (accepted, not cancelled or rejected) values for a customer and event name. */
  usageTotal(customer: string, eventName: string): number;
  adjustments(): MeterEventAdjustmentRecord[];
  stats(): StripeSimulatorStats;
  sendWebhook(type: string, dataObject: Record<string, unknown>, opts?: SendWebhookOptions): Promise<SendWebhookResult>;
  /** Sends queued meter error reports now (they are otherwise sent errorReportDelayMs after the first error). */
  flushErrorReports(): Promise<number>;
  webhookDeliveries(): WebhookDelivery[];
  /**
   * Keeps a thin event, as given, for `GET /v2/core/events/:id` without sending it: for tests that post their own
   * notifications (hostile payloads, redeliveries) and need the fetch to find the event.
   */
  holdThinEvent(event: { id: string; type: string; data?: unknown; related_object?: RelatedObject }): SimulatedEvent;
  /** The same for a snapshot event (`GET /v1/events/:id`). */
  holdSnapshotEvent(event: { id: string; type: string; object: Record<string, unknown> }): SimulatedEvent;
  sentEvents(): SimulatedEvent[];
}
