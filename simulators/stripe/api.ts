// The Stripe endpoints the simulator serves: Billing Meters (v1 meter events, v2 meter events and the meter event
// session + stream, adjustments, meters, event summaries), customers, and the events it sent (v1 snapshot events,
// v2 thin events, which receivers fetch because notifications carry no data). The HTTP exchange, authentication,
// idempotency, rate limits and faults are the server's (./server.ts); a handler only decides the answer.
import { RouteTable, isObject, str } from '../kit/server';
import type { FaultSubjects } from './faults';
import { MeterEventBook, stringPayload, type MeterEventRecord, type MeterOptions } from './meter-events';
import { adjustmentJson, customerJson, meterEventJson, meterJson, sessionJson, summaryJson } from './objects';
import type { SimulatedEvent } from './webhooks';
import { invalidRequest, missingParam, randomId, resourceMissing, type ApiMode, type WireResponse } from './wire';

const SESSION_TTL_MS = 15 * 60_000;

export interface RequestContext {
  method: string;
  path: string;
  pathId: string | undefined;
  query: string;
  params: Record<string, unknown>;
  livemode: boolean;
}

export interface Outcome {
  response: WireResponse;
  /** Meter events this call accepted (for reject_after_accept). */
  accepted?: MeterEventRecord[];
}

export interface Route {
  method: string;
  api: ApiMode;
  /** 'session' = a v2 meter event session token (the stream); 'secret' = sk_/rk_ keys. */
  auth: 'secret' | 'session';
  bucket: 'v1' | 'v2stream';
  subjects?: (params: Record<string, unknown>) => FaultSubjects | undefined;
  /** Stripe's v1 limit: one call in flight per (customer, meter). */
  lockKey?: (params: Record<string, unknown>) => string | undefined;
  handle: (ctx: RequestContext) => Outcome;
}

export interface ApiCounters {
  v1MeterEventsAccepted: number;
  v2EventsAccepted: number;
  v2EventsRejected: number;
}

export class StripeApi {
  readonly routes = new RouteTable<Route>();
  /** Meter event session tokens -> session. */
  readonly sessions = new Map<string, { id: string; expiresAt: number }>();
  counters: ApiCounters = { v1MeterEventsAccepted: 0, v2EventsAccepted: 0, v2EventsRejected: 0 };

  constructor(
    private readonly book: MeterEventBook,
    /** Every event the simulator sent, by id (thin events are fetched from here). */
    private readonly events: ReadonlyMap<string, SimulatedEvent>,
    private readonly now: () => number,
  ) {
    this.register();
  }

  reset(): void {
    this.sessions.clear();
    this.counters = { v1MeterEventsAccepted: 0, v2EventsAccepted: 0, v2EventsRejected: 0 };
  }

  private register(): void {
    const book = this.book;
    const meterEventSubjects = (p: Record<string, unknown>): FaultSubjects => {
      const eventName = str(p.event_name) ?? '';
      const customer = book.customerOf(eventName, isObject(p.payload) ? p.payload : {});
      const identifier = str(p.identifier);
      return { identifiers: identifier ? [identifier] : [], customers: customer ? [customer] : [], eventNames: [eventName] };
    };
    const meterEventLock = (p: Record<string, unknown>): string | undefined => {
      const eventName = str(p.event_name);
      const customer = book.customerOf(eventName, isObject(p.payload) ? p.payload : {});
      return eventName && customer ? `${customer}\u0000${eventName}` : undefined;
    };
    const add = (method: string, path: string | RegExp, route: Omit<Route, 'method'>) => this.routes.add(method, path, { ...route, method });
    const v1 = { api: 'v1' as const, auth: 'secret' as const, bucket: 'v1' as const };
    const v2 = { api: 'v2' as const, auth: 'secret' as const, bucket: 'v1' as const };

    add('POST', '/v1/billing/meter_events', { ...v1, subjects: meterEventSubjects, lockKey: meterEventLock, handle: (ctx) => this.createMeterEvent('v1', ctx) });
    add('POST', '/v2/billing/meter_events', { ...v2, subjects: meterEventSubjects, lockKey: meterEventLock, handle: (ctx) => this.createMeterEvent('v2', ctx) });
    add('POST', '/v1/billing/meter_event_adjustments', { ...v1, handle: (ctx) => this.createAdjustment('v1', ctx) });
    add('POST', '/v2/billing/meter_event_adjustments', { ...v2, handle: (ctx) => this.createAdjustment('v2', ctx) });
    add('POST', '/v2/billing/meter_event_session', { ...v2, handle: (ctx) => this.createSession(ctx) });
    add('POST', '/v2/billing/meter_event_stream', {
      api: 'v2',
      auth: 'session',
      bucket: 'v2stream',
      subjects: (p) => {
        const subjects = { identifiers: [] as string[], customers: [] as string[], eventNames: [] as string[] };
        for (const e of Array.isArray(p.events) ? p.events : []) {
          if (!isObject(e)) continue;
          const id = str(e.identifier);
          if (id) subjects.identifiers.push(id);
          const name = str(e.event_name);
          if (name) subjects.eventNames.push(name);
          const c = book.customerOf(name, isObject(e.payload) ? e.payload : {});
          if (c) subjects.customers.push(c);
        }
        return subjects;
      },
      handle: (ctx) => this.streamEvents(ctx),
    });
    add('POST', '/v1/billing/meters', { ...v1, handle: (ctx) => this.createMeter(ctx) });
    add('GET', '/v1/billing/meters', {
      ...v1,
      handle: (ctx) => ok({ object: 'list', data: [...book.metersById.values()].map((m) => meterJson(m, ctx.livemode)), has_more: false, url: '/v1/billing/meters' }),
    });
    add('GET', /^\/v1\/billing\/meters\/([^/]+)$/, {
      ...v1,
      handle: (ctx) => {
        const meter = book.metersById.get(ctx.pathId ?? '');
        return meter ? ok(meterJson(meter, ctx.livemode)) : { response: resourceMissing('v1', 'billing.meter', ctx.pathId ?? '') };
      },
    });
    add('POST', /^\/v1\/billing\/meters\/([^/]+)\/deactivate$/, { ...v1, handle: (ctx) => this.setMeterStatus(ctx, 'inactive') });
    add('POST', /^\/v1\/billing\/meters\/([^/]+)\/reactivate$/, { ...v1, handle: (ctx) => this.setMeterStatus(ctx, 'active') });
    add('GET', /^\/v1\/billing\/meters\/([^/]+)\/event_summaries$/, { ...v1, handle: (ctx) => this.eventSummaries(ctx) });
    add('POST', '/v1/customers', { ...v1, handle: (ctx) => this.createCustomer(ctx) });
    // Customer search (/v1/customers/search) is not simulated: it is not a customer id.
    add('GET', /^\/v1\/customers\/(?!search$)([^/]+)$/, {
      ...v1,
      handle: (ctx) => {
        const c = book.customers.get(ctx.pathId ?? '');
        return c ? ok(customerJson(c, ctx.livemode)) : { response: resourceMissing('v1', 'customer', ctx.pathId ?? '') };
      },
    });
    add('GET', '/v2/core/events', {
      ...v2,
      handle: (ctx) => {
        const objectId = new URLSearchParams(ctx.query).get('object_id');
        const data = [...this.events.values()].filter((e) => e.object === 'v2.core.event' && (!objectId || e.related_object?.id === objectId));
        return ok({ data: data.reverse(), next_page_url: null, previous_page_url: null });
      },
    });
    add('GET', /^\/v2\/core\/events\/([^/]+)$/, {
      ...v2,
      handle: (ctx) => {
        const e = this.events.get(ctx.pathId ?? '');
        return e && e.object === 'v2.core.event' ? ok(e) : { response: resourceMissing('v2', 'event', ctx.pathId ?? '') };
      },
    });
    add('GET', /^\/v1\/events\/([^/]+)$/, {
      ...v1,
      handle: (ctx) => {
        const e = this.events.get(ctx.pathId ?? '');
        return e && e.object === 'event' ? ok(e) : { response: resourceMissing('v1', 'event', ctx.pathId ?? '') };
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
      const shown = `${identifier.slice(0, 20)}${identifier.length > 20 ? '...' : ''}`;
      return { response: invalidRequest(api, `Invalid string: ${shown}; must be at most 100 characters`, { param: 'identifier' }) };
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
    const verdict = this.book.validate(eventName, payload, identifier, tsSec);
    if (!verdict.ok) {
      if (verdict.duplicate) this.book.duplicateIdentifiers += 1;
      return { response: verdict.sync(api) };
    }
    const record = this.book.accept(api, identifier, eventName, payload, tsSec, verdict);
    this.counters.v1MeterEventsAccepted += 1;
    return {
      response: { status: 200, body: meterEventJson(api, { eventName, identifier, payload, timestampSec: tsSec, createdMs: this.now() }, ctx.livemode) },
      accepted: [record],
    };
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
      const fieldError = (message: string, param: string) => ({ response: invalidRequest('v2', message, { code: 'invalid_fields', param }) });
      if (!isObject(e) || !str(e.event_name) || !isObject(e.payload)) return fieldError(`events[${i}]: event_name and payload are required.`, `events[${i}]`);
      const id = e.identifier === undefined ? undefined : (str(e.identifier) ?? '');
      if (id !== undefined && (id.length === 0 || id.length > 100)) return fieldError(`events[${i}].identifier: must be 1 to 100 characters.`, `events[${i}].identifier`);
      if (e.timestamp !== undefined && !Number.isFinite(Date.parse(str(e.timestamp) ?? ''))) return fieldError(`events[${i}].timestamp: invalid timestamp.`, `events[${i}].timestamp`);
    }
    const accepted: MeterEventRecord[] = [];
    const nowSec = Math.floor(this.now() / 1000);
    for (const e of events as Array<Record<string, unknown>>) {
      const eventName = str(e.event_name)!;
      const payload = stringPayload(e.payload as Record<string, unknown>);
      const identifier = str(e.identifier) ?? randomId('', 32);
      const tsSec = e.timestamp === undefined ? nowSec : Math.floor(Date.parse(str(e.timestamp)!) / 1000);
      const verdict = this.book.validate(eventName, payload, identifier, tsSec);
      if (verdict.ok) {
        accepted.push(this.book.accept('v2_stream', identifier, eventName, payload, tsSec, verdict));
        this.counters.v2EventsAccepted += 1;
      } else if (verdict.duplicate) {
        // Counted once already within 24 h: dropped without a report (Stripe documents no error for it).
        this.book.duplicateIdentifiers += 1;
      } else {
        this.book.rejectAsync(identifier, eventName, payload, tsSec, verdict);
        this.counters.v2EventsRejected += 1;
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
    return ok(adjustmentJson(api, this.book.cancel(api, eventName, identifier), ctx.livemode));
  }

  private createSession(ctx: RequestContext): Outcome {
    const createdMs = this.now();
    const session = { id: randomId('mes_test_', 24), token: randomId('mes_tok_test_', 40), createdMs, expiresAtMs: createdMs + SESSION_TTL_MS };
    this.sessions.set(session.token, { id: session.id, expiresAt: session.expiresAtMs });
    return ok(sessionJson(session, ctx.livemode));
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
    const existing = this.book.metersByEvent.get(eventName);
    if (existing && existing.status === 'active') {
      return { response: invalidRequest('v1', `An active meter with event_name ${eventName} already exists.`, { param: 'event_name' }) };
    }
    const opts: MeterOptions = { displayName, aggregation: formula };
    const customerKey = isObject(p.customer_mapping) ? str(p.customer_mapping.event_payload_key) : undefined;
    if (customerKey) opts.customerPayloadKey = customerKey;
    const valueKey = isObject(p.value_settings) ? str(p.value_settings.event_payload_key) : undefined;
    if (valueKey) opts.valuePayloadKey = valueKey;
    return ok(meterJson(this.book.addMeter(eventName, opts), ctx.livemode));
  }

  private setMeterStatus(ctx: RequestContext, status: 'active' | 'inactive'): Outcome {
    const meter = this.book.metersById.get(ctx.pathId ?? '');
    if (!meter) return { response: resourceMissing('v1', 'billing.meter', ctx.pathId ?? '') };
    this.book.setMeterStatus(meter, status);
    return ok(meterJson(meter, ctx.livemode));
  }

  private createCustomer(ctx: RequestContext): Outcome {
    const p = ctx.params;
    const c = this.book.addCustomer();
    c.email = str(p.email) ?? null;
    c.name = str(p.name) ?? null;
    if (isObject(p.metadata)) c.metadata = stringPayload(p.metadata);
    return ok(customerJson(c, ctx.livemode));
  }

  /**
   * `GET /v1/billing/meters/:id/event_summaries`: per `value_grouping_window` (day | hour) or over the whole range,
   * newest first, paginated by summary id. Unlike Stripe's, these summaries are consistent at once: tests of eventual
   * consistency hold the ledger side back instead.
   */
  private eventSummaries(ctx: RequestContext): Outcome {
    const meter = this.book.metersById.get(ctx.pathId ?? '');
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
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) return { response: invalidRequest('v1', 'Invalid limit: must be between 1 and 100', { param: 'limit' }) };
    if (!this.book.customers.has(customer)) return { response: invalidRequest('v1', `No such customer: '${customer}'`, { code: 'resource_missing', param: 'customer' }) };

    const summaries = this.book.summaries(meter, customer, start, end, step).map((w) => summaryJson(meter, customer, w, ctx.livemode));
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
    return ok({ object: 'list', data: page, has_more: hasMore, url: `/v1/billing/meters/${meter.id}/event_summaries` });
  }
}

function ok(body: unknown): Outcome {
  return { response: { status: 200, body } };
}
