// A loopback HTTP server speaking Stripe's wire format for Billing Meters (v1 meter events, v2 meter event
// sessions/streams, adjustments, event summaries), customers, meters, thin/snapshot webhooks, with scriptable
// faults. The real `stripe` SDK talks to it: `new Stripe('sk_test_...', { host, port, protocol: 'http' })`. A
// non-default `host` also redirects the SDK's v2 meter event stream (normally meter-events.stripe.com) to the same
// server, because stripe-node's resolveBaseAddress returns the instance host for every api base once it is overridden.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  LoopbackServer,
  RouteTable,
  TokenBucket,
  argValue,
  isObject,
  serveControl,
  sleep,
  splitUrl,
  stopOnSignals,
  str,
  type ControlHandler,
} from '../kit/server';
import {
  FaultBook,
  ruleMatches,
  ruleNamesEvent,
  seededRandom,
  validateFaultRule,
  type FaultKind,
  type FaultRule,
  type FaultSubjects,
  FAULT_KINDS,
} from './faults';
import {
  isThinEventType,
  postSignedEvent,
  snapshotEvent,
  subscriptionObject,
  thinEvent,
  type SimulatedEvent,
  type WebhookDelivery,
} from './webhooks';
import {
  authenticationError,
  extractKey,
  idempotencyInFlight,
  idempotencyMismatch,
  invalidRequest,
  isSecretKey,
  missingParam,
  nextRequestId,
  notFoundRoute,
  parseForm,
  randomId,
  rateLimited,
  resourceMissing,
  serverError,
  v2Error,
  type ApiMode,
  type WireResponse,
} from './wire';

export type { FaultKind, FaultMatch, FaultRule } from './faults';
export { FAULT_KINDS } from './faults';
export type { WebhookDelivery, SimulatedEvent } from './webhooks';
export { signatureHeader, SIMULATOR_API_VERSION } from './webhooks';

/** Any `sk_test_*` key is accepted; this one is what the zero-setup demo uses. */
export const SIMULATOR_SECRET_KEY = 'sk_test_meterdesk_simulator';

/**
 * Error code the simulator puts in an error report for a v2 stream event whose identifier was already accepted
 * within 24 h. Stripe documents no such code (its list is open-ended); consumers must treat it like any unknown
 * code, and must not un-count the first event with that identifier.
 */
export const DUPLICATE_IDENTIFIER_CODE = 'duplicate_identifier';

const DAY_MS = 86_400_000;
const PAST_WINDOW_SEC = 35 * 86_400;
const FUTURE_WINDOW_SEC = 5 * 60;
const SESSION_TTL_MS = 15 * 60_000;
const CONCURRENCY_MESSAGE =
  'Too many concurrent requests for this customer and meter: meter events are processed one call at a time per customer and meter. Learn more about rate limits here https://stripe.com/docs/rate-limits.';

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
  /** v2 stream duplicate identifier within 24 h: report it in an error report (default) or drop it silently. */
  v2DuplicateHandling?: 'report' | 'ignore';
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

export interface MeterOptions {
  id?: string;
  displayName?: string;
  /** customer_mapping.event_payload_key, default stripe_customer_id. */
  customerPayloadKey?: string;
  /** value_settings.event_payload_key, default value. */
  valuePayloadKey?: string;
  aggregation?: 'sum' | 'count' | 'last';
  status?: 'active' | 'inactive';
}

export type MeterEventStatus = 'accepted' | 'rejected' | 'cancelled';

export interface RecordedMeterEvent {
  identifier: string;
  event_name: string;
  customer: string;
  value: number;
  /** Unix seconds (the event's usage time). */
  timestamp: number;
  payload: Record<string, string>;
  api: 'v1' | 'v2' | 'v2_stream';
  /** Business clock ms when the simulator accepted (or rejected) it. */
  received_at: number;
  status: MeterEventStatus;
  /** For rejected events: the error report code. */
  error_code?: string;
  error_message?: string;
  meter_id?: string;
  /** How many times Stripe has counted this identifier (accepted or later cancelled, not rejected). Must be 1. */
  accepted: number;
}

export interface MeterEventAdjustmentRecord {
  id: string;
  api: 'v1' | 'v2';
  event_name: string;
  identifier: string;
  /** Whether a counted event with that identifier was found and cancelled. */
  applied: boolean;
  created: number;
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
  relatedObject?: { id: string; type: string; url: string };
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

export interface StripeSimulator {
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
  addFault(rule: FaultRule): FaultRule;
  removeFault(id: string): boolean;
  faults(): FaultRule[];
  clearFaults(): void;
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
  sentEvents(): SimulatedEvent[];
}

interface MeterRecord {
  id: string;
  event_name: string;
  display_name: string;
  status: 'active' | 'inactive';
  customerKey: string;
  valueKey: string;
  aggregation: 'sum' | 'count' | 'last';
  created: number;
  updated: number;
  deactivated_at: number | null;
}

interface CustomerRecord {
  id: string;
  created: number;
  email: string | null;
  name: string | null;
  metadata: Record<string, string>;
}

type InternalRecord = Omit<RecordedMeterEvent, 'accepted'>;

interface PendingError {
  code: string;
  message: string;
  identifier: string;
  meterId: string | undefined;
  at: number;
}

interface IdempotencyEntry {
  path: string;
  body: string;
  createdAt: number;
  response: WireResponse | undefined; // undefined while in flight
}

interface RequestContext {
  method: string;
  path: string;
  pathId: string | undefined;
  query: string;
  params: Record<string, unknown>;
  livemode: boolean;
}

interface Outcome {
  response: WireResponse;
  /** Meter events this call accepted (for reject_after_accept). */
  accepted?: InternalRecord[];
}

interface Route {
  method: string;
  api: ApiMode;
  /** 'session' = a v2 meter event session token (the stream); 'secret' = sk_/rk_ keys. */
  auth: 'secret' | 'session';
  bucket: 'v1' | 'v2stream';
  subjects?: (params: Record<string, unknown>) => FaultSubjects | undefined;
  lockKey?: (params: Record<string, unknown>) => string | undefined;
  handle: (ctx: RequestContext) => Outcome;
}

const iso = (ms: number) => new Date(ms).toISOString();

function stringPayload(payload: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(payload)) {
    const s = str(v);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

function emptyStats(): StripeSimulatorStats {
  const faultsApplied = {} as Record<FaultKind, number>;
  for (const k of FAULT_KINDS) faultsApplied[k] = 0;
  return {
    requests: 0,
    byStatus: {},
    rateLimited: 0,
    concurrencyRejected: 0,
    bucketRejected: 0,
    serverErrors: 0,
    idempotentReplays: 0,
    timeoutsHeld: 0,
    connectionsReset: 0,
    v1MeterEventsAccepted: 0,
    v2EventsAccepted: 0,
    v2EventsRejected: 0,
    duplicateIdentifiers: 0,
    rejectedAfterAccept: 0,
    cancelled: 0,
    errorReportsSent: 0,
    webhooksSent: 0,
    webhooksFailed: 0,
    faultsApplied,
  };
}

type Verdict =
  | { ok: true; meter: MeterRecord; customer: string; value: number }
  | { ok: false; code: string; message: string; meter: MeterRecord | undefined; sync: (api: ApiMode) => WireResponse };

class Simulator implements StripeSimulator {
  url = '';
  host: string;
  port = 0;
  clientConfig: { host: string; port: number; protocol: 'http' } = { host: '', port: 0, protocol: 'http' };

  private readonly server: LoopbackServer;
  private readonly baseClock: () => number;
  private clockOffset = 0;
  private webhookUrl: string | undefined;
  private secret: string;
  private latencyMs: number;
  private readonly errorReportDelayMs: number;
  private readonly maxSamples: number;
  private readonly duplicateHandling: 'report' | 'ignore';
  private readonly webhookTimeoutMs: number;
  private readonly webhookRetries: number;
  private readonly webhookRetryBaseMs: number;
  private readonly random: () => number;
  private v1Bucket: TokenBucket;
  private v2Bucket: TokenBucket;

  private readonly faultBook = new FaultBook<FaultRule>();
  private customers = new Map<string, CustomerRecord>();
  private metersById = new Map<string, MeterRecord>();
  private metersByEvent = new Map<string, MeterRecord>();
  private records: InternalRecord[] = [];
  /** Latest counted record per identifier: the 24 h uniqueness window. */
  private byIdentifier = new Map<string, InternalRecord>();
  private counts = new Map<string, number>();
  private adjustmentLog: MeterEventAdjustmentRecord[] = [];
  private idempotency = new Map<string, IdempotencyEntry>();
  private sessions = new Map<string, { id: string; expiresAt: number }>();
  private locks = new Set<string>();
  private pendingErrors: PendingError[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private events = new Map<string, SimulatedEvent>();
  private deliveries: WebhookDelivery[] = [];
  private timers = new Set<NodeJS.Timeout>();
  private statsData = emptyStats();
  private statusCounts = new Map<number, number>();

  private readonly routes = new RouteTable<Route>();

  constructor(private readonly opts: StripeSimulatorOptions) {
    this.host = opts.host ?? '127.0.0.1';
    this.baseClock = opts.clock ?? Date.now;
    this.webhookUrl = opts.webhookUrl;
    this.secret = opts.webhookSecret ?? randomId('whsec_', 32);
    this.latencyMs = opts.latencyMs ?? 0;
    this.errorReportDelayMs = opts.errorReportDelayMs ?? 100;
    this.maxSamples = opts.maxSampleErrorsPerType ?? 100;
    this.duplicateHandling = opts.v2DuplicateHandling ?? 'report';
    this.webhookTimeoutMs = opts.webhookTimeoutMs ?? 10_000;
    this.webhookRetries = opts.webhookRetries ?? 0;
    this.webhookRetryBaseMs = opts.webhookRetryBaseMs ?? 250;
    this.random = opts.seed !== undefined ? seededRandom(opts.seed) : Math.random;
    this.v1Bucket = new TokenBucket(opts.v1RatePerSecond ?? 1000);
    this.v2Bucket = new TokenBucket(opts.v2EventsPerSecond ?? 10_000);
    this.registerRoutes();
    this.server = new LoopbackServer(this.host, {
      api: (req, res, body) => this.dispatch(req, res, body),
      control: (req, res, body) => this.control(req, res, body),
      tooLarge: (_req, res) => this.reply(res, invalidRequest('v1', 'Request body too large.')),
      failed: (_req, res, err) =>
        this.reply(res, { status: 500, body: { error: { type: 'api_error', message: `Simulator error: ${err instanceof Error ? err.message : String(err)}` } } }),
    });
  }

  get webhookSecret(): string {
    return this.secret;
  }

  async listen(): Promise<void> {
    await this.server.listen(this.opts.port ?? 0);
    this.port = this.server.port;
    this.url = this.server.url;
    this.clientConfig = { host: this.host, port: this.port, protocol: 'http' };
    this.sweepTimer = setInterval(() => this.sweep(), 60_000);
    this.sweepTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.server.stop();
  }

  now(): number {
    return this.baseClock() + this.clockOffset;
  }

  advanceClock(ms: number): void {
    this.clockOffset += ms;
  }

  // ---------------------------------------------------------------- known objects

  addCustomer(id?: string): string {
    const customerId = id ?? randomId('cus_', 14);
    if (!this.customers.has(customerId)) {
      this.customers.set(customerId, { id: customerId, created: Math.floor(this.now() / 1000), email: null, name: null, metadata: {} });
    }
    return customerId;
  }

  addMeter(eventName: string, opts: MeterOptions = {}): string {
    const existing = this.metersByEvent.get(eventName);
    if (existing && existing.status === 'active' && (opts.status ?? 'active') === 'active' && !opts.id) return existing.id;
    const nowSec = Math.floor(this.now() / 1000);
    const meter: MeterRecord = {
      id: opts.id ?? randomId('mtr_test_', 24),
      event_name: eventName,
      display_name: opts.displayName ?? eventName,
      status: opts.status ?? 'active',
      customerKey: opts.customerPayloadKey ?? 'stripe_customer_id',
      valueKey: opts.valuePayloadKey ?? 'value',
      aggregation: opts.aggregation ?? 'sum',
      created: nowSec,
      updated: nowSec,
      deactivated_at: opts.status === 'inactive' ? nowSec : null,
    };
    this.metersById.set(meter.id, meter);
    this.metersByEvent.set(eventName, meter);
    return meter.id;
  }

  // ---------------------------------------------------------------- faults and control

  addFault(rule: FaultRule): FaultRule {
    return this.faultBook.add(validateFaultRule(rule));
  }

  removeFault(id: string): boolean {
    return this.faultBook.remove(id);
  }

  faults(): FaultRule[] {
    return this.faultBook.list();
  }

  clearFaults(): void {
    this.faultBook.clear();
  }

  configure(opts: ConfigureOptions): void {
    if (opts.webhookUrl !== undefined) this.webhookUrl = opts.webhookUrl ?? undefined;
    if (opts.webhookSecret !== undefined) this.secret = opts.webhookSecret;
    if (opts.v1RatePerSecond !== undefined) this.v1Bucket.setRate(opts.v1RatePerSecond);
    if (opts.v2EventsPerSecond !== undefined) this.v2Bucket.setRate(opts.v2EventsPerSecond);
    if (opts.latencyMs !== undefined) this.latencyMs = opts.latencyMs;
  }

  reset(opts: { all?: boolean } = {}): void {
    this.faultBook.clear();
    this.records = [];
    this.byIdentifier.clear();
    this.counts.clear();
    this.adjustmentLog = [];
    this.idempotency.clear();
    this.sessions.clear();
    this.locks.clear();
    this.pendingErrors = [];
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.server.releaseHeld();
    this.events.clear();
    this.deliveries = [];
    this.statsData = emptyStats();
    this.statusCounts.clear();
    this.clockOffset = 0;
    this.v1Bucket.refill();
    this.v2Bucket.refill();
    if (opts.all) {
      this.customers.clear();
      this.metersById.clear();
      this.metersByEvent.clear();
    }
  }

  meterEvents(): RecordedMeterEvent[] {
    return this.records.map((r) => ({ ...r, payload: { ...r.payload }, accepted: this.counts.get(r.identifier) ?? 0 }));
  }

  countsByIdentifier(): Map<string, number> {
    return new Map(this.counts);
  }

  usageTotal(customer: string, eventName: string): number {
    let total = 0;
    for (const r of this.records) {
      if (r.status === 'accepted' && r.customer === customer && r.event_name === eventName) total += r.value;
    }
    return total;
  }

  adjustments(): MeterEventAdjustmentRecord[] {
    return this.adjustmentLog.map((a) => ({ ...a }));
  }

  stats(): StripeSimulatorStats {
    const byStatus: Record<string, number> = {};
    for (const [status, n] of this.statusCounts) byStatus[String(status)] = n;
    return { ...this.statsData, byStatus, faultsApplied: { ...this.statsData.faultsApplied } };
  }

  webhookDeliveries(): WebhookDelivery[] {
    return this.deliveries.map((d) => ({ ...d }));
  }

  sentEvents(): SimulatedEvent[] {
    return [...this.events.values()];
  }

  async sendWebhook(type: string, dataObject: Record<string, unknown>, opts: SendWebhookOptions = {}): Promise<SendWebhookResult> {
    const now = this.now();
    let event: SimulatedEvent;
    if (isThinEventType(type)) {
      event = thinEvent(type, dataObject, now, opts.relatedObject);
    } else {
      const object = type.startsWith('customer.subscription.') ? subscriptionObject(dataObject, now) : dataObject;
      if (type === 'customer.subscription.deleted' && dataObject.status === undefined) {
        object.status = 'canceled';
        object.ended_at ??= Math.floor(now / 1000);
        object.canceled_at ??= Math.floor(now / 1000);
      }
      event = snapshotEvent(type, object, now, opts.previousAttributes);
    }
    const delivery = await this.deliver(event);
    return { status: delivery.status, ok: delivery.ok, event_id: event.id, event };
  }

  async flushErrorReports(): Promise<number> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const batch = this.pendingErrors;
    this.pendingErrors = [];
    if (batch.length === 0) return 0;
    const byMeter = new Map<string, PendingError[]>();
    for (const e of batch) {
      const key = e.meterId ?? '';
      const list = byMeter.get(key);
      if (list) list.push(e);
      else byMeter.set(key, [e]);
    }
    let sent = 0;
    for (const [meterId, errors] of byMeter) {
      const byCode = new Map<string, { count: number; samples: Array<{ error_message: string; request: { identifier: string } }> }>();
      let start = Number.POSITIVE_INFINITY;
      let end = 0;
      for (const e of errors) {
        start = Math.min(start, e.at);
        end = Math.max(end, e.at);
        let entry = byCode.get(e.code);
        if (!entry) {
          entry = { count: 0, samples: [] };
          byCode.set(e.code, entry);
        }
        entry.count += 1;
        if (entry.samples.length < this.maxSamples) entry.samples.push({ error_message: e.message, request: { identifier: e.identifier } });
      }
      const n = errors.length;
      const data = {
        developer_message_summary: n === 1 ? 'There is 1 invalid event' : `There are ${n} invalid events`,
        reason: {
          error_count: n,
          error_types: [...byCode].map(([code, v]) => ({ code, error_count: v.count, sample_errors: v.samples })),
        },
        validation_end: iso(end),
        validation_start: iso(start),
      };
      const event = meterId
        ? thinEvent('v1.billing.meter.error_report_triggered', data, this.now(), {
            id: meterId,
            type: 'billing.meter',
            url: `/v1/billing/meters/${meterId}`,
          })
        : thinEvent('v1.billing.meter.no_meter_found', data, this.now());
      this.statsData.errorReportsSent += 1;
      await this.deliver(event);
      sent += 1;
    }
    return sent;
  }

  // ---------------------------------------------------------------- meter event bookkeeping

  private validateEvent(eventName: string, payload: Record<string, unknown>, identifier: string, tsSec: number): Verdict {
    const meter = this.metersByEvent.get(eventName);
    if (!meter || meter.status !== 'active') {
      // verified: "No active meter found for event name" (sync) and "No meter was found matching event_name X." (async).
      const sync = (api: ApiMode) =>
        invalidRequest(api, `No active meter found for event name "${eventName}".`, { code: 'resource_missing', param: 'event_name' });
      return meter
        ? { ok: false, code: 'archived_meter', message: `Meter ${meter.id} for event_name ${eventName} is not active.`, meter, sync }
        : { ok: false, code: 'no_meter', message: `No meter was found matching event_name ${eventName}.`, meter: undefined, sync };
    }
    const customer = str(payload[meter.customerKey]);
    if (!customer) {
      return {
        ok: false,
        code: 'meter_event_no_customer_defined',
        // verified wording (Stripe docs example).
        message: `Customer mapping key ${meter.customerKey} not found in payload.`,
        meter,
        sync: (api) => missingParam(api, `payload[${meter.customerKey}]`),
      };
    }
    if (!this.customers.has(customer)) {
      return {
        ok: false,
        code: 'meter_event_customer_not_found',
        message: `Customer ${customer} not found.`,
        meter,
        sync: (api) => invalidRequest(api, `No such customer: '${customer}'`, { code: 'resource_missing', param: `payload[${meter.customerKey}]` }),
      };
    }
    let value = 1;
    const rawValue = str(payload[meter.valueKey]);
    if (rawValue === undefined) {
      if (meter.aggregation !== 'count') {
        return {
          ok: false,
          code: 'meter_event_value_not_found',
          message: `Value key ${meter.valueKey} not found in payload.`,
          meter,
          sync: (api) => missingParam(api, `payload[${meter.valueKey}]`),
        };
      }
    } else {
      value = rawValue.trim() === '' ? Number.NaN : Number(rawValue);
      if (!Number.isFinite(value)) {
        return {
          ok: false,
          code: 'meter_event_invalid_value',
          message: `Value ${rawValue} for key ${meter.valueKey} is not a valid number.`,
          meter,
          sync: (api) =>
            invalidRequest(api, `Invalid value for payload[${meter.valueKey}]: '${rawValue}' is not a number.`, {
              param: `payload[${meter.valueKey}]`,
            }),
        };
      }
    }
    const nowSec = Math.floor(this.now() / 1000);
    if (tsSec < nowSec - PAST_WINDOW_SEC) {
      return {
        ok: false,
        code: 'timestamp_too_far_in_past',
        message: 'Timestamp must be within the past 35 calendar days.',
        meter,
        sync: (api) => invalidRequest(api, 'Timestamp must be within the past 35 calendar days.', { param: 'timestamp' }),
      };
    }
    if (tsSec > nowSec + FUTURE_WINDOW_SEC) {
      return {
        ok: false,
        code: 'timestamp_in_future',
        message: 'Timestamp must not be more than 5 minutes in the future.',
        meter,
        sync: (api) => invalidRequest(api, 'Timestamp must not be more than 5 minutes in the future.', { param: 'timestamp' }),
      };
    }
    const previous = this.byIdentifier.get(identifier);
    if (previous && previous.received_at + DAY_MS > this.now()) {
      // verified: message text; Stripe sends no distinctive error code for it (integrations match the message).
      const message = `An event already exists with identifier ${identifier}.`;
      return {
        ok: false,
        code: DUPLICATE_IDENTIFIER_CODE,
        message,
        meter,
        sync: (api) => invalidRequest(api, message, { param: 'identifier' }),
      };
    }
    return { ok: true, meter, customer, value };
  }

  private accept(
    api: InternalRecord['api'],
    identifier: string,
    eventName: string,
    payload: Record<string, string>,
    tsSec: number,
    verdict: Extract<Verdict, { ok: true }>,
  ): InternalRecord {
    const record: InternalRecord = {
      identifier,
      event_name: eventName,
      customer: verdict.customer,
      value: verdict.value,
      timestamp: tsSec,
      payload,
      api,
      received_at: this.now(),
      status: 'accepted',
      meter_id: verdict.meter.id,
    };
    this.records.push(record);
    this.byIdentifier.set(identifier, record);
    this.counts.set(identifier, (this.counts.get(identifier) ?? 0) + 1);
    return record;
  }

  /** Async rejection of a stream event: recorded as rejected and queued for the next error report. */
  private rejectAsync(identifier: string, eventName: string, payload: Record<string, string>, tsSec: number, verdict: Extract<Verdict, { ok: false }>): void {
    const meterKey = verdict.meter?.customerKey ?? 'stripe_customer_id';
    const valueKey = verdict.meter?.valueKey ?? 'value';
    const value = Number(payload[valueKey]);
    const record: InternalRecord = {
      identifier,
      event_name: eventName,
      customer: payload[meterKey] ?? '',
      value: Number.isFinite(value) ? value : 0,
      timestamp: tsSec,
      payload,
      api: 'v2_stream',
      received_at: this.now(),
      status: 'rejected',
      error_code: verdict.code,
      error_message: verdict.message,
    };
    if (verdict.meter) record.meter_id = verdict.meter.id;
    this.records.push(record);
    this.statsData.v2EventsRejected += 1;
    this.queueError({ code: verdict.code, message: verdict.message, identifier, meterId: verdict.meter?.id, at: this.now() });
  }

  /** reject_after_accept: Stripe took the call, then its async pipeline refuses the event. */
  private rejectAccepted(record: InternalRecord, code: string, message: string): void {
    if (record.status !== 'accepted') return;
    record.status = 'rejected';
    record.error_code = code;
    record.error_message = message;
    const n = (this.counts.get(record.identifier) ?? 1) - 1;
    if (n > 0) this.counts.set(record.identifier, n);
    else this.counts.delete(record.identifier);
    if (this.byIdentifier.get(record.identifier) === record) this.byIdentifier.delete(record.identifier);
    this.statsData.rejectedAfterAccept += 1;
    this.queueError({ code, message, identifier: record.identifier, meterId: record.meter_id, at: this.now() });
  }

  private queueError(error: PendingError): void {
    this.pendingErrors.push(error);
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        this.flushErrorReports().catch(() => undefined);
      }, this.errorReportDelayMs);
      this.flushTimer.unref();
    }
  }

  private cancel(api: 'v1' | 'v2', eventName: string, identifier: string): MeterEventAdjustmentRecord {
    const record = this.byIdentifier.get(identifier);
    const applied = !!record && record.status === 'accepted' && record.event_name === eventName;
    if (applied) {
      record.status = 'cancelled';
      this.statsData.cancelled += 1;
    }
    const adj: MeterEventAdjustmentRecord = {
      id: randomId(api === 'v1' ? 'bmea_' : 'mea_test_', 24),
      api,
      event_name: eventName,
      identifier,
      applied,
      created: this.now(),
    };
    this.adjustmentLog.push(adj);
    return adj;
  }

  private async deliver(event: SimulatedEvent): Promise<WebhookDelivery> {
    this.events.set(event.id, event);
    const attempt = this.deliveries.filter((d) => d.event_id === event.id).length + 1;
    const delivery = await postSignedEvent({ url: this.webhookUrl, secret: this.secret }, event, attempt, this.webhookTimeoutMs);
    this.deliveries.push(delivery);
    if (delivery.ok) this.statsData.webhooksSent += 1;
    else this.statsData.webhooksFailed += 1;
    if (!delivery.ok && attempt <= this.webhookRetries) {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        void this.deliver(event).catch(() => undefined);
      }, this.webhookRetryBaseMs * 2 ** (attempt - 1));
      timer.unref();
      this.timers.add(timer);
    }
    return delivery;
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, entry] of this.idempotency) if (entry.response && entry.createdAt + DAY_MS < now) this.idempotency.delete(key);
    for (const [token, s] of this.sessions) if (s.expiresAt < now) this.sessions.delete(token);
  }

  // ---------------------------------------------------------------- routes

  private registerRoutes(): void {
    const meterEventSubjects = (p: Record<string, unknown>): FaultSubjects => {
      const payload = isObject(p.payload) ? p.payload : {};
      const eventName = str(p.event_name) ?? '';
      const meter = this.metersByEvent.get(eventName);
      const customer = str(payload[meter?.customerKey ?? 'stripe_customer_id']);
      const identifier = str(p.identifier);
      return {
        identifiers: identifier ? [identifier] : [],
        customers: customer ? [customer] : [],
        eventNames: [eventName],
      };
    };
    const meterEventLock = (p: Record<string, unknown>): string | undefined => {
      const payload = isObject(p.payload) ? p.payload : {};
      const eventName = str(p.event_name);
      const meter = eventName ? this.metersByEvent.get(eventName) : undefined;
      const customer = str(payload[meter?.customerKey ?? 'stripe_customer_id']);
      return eventName && customer ? `${customer}\u0000${eventName}` : undefined;
    };

    const add = (method: string, path: string | RegExp, route: Omit<Route, 'method'>) => this.routes.add(method, path, { ...route, method });
    const v1 = { api: 'v1' as const, auth: 'secret' as const, bucket: 'v1' as const };
    const v2 = { api: 'v2' as const, auth: 'secret' as const, bucket: 'v1' as const };

    add('POST', '/v1/billing/meter_events', {
      ...v1,
      subjects: meterEventSubjects,
      lockKey: meterEventLock,
      handle: (ctx) => this.createMeterEvent('v1', ctx),
    });
    add('POST', '/v2/billing/meter_events', {
      ...v2,
      subjects: meterEventSubjects,
      lockKey: meterEventLock,
      handle: (ctx) => this.createMeterEvent('v2', ctx),
    });
    add('POST', '/v1/billing/meter_event_adjustments', { ...v1, handle: (ctx) => this.createAdjustment('v1', ctx) });
    add('POST', '/v2/billing/meter_event_adjustments', { ...v2, handle: (ctx) => this.createAdjustment('v2', ctx) });
    add('POST', '/v2/billing/meter_event_session', { ...v2, handle: (ctx) => this.createSession(ctx) });
    add('POST', '/v2/billing/meter_event_stream', {
      api: 'v2',
      auth: 'session',
      bucket: 'v2stream',
      subjects: (p) => {
        const events = Array.isArray(p.events) ? p.events : [];
        const identifiers: string[] = [];
        const customers: string[] = [];
        const eventNames: string[] = [];
        for (const e of events) {
          if (!isObject(e)) continue;
          const id = str(e.identifier);
          if (id) identifiers.push(id);
          const name = str(e.event_name);
          if (name) eventNames.push(name);
          const meter = name ? this.metersByEvent.get(name) : undefined;
          const c = isObject(e.payload) ? str(e.payload[meter?.customerKey ?? 'stripe_customer_id']) : undefined;
          if (c) customers.push(c);
        }
        return { identifiers, customers, eventNames };
      },
      handle: (ctx) => this.streamEvents(ctx),
    });
    add('POST', '/v1/billing/meters', { ...v1, handle: (ctx) => this.createMeter(ctx) });
    add('GET', '/v1/billing/meters', {
      ...v1,
      handle: () => ({
        response: {
          status: 200,
          body: { object: 'list', data: [...this.metersById.values()].map((m) => this.meterJson(m)), has_more: false, url: '/v1/billing/meters' },
        },
      }),
    });
    add('GET', /^\/v1\/billing\/meters\/([^/]+)$/, {
      ...v1,
      handle: (ctx) => {
        const meter = this.metersById.get(ctx.pathId ?? '');
        return { response: meter ? { status: 200, body: this.meterJson(meter) } : resourceMissing('v1', 'billing.meter', ctx.pathId ?? '') };
      },
    });
    add('POST', /^\/v1\/billing\/meters\/([^/]+)\/deactivate$/, { ...v1, handle: (ctx) => this.setMeterStatus(ctx.pathId ?? '', 'inactive') });
    add('POST', /^\/v1\/billing\/meters\/([^/]+)\/reactivate$/, { ...v1, handle: (ctx) => this.setMeterStatus(ctx.pathId ?? '', 'active') });
    add('GET', /^\/v1\/billing\/meters\/([^/]+)\/event_summaries$/, { ...v1, handle: (ctx) => this.eventSummaries(ctx) });
    add('POST', '/v1/customers', { ...v1, handle: (ctx) => this.createCustomer(ctx) });
    add('GET', /^\/v1\/customers\/([^/]+)$/, {
      ...v1,
      handle: (ctx) => {
        const c = this.customers.get(ctx.pathId ?? '');
        return { response: c ? { status: 200, body: this.customerJson(c) } : resourceMissing('v1', 'customer', ctx.pathId ?? '') };
      },
    });
    add('GET', '/v2/core/events', {
      ...v2,
      handle: (ctx) => {
        const q = new URLSearchParams(ctx.query);
        const objectId = q.get('object_id');
        const data = [...this.events.values()].filter(
          (e) => e.object === 'v2.core.event' && (!objectId || ('id' in e.related_object && e.related_object.id === objectId)),
        );
        return { response: { status: 200, body: { data: data.reverse(), next_page_url: null, previous_page_url: null } } };
      },
    });
    add('GET', /^\/v2\/core\/events\/([^/]+)$/, {
      ...v2,
      handle: (ctx) => {
        const e = this.events.get(ctx.pathId ?? '');
        return { response: e && e.object === 'v2.core.event' ? { status: 200, body: e } : resourceMissing('v2', 'event', ctx.pathId ?? '') };
      },
    });
    add('GET', /^\/v1\/events\/([^/]+)$/, {
      ...v1,
      handle: (ctx) => {
        const e = this.events.get(ctx.pathId ?? '');
        return { response: e && e.object === 'event' ? { status: 200, body: e } : resourceMissing('v1', 'event', ctx.pathId ?? '') };
      },
    });
  }

  private createMeterEvent(api: 'v1' | 'v2', ctx: RequestContext): Outcome {
    const p = ctx.params;
    const eventName = str(p.event_name);
    if (!eventName) return { response: missingParam(api, 'event_name') };
    if (!isObject(p.payload)) return { response: missingParam(api, 'payload') };
    const payload = stringPayload(p.payload);
    const identifier = p.identifier === undefined ? randomId('', 32) : (str(p.identifier) ?? '');
    if (identifier.length === 0 || identifier.length > 100) {
      return {
        response: invalidRequest(api, `Invalid string: ${identifier.slice(0, 20)}${identifier.length > 20 ? '...' : ''}; must be at most 100 characters`, {
          param: 'identifier',
        }),
      };
    }
    let tsSec = Math.floor(this.now() / 1000);
    if (p.timestamp !== undefined) {
      const raw = str(p.timestamp) ?? '';
      const parsed = api === 'v1' ? (/^-?\d+$/.test(raw) ? Number(raw) : Number.NaN) : Math.floor(Date.parse(raw) / 1000);
      if (!Number.isFinite(parsed)) {
        return {
          response:
            api === 'v1'
              ? invalidRequest(api, `Invalid integer: ${raw}`, { code: 'parameter_invalid_integer', param: 'timestamp' })
              : invalidRequest(api, `Invalid timestamp: ${raw}`, { param: 'timestamp' }),
        };
      }
      tsSec = parsed;
    }
    const verdict = this.validateEvent(eventName, payload, identifier, tsSec);
    if (!verdict.ok) {
      if (verdict.code === DUPLICATE_IDENTIFIER_CODE) this.statsData.duplicateIdentifiers += 1;
      return { response: verdict.sync(api) };
    }
    const record = this.accept(api, identifier, eventName, payload, tsSec, verdict);
    this.statsData.v1MeterEventsAccepted += 1;
    const created = this.now();
    const body =
      api === 'v1'
        ? {
            object: 'billing.meter_event',
            created: Math.floor(created / 1000),
            event_name: eventName,
            identifier,
            livemode: ctx.livemode,
            payload,
            timestamp: tsSec,
          }
        : {
            object: 'v2.billing.meter_event',
            created: iso(created),
            event_name: eventName,
            identifier,
            livemode: ctx.livemode,
            payload,
            timestamp: iso(tsSec * 1000),
          };
    return { response: { status: 200, body }, accepted: [record] };
  }

  private streamEvents(ctx: RequestContext): Outcome {
    const events = ctx.params.events;
    if (!Array.isArray(events) || events.length === 0) return { response: missingParam('v2', 'events') };
    if (events.length > 100) {
      return { response: invalidRequest('v2', `events: must contain at most 100 items (got ${events.length}).`, { code: 'invalid_fields', param: 'events' }) };
    }
    // Shape errors are synchronous even on the stream; everything about meters/customers is async.
    for (let i = 0; i < events.length; i++) {
      const e = events[i];
      if (!isObject(e) || !str(e.event_name) || !isObject(e.payload)) {
        return { response: invalidRequest('v2', `events[${i}]: event_name and payload are required.`, { code: 'invalid_fields', param: `events[${i}]` }) };
      }
      if (e.identifier !== undefined && ((str(e.identifier) ?? '').length === 0 || (str(e.identifier) ?? '').length > 100)) {
        return { response: invalidRequest('v2', `events[${i}].identifier: must be 1 to 100 characters.`, { code: 'invalid_fields', param: `events[${i}].identifier` }) };
      }
      if (e.timestamp !== undefined && !Number.isFinite(Date.parse(str(e.timestamp) ?? ''))) {
        return { response: invalidRequest('v2', `events[${i}].timestamp: invalid timestamp.`, { code: 'invalid_fields', param: `events[${i}].timestamp` }) };
      }
    }
    const accepted: InternalRecord[] = [];
    const nowSec = Math.floor(this.now() / 1000);
    for (const e of events as Array<Record<string, unknown>>) {
      const eventName = str(e.event_name)!;
      const payload = stringPayload(e.payload as Record<string, unknown>);
      const identifier = str(e.identifier) ?? randomId('', 32);
      const tsSec = e.timestamp === undefined ? nowSec : Math.floor(Date.parse(str(e.timestamp)!) / 1000);
      const verdict = this.validateEvent(eventName, payload, identifier, tsSec);
      if (verdict.ok) {
        accepted.push(this.accept('v2_stream', identifier, eventName, payload, tsSec, verdict));
        this.statsData.v2EventsAccepted += 1;
      } else if (verdict.code === DUPLICATE_IDENTIFIER_CODE) {
        this.statsData.duplicateIdentifiers += 1;
        if (this.duplicateHandling === 'report') this.rejectAsync(identifier, eventName, payload, tsSec, verdict);
      } else {
        this.rejectAsync(identifier, eventName, payload, tsSec, verdict);
      }
    }
    return { response: { status: 202, body: {} }, accepted };
  }

  private createAdjustment(api: 'v1' | 'v2', ctx: RequestContext): Outcome {
    const p = ctx.params;
    const eventName = str(p.event_name);
    if (!eventName) return { response: missingParam(api, 'event_name') };
    const type = str(p.type) ?? 'cancel';
    if (type !== 'cancel') return { response: invalidRequest(api, `Invalid type: must be one of cancel`, { param: 'type' }) };
    const identifier = isObject(p.cancel) ? str(p.cancel.identifier) : undefined;
    if (!identifier) return { response: missingParam(api, 'cancel[identifier]') };
    const adj = this.cancel(api, eventName, identifier);
    const body =
      api === 'v1'
        ? { object: 'billing.meter_event_adjustment', cancel: { identifier }, event_name: eventName, livemode: ctx.livemode, status: 'pending', type: 'cancel' }
        : {
            id: adj.id,
            object: 'v2.billing.meter_event_adjustment',
            cancel: { identifier },
            created: iso(adj.created),
            event_name: eventName,
            livemode: ctx.livemode,
            status: 'pending',
            type: 'cancel',
          };
    return { response: { status: 200, body } };
  }

  private createSession(ctx: RequestContext): Outcome {
    const created = this.now();
    const expiresAt = created + SESSION_TTL_MS;
    const id = randomId('mes_test_', 24);
    const token = randomId('mes_tok_test_', 40);
    this.sessions.set(token, { id, expiresAt });
    return {
      response: {
        status: 200,
        body: {
          id,
          object: 'v2.billing.meter_event_session',
          authentication_token: token,
          created: iso(created),
          expires_at: iso(expiresAt),
          livemode: ctx.livemode,
        },
      },
    };
  }

  private createMeter(ctx: RequestContext): Outcome {
    const p = ctx.params;
    const eventName = str(p.event_name);
    if (!eventName) return { response: missingParam('v1', 'event_name') };
    const displayName = str(p.display_name);
    if (!displayName) return { response: missingParam('v1', 'display_name') };
    const formula = isObject(p.default_aggregation) ? str(p.default_aggregation.formula) : undefined;
    if (!formula) return { response: missingParam('v1', 'default_aggregation[formula]') };
    if (formula !== 'sum' && formula !== 'count' && formula !== 'last') {
      return { response: invalidRequest('v1', `Invalid default_aggregation[formula]: must be one of count, last, or sum`, { param: 'default_aggregation[formula]' }) };
    }
    const existing = this.metersByEvent.get(eventName);
    if (existing && existing.status === 'active') {
      return { response: invalidRequest('v1', `An active meter with event_name ${eventName} already exists.`, { param: 'event_name' }) };
    }
    const opts: MeterOptions = { displayName, aggregation: formula };
    const customerKey = isObject(p.customer_mapping) ? str(p.customer_mapping.event_payload_key) : undefined;
    if (customerKey) opts.customerPayloadKey = customerKey;
    const valueKey = isObject(p.value_settings) ? str(p.value_settings.event_payload_key) : undefined;
    if (valueKey) opts.valuePayloadKey = valueKey;
    const id = this.addMeter(eventName, opts);
    return { response: { status: 200, body: this.meterJson(this.metersById.get(id)!) } };
  }

  /**
   * `GET /v1/billing/meters/:id/event_summaries`: a customer's counted events (accepted, not cancelled or rejected)
   * by usage time, aggregated with the meter's formula, per `value_grouping_window` (day | hour) or over the whole
   * range, newest first, paginated by summary id. Windows without events are left out (a consumer reads a missing
   * window as 0). Unlike Stripe's, these summaries are consistent at once: tests of eventual consistency hold the
   * ledger side back instead.
   */
  private eventSummaries(ctx: RequestContext): Outcome {
    const meter = this.metersById.get(ctx.pathId ?? '');
    if (!meter) return { response: resourceMissing('v1', 'billing.meter', ctx.pathId ?? '') };
    const p = ctx.params;
    const customer = str(p.customer);
    if (!customer) return { response: missingParam('v1', 'customer') };
    const times: Record<'start_time' | 'end_time', number> = { start_time: 0, end_time: 0 };
    for (const name of ['start_time', 'end_time'] as const) {
      const raw = str(p[name]);
      if (raw === undefined) return { response: missingParam('v1', name) };
      if (!/^\d+$/.test(raw)) return { response: invalidRequest('v1', `Invalid integer: ${raw}`, { code: 'parameter_invalid_integer', param: name }) };
      times[name] = Number(raw);
      if (times[name] % 60 !== 0) return { response: invalidRequest('v1', `${name} must be aligned with minute boundaries.`, { param: name }) };
    }
    const start = times.start_time;
    const end = times.end_time;
    if (end <= start) return { response: invalidRequest('v1', 'end_time must be after start_time.', { param: 'end_time' }) };
    const grouping = str(p.value_grouping_window);
    if (grouping !== undefined && grouping !== 'day' && grouping !== 'hour') {
      return { response: invalidRequest('v1', 'Invalid value_grouping_window: must be one of day or hour', { param: 'value_grouping_window' }) };
    }
    const step = grouping === 'day' ? 86_400 : grouping === 'hour' ? 3_600 : end - start;
    if (grouping && (start % step !== 0 || end % step !== 0)) {
      const unit = grouping === 'day' ? 'UTC day boundaries (00:00 UTC)' : 'hour boundaries';
      return { response: invalidRequest('v1', `For ${grouping === 'day' ? 'daily' : 'hourly'} granularity, start_time and end_time must align with ${unit}.`, { param: 'start_time' }) };
    }
    const limitRaw = str(p.limit);
    const limit = limitRaw === undefined ? 10 : Number(limitRaw);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      return { response: invalidRequest('v1', 'Invalid limit: must be between 1 and 100', { param: 'limit' }) };
    }
    if (!this.customers.has(customer)) {
      return { response: invalidRequest('v1', `No such customer: '${customer}'`, { code: 'resource_missing', param: 'customer' }) };
    }

    // Records are appended in acceptance order, so "last" is the latest usage time, then the latest accepted.
    const windows = new Map<number, { value: number; lastTs: number }>();
    for (const r of this.records) {
      if (r.status !== 'accepted' || r.meter_id !== meter.id || r.customer !== customer || r.timestamp < start || r.timestamp >= end) continue;
      const index = Math.floor((r.timestamp - start) / step);
      const w = windows.get(index);
      if (!w) windows.set(index, { value: meter.aggregation === 'count' ? 1 : r.value, lastTs: r.timestamp });
      else if (meter.aggregation === 'sum') w.value += r.value;
      else if (meter.aggregation === 'count') w.value += 1;
      else if (r.timestamp >= w.lastTs) {
        w.value = r.value;
        w.lastTs = r.timestamp;
      }
    }
    const summaries = [...windows.entries()]
      .sort((a, b) => b[0] - a[0])
      .map(([index, w]) => {
        const startTime = start + index * step;
        const endTime = Math.min(end, startTime + step);
        return {
          id: `mtrusg_test_${Buffer.from(`${meter.id}|${customer}|${startTime}|${endTime}`).toString('base64url')}`,
          object: 'billing.meter_event_summary',
          aggregated_value: w.value,
          end_time: endTime,
          livemode: ctx.livemode,
          meter: meter.id,
          start_time: startTime,
        };
      });
    let from = 0;
    let to = summaries.length;
    const after = str(p.starting_after);
    const before = str(p.ending_before);
    if (after !== undefined) from = summaries.findIndex((s) => s.id === after) + 1;
    if (before !== undefined) {
      to = Math.max(0, summaries.findIndex((s) => s.id === before));
      from = Math.max(0, to - limit);
    }
    const page = summaries.slice(from, Math.min(to, from + limit));
    const hasMore = before !== undefined ? from > 0 : from + page.length < to;
    return {
      response: {
        status: 200,
        body: { object: 'list', data: page, has_more: hasMore, url: `/v1/billing/meters/${meter.id}/event_summaries` },
      },
    };
  }

  private setMeterStatus(id: string, status: 'active' | 'inactive'): Outcome {
    const meter = this.metersById.get(id);
    if (!meter) return { response: resourceMissing('v1', 'billing.meter', id) };
    const nowSec = Math.floor(this.now() / 1000);
    meter.status = status;
    meter.updated = nowSec;
    meter.deactivated_at = status === 'inactive' ? nowSec : null;
    if (status === 'active') this.metersByEvent.set(meter.event_name, meter);
    return { response: { status: 200, body: this.meterJson(meter) } };
  }

  private createCustomer(ctx: RequestContext): Outcome {
    const p = ctx.params;
    const id = this.addCustomer();
    const c = this.customers.get(id)!;
    c.email = str(p.email) ?? null;
    c.name = str(p.name) ?? null;
    if (isObject(p.metadata)) c.metadata = stringPayload(p.metadata);
    return { response: { status: 200, body: this.customerJson(c) } };
  }

  private meterJson(m: MeterRecord): Record<string, unknown> {
    return {
      id: m.id,
      object: 'billing.meter',
      created: m.created,
      customer_mapping: { event_payload_key: m.customerKey, type: 'by_id' },
      default_aggregation: { formula: m.aggregation },
      display_name: m.display_name,
      event_name: m.event_name,
      event_time_window: null,
      livemode: false,
      status: m.status,
      status_transitions: { deactivated_at: m.deactivated_at },
      updated: m.updated,
      value_settings: { event_payload_key: m.valueKey },
    };
  }

  private customerJson(c: CustomerRecord): Record<string, unknown> {
    return {
      id: c.id,
      object: 'customer',
      address: null,
      balance: 0,
      created: c.created,
      currency: null,
      default_source: null,
      delinquent: false,
      description: null,
      email: c.email,
      invoice_prefix: c.id.slice(4, 12).toUpperCase(),
      invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
      livemode: false,
      metadata: c.metadata,
      name: c.name,
      phone: null,
      preferred_locales: [],
      shipping: null,
      tax_exempt: 'none',
      test_clock: null,
    };
  }

  // ---------------------------------------------------------------- HTTP plumbing

  private reply(res: ServerResponse, r: WireResponse, extraHeaders?: Record<string, string>): void {
    this.statusCounts.set(r.status, (this.statusCounts.get(r.status) ?? 0) + 1);
    if (r.status === 429) this.statsData.rateLimited += 1;
    if (r.status >= 500) this.statsData.serverErrors += 1;
    if (res.destroyed || res.writableEnded) return;
    const body = JSON.stringify(r.body);
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'request-id': nextRequestId(),
      'stripe-version': '2026-10-28.endive',
      ...r.headers,
      ...extraHeaders,
    };
    res.writeHead(r.status, headers);
    res.end(body);
  }

  private hold(res: ServerResponse): void {
    this.statsData.timeoutsHeld += 1;
    this.server.hold(res);
  }

  private resetSocket(req: IncomingMessage): void {
    this.statsData.connectionsReset += 1;
    this.server.resetSocket(req);
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, rawBody: string): Promise<void> {
    this.statsData.requests += 1;
    const method = req.method ?? 'GET';
    const { path, query } = splitUrl(req.url);
    const found = this.routes.find(method, path);
    if (!found) return this.reply(res, notFoundRoute(method, path));
    const { route, pathId } = found;
    const api = route.api;

    // Authentication.
    const authHeader = req.headers.authorization;
    const key = extractKey(authHeader);
    if (route.auth === 'secret') {
      if (!isSecretKey(key)) return this.reply(res, authenticationError(authHeader));
    } else {
      const session = key ? this.sessions.get(key) : undefined;
      if (!session) {
        return this.reply(
          res,
          key && isSecretKey(key)
            ? v2Error(401, {
                type: 'invalid_request_error',
                message: 'The meter event stream requires a meter event session authentication_token, not an API key.',
              })
            : authenticationError(authHeader),
        );
      }
      if (session.expiresAt <= this.now()) {
        return this.reply(
          res,
          v2Error(401, { type: 'temporary_session_expired', code: 'billing_meter_event_session_expired', message: 'The temporary session token has expired.' }),
        );
      }
    }
    const livemode = key !== undefined && key.includes('_live_');

    // Body.
    let params: Record<string, unknown>;
    if (method === 'GET' || method === 'DELETE') params = parseForm(query);
    else if (api === 'v2') {
      try {
        const parsed: unknown = rawBody.length === 0 ? {} : JSON.parse(rawBody);
        if (!isObject(parsed)) throw new Error('body must be a JSON object');
        params = parsed;
      } catch {
        return this.reply(res, invalidRequest('v2', 'Invalid JSON body.', { code: 'invalid_fields' }));
      }
    } else params = parseForm(rawBody);

    // Faults.
    let fault: FaultRule | undefined;
    if (this.faultBook.size > 0) {
      const subjects = route.subjects?.(params);
      fault = this.faultBook.pick((rule) => ruleMatches(rule, method, path, subjects), this.random);
      if (fault) {
        this.statsData.faultsApplied[fault.kind] += 1;
        switch (fault.kind) {
          case 'timeout_not_applied':
            return this.hold(res);
          case 'reset_not_applied':
            return this.resetSocket(req);
          case 'rate_limit':
            return this.reply(res, rateLimited(api));
          case 'server_error':
            return this.reply(res, serverError(api, fault.status ?? 500));
          default:
            break;
        }
      }
    }

    // Built-in rate limits (429s are never saved against an idempotency key, as on Stripe).
    if (route.bucket === 'v2stream') {
      const n = Array.isArray(params.events) ? Math.max(1, Math.min(params.events.length, 100)) : 1;
      if (!this.v2Bucket.take(n)) {
        this.statsData.bucketRejected += 1;
        return this.reply(res, rateLimited('v2'));
      }
    } else if (!this.v1Bucket.take(1)) {
      this.statsData.bucketRejected += 1;
      return this.reply(res, rateLimited(api));
    }

    // Idempotency.
    const idemHeader = req.headers['idempotency-key'];
    const idemKey = method === 'POST' && typeof idemHeader === 'string' && idemHeader.length > 0 ? idemHeader : undefined;
    if (idemKey) {
      const entry = this.idempotency.get(idemKey);
      if (entry && entry.createdAt + DAY_MS > this.now()) {
        if (!entry.response) return this.reply(res, idempotencyInFlight(api));
        if (entry.path !== path || entry.body !== rawBody) return this.reply(res, idempotencyMismatch(api, idemKey));
        this.statsData.idempotentReplays += 1;
        return this.replyAfterFault(req, res, fault, entry.response, { 'idempotent-replayed': 'true' });
      }
    }

    // Stripe's v1 limit: one concurrent call per (customer, meter).
    const lock = route.lockKey?.(params);
    if (lock !== undefined) {
      if (this.locks.has(lock)) {
        this.statsData.concurrencyRejected += 1;
        return this.reply(
          res,
          rateLimited(api, CONCURRENCY_MESSAGE),
        );
      }
      this.locks.add(lock);
    }
    if (idemKey) this.idempotency.set(idemKey, { path, body: rawBody, createdAt: this.now(), response: undefined });

    let outcome: Outcome;
    try {
      const wait = (fault?.kind === 'slow' ? (fault.delayMs ?? 1000) : 0) + this.latencyMs;
      if (wait > 0) await sleep(wait);
      outcome = route.handle({ method, path, pathId, query, params, livemode });
    } catch (err) {
      if (idemKey) this.idempotency.delete(idemKey);
      throw err;
    } finally {
      if (lock !== undefined) this.locks.delete(lock);
    }

    // Only results of requests that executed successfully are saved; validation errors are not (Stripe's rule).
    if (idemKey) {
      if (outcome.response.status < 400) this.idempotency.set(idemKey, { path, body: rawBody, createdAt: this.now(), response: outcome.response });
      else this.idempotency.delete(idemKey);
    }

    if (fault?.kind === 'reject_after_accept' && outcome.accepted && outcome.accepted.length > 0) {
      const rule = fault;
      const targets = outcome.accepted.filter((r) => ruleNamesEvent(rule, { identifier: r.identifier, customer: r.customer, eventName: r.event_name }));
      const code = rule.errorCode ?? 'meter_event_customer_not_found';
      const message = rule.errorMessage ?? `Event rejected by the simulator (${code}).`;
      const apply = () => {
        for (const r of targets) this.rejectAccepted(r, code, message);
      };
      if ((rule.delayMs ?? 0) > 0) {
        const t = setTimeout(() => {
          this.timers.delete(t);
          apply();
        }, rule.delayMs);
        t.unref();
        this.timers.add(t);
      } else setImmediate(apply);
    }
    return this.replyAfterFault(req, res, fault, outcome.response);
  }

  /** The applied-then-lost faults: the work is done (and saved for idempotent replay) but the answer never arrives. */
  private replyAfterFault(req: IncomingMessage, res: ServerResponse, fault: FaultRule | undefined, response: WireResponse, headers?: Record<string, string>): void {
    if (fault?.kind === 'timeout_applied') return this.hold(res);
    if (fault?.kind === 'reset_applied') return this.resetSocket(req);
    this.reply(res, response, headers);
  }

  // ---------------------------------------------------------------- control API (/__simulator/*)

  private control(req: IncomingMessage, res: ServerResponse, rawBody: string): Promise<void> {
    const routes: Record<string, ControlHandler> = {
      'GET /__simulator/meter_events': ({ query }) => {
        const identifier = query.get('identifier');
        const status = query.get('status');
        const data = this.meterEvents().filter((e) => (!identifier || e.identifier === identifier) && (!status || e.status === status));
        return [200, { object: 'list', data, counts: Object.fromEntries(this.counts) }];
      },
      'POST /__simulator/customers': ({ fields: b }) => [200, { id: this.addCustomer(str(b.id)) }],
      'POST /__simulator/meters': ({ fields: b }) => {
        const eventName = str(b.event_name);
        if (!eventName) return [400, { error: 'event_name is required' }];
        const opts: MeterOptions = {};
        if (str(b.id)) opts.id = str(b.id)!;
        if (str(b.display_name)) opts.displayName = str(b.display_name)!;
        if (str(b.customer_payload_key)) opts.customerPayloadKey = str(b.customer_payload_key)!;
        if (str(b.value_payload_key)) opts.valuePayloadKey = str(b.value_payload_key)!;
        const agg = str(b.aggregation);
        if (agg === 'sum' || agg === 'count' || agg === 'last') opts.aggregation = agg;
        const st = str(b.status);
        if (st === 'active' || st === 'inactive') opts.status = st;
        return [200, { id: this.addMeter(eventName, opts) }];
      },
      'POST /__simulator/webhooks': async ({ fields: b }) => {
        const type = str(b.type);
        const object = isObject(b.object) ? b.object : isObject(b.data) ? b.data : undefined;
        if (!type || !object) return [400, { error: 'type and object (or data) are required' }];
        const opts: SendWebhookOptions = {};
        if (isObject(b.previous_attributes)) opts.previousAttributes = b.previous_attributes;
        if (isObject(b.related_object)) opts.relatedObject = b.related_object as SendWebhookOptions['relatedObject'];
        const r = await this.sendWebhook(type, object, opts);
        return [200, { status: r.status, ok: r.ok, event_id: r.event_id, event: r.event }];
      },
      'GET /__simulator/webhook_deliveries': () => [200, { data: this.webhookDeliveries() }],
      'GET /__simulator/events': () => [200, { data: this.sentEvents() }],
      'POST /__simulator/flush_error_reports': async () => [200, { events: await this.flushErrorReports() }],
      'GET /__simulator/adjustments': () => [200, { data: this.adjustments() }],
      'POST /__simulator/config': ({ fields: b }) => {
        const opts: ConfigureOptions = {};
        if (b.webhook_url === null || typeof b.webhook_url === 'string') opts.webhookUrl = b.webhook_url;
        if (typeof b.webhook_secret === 'string') opts.webhookSecret = b.webhook_secret;
        if (typeof b.v1_rate_per_second === 'number') opts.v1RatePerSecond = b.v1_rate_per_second;
        if (typeof b.v2_events_per_second === 'number') opts.v2EventsPerSecond = b.v2_events_per_second;
        if (typeof b.latency_ms === 'number') opts.latencyMs = b.latency_ms;
        this.configure(opts);
        return [200, { webhook_url: this.webhookUrl ?? null, webhook_secret: this.secret }];
      },
    };
    return serveControl(req, res, rawBody, this, validateFaultRule, routes);
  }
}

export async function startStripeSimulator(opts: StripeSimulatorOptions = {}): Promise<StripeSimulator> {
  const sim = new Simulator(opts);
  await sim.listen();
  return sim;
}

// Out-of-process use: `npx tsx simulators/stripe/simulator.ts --port 12111 --webhook-url http://...` prints one JSON
// line {url, webhookSecret, secretKey} and runs until SIGINT/SIGTERM (`npm run cli -- simulator stripe` does the same).
const entry = process.argv[1];
if (entry && import.meta.url === pathToFileURL(resolvePath(entry)).href) {
  const args = process.argv.slice(2);
  const options: StripeSimulatorOptions = {};
  if (argValue(args, 'port')) options.port = Number(argValue(args, 'port'));
  if (argValue(args, 'host')) options.host = argValue(args, 'host')!;
  if (argValue(args, 'webhook-url')) options.webhookUrl = argValue(args, 'webhook-url')!;
  if (argValue(args, 'webhook-secret')) options.webhookSecret = argValue(args, 'webhook-secret')!;
  if (argValue(args, 'seed')) options.seed = Number(argValue(args, 'seed'));
  const sim = await startStripeSimulator(options);
  process.stdout.write(`${JSON.stringify({ url: sim.url, webhookSecret: sim.webhookSecret, secretKey: SIMULATOR_SECRET_KEY })}\n`);
  stopOnSignals(() => sim.stop());
}
