// The metering ledger: every accepted event is committed here, with the job that will process it, before the
// caller hears "accepted". The hot path uses raw SQL on the pg pool (Prisma's client is ~10x slower for bulk writes).
import type pg from 'pg';
import { trace } from '@opentelemetry/api';
import { lazyInstrument } from '../instruments';
import { ValidationError, type FieldError } from '../errors';
import { derivedIdentifier, newEventId, uuidv7Time } from '../ids';
import { MAX_BATCH_SIZE, parseEvent, type EventInput, type ParsedEvent } from './event-input';
import { directJobInsertCtes, JOB_INSERTED_NOTIFY } from '../../db/graphile-jobs';

export type Processor = 'stripe' | 'braintree';

/** Subscription statuses that can still receive usage when the caller does not name one. */
const LIVE_SUBSCRIPTION = new Set(['trialing', 'active', 'past_due']);

export interface StoredEvent {
  id: string;
  identifier: string;
  status: string;
  processor: Processor;
  customerId: string;
  subscriptionId: string | null;
  eventName: string;
  meterId: string | null;
  value: number;
  occurredAt: Date;
  receivedAt: Date;
}

/** A duplicate identifier that arrived with other facts than the event stored under it. */
export type DuplicateDifference = 'value' | 'event_name' | 'customer';

export type IngestResult =
  | { result: 'accepted'; duplicate: false; event: StoredEvent }
  | {
      result: 'duplicate';
      duplicate: true;
      /** The event stored first, which stays as it is (Stripe too keeps the first of an identifier). */
      event: StoredEvent;
      /** What this duplicate said differently from the stored event; absent when it said the same. Kept as a conflict. */
      differs?: DuplicateDifference[];
    }
  | { result: 'rejected'; errors: FieldError[] };

export interface LedgerOptions {
  pool: pg.Pool;
  now?: () => Date;
  /** Oldest accepted usage time, per processor. Stripe refuses events older than 35 days. */
  maxAgeMs?: Partial<Record<Processor, number>>;
  /** Newest accepted usage time ahead of now (Stripe: 5 minutes). */
  maxFutureMs?: number;
}

export interface ReportUsageOptions {
  value?: number;
  identifier?: string;
  timestamp?: Date | number | string;
  subscription?: string;
  properties?: Record<string, unknown> | null;
}

const DAY = 24 * 60 * 60 * 1000;

const ingested = lazyInstrument((m) => m.createCounter('meterdesk.events.ingested', { description: 'Usage events by ingest result' }), 'meterdesk.ledger');
const batchSize = lazyInstrument((m) => m.createHistogram('meterdesk.ingest.batch_size', { description: 'Events per ledger commit' }), 'meterdesk.ledger');
const differingDuplicates = lazyInstrument(
  (m) => m.createCounter('meterdesk.events.differing_duplicates', { description: 'Duplicate identifiers sent with another value, event name or customer (the first is kept)' }),
  'meterdesk.ledger',
);

interface CustomerRow {
  id: string;
  external_id: string;
  processor: Processor;
  processor_customer_id: string;
}
interface SubscriptionRow {
  id: string;
  customer_id: string;
  processor_subscription_id: string;
  status: string;
}

/** What ingest needs about a customer, and the lookup_version it was read at. */
interface CustomerLookup {
  customer: CustomerRow;
  subscriptions: SubscriptionRow[];
  version: string;
}

/** Customers a ledger remembers at most before it starts over. */
const MAX_REMEMBERED_KEYS = 50_000;

/** An event about to be inserted: what is stored, with the columns the answer does not carry. */
interface Row extends StoredEvent {
  status: 'pending' | 'recorded';
  properties: string | null;
  traceId: string | null;
}

const RETURNING = `id, identifier, status::text AS status, processor::text AS processor, customer_id AS "customerId",
  subscription_id AS "subscriptionId", event_name AS "eventName", meter_id AS "meterId", value::float8 AS value,
  occurred_at AS "occurredAt", received_at AS "receivedAt"`;

// One statement, so one implicit transaction: the rows and the job that reports them commit together, and the
// caller's "accepted" is sent only after that commit. What was looked up about each customer (in this process,
// perhaps a while ago) is checked in the same statement: when any customer's lookup_version moved, nothing is
// written and the customers are listed as stale, to be looked up again (ADR 016). The meter is resolved here too. Per-row arrays only for what varies per row (the receipt
// time and trace id are the batch's); it returns only the identifiers it inserted, since the caller already holds
// the rows. The job names every Stripe row of the batch: a row that lost its identifier to an earlier event was not
// inserted, and the reporter skips ids it cannot find. Named, so each pooled connection plans it once.
// (Measured in docs/benchmarks.md: ~20 % faster than returning whole rows and aggregating the job's ids in SQL.)
// The identifier is claimed first in meter_event_identifiers, the one unique index over every partition of
// meter_events (ADR 032): only the rows whose claim succeeded are inserted, so a concurrent commit of the same
// identifier waits on that index and then inserts nothing, as ON CONFLICT on the table's own index did before.
//
// The job row is written straight into graphile-worker's job table, as add_jobs would write it (task row created
// when missing, defaults for queue, run_at, priority and key, a 'jobs:insert' notification so idle workers wake at
// once): add_job's general path (keys, queues, flags, locked-key handling) cost ~0.45 ms per commit, as much as
// inserting the commit's events, and nothing of it applies to a keyless report job (ADR 015). The job's SQL is
// app/db/graphile-jobs.ts's, which checks graphile-worker's schema against it (ADR 022); the reporting tests run
// these jobs through the real worker.
const INSERT_STATEMENT = 'meterdesk_ledger_insert';
const INSERT_SQL = `
WITH stale AS (
  SELECT v.id FROM unnest($6::uuid[], $15::bigint[]) AS v(id, version)
  JOIN customers c ON c.id = v.id
  WHERE c.lookup_version <> v.version
), claimed AS (
  INSERT INTO meter_event_identifiers (identifier, event_id)
  SELECT c.identifier, c.id FROM unnest($2::text[], $1::uuid[]) AS c(identifier, id)
   WHERE NOT EXISTS (SELECT 1 FROM stale)
  ON CONFLICT (identifier) DO NOTHING
  RETURNING event_id
), ins AS (
  INSERT INTO meter_events (id, identifier, customer_id, subscription_id, event_name, meter_id, value, occurred_at,
                            received_at, properties, processor, status, trace_id)
  SELECT t.id, t.identifier, t.customer_id, t.subscription_id, t.event_name, m.id, t.value, t.occurred_at, $9::timestamptz,
         t.properties, t.processor, t.status, $13::text
    FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::text[], $7::bigint[],
                $8::timestamptz[], $10::jsonb[], $11::processor[], $12::meter_event_status[])
      AS t(id, identifier, customer_id, subscription_id, event_name, value, occurred_at, properties,
           processor, status)
    JOIN claimed ON claimed.event_id = t.id
    LEFT JOIN meters m ON m.event_name = t.event_name
  RETURNING identifier, meter_id
), ${directJobInsertCtes('stripe__report_events', {
  payload: `json_build_object('eventIds', $14::uuid[])`,
  guard: 'cardinality($14::uuid[]) > 0 AND NOT EXISTS (SELECT 1 FROM stale)',
})}
SELECT ins.identifier, ins.meter_id AS "meterId", NULL::uuid AS stale
  FROM ins CROSS JOIN (SELECT count(${JOB_INSERTED_NOTIFY}) FROM job) AS enqueued
UNION ALL
SELECT NULL, NULL, stale.id FROM stale`;

const LOOKUP_STATEMENT = 'meterdesk_ledger_lookup';

export class Ledger {
  readonly pool: pg.Pool;
  private readonly now: () => Date;
  private readonly maxAgeMs: Record<Processor, number>;
  private readonly maxFutureMs: number;

  constructor(options: LedgerOptions) {
    this.pool = options.pool;
    this.now = options.now ?? (() => new Date());
    this.maxAgeMs = { stripe: 35 * DAY, braintree: 35 * DAY, ...options.maxAgeMs };
    this.maxFutureMs = options.maxFutureMs ?? 5 * 60 * 1000;
  }

  /** Records one usage event. Throws ValidationError (nothing stored) when any ingest rule is broken. */
  async reportUsage(customer: string, eventName: string, options: ReportUsageOptions = {}): Promise<{ event: StoredEvent; duplicate: boolean }> {
    const [result] = await this.ingest([{ customer, event_name: eventName, ...options } satisfies EventInput]);
    if (!result) throw new Error('ingest returned no result');
    if (result.result === 'rejected') throw new ValidationError(result.errors);
    return { event: result.event, duplicate: result.duplicate };
  }

  /** Records up to 1,000 events; valid ones are stored, invalid ones rejected, results in input order. */
  async reportUsageBatch(events: Array<{ customer: string; eventName: string } & ReportUsageOptions>): Promise<IngestResult[]> {
    return this.ingest(events.map(({ eventName, ...rest }) => ({ ...rest, event_name: eventName })));
  }

  /** API-shaped input (snake_case), one result per input in order. */
  async ingest(inputs: readonly unknown[]): Promise<IngestResult[]> {
    if (inputs.length > MAX_BATCH_SIZE) {
      throw new ValidationError([{ field: 'events', code: 'too_big', message: `must hold at most ${MAX_BATCH_SIZE} events` }]);
    }
    const results: Array<IngestResult | undefined> = new Array(inputs.length);
    const parsed: Array<{ index: number; event: ParsedEvent }> = [];
    inputs.forEach((input, index) => {
      const r = parseEvent(input);
      if (r.ok) parsed.push({ index, event: r.event });
      else results[index] = { result: 'rejected', errors: r.errors };
    });
    if (parsed.length > 0) await this.store(parsed, results);
    batchSize().record(inputs.length);
    let accepted = 0, duplicate = 0, rejected = 0;
    for (const r of results) {
      if (r!.result === 'accepted') accepted++;
      else if (r!.result === 'duplicate') duplicate++;
      else rejected++;
    }
    if (accepted) ingested().add(accepted, { result: 'accepted' });
    if (duplicate) ingested().add(duplicate, { result: 'duplicate' });
    if (rejected) ingested().add(rejected, { result: 'rejected' });
    return results as IngestResult[];
  }

  /**
   * Customers looked up, by external id. A customer named by its processor customer id is looked up every time: a
   * customer created later with that string as its external id would take precedence, and nothing about the first
   * customer changes to say so.
   */
  private readonly lookups = new Map<string, CustomerLookup>();

  private async store(parsed: Array<{ index: number; event: ParsedEvent }>, results: Array<IngestResult | undefined>) {
    // A remembered lookup that turns out stale costs one more round with those customers looked up again. If they
    // keep changing under the batch, the last round decides on a fresh lookup without the check, which is exactly
    // what every commit did before lookups were remembered (a change committed between the two statements is
    // concurrent with the events either way).
    for (let attempt = 1; ; attempt++) {
      const checked = attempt < 4;
      const stale = await this.storeOnce(parsed, results, checked);
      if (stale.length === 0) return;
      for (const { index } of parsed) results[index] = undefined;
      for (const [key, entry] of this.lookups) if (stale.includes(entry.customer.id)) this.lookups.delete(key);
    }
  }

  /** The customer each key names: remembered, or looked up (one query for all the others). */
  private async lookUp(keys: string[]): Promise<Map<string, CustomerLookup>> {
    const found = new Map<string, CustomerLookup>();
    const missing: string[] = [];
    for (const key of keys) {
      const entry = this.lookups.get(key);
      if (entry) found.set(key, entry);
      else missing.push(key);
    }
    if (missing.length === 0) return found;
    const { rows } = await this.pool.query<{ customers: Array<CustomerRow & { lookup_version: string }> | null; subscriptions: SubscriptionRow[] | null }>({
      name: LOOKUP_STATEMENT,
      text: `WITH c AS (
         SELECT id, external_id, processor::text AS processor, processor_customer_id, lookup_version::text AS lookup_version FROM customers
         WHERE external_id = ANY($1::text[]) OR processor_customer_id = ANY($1::text[]))
       SELECT (SELECT json_agg(c) FROM c) AS customers,
              (SELECT json_agg(s) FROM (SELECT id, customer_id, processor_subscription_id, status::text AS status
                                        FROM subscriptions WHERE customer_id IN (SELECT id FROM c)) s) AS subscriptions`,
      values: [missing],
    });
    const subsByCustomer = new Map<string, SubscriptionRow[]>();
    for (const sub of rows[0]!.subscriptions ?? []) {
      const list = subsByCustomer.get(sub.customer_id) ?? [];
      list.push(sub);
      subsByCustomer.set(sub.customer_id, list);
    }
    const byExternal = new Map<string, CustomerLookup>();
    const byProcessorId = new Map<string, CustomerLookup>();
    for (const { lookup_version, ...customer } of rows[0]!.customers ?? []) {
      const entry: CustomerLookup = { customer, subscriptions: subsByCustomer.get(customer.id) ?? [], version: lookup_version };
      byExternal.set(customer.external_id, entry);
      byProcessorId.set(customer.processor_customer_id, entry);
    }
    // Bounded: a process that has seen very many customers starts over rather than grow without end.
    if (this.lookups.size + missing.length > MAX_REMEMBERED_KEYS) this.lookups.clear();
    for (const key of missing) {
      const external = byExternal.get(key);
      const entry = external ?? byProcessorId.get(key);
      if (entry) found.set(key, entry);
      if (external) this.lookups.set(key, external);
    }
    return found;
  }

  /** One try: decide every event from the (remembered) lookups and store the valid ones; returns the stale customers. */
  private async storeOnce(parsed: Array<{ index: number; event: ParsedEvent }>, results: Array<IngestResult | undefined>, checked: boolean): Promise<string[]> {
    const lookups = await this.lookUp([...new Set(parsed.map((p) => p.event.customer))]);
    const used = new Map<string, string>(); // customer id -> lookup version every decision below relied on

    const now = this.now();
    const traceId = trace.getActiveSpan()?.spanContext().traceId ?? null;
    const rows: Row[] = [];
    const rowIndexes = new Map<string, number[]>(); // identifier -> input indexes (in-batch duplicates share a row)
    const said = new Map<number, Said>(); // in-batch duplicate's input index -> what it said (to tell a differing one)
    for (const { index, event } of parsed) {
      const entry = lookups.get(event.customer);
      if (!entry) {
        results[index] = reject('customer', 'not_found', 'no customer has this external id or processor customer id');
        continue;
      }
      const customer = entry.customer;
      used.set(customer.id, entry.version);
      const occurredAt = event.timestamp ?? now;
      if (occurredAt.getTime() < now.getTime() - this.maxAgeMs[customer.processor]) {
        results[index] = reject('timestamp', 'too_old', `must be at most ${Math.round(this.maxAgeMs[customer.processor] / DAY)} days in the past`);
        continue;
      }
      if (occurredAt.getTime() > now.getTime() + this.maxFutureMs) {
        results[index] = reject('timestamp', 'in_future', `must be at most ${Math.round(this.maxFutureMs / 60000)} minutes in the future`);
        continue;
      }
      const subscription = resolveSubscription(customer, entry.subscriptions, event.subscription);
      if ('error' in subscription) {
        results[index] = { result: 'rejected', errors: [subscription.error] };
        continue;
      }
      const id = newEventId();
      const identifier = event.identifier ?? derivedIdentifier(id);
      const seen = rowIndexes.get(identifier);
      if (seen) {
        seen.push(index);
        // What an in-batch duplicate said (the first input's row says it for the first).
        said.set(index, { customerId: customer.id, eventName: event.eventName, value: event.value, identifier, occurredAt });
        continue;
      }
      rowIndexes.set(identifier, [index]);
      rows.push({
        id,
        identifier,
        customerId: customer.id,
        subscriptionId: subscription.id,
        eventName: event.eventName,
        meterId: null,
        value: event.value,
        occurredAt,
        receivedAt: now,
        properties: event.properties ? JSON.stringify(event.properties) : null,
        processor: customer.processor,
        status: customer.processor === 'stripe' ? 'pending' : 'recorded',
        traceId,
      });
    }
    // Refusals that rest on a customer's facts are checked too: a batch with nothing to insert still runs the
    // statement when any customer was found. Only "no such customer" needs no check (not found is never remembered).
    if (used.size === 0) return [];

    const { rows: returned } = await this.pool.query<{ identifier: string | null; meterId: string | null; stale: string | null }>({
      name: INSERT_STATEMENT,
      text: INSERT_SQL,
      values: [
        rows.map((r) => r.id),
        rows.map((r) => r.identifier),
        rows.map((r) => r.customerId),
        rows.map((r) => r.subscriptionId),
        rows.map((r) => r.eventName),
        checked ? [...used.keys()] : [],
        rows.map((r) => r.value),
        rows.map((r) => r.occurredAt),
        now,
        rows.map((r) => r.properties),
        rows.map((r) => r.processor),
        rows.map((r) => r.status),
        traceId,
        rows.filter((r) => r.processor === 'stripe').map((r) => r.id),
        checked ? [...used.values()] : [],
      ],
    });
    const stale = returned.filter((r) => r.stale !== null).map((r) => r.stale!);
    if (stale.length > 0) return stale;
    if (rows.length === 0) return [];
    const meterOf = new Map(returned.map((r) => [r.identifier!, r.meterId]));
    const fresh = new Map<string, StoredEvent>();
    for (const r of rows) if (meterOf.has(r.identifier)) fresh.set(r.identifier, storedEvent({ ...r, meterId: meterOf.get(r.identifier) ?? null }));
    const missing = rows.filter((r) => !fresh.has(r.identifier)).map((r) => r.identifier);
    const existing = new Map<string, StoredEvent>();
    if (missing.length > 0) {
      const { rows: found } = await this.pool.query<StoredEvent>(
        `SELECT ${RETURNING} FROM meter_events WHERE id IN (SELECT event_id FROM meter_event_identifiers WHERE identifier = ANY($1::text[]))`,
        [missing],
      );
      for (const e of found) existing.set(e.identifier, e);
    }
    const archived = new Map<string, string>(); // identifier -> id of an event whose partition was archived (ADR 032)
    const reserved = new Map<string, string>(); // identifier -> the identifier of the event re-sent to Stripe under it (ADR 033)
    const unseen = missing.filter((i) => !existing.has(i));
    if (unseen.length > 0) {
      const { rows: claims } = await this.pool.query<{ identifier: string; event_id: string; resent: string | null }>(
        `SELECT c.identifier, c.event_id, e.identifier AS resent
           FROM meter_event_identifiers c LEFT JOIN meter_events e ON e.id = c.event_id
          WHERE c.identifier = ANY($1::text[])`,
        [unseen],
      );
      for (const c of claims) {
        // Claimed by a stored event under another identifier: a retry sent that event to Stripe under this one.
        if (c.resent !== null) reserved.set(c.identifier, c.resent);
        else archived.set(c.identifier, c.event_id);
      }
    }
    const conflicts: Array<{ event: StoredEvent; said: Said; differs: DuplicateDifference[] }> = [];
    const duplicateOf = (i: number, event: StoredEvent, row: Row): IngestResult => {
      const s = said.get(i) ?? row;
      const differs = differences(event, s);
      if (differs.length === 0) return { result: 'duplicate', duplicate: true, event };
      conflicts.push({ event, said: s, differs });
      return { result: 'duplicate', duplicate: true, event, differs };
    };
    for (const row of rows) {
      const indexes = rowIndexes.get(row.identifier)!;
      const stored = fresh.get(row.identifier);
      const [first, ...rest] = indexes;
      if (stored) {
        results[first!] = { result: 'accepted', duplicate: false, event: stored };
        for (const i of rest) results[i] = duplicateOf(i, stored, row);
        continue;
      }
      const prior = existing.get(row.identifier);
      if (prior) {
        for (const i of indexes) results[i] = duplicateOf(i, prior, row);
        continue;
      }
      // Stripe holds this identifier for our resend of another event: the host app's event under it is refused with
      // the reason (stored, it could never be counted at Stripe within the 24 h the identifier stays taken there).
      const resentAs = reserved.get(row.identifier);
      if (resentAs !== undefined) {
        const message = `is reserved: Meterdesk re-sent event ${resentAs} to Stripe under it (ADR 033); send this event under another identifier`;
        for (const i of indexes) results[i] = { result: 'rejected', errors: [{ field: 'identifier', code: 'reserved', message }] };
        continue;
      }
      // The identifier stays claimed after its event's month was archived: still a duplicate, answered with the
      // archived event's id and the status `archived` (what it said cannot be compared any more, so no conflict).
      const archivedId = archived.get(row.identifier);
      if (!archivedId) throw new Error(`identifier ${row.identifier} conflicted but no stored event was found`);
      const event = storedEvent({ ...row, id: archivedId, meterId: null });
      for (const i of indexes) results[i] = { result: 'duplicate', duplicate: true, event: { ...event, status: 'archived', receivedAt: new Date(uuidv7Time(archivedId)) } };
    }
    if (conflicts.length > 0) await recordConflicts(this.pool, conflicts, now, traceId);
    return [];
  }
}

/** What one input said about its event, after its customer was resolved. */
interface Said {
  identifier: string;
  customerId: string;
  eventName: string;
  value: number;
  occurredAt: Date;
}

function differences(stored: StoredEvent, said: Said): DuplicateDifference[] {
  const differs: DuplicateDifference[] = [];
  if (stored.value !== said.value) differs.push('value');
  if (stored.eventName !== said.eventName) differs.push('event_name');
  if (stored.customerId !== said.customerId) differs.push('customer');
  return differs;
}

/**
 * Keeps each differing duplicate beside the event it repeats (meter_event_conflicts): the event stays as first stored,
 * and what the host app sent again is on record for the desk. Before the answer, so a duplicate said to differ is
 * always shown.
 */
async function recordConflicts(pool: pg.Pool, conflicts: Array<{ event: StoredEvent; said: Said; differs: DuplicateDifference[] }>, now: Date, traceId: string | null) {
  await pool.query(
    `INSERT INTO meter_event_conflicts (event_id, identifier, customer_id, event_name, value, occurred_at, differs, received_at, trace_id)
     SELECT t.*, $8::timestamptz, $9::text FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::bigint[], $6::timestamptz[], $7::text[]) AS t`,
    [
      conflicts.map((c) => c.event.id),
      conflicts.map((c) => c.said.identifier),
      conflicts.map((c) => c.said.customerId),
      conflicts.map((c) => c.said.eventName),
      conflicts.map((c) => c.said.value),
      conflicts.map((c) => c.said.occurredAt),
      conflicts.map((c) => c.differs.join(',')),
      now,
      traceId,
    ],
  );
  differingDuplicates().add(conflicts.length);
}

function storedEvent(r: Row): StoredEvent {
  return {
    id: r.id,
    identifier: r.identifier,
    status: r.status,
    processor: r.processor,
    customerId: r.customerId,
    subscriptionId: r.subscriptionId,
    eventName: r.eventName,
    meterId: r.meterId,
    value: r.value,
    occurredAt: r.occurredAt,
    receivedAt: r.receivedAt,
  };
}

function reject(field: string, code: string, message: string): IngestResult {
  return { result: 'rejected', errors: [{ field, code, message }] };
}

function resolveSubscription(
  customer: CustomerRow,
  subscriptions: SubscriptionRow[],
  requested: string | undefined,
): { id: string | null } | { error: FieldError } {
  if (requested !== undefined) {
    const match = subscriptions.find((s) => s.id === requested || s.processor_subscription_id === requested);
    if (!match) return { error: { field: 'subscription', code: 'not_found', message: 'this customer has no subscription with this id' } };
    return { id: match.id };
  }
  const live = subscriptions.filter((s) => LIVE_SUBSCRIPTION.has(s.status));
  if (live.length === 1) return { id: live[0]!.id };
  if (live.length > 1) {
    return { error: { field: 'subscription', code: 'required', message: `is required: the customer has ${live.length} active subscriptions` } };
  }
  // Stripe meters bill by customer, so usage without a subscription is still reportable; a Braintree window needs one.
  if (customer.processor === 'stripe') return { id: null };
  return { error: { field: 'subscription', code: 'required', message: 'the customer has no active subscription to bill this usage in' } };
}
