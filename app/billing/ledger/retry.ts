// Operator retry: failed Stripe events back to pending (one, a selection, or everything matching a filter), in one
// transaction with its audit entry and the report jobs. Events whose earliest attempt may have reached Stripe more
// than 23 h ago are refused unless forced with a reason: past Stripe's 24 h dedupe window a re-send with the same
// identifier could be counted twice (docs/decisions/005-stripe-reporting-and-the-dedupe-window.md). An event Stripe
// rejected asynchronously (a meter error report) is re-sent under a new identifier derived from its own (ADR 033).
import type pg from 'pg';
import { trace } from '@opentelemetry/api';
import { addJob, withTransaction } from '../db';
import { writeAudit, type Actor } from '../audit';
import { StateError, ValidationError } from '../errors';
import { receivedIdRange } from '../ids';
import { DEDUPE_GUARD_MS, MAX_JOB_EVENTS, REPORT_TASK } from './reporting';
import { derivedIdentifier, resendNumber } from './sent-identifier';
import { causeFixed, causeOf, causeSql, FAILURE_CAUSE_ORDER, FAILURE_CAUSES, skippedSentence, type FailureCause } from './failure-causes';

export interface RetryFilter {
  /** Scope to one customer (ledger customer id): what support may do. */
  customerId?: string;
  eventName?: string;
  /** `last_error_code`, e.g. `resource_missing` or `dedupe_window_expired`. */
  errorCode?: string;
  /** What the failure means (failure-causes.ts causeSql). */
  cause?: FailureCause;
  /** Time range, [from, to), of receipt (default: an id range) or, with timeBasis 'occurred', of usage time. */
  from?: Date;
  to?: Date;
  timeBasis?: 'received' | 'occurred';
}

export type RetrySelection = { ids: readonly string[] } | { filter: RetryFilter };

export interface RetryRequest {
  selection: RetrySelection;
  actor: Actor;
  /** Re-send even past the 23 h guard; needs a reason. */
  force?: boolean;
  reason?: string;
  /** Limits an id selection to one customer's events (support's scope); others are refused `out_of_scope`. */
  customerId?: string;
  /** Re-send even events whose failure cause looks unchanged (failure-causes.ts); audited as such. */
  anyway?: boolean;
  /** Asks Stripe which customers it knows now; without it an unknown customer counts as unchanged. */
  customerCheck?: CustomerCheck;
}

/** The processor customer ids, of those given, that the processor knows now (Stripe: `customers.retrieve`). */
export type CustomerCheck = (processorCustomerIds: readonly string[]) => Promise<ReadonlySet<string>>;

/** At most this many distinct customers are asked about per retry; the rest count as unchanged. */
const CUSTOMER_CHECK_LIMIT = 50;

/** Which customers of the failures `where` selects Stripe knows now, asked before any lock is taken. */
async function knownCustomers(db: pg.Pool, where: { sql: string; params: unknown[] }, check: CustomerCheck | undefined): Promise<ReadonlySet<string>> {
  if (!check) return new Set();
  const { rows } = await db.query<{ id: string }>(
    `SELECT DISTINCT c.processor_customer_id AS id FROM meter_events e JOIN customers c ON c.id = e.customer_id
      WHERE ${where.sql} AND ${causeSql('unknown_customer', 'e.')} LIMIT ${CUSTOMER_CHECK_LIMIT}`,
    where.params,
  );
  return rows.length === 0 ? new Set() : check(rows.map((r) => r.id));
}

export type RetryRefusalReason = 'dedupe_window' | 'not_failed' | 'not_found' | 'not_stripe' | 'out_of_scope' | 'cause_unchanged';

export interface RetryRefusal {
  id: string;
  reason: RetryRefusalReason;
  message: string;
  /** For `cause_unchanged`: the failure's cause. */
  cause?: FailureCause;
}

export interface RetryResult {
  moved: number;
  movedIds: string[];
  refused: RetryRefusal[];
  /** Refusal counts by reason. */
  refusedCounts: Partial<Record<RetryRefusalReason, number>>;
  forced: boolean;
  /** Events left failed because their cause looks unchanged, per cause, each with the sentence that says what to do. */
  skipped: CauseCount[];
  /** The audit entry of this retry (absent when nothing moved); also the handle for {@link retryProgress}. */
  auditId?: string;
}

/** Where the events of one retry are now: what the desk's progress indicator shows while jobs report them. */
export interface RetryProgress {
  auditId: string;
  at: Date;
  actorLabel: string;
  /** Events the retry moved back to pending. */
  moved: number;
  /** Events followed here (the audit entry keeps the first 10,000 ids). */
  tracked: number;
  reported: number;
  pending: number;
  failed: number;
}

export interface RetryPreview {
  /** Failed Stripe events matching the filter. */
  matching: number;
  /** Those a plain retry would move. */
  retryable: number;
  /** Those only a forced retry (with a reason) would move. */
  needsForce: number;
  /** The matching events by failure cause: how many a retry re-sends (`fixed`) and how many it skips. */
  byCause: Array<{ cause: FailureCause; label: string; fixed: number; unchanged: number; fix: string }>;
}

export interface CauseCount {
  cause: FailureCause;
  count: number;
  sentence: string;
}

/** Every selected event was refused; nothing changed. `refusals` says why, per event. */
export class RetryRefusedError extends StateError {
  constructor(readonly refusals: RetryRefusal[]) {
    super(
      refusals.length === 1
        ? `This event was not retried: ${refusals[0]!.message}`
        : `None of the ${refusals.length.toLocaleString('en-US')} events was retried: ${summarize(refusals).replace(/\.$/, '')}.`,
    );
    this.name = 'RetryRefusedError';
  }
}

/** Largest selection one call takes; a bigger filter is refused rather than holding a huge transaction. */
export const MAX_RETRY_EVENTS = 100_000;
const AUDIT_ID_LIMIT = 10_000;

const tracer = trace.getTracer('meterdesk.ledger');

interface Candidate {
  id: string;
  status: string;
  processor: string;
  customer_id: string;
  first_attempt_at: Date | null;
  guarded: boolean;
  last_error_code: string | null;
  last_error_message: string | null;
  meter_defined: boolean;
  processor_customer_id: string;
  identifier: string;
  sent_identifier: string | null;
  last_error_source: string | null;
  /** Failed by an error report after the same identifier was sent again (meter-error-reports.ts): Stripe should not
   * have counted that send, but a retry under a new identifier would count twice if it did, so it needs force. */
  resent_after_report: boolean;
}

/** The candidate columns: the guard, and what the failure's cause needs to be judged (failure-causes.ts). */
/**
 * Only a forced retry (with a reason) moves an event that may already have reached Stripe and been counted: its
 * first attempt is older than the dedupe guard, or it was failed by an error report after being sent again under
 * the same identifier (ADR 033). One condition each, read by the retry and by its preview alike.
 */
const guardedSql = (guardParam: string) => `(first_attempt_at IS NOT NULL AND first_attempt_at < now() - ${guardParam} * interval '1 millisecond')`;
const RESENT_AFTER_REPORT_SQL = `(last_error_source = 'webhook' AND attention_reason IS NOT NULL)`;

const CANDIDATE_COLUMNS = (guardParam: string) => `id, status::text AS status, processor::text AS processor, customer_id, first_attempt_at,
                ${guardedSql(guardParam)} AS guarded,
                last_error_code, last_error_message, EXISTS (SELECT 1 FROM meters m WHERE m.event_name = meter_events.event_name) AS meter_defined,
                (SELECT c.processor_customer_id FROM customers c WHERE c.id = meter_events.customer_id) AS processor_customer_id,
                identifier, sent_identifier, last_error_source::text AS last_error_source,
                ${RESENT_AFTER_REPORT_SQL} AS resent_after_report`

export async function retryFailedEvents(pool: pg.Pool, request: RetryRequest): Promise<RetryResult> {
  return tracer.startActiveSpan('Retry.retryFailedEvents', async (span) => {
    try {
      return await retry(pool, request);
    } finally {
      span.end();
    }
  });
}

async function retry(pool: pg.Pool, request: RetryRequest): Promise<RetryResult> {
  const force = request.force === true;
  const reason = request.reason?.trim() || null;
  if (force && !reason) {
    throw new ValidationError([{ field: 'reason', code: 'required', message: 'a forced retry needs a reason' }]);
  }
  const selection = request.selection;
  if ('ids' in selection) {
    if (selection.ids.length === 0) throw new ValidationError([{ field: 'ids', code: 'too_small', message: 'select at least one event' }]);
    if (selection.ids.length > MAX_RETRY_EVENTS) {
      throw new ValidationError([{ field: 'ids', code: 'too_big', message: `select at most ${MAX_RETRY_EVENTS} events` }]);
    }
    const bad = selection.ids.find((id) => !UUID.test(id));
    if (bad !== undefined) throw new ValidationError([{ field: 'ids', code: 'invalid', message: `not an event id: ${JSON.stringify(bad)}` }]);
  }

  // Stripe is asked before the transaction: no lock is held across HTTP.
  const known = await knownCustomers(
    pool,
    'ids' in selection ? { sql: `e.id = ANY($1::uuid[]) AND e.status = 'failed'`, params: [[...new Set(selection.ids)]] } : filterSql(selection.filter, 1, 'e.'),
    request.customerCheck,
  );
  return withTransaction(pool, async (client) => {
    let candidates: Candidate[];
    if ('ids' in selection) {
      const { rows } = await client.query<Candidate>(
        `SELECT ${CANDIDATE_COLUMNS('$2')}
         FROM meter_events WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE OF meter_events`,
        [[...new Set(selection.ids)], DEDUPE_GUARD_MS],
      );
      candidates = rows;
    } else {
      const where = filterSql(selection.filter, 2);
      const { rows } = await client.query<Candidate>(
        `SELECT ${CANDIDATE_COLUMNS('$1')}
         FROM meter_events WHERE ${where.sql} ORDER BY id LIMIT ${MAX_RETRY_EVENTS + 1} FOR UPDATE OF meter_events`,
        [DEDUPE_GUARD_MS, ...where.params],
      );
      if (rows.length > MAX_RETRY_EVENTS) {
        throw new ValidationError([{ field: 'filter', code: 'too_big', message: `matches more than ${MAX_RETRY_EVENTS} events: narrow it` }]);
      }
      candidates = rows;
    }

    const refused: RetryRefusal[] = [];
    const eligible: Candidate[] = [];
    if ('ids' in selection) {
      const found = new Set(candidates.map((c) => c.id));
      for (const id of new Set(selection.ids)) {
        if (!found.has(id)) refused.push({ id, reason: 'not_found', message: 'no such event' });
      }
    }
    for (const c of candidates) {
      if (c.processor !== 'stripe') refused.push({ id: c.id, reason: 'not_stripe', message: 'only Stripe events are reported one by one' });
      else if (request.customerId && c.customer_id !== request.customerId) refused.push({ id: c.id, reason: 'out_of_scope', message: 'belongs to another customer' });
      else if (c.status !== 'failed') refused.push({ id: c.id, reason: 'not_failed', message: `is ${c.status}, only failed events are retried` });
      else if (c.guarded && !force) {
        refused.push({
          id: c.id,
          reason: 'dedupe_window',
          message: 'its first attempt may have reached Stripe more than 23 h ago; retry with force and a reason if Stripe did not count it',
        });
      } else if (c.resent_after_report && !force) {
        refused.push({
          id: c.id,
          reason: 'dedupe_window',
          message: 'it was sent again with the same identifier after Stripe rejected it; retry with force and a reason if Stripe did not count it',
        });
      } else {
        const cause = causeOf(c.last_error_code, c.last_error_message);
        if (!request.anyway && !causeFixed(cause, { meterDefined: c.meter_defined, customerKnown: known.has(c.processor_customer_id) })) {
          refused.push({ id: c.id, reason: 'cause_unchanged', cause, message: FAILURE_CAUSES[cause].fix });
        } else eligible.push(c);
      }
    }
    if (eligible.length === 0) {
      if (refused.length > 0) throw new RetryRefusedError(refused);
      return { moved: 0, movedIds: [], refused, refusedCounts: {}, forced: force, skipped: [] };
    }

    // Forcing starts a new dedupe window: the guard then measures from the next attempt. A new identifier is a new
    // event to Stripe, whose window starts with its own first send.
    const renamed = await newIdentifiers(client, eligible);
    const { rows: moved } = await client.query<{ id: string }>(
      `UPDATE meter_events e
       SET status = 'pending', claimed_at = NULL, attention_reason = NULL,
           sent_identifier = COALESCE(r.sent_identifier, e.sent_identifier),
           first_attempt_at = CASE WHEN r.sent_identifier IS NOT NULL THEN NULL
                                   WHEN $2 AND e.first_attempt_at < now() - $3 * interval '1 millisecond' THEN NULL
                                   ELSE e.first_attempt_at END
       FROM unnest($1::uuid[], $4::text[]) AS r(id, sent_identifier)
       WHERE e.id = r.id AND e.status = 'failed' AND e.processor = 'stripe'
       RETURNING e.id`,
      [eligible.map((c) => c.id), force, DEDUPE_GUARD_MS, eligible.map((c) => renamed.get(c.id) ?? null)],
    );
    const movedIds = moved.map((r) => r.id).sort();
    for (let i = 0; i < movedIds.length; i += MAX_JOB_EVENTS) {
      await addJob(client, REPORT_TASK, { eventIds: movedIds.slice(i, i + MAX_JOB_EVENTS) });
    }
    const forcedIds = force ? eligible.filter((c) => c.guarded || c.resent_after_report).map((c) => c.id) : [];
    const auditId = await writeAudit(client, {
      actor: request.actor,
      action: 'meter_event.retry',
      subjectType: 'meter_event',
      subjectId: movedIds.length === 1 ? movedIds[0]! : null,
      reason,
      before: {
        status: 'failed',
        selection: 'ids' in selection ? { ids: selection.ids.length } : { filter: serializeFilter(selection.filter) },
        scope: request.customerId ? { customerId: request.customerId } : null,
      },
      after: {
        status: 'pending',
        moved: movedIds.length,
        ids: movedIds.slice(0, AUDIT_ID_LIMIT),
        idsTruncated: movedIds.length > AUDIT_ID_LIMIT,
        force,
        anyway: request.anyway === true,
        forcedPastGuard: forcedIds.slice(0, AUDIT_ID_LIMIT),
        newIdentifiers: renamed.size,
        refused: countByReason(refused),
        skippedByCause: Object.fromEntries(skippedByCause(refused).map((s) => [s.cause, s.count])),
      },
    });
    return { moved: movedIds.length, movedIds, refused, refusedCounts: countByReason(refused), forced: force, skipped: skippedByCause(refused), auditId };
  });
}

/** How many failed Stripe events a filter matches, and how many of them need a forced retry. */
/** The progress of the retry recorded by audit entry `auditId`, or null when that entry is not a retry. */
export async function retryProgress(pool: pg.Pool, auditId: string): Promise<RetryProgress | null> {
  if (!/^[1-9][0-9]{0,17}$/.test(auditId)) return null;
  const { rows } = await pool.query<{ at: Date; actor_label: string; moved: number | null; ids: string[] | null }>(
    `SELECT at, actor_label, (after->>'moved')::int AS moved, ARRAY(SELECT jsonb_array_elements_text(after->'ids')) AS ids
       FROM audit_log WHERE id = $1 AND action = 'meter_event.retry'`,
    [auditId],
  );
  const entry = rows[0];
  if (!entry) return null;
  const ids = entry.ids ?? [];
  const { rows: counts } = await pool.query<{ status: string; n: number }>(
    `SELECT status::text AS status, count(*)::int AS n FROM meter_events WHERE id = ANY($1::uuid[]) GROUP BY status`,
    [ids],
  );
  const by = new Map(counts.map((c) => [c.status, c.n]));
  return {
    auditId,
    at: entry.at,
    actorLabel: entry.actor_label,
    moved: entry.moved ?? ids.length,
    tracked: ids.length,
    reported: by.get('reported') ?? 0,
    pending: by.get('pending') ?? 0,
    failed: by.get('failed') ?? 0,
  };
}

export async function previewRetry(pool: pg.Pool, filter: RetryFilter, customerCheck?: CustomerCheck): Promise<RetryPreview> {
  const where = filterSql(filter, 2, 'e.');
  const known = [...(await knownCustomers(pool, filterSql(filter, 1, 'e.'), customerCheck))];
  // Grouped by what decides the cause (the code, for resource_missing the message's subject) and whether a meter
  // defines the name now: a handful of groups, whatever the number of events.
  const knownParam = `$${where.params.length + 2}`;
  const { rows } = await pool.query<{ code: string | null; message: string | null; meter_defined: boolean; customer_known: boolean; matching: number; needs_force: number }>(
    `SELECT last_error_code AS code,
            CASE WHEN last_error_code = 'resource_missing' THEN min(last_error_message) END AS message,
            EXISTS (SELECT 1 FROM meters m WHERE m.event_name = e.event_name) AS meter_defined,
            (SELECT c.processor_customer_id FROM customers c WHERE c.id = e.customer_id) = ANY(${knownParam}::text[]) AS customer_known,
            count(*)::int AS matching,
            count(*) FILTER (WHERE ${guardedSql('$1')} OR ${RESENT_AFTER_REPORT_SQL})::int AS needs_force
     FROM meter_events e WHERE ${where.sql}
     GROUP BY last_error_code, last_error_code = 'resource_missing' AND last_error_message ILIKE '%customer%', 3, 4`,
    [DEDUPE_GUARD_MS, ...where.params, known],
  );
  const causes = new Map<FailureCause, { fixed: number; unchanged: number }>();
  let matching = 0;
  let needsForce = 0;
  for (const r of rows) {
    matching += r.matching;
    needsForce += r.needs_force;
    const cause = causeOf(r.code, r.message);
    const c = causes.get(cause) ?? { fixed: 0, unchanged: 0 };
    if (causeFixed(cause, { meterDefined: r.meter_defined, customerKnown: r.customer_known })) c.fixed += r.matching;
    else c.unchanged += r.matching;
    causes.set(cause, c);
  }
  return {
    matching,
    retryable: matching - needsForce,
    needsForce,
    byCause: FAILURE_CAUSE_ORDER.filter((c) => causes.has(c)).map((cause) => ({ cause, label: FAILURE_CAUSES[cause].label, fix: FAILURE_CAUSES[cause].fix, ...causes.get(cause)! })),
  };
}

/**
 * The new identifier of each event Stripe rejected asynchronously (failed by a meter error report, which names the
 * identifier last sent): the next `<identifier>:r<n>` not yet claimed by any event, claimed for this one. Only
 * such events: a synchronous refusal created nothing at Stripe, and any other failure may have been counted under
 * the identifier already sent (ADR 033).
 */
async function newIdentifiers(client: pg.ClientBase, eligible: readonly Candidate[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let pending = eligible.filter((c) => c.last_error_source === 'webhook').map((c) => ({ c, n: resendNumber(c.identifier, c.sent_identifier) + 1 }));
  while (pending.length > 0) {
    const wanted = pending.map((p) => derivedIdentifier(p.c.identifier, p.n));
    // Claimed in meter_event_identifiers, the ledger's one index of identifiers (ADR 032), in the retry's own
    // transaction: a derived identifier is unique against every identifier and every other derived one.
    const { rows } = await client.query<{ claimed: string }>(
      `INSERT INTO meter_event_identifiers (identifier, event_id) SELECT * FROM unnest($1::text[], $2::uuid[])
       ON CONFLICT (identifier) DO NOTHING RETURNING identifier AS claimed`,
      [wanted, pending.map((p) => p.c.id)],
    );
    const claimed = new Set(rows.map((r) => r.claimed));
    const next: typeof pending = [];
    pending.forEach((p, i) => (claimed.has(wanted[i]!) ? out.set(p.c.id, wanted[i]!) : next.push({ c: p.c, n: p.n + 1 })));
    pending = next;
  }
  return out;
}

function skippedByCause(refusals: readonly RetryRefusal[]): CauseCount[] {
  const counts = new Map<FailureCause, number>();
  for (const r of refusals) if (r.reason === 'cause_unchanged' && r.cause) counts.set(r.cause, (counts.get(r.cause) ?? 0) + 1);
  return FAILURE_CAUSE_ORDER.filter((c) => counts.has(c)).map((cause) => ({ cause, count: counts.get(cause)!, sentence: skippedSentence(cause, counts.get(cause)!) }));
}

function filterSql(filter: RetryFilter, firstParam: number, col = ''): { sql: string; params: unknown[] } {
  const clauses = [`${col}status = 'failed'`, `${col}processor = 'stripe'`];
  const params: unknown[] = [];
  const add = (clause: (p: string) => string, value: unknown) => {
    params.push(value);
    clauses.push(clause(`$${firstParam + params.length - 1}`));
  };
  if (filter.customerId !== undefined) {
    if (!UUID.test(filter.customerId)) throw new ValidationError([{ field: 'customerId', code: 'invalid', message: 'not a customer id' }]);
    add((p) => `${col}customer_id = ${p}::uuid`, filter.customerId);
  }
  if (filter.eventName !== undefined) add((p) => `${col}event_name = ${p}`, filter.eventName);
  if (filter.errorCode !== undefined) add((p) => `${col}last_error_code = ${p}`, filter.errorCode);
  if (filter.cause !== undefined) {
    if (!FAILURE_CAUSE_ORDER.includes(filter.cause)) throw new ValidationError([{ field: 'cause', code: 'invalid', message: `not a failure cause: ${String(filter.cause)}` }]);
    clauses.push(causeSql(filter.cause, col));
  }
  if (filter.timeBasis === 'occurred') {
    if (filter.from !== undefined) add((p) => `${col}occurred_at >= ${p}`, filter.from);
    if (filter.to !== undefined) add((p) => `${col}occurred_at < ${p}`, filter.to);
  } else {
    const range = receivedIdRange(filter.from, filter.to);
    if (range.gte !== undefined) add((p) => `${col}id >= ${p}::uuid`, range.gte);
    if (range.lt !== undefined) add((p) => `${col}id < ${p}::uuid`, range.lt);
  }
  return { sql: clauses.join(' AND '), params };
}

function serializeFilter(filter: RetryFilter): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(filter)) if (v !== undefined) out[k] = v instanceof Date ? v.toISOString() : String(v);
  return out;
}

function countByReason(refusals: RetryRefusal[]): Partial<Record<RetryRefusalReason, number>> {
  const out: Partial<Record<RetryRefusalReason, number>> = {};
  for (const r of refusals) out[r.reason] = (out[r.reason] ?? 0) + 1;
  return out;
}

function summarize(refusals: RetryRefusal[]): string {
  const causes = skippedByCause(refusals).map((s) => s.sentence);
  const rest = Object.entries(countByReason(refusals.filter((r) => r.reason !== 'cause_unchanged'))).map(([k, n]) => `${n} ${k.replace('_', ' ')}`);
  return [...rest, ...causes].join('; ');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
