// Stripe meter events through the real `stripe` SDK. v1: one call per event, paced under Stripe's 1,000 calls/s
// and one call in flight per (customer, meter), Idempotency-Key derived from the identifier. v2: a meter event
// session (renewed before its 15 minutes end) and stream requests of at most 100 events, paced under 10,000
// events/s. Retries are not done here: every failure comes back as a per-event outcome and the reporter decides.
import http from 'node:http';
import https from 'node:https';
import Stripe from 'stripe';
import { SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { KeyedSerializer, RateLimiter, Semaphore, backoffDelay } from '../limits';
import { STRIPE_API_VERSION } from './api-version';
import type { MeterEventReporter, MeterEventToReport, ReportOptions, ReportOutcome, ReportOutcomeKind } from '../types';

/** v1 meter events are sent with Idempotency-Key `meterdesk-<identifier>` (error reports may name them by it). */
export const IDEMPOTENCY_KEY_PREFIX = 'meterdesk-';

export interface StripeProcessorConfig {
  secretKey: string;
  /** A Stripe-compatible base URL (the simulator); absent = Stripe itself. Only scheme, host and port are used. */
  apiBase?: string;
  api: 'v1' | 'v2';
  /** Per HTTP call (the SDK's default is 80 s: far too long to hold a claim). Default 10 s. */
  timeoutMs?: number;
  /** v1 calls per second from this process. Default 98% of Stripe's 1,000/s, so jitter never earns a 429. */
  v1RatePerSecond?: number;
  /** v1 calls in flight at once. Default 64. */
  v1MaxInFlight?: number;
  /** v2 stream events per second from this process. Default Stripe's 10,000/s. */
  v2EventsPerSecond?: number;
  /** v2 stream requests in flight at once. Default 16. */
  v2MaxInFlight?: number;
  /** Renew the v2 session this long before it expires. Default 60 s. */
  sessionRenewBeforeMs?: number;
  /** After a 429 every call from this process waits about this long (jittered). Default 1 s. */
  rateLimitPauseMs?: number;
  /** Events per claim the reporter should hold. Default 250 (v1) / 1,000 (v2). */
  batchSize?: number;
  /** Meter payload keys (Stripe's defaults). */
  customerPayloadKey?: string;
  valuePayloadKey?: string;
  /** Clock for session expiry (tests move it with the simulator's). Default Date.now. */
  now?: () => number;
}

/** Stripe has no error code for this; integrations (and the simulator) match the message. */
const DUPLICATE_IDENTIFIER = /An event already exists with identifier/i;
const STREAM_BATCH = 100;

const tracer = trace.getTracer('meterdesk.stripe');

type StreamParams = Parameters<Stripe['v2']['billing']['meterEventStream']['create']>[0];
type Classified = Pick<ReportOutcome, 'outcome' | 'httpStatus' | 'code' | 'message' | 'response'>;

export class StripeProcessor implements MeterEventReporter {
  readonly processor = 'stripe' as const;
  readonly api: 'v1' | 'v2';
  readonly preferredBatchSize: number;

  private readonly client: Stripe;
  private readonly clientConfig: Stripe.StripeConfig;
  private readonly agent: http.Agent;
  private readonly limiter: RateLimiter;
  private readonly inFlight: Semaphore;
  private readonly perCustomerMeter = new KeyedSerializer();
  private readonly renewBeforeMs: number;
  private readonly pauseMs: number;
  private readonly customerKey: string;
  private readonly valueKey: string;
  private session: Promise<{ client: Stripe; expiresAt: number }> | null = null;
  private sessionsCreated = 0;
  private readonly now: () => number;

  constructor(config: StripeProcessorConfig) {
    this.api = config.api;
    const target = parseApiBase(config.apiBase);
    const maxInFlight = config.api === 'v1' ? (config.v1MaxInFlight ?? 64) : (config.v2MaxInFlight ?? 16);
    this.agent = target.protocol === 'http'
      ? new http.Agent({ keepAlive: true, maxSockets: maxInFlight + 4 })
      : new https.Agent({ keepAlive: true, maxSockets: maxInFlight + 4 });
    this.clientConfig = {
      ...target.config,
      httpAgent: this.agent,
      timeout: config.timeoutMs ?? 10_000,
      // Retries belong to the reporter (same identifier, backoff, recorded attempts). The SDK still retries a
      // dropped connection once, with the same idempotency key.
      maxNetworkRetries: 0,
      telemetry: false,
    };
    this.client = new Stripe(config.secretKey, this.clientConfig);
    this.limiter = config.api === 'v1'
      ? new RateLimiter(config.v1RatePerSecond ?? 980, 20)
      : new RateLimiter(config.v2EventsPerSecond ?? 10_000, 500);
    this.inFlight = new Semaphore(maxInFlight);
    this.renewBeforeMs = config.sessionRenewBeforeMs ?? 60_000;
    this.pauseMs = config.rateLimitPauseMs ?? 1000;
    this.preferredBatchSize = config.batchSize ?? (config.api === 'v1' ? 250 : 1000);
    this.customerKey = config.customerPayloadKey ?? 'stripe_customer_id';
    this.valueKey = config.valuePayloadKey ?? 'value';
    this.now = config.now ?? Date.now;
  }

  /** How many v2 sessions this processor has opened (tests check renewal). */
  get sessionCount(): number {
    return this.sessionsCreated;
  }

  async reportMeterEvents(events: readonly MeterEventToReport[], options: ReportOptions = {}): Promise<ReportOutcome[]> {
    if (events.length === 0) return [];
    return tracer.startActiveSpan('StripeProcessor.reportMeterEvents', { attributes: { 'stripe.api': this.api, 'meterdesk.batch_size': events.length } }, async (span) => {
      try {
        const outcomes = this.api === 'v1' ? await this.reportV1(events, options) : await this.reportV2(events, options);
        const counts: Record<string, number> = {};
        for (const o of outcomes) counts[o.outcome] = (counts[o.outcome] ?? 0) + 1;
        for (const [k, n] of Object.entries(counts)) span.setAttribute(`meterdesk.outcome.${k}`, n);
        return outcomes;
      } finally {
        span.end();
      }
    });
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }

  // ─────────────────────────────── v1: one call per event ───────────────────────────────

  private async reportV1(events: readonly MeterEventToReport[], options: ReportOptions): Promise<ReportOutcome[]> {
    const outcomes: ReportOutcome[] = new Array(events.length);
    let stop = false; // set by the first 429 of this call: the rest waits for the reporter's backoff
    await Promise.all(
      events.map((event, index) =>
        this.perCustomerMeter.run(`${event.processorCustomerId}\u0000${event.eventName}`, () =>
          this.inFlight.run(async () => {
            if (!stop) await this.limiter.take(1);
            if (stop || (options.deadline !== undefined && Date.now() > options.deadline)) {
              outcomes[index] = notAttempted(event);
              return;
            }
            const outcome = await this.sendV1(event);
            if (outcome.outcome === 'rate_limited' && !stop) {
              stop = true;
              this.limiter.pause(backoffDelay(1, this.pauseMs * 2, this.pauseMs * 2));
            }
            outcomes[index] = outcome;
          }),
        ),
      ),
    );
    return outcomes;
  }

  private async sendV1(event: MeterEventToReport): Promise<ReportOutcome> {
    const startedAt = new Date();
    const t0 = performance.now();
    const span = tracer.startSpan('stripe.billing.meterEvents.create', { attributes: { 'stripe.api': 'v1' } });
    let classified: Classified;
    try {
      const created = await withoutCallSiteStack(() =>
        this.client.billing.meterEvents.create(
          {
            event_name: event.eventName,
            identifier: event.identifier,
            timestamp: Math.floor(event.occurredAt.getTime() / 1000),
            payload: { [this.customerKey]: event.processorCustomerId, [this.valueKey]: String(event.value) },
          },
          { idempotencyKey: `${IDEMPOTENCY_KEY_PREFIX}${event.identifier}` },
        ),
      );
      const headers = created.lastResponse?.headers ?? {};
      classified = {
        outcome: 'reported',
        httpStatus: created.lastResponse?.statusCode ?? 200,
        code: null,
        message: null,
        response: {
          request_id: created.lastResponse?.requestId ?? null,
          ...(headers['idempotent-replayed'] === 'true' ? { idempotent_replayed: true } : {}),
          created: created.created,
          timestamp: created.timestamp,
        },
      };
    } catch (error) {
      classified = classify(error);
    }
    endSpan(span, classified);
    return { eventId: event.id, startedAt, durationMs: Math.round(performance.now() - t0), ...classified };
  }

  // ─────────────────────────────── v2: session + stream ───────────────────────────────

  private async reportV2(events: readonly MeterEventToReport[], options: ReportOptions): Promise<ReportOutcome[]> {
    const outcomes: ReportOutcome[] = new Array(events.length);
    const batches: number[][] = [];
    for (let i = 0; i < events.length; i += STREAM_BATCH) {
      batches.push(Array.from({ length: Math.min(STREAM_BATCH, events.length - i) }, (_, k) => i + k));
    }
    let stop = false;
    await Promise.all(
      batches.map((indexes) =>
        this.inFlight.run(async () => {
          if (!stop) await this.limiter.take(indexes.length);
          if (stop || (options.deadline !== undefined && Date.now() > options.deadline)) {
            for (const i of indexes) outcomes[i] = notAttempted(events[i]!);
            return;
          }
          const batch = indexes.map((i) => events[i]!);
          const result = await this.sendStream(batch);
          if (result.some((o) => o.outcome === 'rate_limited') && !stop) {
            stop = true;
            this.limiter.pause(backoffDelay(1, this.pauseMs * 2, this.pauseMs * 2));
          }
          indexes.forEach((eventIndex, k) => (outcomes[eventIndex] = result[k]!));
        }),
      ),
    );
    return outcomes;
  }

  private async sendStream(batch: MeterEventToReport[]): Promise<ReportOutcome[]> {
    const startedAt = new Date();
    const t0 = performance.now();
    const span = tracer.startSpan('stripe.v2.billing.meterEventStream.create', { attributes: { 'stripe.api': 'v2', 'meterdesk.batch_size': batch.length } });
    const params: StreamParams = {
      events: batch.map((e) => ({
        event_name: e.eventName,
        identifier: e.identifier,
        timestamp: e.occurredAt.toISOString(),
        payload: { [this.customerKey]: e.processorCustomerId, [this.valueKey]: String(e.value) },
      })),
    };
    let result: Classified | Classified[];
    try {
      let session = await this.currentSession();
      try {
        await withoutCallSiteStack(() => session.client.v2.billing.meterEventStream.create(params));
      } catch (error) {
        // The session can end early (or our clock can be off): renew once and resend the same batch.
        if (!isSessionExpired(error)) throw error;
        this.session = null;
        session = await this.currentSession();
        await withoutCallSiteStack(() => session.client.v2.billing.meterEventStream.create(params));
      }
      // 202, empty body: accepted for asynchronous validation (rejections arrive later as error-report webhooks).
      result = { outcome: 'reported', httpStatus: 202, code: null, message: null, response: null };
    } catch (error) {
      const classified = classify(error);
      const index = classified.outcome === 'rejected' ? offendingIndex(error) : undefined;
      if (index !== undefined && index < batch.length && batch.length > 1) {
        // A shape error names one event and refuses the whole request: only that event is rejected, the others
        // were never looked at and go back for a retry.
        result = batch.map((_, k) =>
          k === index
            ? classified
            : { outcome: 'transient' as const, httpStatus: classified.httpStatus, code: 'batch_refused', message: `refused with event ${index} of its stream request`, response: null },
        );
      } else {
        result = classified;
      }
    }
    endSpan(span, Array.isArray(result) ? result[0]! : result);
    const durationMs = Math.round(performance.now() - t0);
    return batch.map((e, k) => ({ eventId: e.id, startedAt, durationMs, ...(Array.isArray(result) ? result[k]! : result) }));
  }

  private currentSession(): Promise<{ client: Stripe; expiresAt: number }> {
    const existing = this.session;
    if (existing) {
      return existing.then((s) => {
        if (s.expiresAt - this.renewBeforeMs > this.now()) return s;
        if (this.session === existing) this.session = null;
        return this.currentSession();
      });
    }
    const created = this.client.v2.billing.meterEventSession.create().then((s) => {
      this.sessionsCreated++;
      return {
        client: new Stripe(s.authentication_token, this.clientConfig),
        expiresAt: Date.parse(s.expires_at),
      };
    });
    this.session = created;
    // A failed creation is not cached: the next call tries again.
    created.catch(() => {
      if (this.session === created) this.session = null;
    });
    return created;
  }
}

/**
 * stripe-node captures `new Error().stack` on every request to decorate later errors with the caller's call site.
 * With source maps on (tsx), formatting that stack was about a tenth of the worker's CPU at 1,000 calls/s, and we
 * never read it: the request is issued synchronously, so a zero stack limit for that instant makes it free.
 */
function withoutCallSiteStack<T>(call: () => Promise<T>): Promise<T> {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return call();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function notAttempted(event: MeterEventToReport): ReportOutcome {
  return { eventId: event.id, outcome: 'not_attempted', startedAt: new Date(), durationMs: 0, httpStatus: null, code: null, message: null, response: null };
}

function endSpan(span: Span, c: Classified) {
  span.setAttribute('meterdesk.outcome', c.outcome);
  if (c.httpStatus !== null) span.setAttribute('http.response.status_code', c.httpStatus);
  if (c.outcome !== 'reported' && c.outcome !== 'duplicate') span.setStatus({ code: SpanStatusCode.ERROR, message: c.code ?? c.outcome });
  span.end();
}

/** The SDK's TemporarySessionExpiredError (v2 type temporary_session_expired), or its code, whatever the status. */
function isSessionExpired(error: unknown): boolean {
  if (error instanceof Stripe.errors.TemporarySessionExpiredError) return true;
  return error instanceof Stripe.errors.StripeError && (error.code === 'billing_meter_event_session_expired' || error.rawType === 'temporary_session_expired');
}

function offendingIndex(error: unknown): number | undefined {
  if (!(error instanceof Stripe.errors.StripeError) || !error.param) return undefined;
  const m = /^events\[(\d+)\]/.exec(error.param);
  return m ? Number(m[1]) : undefined;
}

/** Maps an SDK error to an outcome. Exported for tests of the mapping itself. */
export function classify(error: unknown): Classified {
  if (!(error instanceof Stripe.errors.StripeError)) {
    // Not from the SDK's HTTP layer (a bug, an aborted socket in an unexpected place): it may have been sent.
    return { outcome: 'ambiguous', httpStatus: null, code: 'unexpected_error', message: error instanceof Error ? error.message : String(error), response: null };
  }
  if (error instanceof Stripe.errors.StripeConnectionError) {
    const detail = error.detail as { code?: string } | undefined;
    const timedOut = /timeout/i.test(error.message) || detail?.code === 'ETIMEDOUT';
    // Refused connections never reached Stripe; anything else may have been applied.
    const refused = detail?.code === 'ECONNREFUSED';
    return {
      outcome: refused ? 'transient' : 'ambiguous',
      httpStatus: null,
      code: timedOut ? 'timeout' : refused ? 'connection_refused' : 'connection_error',
      message: error.message,
      response: null,
    };
  }
  const status = error.statusCode ?? null;
  const response = {
    status,
    request_id: error.requestId ?? null,
    error: { type: error.rawType ?? error.type, code: error.code ?? null, message: error.message, param: error.param ?? null },
  };
  const base = { httpStatus: status, message: error.message, response };
  let outcome: ReportOutcomeKind;
  if (status === 429) outcome = 'rate_limited';
  else if (status === null || status >= 500) outcome = 'transient';
  // 409: the same Idempotency-Key is in flight elsewhere (another worker); 401/403: our key or config, not the event.
  else if (status === 409 || status === 401 || status === 403) outcome = 'transient';
  else if (DUPLICATE_IDENTIFIER.test(error.message)) outcome = 'duplicate';
  // A 404 without a code is an unknown route (a wrong base URL), not a verdict on the event.
  else if (status === 404 && !error.code) outcome = 'transient';
  else outcome = 'rejected';
  const code = error.code ?? (outcome === 'duplicate' ? 'duplicate_identifier' : (error.rawType ?? error.type));
  return { outcome, code, ...base };
}

type ClientTarget = Pick<Stripe.StripeConfig, 'host' | 'port' | 'protocol' | 'apiVersion'>;

function parseApiBase(apiBase: string | undefined): { protocol: 'http' | 'https'; config: ClientTarget } {
  if (!apiBase) return { protocol: 'https', config: { apiVersion: STRIPE_API_VERSION } };
  const url = new URL(apiBase);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`Stripe API base must be http(s): ${apiBase}`);
  if (url.pathname !== '/' && url.pathname !== '') throw new Error(`Stripe API base cannot have a path: ${apiBase}`);
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  return { protocol, config: { host: url.hostname, port: Number(url.port || (protocol === 'http' ? 80 : 443)), protocol, apiVersion: STRIPE_API_VERSION } };
}

/**
 * `host`/`port`/`protocol` for `new Stripe(key, {...})` from a base URL (none for Stripe itself), and the pinned
 * `apiVersion` (./api-version.ts): every Stripe client Meterdesk builds is configured through here.
 */
export function stripeClientConfig(apiBase: string | undefined): ClientTarget {
  return parseApiBase(apiBase).config;
}
