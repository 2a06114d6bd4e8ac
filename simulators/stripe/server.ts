// The Stripe simulator's HTTP exchange: authentication (secret keys, meter event session tokens), the token buckets
// and Stripe's one-call-per-(customer, meter) limit, idempotency keys, scripted faults, the Stripe-Version header,
// error reports queued and sent as thin events, webhook delivery with retries, and the /__simulator/* control API.
// What each endpoint answers is ./api.ts; what the simulator knows about meters and meter events is ./meter-events.ts.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LoopbackServer, TokenBucket, isObject, serveControl, sleep, splitUrl } from '../kit/server';
import { stripeControlRoutes } from './control';
import { StripeApi, type Outcome } from './api';
import { emptyStats } from './stats';
import { ruleMatches, ruleNamesEvent, seededRandom, validateFaultRule, type FaultRule } from './faults';
import { MeterEventBook, type MeterEventAdjustmentRecord, type MeterOptions, type PendingError, type RecordedMeterEvent } from './meter-events';
import type { ConfigureOptions, SendWebhookOptions, SendWebhookResult, StripeSimulator, StripeSimulatorOptions, StripeSimulatorStats } from './types';
import {
  SIMULATOR_API_VERSION,
  meterErrorReports,
  postSignedEvent,
  snapshotEvent,
  thinEvent,
  webhookEvent,
  type RelatedObject,
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
  nextRequestId,
  notFoundRoute,
  parseForm,
  randomId,
  rateLimited,
  serverError,
  v2Error,
  type WireResponse,
} from './wire';
import { WithFaultBook } from '../kit/faults';

const DAY_MS = 86_400_000;
const CONCURRENCY_MESSAGE =
  'Too many concurrent requests for this customer and meter: meter events are processed one call at a time per customer and meter. Learn more about rate limits here https://stripe.com/docs/rate-limits.';
/** Stripe-Version values are dated, with a release name: 2026-10-28.endive. */
const API_VERSION_RE = /^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$/;

interface IdempotencyEntry {
  path: string;
  body: string;
  createdAt: number;
  response: WireResponse | undefined; // undefined while in flight
}

export class Simulator extends WithFaultBook<FaultRule> implements StripeSimulator {
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
  private readonly webhookTimeoutMs: number;
  private readonly webhookRetries: number;
  private readonly webhookRetryBaseMs: number;
  private readonly random: () => number;
  private readonly v1Bucket: TokenBucket;
  private readonly v2Bucket: TokenBucket;

  private readonly book: MeterEventBook;
  private readonly api: StripeApi;
  private readonly idempotency = new Map<string, IdempotencyEntry>();
  private readonly locks = new Set<string>();
  private pendingErrors: PendingError[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly events = new Map<string, SimulatedEvent>();
  private deliveries: WebhookDelivery[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private statsData = emptyStats();
  private readonly statusCounts = new Map<number, number>();

  constructor(private readonly opts: StripeSimulatorOptions) {
    super(validateFaultRule);
    this.host = opts.host ?? '127.0.0.1';
    this.baseClock = opts.clock ?? Date.now;
    this.webhookUrl = opts.webhookUrl;
    this.secret = opts.webhookSecret ?? randomId('whsec_', 32);
    this.latencyMs = opts.latencyMs ?? 0;
    this.errorReportDelayMs = opts.errorReportDelayMs ?? 100;
    this.maxSamples = opts.maxSampleErrorsPerType ?? 100;
    this.webhookTimeoutMs = opts.webhookTimeoutMs ?? 10_000;
    this.webhookRetries = opts.webhookRetries ?? 0;
    this.webhookRetryBaseMs = opts.webhookRetryBaseMs ?? 250;
    this.random = opts.seed !== undefined ? seededRandom(opts.seed) : Math.random;
    this.v1Bucket = new TokenBucket(opts.v1RatePerSecond ?? 1000);
    this.v2Bucket = new TokenBucket(opts.v2EventsPerSecond ?? 10_000);
    this.book = new MeterEventBook(
      () => this.now(),
      (error) => this.queueError(error),
    );
    this.api = new StripeApi(this.book, this.events, () => this.now());
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

  addCustomer(id?: string): string {
    return this.book.addCustomer(id).id;
  }

  addMeter(eventName: string, opts: MeterOptions = {}): string {
    return this.book.addMeter(eventName, opts).id;
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
    this.book.reset(opts.all ?? false);
    this.api.reset();
    this.idempotency.clear();
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
  }

  meterEvents(): RecordedMeterEvent[] {
    return this.book.view();
  }

  countsByIdentifier(): Map<string, number> {
    return new Map(this.book.counts);
  }

  usageTotal(customer: string, eventName: string): number {
    return this.book.usageTotal(customer, eventName);
  }

  adjustments(): MeterEventAdjustmentRecord[] {
    return this.book.adjustments.map((a) => ({ ...a }));
  }

  stats(): StripeSimulatorStats {
    const byStatus: Record<string, number> = {};
    for (const [status, n] of this.statusCounts) byStatus[String(status)] = n;
    return {
      ...this.statsData,
      ...this.api.counters,
      duplicateIdentifiers: this.book.duplicateIdentifiers,
      rejectedAfterAccept: this.book.rejectedAfterAccept,
      cancelled: this.book.cancelled,
      byStatus,
      faultsApplied: { ...this.statsData.faultsApplied },
    };
  }

  webhookDeliveries(): WebhookDelivery[] {
    return this.deliveries.map((d) => ({ ...d }));
  }

  holdThinEvent(given: { id: string; type: string; data?: unknown; related_object?: RelatedObject }): SimulatedEvent {
    return this.keep(Object.assign(thinEvent(given.type, undefined, this.now(), given.related_object), given));
  }

  holdSnapshotEvent(given: { id: string; type: string; object: Record<string, unknown> }): SimulatedEvent {
    return this.keep({ ...snapshotEvent(given.type, given.object, this.now()), id: given.id });
  }

  private keep(event: SimulatedEvent): SimulatedEvent {
    this.events.set(event.id, event);
    return event;
  }

  sentEvents(): SimulatedEvent[] {
    return [...this.events.values()];
  }

  async sendWebhook(type: string, dataObject: Record<string, unknown>, opts: SendWebhookOptions = {}): Promise<SendWebhookResult> {
    const event = webhookEvent(type, dataObject, this.now(), opts);
    const delivery = await this.deliver(event);
    return { status: delivery.status, ok: delivery.ok, event_id: event.id, event };
  }

  async flushErrorReports(): Promise<number> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const batch = this.pendingErrors;
    this.pendingErrors = [];
    const reports = meterErrorReports(batch, this.maxSamples, this.now());
    for (const event of reports) {
      this.statsData.errorReportsSent += 1;
      await this.deliver(event);
    }
    return reports.length;
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
    for (const [token, s] of this.api.sessions) if (s.expiresAt < now) this.api.sessions.delete(token);
  }

  // ---------------------------------------------------------------- HTTP exchange

  private reply(res: ServerResponse, r: WireResponse, extraHeaders?: Record<string, string>, apiVersion = SIMULATOR_API_VERSION): void {
    this.statusCounts.set(r.status, (this.statusCounts.get(r.status) ?? 0) + 1);
    if (r.status === 429) this.statsData.rateLimited += 1;
    if (r.status >= 500) this.statsData.serverErrors += 1;
    if (res.destroyed || res.writableEnded) return;
    const body = JSON.stringify(r.body);
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'request-id': nextRequestId(),
      // Stripe answers in the version the request asked for (the account's default otherwise).
      'stripe-version': apiVersion,
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

  /** The session check for the v2 meter event stream, or the error to answer. */
  private sessionError(authHeader: string | undefined, key: string | undefined): WireResponse | undefined {
    const session = key ? this.api.sessions.get(key) : undefined;
    if (!session) {
      return key && isSecretKey(key)
        ? v2Error(401, { type: 'invalid_request_error', message: 'The meter event stream requires a meter event session authentication_token, not an API key.' })
        : authenticationError(authHeader);
    }
    if (session.expiresAt <= this.now()) {
      // 400, not 401: stripe-node's generated_examples_test.spec.js, test_temporary_session_expired_error.
      return v2Error(400, { type: 'temporary_session_expired', code: 'billing_meter_event_session_expired', message: 'The temporary session token has expired.' });
    }
    return undefined;
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, rawBody: string): Promise<void> {
    this.statsData.requests += 1;
    const method = req.method ?? 'GET';
    const { path, query } = splitUrl(req.url);
    const requested = req.headers['stripe-version'];
    const version = typeof requested === 'string' && API_VERSION_RE.test(requested) ? requested : SIMULATOR_API_VERSION;
    const reply = (r: WireResponse, headers?: Record<string, string>) => this.reply(res, r, headers, version);
    const found = this.api.routes.find(method, path);
    if (!found) return reply(notFoundRoute(method, path));
    const { route, pathId } = found;
    const api = route.api;

    const authHeader = req.headers.authorization;
    const key = extractKey(authHeader);
    if (route.auth === 'secret') {
      if (!isSecretKey(key)) return reply(authenticationError(authHeader));
    } else {
      const refused = this.sessionError(authHeader, key);
      if (refused) return reply(refused);
    }
    const livemode = key !== undefined && key.includes('_live_');

    let params: Record<string, unknown>;
    if (method === 'GET' || method === 'DELETE') params = parseForm(query);
    else if (api === 'v2') {
      try {
        const parsed: unknown = rawBody.length === 0 ? {} : JSON.parse(rawBody);
        if (!isObject(parsed)) throw new Error('body must be a JSON object');
        params = parsed;
      } catch {
        return reply(invalidRequest('v2', 'Invalid JSON body.', { code: 'invalid_fields' }));
      }
    } else params = parseForm(rawBody);

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
            return reply(rateLimited(api));
          case 'server_error':
            return reply(serverError(api, fault.status ?? 500));
          default:
            break;
        }
      }
    }

    // Built-in rate limits (429s are never saved against an idempotency key, as on Stripe).
    const cost = route.bucket === 'v2stream' && Array.isArray(params.events) ? Math.max(1, Math.min(params.events.length, 100)) : 1;
    if (!(route.bucket === 'v2stream' ? this.v2Bucket : this.v1Bucket).take(cost)) {
      this.statsData.bucketRejected += 1;
      return reply(rateLimited(api));
    }

    const idemHeader = req.headers['idempotency-key'];
    const idemKey = method === 'POST' && typeof idemHeader === 'string' && idemHeader.length > 0 ? idemHeader : undefined;
    if (idemKey) {
      const entry = this.idempotency.get(idemKey);
      if (entry && entry.createdAt + DAY_MS > this.now()) {
        if (!entry.response) return reply(idempotencyInFlight(api));
        if (entry.path !== path || entry.body !== rawBody) return reply(idempotencyMismatch(api, idemKey));
        this.statsData.idempotentReplays += 1;
        return this.replyAfterFault(req, res, fault, () => reply(entry.response!, { 'idempotent-replayed': 'true' }));
      }
    }

    // Stripe's v1 limit: one concurrent call per (customer, meter).
    const lock = route.lockKey?.(params);
    if (lock !== undefined) {
      if (this.locks.has(lock)) {
        this.statsData.concurrencyRejected += 1;
        return reply(rateLimited(api, CONCURRENCY_MESSAGE));
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
    if (fault?.kind === 'reject_after_accept' && outcome.accepted && outcome.accepted.length > 0) this.rejectLater(fault, outcome.accepted);
    return this.replyAfterFault(req, res, fault, () => reply(outcome.response));
  }

  /** reject_after_accept: the call was answered 2xx, then Stripe's asynchronous pipeline refuses the events it names. */
  private rejectLater(rule: FaultRule, accepted: NonNullable<Outcome['accepted']>): void {
    const targets = accepted.filter((r) => ruleNamesEvent(rule, { identifier: r.identifier, customer: r.customer, eventName: r.event_name }));
    const code = rule.errorCode ?? 'meter_event_customer_not_found';
    const message = rule.errorMessage ?? `Event rejected by the simulator (${code}).`;
    const apply = () => {
      for (const r of targets) this.book.rejectAccepted(r, code, message);
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

  /** The applied-then-lost faults: the work is done (and saved for idempotent replay) but the answer never arrives. */
  private replyAfterFault(req: IncomingMessage, res: ServerResponse, fault: FaultRule | undefined, send: () => void): void {
    if (fault?.kind === 'timeout_applied') return this.hold(res);
    if (fault?.kind === 'reset_applied') return this.resetSocket(req);
    send();
  }

  /** Where webhooks go now (the control API shows it). */
  get webhookTarget(): string | undefined {
    return this.webhookUrl;
  }

  private control(req: IncomingMessage, res: ServerResponse, rawBody: string): Promise<void> {
    return serveControl(req, res, rawBody, this, validateFaultRule, stripeControlRoutes(this));
  }
}
