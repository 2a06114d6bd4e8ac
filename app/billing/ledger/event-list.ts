// The desk's reads of the ledger: the events list (filters, keyset pagination on the UUIDv7 id, newest first),
// failures grouped by error code, one event with its attempt timeline, the customer lookup of the filters (the
// customer pages are customer-list.ts). Every query is
// bounded by an index and a LIMIT: no OFFSET, no COUNT(*) over the whole ledger.
import { trace } from '@opentelemetry/api';
import { z } from 'zod';
import type { Queryable } from '../db';
import { filledParams, filterText as text, keysetPage, placeholders, utcMinute } from '../filters';
import { receivedIdRange } from '../ids';
import { CAUSE_OF_MESSAGE_SQL, causeOf, causeSql, FAILURE_CAUSE_ORDER, type FailureCause } from './failure-causes';

export const EVENT_PAGE_SIZE = 50;
/** The failure summary counts at most this many of the newest failed events (it says so when it hits the cap). */
export const FAILURE_SUMMARY_CAP = 10_000;

export const EVENT_STATUSES = ['pending', 'reported', 'failed', 'recorded', 'matched', 'unmatched', 'unusable'] as const;
export const PROCESSORS = ['stripe', 'braintree'] as const;

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const TIME_BASES = ['received', 'occurred'] as const;
export type TimeBasis = (typeof TIME_BASES)[number];

export const EventFiltersSchema = z.object({
  status: z.enum(EVENT_STATUSES).optional().catch(undefined),
  /** The customer's external id (what support hears on the phone). */
  customer: text(200).optional().catch(undefined),
  eventName: text(100).optional().catch(undefined),
  processor: z.enum(PROCESSORS).optional().catch(undefined),
  errorCode: text(200).optional().catch(undefined),
  /** What the failure means (failure-causes.ts): several codes can share one, one code can carry two. */
  cause: z.enum(FAILURE_CAUSE_ORDER as [FailureCause, ...FailureCause[]]).optional().catch(undefined),
  from: utcMinute.optional().catch(undefined),
  to: utcMinute.optional().catch(undefined),
  /** What from/to bound: when Meterdesk received the event (default; a primary-key range) or its usage time. */
  time: z.enum(TIME_BASES).catch('received'),
  /** An event id or an identifier, matched exactly (both are unique-indexed: the id by meter_events, the identifier by meter_event_identifiers). */
  q: text(200).optional().catch(undefined),
  cursor: z.string().regex(UUID).optional().catch(undefined),
  direction: z.enum(['older', 'newer']).catch('older'),
});
export type EventFilters = z.infer<typeof EventFiltersSchema>;

/** The filter fields as they travel in a query string or a form (the page's links and the retry-all form). */
export const FILTER_KEYS = ['status', 'customer', 'eventName', 'processor', 'errorCode', 'cause', 'from', 'to', 'time', 'q'] as const;

export function parseEventFilters(params: URLSearchParams): EventFilters {
  return EventFiltersSchema.parse(filledParams(params, ['ids']));
}

/** The filters back as strings (datetime-local form for the time range), for inputs and links. */
export function filterValues(filters: EventFilters): Record<(typeof FILTER_KEYS)[number], string> {
  const local = (d: Date | undefined) => (d ? d.toISOString().slice(0, 16) : '');
  return {
    status: filters.status ?? '',
    customer: filters.customer ?? '',
    eventName: filters.eventName ?? '',
    processor: filters.processor ?? '',
    errorCode: filters.errorCode ?? '',
    cause: filters.cause ?? '',
    from: local(filters.from),
    to: local(filters.to),
    time: filters.time === 'received' ? '' : filters.time,
    q: filters.q ?? '',
  };
}

export interface EventRow {
  id: string;
  identifier: string;
  customerId: string;
  customerExternalId: string;
  eventName: string;
  value: string;
  occurredAt: string;
  receivedAt: string;
  processor: string;
  status: string;
  attempts: number;
  lastErrorCode: string | null;
  lastErrorMessage: string | null;
  attentionReason: string | null;
}

export interface EventPage {
  events: EventRow[];
  /** Cursor (an event id) for the next older page; null on the last one. */
  older: string | null;
  /** Cursor for the next newer page; null on the first one. */
  newer: string | null;
  /** The customer filter named no customer: the page is empty for that reason. */
  unknownCustomer: boolean;
}

export interface FailureGroup {
  code: string;
  count: number;
  sample: string | null;
  /** What the failure means and what fixes it; one per group (see CAUSE_OF_MESSAGE_SQL). */
  cause: FailureCause;
}

export interface FailureSummary {
  groups: FailureGroup[];
  /** Counted over the newest FAILURE_SUMMARY_CAP failed events only. */
  capped: boolean;
}

export interface EventAttemptRow {
  id: string;
  startedAt: string;
  durationMs: number | null;
  source: string;
  outcome: string;
  httpStatus: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  response: unknown;
  traceId: string | null;
}

export interface EventDetail extends EventRow {
  /** The identifier Stripe knows the event by when a retry gave it a new one (ADR 033); null: its own. */
  sentIdentifier: string | null;
  customerName: string | null;
  subscriptionId: string | null;
  processorSubscriptionId: string | null;
  meterId: string | null;
  properties: unknown;
  claimedAt: string | null;
  firstAttemptAt: string | null;
  reportedAt: string | null;
  lastErrorSource: string | null;
  traceId: string | null;
  windowId: string | null;
  invoiceLineId: string | null;
  late: boolean;
  attemptLog: EventAttemptRow[];
  /** Duplicates of this identifier that said something else (the event stays as first stored), newest first. */
  ignoredDuplicates: IgnoredDuplicate[];
}

export interface IgnoredDuplicate {
  receivedAt: string;
  /** What differed: value, event_name, customer. */
  differs: string[];
  value: string;
  eventName: string;
  customerExternalId: string;
}

export const EVENT_COLUMNS = `e.id, e.identifier, e.customer_id, c.external_id AS customer_external_id, e.event_name, e.value::text AS value,
  e.occurred_at, e.received_at, e.processor::text AS processor, e.status::text AS status, e.attempts,
  e.last_error_code, e.last_error_message, e.attention_reason`;

export interface EventDbRow {
  id: string;
  identifier: string;
  customer_id: string;
  customer_external_id: string;
  event_name: string;
  value: string;
  occurred_at: Date;
  received_at: Date;
  processor: string;
  status: string;
  attempts: number;
  last_error_code: string | null;
  last_error_message: string | null;
  attention_reason: string | null;
}

export function toEventRow(r: EventDbRow): EventRow {
  return {
    id: r.id,
    identifier: r.identifier,
    customerId: r.customer_id,
    customerExternalId: r.customer_external_id,
    eventName: r.event_name,
    value: r.value,
    occurredAt: r.occurred_at.toISOString(),
    receivedAt: r.received_at.toISOString(),
    processor: r.processor,
    status: r.status,
    attempts: r.attempts,
    lastErrorCode: r.last_error_code,
    lastErrorMessage: r.last_error_message,
    attentionReason: r.attention_reason,
  };
}

const tracer = trace.getTracer('meterdesk.desk');

export function span<T>(name: string, fn: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, async (s) => {
    try {
      return await fn();
    } finally {
      s.end();
    }
  });
}

/** Builds the WHERE clause shared by the list and the failure summary; `null` when the customer is unknown. */
async function whereFor(
  db: Queryable,
  filters: Omit<EventFilters, 'direction' | 'cursor'>,
  params: unknown[],
): Promise<string[] | null> {
  const param = placeholders(params);
  const where: string[] = [];
  if (filters.customer) {
    const customer = await customerCondition(db, filters.customer, 'e.customer_id', param);
    if (!customer) return null;
    where.push(customer);
  }
  if (filters.status) where.push(`e.status = ${param(filters.status)}::meter_event_status`);
  if (filters.eventName) where.push(`e.event_name = ${param(filters.eventName)}`);
  if (filters.processor) where.push(`e.processor = ${param(filters.processor)}::processor`);
  if (filters.errorCode) where.push(`e.last_error_code = ${param(filters.errorCode)}`);
  if (filters.cause) where.push(causeSql(filters.cause, 'e.'));
  if (filters.time === 'occurred') {
    if (filters.from) where.push(`e.occurred_at >= ${param(filters.from)}`);
    if (filters.to) where.push(`e.occurred_at < ${param(filters.to)}`);
  } else {
    // Received time is the keyset's own order, so any range is a bounded primary-key walk (ADR 012).
    const range = receivedIdRange(filters.from, filters.to);
    if (range.gte) where.push(`e.id >= ${param(range.gte)}::uuid`);
    if (range.lt) where.push(`e.id < ${param(range.lt)}::uuid`);
  }
  if (filters.q) {
    const p = param(filters.q);
    // By identifier through meter_event_identifiers (the ledger's one index of identifiers, ADR 032): an id, so
    // one partition is read.
    const byIdentifier = `e.id = (SELECT event_id FROM meter_event_identifiers WHERE identifier = ${p}::text)`;
    where.push(UUID.test(filters.q) ? `(e.id = ${p}::text::uuid OR ${byIdentifier})` : byIdentifier);
  }
  return where;
}

/** `column` is the customer a filter names (external or processor id); null when no customer has that id. */
export async function customerCondition(db: Queryable, key: string, column: string, param: (value: unknown) => string): Promise<string | null> {
  const customerId = await resolveCustomerId(db, key);
  return customerId ? `${column} = ${param(customerId)}::uuid` : null;
}

/** A customer by external id, else by processor customer id (support reads either off a ticket). */
export async function resolveCustomerId(db: Queryable, key: string): Promise<string | null> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id FROM customers WHERE external_id = $1
     UNION ALL
     SELECT id FROM customers WHERE processor = ANY(ARRAY['stripe','braintree']::processor[]) AND processor_customer_id = $1
     LIMIT 1`,
    [key],
  );
  return rows[0]?.id ?? null;
}

/** Usage-time ranges up to this wide are read through the occurred_at index and sorted; wider ones walk the keyset order. */
const NARROW_USAGE_RANGE_MS = 2 * 24 * 3_600_000;

export const EventListPresenter = {
  call(db: Queryable, filters: EventFilters): Promise<EventPage> {
    return span('EventListPresenter.call', () => listEvents(db, filters));
  },
};

async function listEvents(db: Queryable, filters: EventFilters): Promise<EventPage> {
  const params: unknown[] = [];
  const where = await whereFor(db, filters, params);
  if (!where) return { events: [], older: null, newer: null, unknownCustomer: true };
  const cursor = filters.cursor ?? null;
  const newer = cursor !== null && filters.direction === 'newer';
  if (cursor) {
    params.push(cursor);
    where.push(`e.id ${newer ? '>' : '<'} $${params.length}::uuid`);
  }
  // A narrow usage-time range: the planner would walk the primary key from the newest row and filter, reading every
  // row received after the range (ADR 012). Behind the OFFSET 0 fence it cannot push the LIMIT down, so it picks
  // the occurred_at index range (ADR 034) and sorts the range's rows, a cost proportional to the range, not the ledger.
  const narrowUsageRange =
    filters.time === 'occurred' && filters.from && filters.to && filters.to.getTime() - filters.from.getTime() <= NARROW_USAGE_RANGE_MS;
  const source = narrowUsageRange
    ? `(SELECT * FROM meter_events e ${where.length ? `WHERE ${where.join(' AND ')}` : ''} OFFSET 0) e`
    : 'meter_events e';
  const { rows } = await db.query<EventDbRow>(
    `SELECT ${EVENT_COLUMNS}
       FROM ${source} JOIN customers c ON c.id = e.customer_id
      ${where.length && !narrowUsageRange ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY e.id ${newer ? 'ASC' : 'DESC'} LIMIT ${EVENT_PAGE_SIZE + 1}`,
    params,
  );
  const { items, older, newer: newerCursor } = keysetPage(rows, {
    size: EVENT_PAGE_SIZE,
    newer,
    fromCursor: cursor !== null,
    toItem: toEventRow,
    cursorOf: (e) => e.id,
  });
  return {
    events: items,
    older,
    newer: newerCursor,
    unknownCustomer: false,
  };
}

export const FailureSummaryPresenter = {
  /** Failed events matching the filters (status aside), grouped by error code, over the newest FAILURE_SUMMARY_CAP. */
  call(db: Queryable, filters: EventFilters): Promise<FailureSummary> {
    return span('FailureSummaryPresenter.call', async () => {
      const params: unknown[] = [];
      const where = await whereFor(db, { ...filters, status: 'failed', errorCode: undefined }, params);
      if (!where) return { groups: [], capped: false };
      // The inner LIMIT walks the (status, id) index newest first, so the cost is bounded whatever the ledger size.
      const { rows } = await db.query<{ code: string; part: string; count: number; sample: string | null; total: number }>(
        `WITH recent AS (
           SELECT e.last_error_code, e.last_error_message FROM meter_events e
            WHERE ${where.join(' AND ')} ORDER BY e.id DESC LIMIT ${FAILURE_SUMMARY_CAP + 1}
         )
         -- One code can carry two causes (Stripe's resource_missing: no meter, or no such customer): grouped apart
         -- by the message, as causeOf tells them, so each row's sample names its own cause.
         SELECT coalesce(last_error_code, 'unknown') AS code, ${CAUSE_OF_MESSAGE_SQL} AS part, count(*)::int AS count,
                min(last_error_message) AS sample, sum(count(*)) OVER ()::int AS total
           FROM recent GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 50`,
        params,
      );
      return {
        groups: rows.map((r) => ({ code: r.code, count: r.count, sample: r.sample, cause: causeOf(r.code, r.sample) })),
        capped: (rows[0]?.total ?? 0) > FAILURE_SUMMARY_CAP,
      };
    });
  },
};

export const EventDetailPresenter = {
  call(db: Queryable, id: string): Promise<EventDetail | null> {
    return span('EventDetailPresenter.call', () => eventDetail(db, id));
  },
};

async function eventDetail(db: Queryable, id: string): Promise<EventDetail | null> {
  if (!UUID.test(id)) return null;
  const { rows } = await db.query<
    EventDbRow & {
      customer_name: string | null;
      subscription_id: string | null;
      processor_subscription_id: string | null;
      meter_id: string | null;
      properties: unknown;
      claimed_at: Date | null;
      first_attempt_at: Date | null;
      reported_at: Date | null;
      last_error_source: string | null;
      trace_id: string | null;
      window_id: string | null;
      invoice_line_id: string | null;
      late: boolean;
      sent_identifier: string | null;
    }
  >(
    `SELECT ${EVENT_COLUMNS}, c.name AS customer_name, e.subscription_id, s.processor_subscription_id, e.meter_id,
            e.properties, e.claimed_at, e.first_attempt_at, e.reported_at, e.last_error_source::text AS last_error_source,
            e.trace_id, e.window_id, e.invoice_line_id, e.late, e.sent_identifier
       FROM meter_events e JOIN customers c ON c.id = e.customer_id
       LEFT JOIN subscriptions s ON s.id = e.subscription_id
      WHERE e.id = $1::uuid`,
    [id],
  );
  const r = rows[0];
  if (!r) return null;
  const attempts = await db.query<{
    id: string;
    started_at: Date;
    duration_ms: number | null;
    source: string;
    outcome: string;
    http_status: number | null;
    error_code: string | null;
    error_message: string | null;
    response: unknown;
    trace_id: string | null;
  }>(
    `SELECT id, started_at, duration_ms, source::text AS source, outcome::text AS outcome, http_status, error_code,
            error_message, response, trace_id
       FROM event_attempts WHERE meter_event_id = $1::uuid ORDER BY started_at, id LIMIT 200`,
    [id],
  );
  const conflicts = await db.query<{ received_at: Date; differs: string; value: string; event_name: string; customer_external_id: string }>(
    `SELECT x.received_at, x.differs, x.value::text AS value, x.event_name, c.external_id AS customer_external_id
       FROM meter_event_conflicts x JOIN customers c ON c.id = x.customer_id
      WHERE x.event_id = $1::uuid ORDER BY x.received_at DESC, x.id LIMIT 50`,
    [id],
  );
  const iso = (d: Date | null) => (d ? d.toISOString() : null);
  return {
    ...toEventRow(r),
    sentIdentifier: r.sent_identifier,
    customerName: r.customer_name,
    subscriptionId: r.subscription_id,
    processorSubscriptionId: r.processor_subscription_id,
    meterId: r.meter_id,
    properties: r.properties,
    claimedAt: iso(r.claimed_at),
    firstAttemptAt: iso(r.first_attempt_at),
    reportedAt: iso(r.reported_at),
    lastErrorSource: r.last_error_source,
    traceId: r.trace_id,
    windowId: r.window_id,
    invoiceLineId: r.invoice_line_id,
    late: r.late,
    attemptLog: attempts.rows.map((a) => ({
      id: a.id,
      startedAt: a.started_at.toISOString(),
      durationMs: a.duration_ms,
      source: a.source,
      outcome: a.outcome,
      httpStatus: a.http_status,
      errorCode: a.error_code,
      errorMessage: a.error_message,
      response: a.response,
      traceId: a.trace_id,
    })),
    ignoredDuplicates: conflicts.rows.map((x) => ({
      receivedAt: x.received_at.toISOString(),
      differs: x.differs.split(','),
      value: x.value,
      eventName: x.event_name,
      customerExternalId: x.customer_external_id,
    })),
  };
}

/** The customers of the given event ids (how many customers a selection spans decides the permission it needs). */
export async function customersOfEvents(db: Queryable, ids: readonly string[]): Promise<string[]> {
  const valid = ids.filter((id) => UUID.test(id));
  if (valid.length === 0) return [];
  const { rows } = await db.query<{ customer_id: string }>(
    'SELECT DISTINCT customer_id FROM meter_events WHERE id = ANY($1::uuid[])',
    [valid],
  );
  return rows.map((r) => r.customer_id);
}
