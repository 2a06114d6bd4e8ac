// Reporting pending Stripe events: claim a batch in a short transaction (FOR UPDATE SKIP LOCKED), call the
// processor outside any transaction, then move each row with one guarded statement and record every attempt.
// The reconciler re-enqueues what a killed worker or a lost job left behind, and flags what can no longer be
// re-sent safely (docs/decisions/005-stripe-reporting-and-the-dedupe-window.md).
import type pg from 'pg';
import { trace } from '@opentelemetry/api';
import { lazyInstrument } from '../instruments';
import { addJob, withTransaction } from '../db';
import { recordOpsEvents, type OpsEventInput } from '../ops-events';
import { backoffDelay } from '../processors/limits';
import type { MeterEventReporter, MeterEventToReport, ReportOutcome } from '../processors/types';
import { inSpan } from '../spans';

export const REPORT_TASK = 'stripe__report_events';
export const RECONCILE_TASK = 'stripe__reconcile_pending';
/** Stripe dedupes identifiers for 24 h; an hour of margin for clocks and in-flight calls. */
export const DEDUPE_GUARD_MS = 23 * 60 * 60 * 1000;
export const DEDUPE_EXPIRED_CODE = 'dedupe_window_expired';
/** Ids per report job (the ledger enqueues one job per ingest batch of at most 1,000 events). */
export const MAX_JOB_EVENTS = 1000;

const DEDUPE_EXPIRED_MESSAGE =
  'Still pending more than 23 h after its first attempt; Stripe only dedupes an identifier for 24 h, so it was not re-sent.';
const DEDUPE_EXPIRED_ATTENTION =
  'An earlier attempt may have reached Stripe more than 23 h ago. Check whether Stripe counted this identifier; retry with force (and a reason) only if it did not.';

export interface Backoff {
  baseMs: number;
  maxMs: number;
}

export interface StripeReportingOptions {
  pool: pg.Pool;
  processor: MeterEventReporter;
  /** Events per claim. Default: the processor's preferred batch size. */
  batchSize?: number;
  /** A claim older than this is considered abandoned (killed worker). Must exceed callBudgetMs + the SDK timeout. Default 2 min. */
  claimTimeoutMs?: number;
  /** A never-claimed (or released) pending event with no activity for this long is considered lost. Default 10 min. */
  lostAfterMs?: number;
  /** Events not sent within this budget are released for the next job, so claims stay short. Default 30 s. */
  callBudgetMs?: number;
  /** 5xx, timeouts, dropped connections. Default 2 s doubling to 5 min. */
  transientBackoff?: Backoff;
  /** 429s. Default 1 s doubling to 30 s. */
  rateLimitBackoff?: Backoff;
  /** Most events the reconciler re-enqueues per run. Default 20,000. */
  reconcileLimit?: number;
  random?: () => number;
}

export interface ReportSummary {
  claimed: number;
  reported: number;
  failed: number;
  retrying: number;
  /** Pending past the dedupe guard: moved to failed, not sent. */
  expired: number;
  rateLimited: number;
}

export interface ReconcileSummary {
  expired: number;
  requeued: number;
}

interface ClaimedRow {
  id: string;
  /** The identifier sent to Stripe: the event's own, or the one a retry derived from it (ADR 033). */
  identifier: string;
  event_name: string;
  value: number;
  /** JSON text: the claim comes back as one json_agg. */
  occurred_at: string;
  attempts: number;
  processor_customer_id: string;
  claimed_at: string;
}

const tracer = trace.getTracer('meterdesk.reporting');
const latency = lazyInstrument(
  (m) =>
    m.createHistogram('meterdesk.stripe.report_latency', {
      description: 'Accept-to-reported latency of Stripe meter events',
      unit: 'ms',
      advice: { explicitBucketBoundaries: [50, 100, 250, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000, 3_600_000] },
    }),
  'meterdesk.reporting',
);
const batchSizes = lazyInstrument(
  (m) =>
    m.createHistogram('meterdesk.stripe.report_batch_size', {
      description: 'Events per processor report call',
      advice: { explicitBucketBoundaries: [1, 10, 50, 100, 250, 500, 1000] },
    }),
  'meterdesk.reporting',
);
const attemptCounter = lazyInstrument((m) => m.createCounter('meterdesk.stripe.report_attempts', { description: 'Stripe meter event attempts by outcome' }), 'meterdesk.reporting');
const reconciled = lazyInstrument((m) => m.createCounter('meterdesk.stripe.reconciled', { description: 'Pending events the reconciler re-enqueued or flagged' }), 'meterdesk.reporting');

const CLAIM_SQL = `
WITH candidates AS (
  SELECT e.id, (e.first_attempt_at IS NOT NULL AND e.first_attempt_at < now() - $3 * interval '1 millisecond') AS expired
  FROM meter_events e
  WHERE e.id = ANY($1::uuid[]) AND e.status = 'pending' AND e.processor = 'stripe'
    AND (e.claimed_at IS NULL OR e.claimed_at < now() - $2 * interval '1 millisecond')
  FOR UPDATE SKIP LOCKED
), expired AS (
  UPDATE meter_events e
  SET status = 'failed', claimed_at = NULL, last_error_code = '${DEDUPE_EXPIRED_CODE}', last_error_message = $4,
      last_error_source = 'sync', attention_reason = $5
  FROM candidates c WHERE e.id = c.id AND c.expired
  RETURNING e.id, e.identifier, e.first_attempt_at
), claimed AS (
  UPDATE meter_events e
  SET claimed_at = now(), attempts = e.attempts + 1, first_attempt_at = COALESCE(e.first_attempt_at, now())
  FROM candidates c, customers cu
  WHERE e.id = c.id AND NOT c.expired AND cu.id = e.customer_id
  RETURNING e.id, COALESCE(e.sent_identifier, e.identifier) AS identifier, e.event_name, e.value::float8 AS value, e.occurred_at, e.attempts,
            cu.processor_customer_id, e.claimed_at
)
SELECT (SELECT coalesce(json_agg(claimed), '[]') FROM claimed) AS claimed,
       (SELECT coalesce(json_agg(expired), '[]') FROM expired) AS expired`;

// One statement moves every row of a report call: reported (guarded by status), failed (guarded by status),
// released for a retry (guarded by our own claim, so a row another worker re-claimed is left alone), and the
// attempt timeline, all or nothing.
const SETTLE_SQL = `
WITH reported AS (
  UPDATE meter_events e
  SET status = 'reported', reported_at = now(), claimed_at = NULL, last_error_code = NULL, last_error_message = NULL,
      last_error_source = NULL, attention_reason = NULL, trace_id = COALESCE(e.trace_id, $14)
  WHERE e.id = ANY($1::uuid[]) AND e.status = 'pending'
  RETURNING extract(epoch FROM now() - e.received_at) * 1000 AS latency_ms
), rejected AS (
  UPDATE meter_events e
  SET status = 'failed', claimed_at = NULL, last_error_code = r.code, last_error_message = r.message, last_error_source = 'sync'
  FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int[]) AS r(id, code, message, http_status)
  WHERE e.id = r.id AND e.status = 'pending'
  RETURNING e.id, e.identifier, r.code, r.message, r.http_status
), released AS (
  UPDATE meter_events e
  SET claimed_at = NULL,
      attempts = e.attempts - CASE WHEN r.attempted THEN 0 ELSE 1 END,
      last_error_code = CASE WHEN r.attempted THEN r.code ELSE e.last_error_code END,
      last_error_message = CASE WHEN r.attempted THEN r.message ELSE e.last_error_message END,
      last_error_source = CASE WHEN r.attempted THEN 'sync'::error_source ELSE e.last_error_source END
  FROM unnest($6::uuid[], $7::bool[], $8::text[], $9::text[], $10::timestamptz[], $11::text[]) AS r(id, attempted, code, message, claimed_at, grp)
  WHERE e.id = r.id AND e.status = 'pending' AND e.claimed_at = r.claimed_at
  RETURNING e.id, e.attempts, r.grp
), attempts AS (
  INSERT INTO event_attempts (id, meter_event_id, started_at, duration_ms, source, outcome, http_status, error_code,
                              error_message, response, trace_id)
  SELECT gen_random_uuid(), a.id, a.started_at, a.duration_ms, 'sync', a.outcome, a.http_status, a.code, a.message,
         a.response, $14
  FROM unnest($12::uuid[], $13::timestamptz[], $15::int[], $16::attempt_outcome[], $17::int[], $18::text[], $19::text[],
              $20::jsonb[]) AS a(id, started_at, duration_ms, outcome, http_status, code, message, response)
  RETURNING 1
)
SELECT (SELECT coalesce(array_agg(latency_ms::float8), '{}') FROM reported) AS latencies,
       (SELECT coalesce(json_agg(rejected), '[]') FROM rejected) AS rejected,
       (SELECT coalesce(json_agg(released), '[]') FROM released) AS released,
       (SELECT count(*) FROM attempts)::int AS attempts`;

export class StripeReporting {
  readonly processor: MeterEventReporter;
  private readonly pool: pg.Pool;
  private readonly batchSize: number;
  private readonly claimTimeoutMs: number;
  private readonly lostAfterMs: number;
  private readonly callBudgetMs: number;
  private readonly transient: Backoff;
  private readonly rateLimit: Backoff;
  private readonly reconcileLimit: number;
  private readonly random: () => number;

  constructor(options: StripeReportingOptions) {
    this.pool = options.pool;
    this.processor = options.processor;
    this.batchSize = options.batchSize ?? options.processor.preferredBatchSize;
    this.claimTimeoutMs = options.claimTimeoutMs ?? 120_000;
    this.lostAfterMs = options.lostAfterMs ?? 600_000;
    this.callBudgetMs = options.callBudgetMs ?? 30_000;
    this.transient = options.transientBackoff ?? { baseMs: 2000, maxMs: 300_000 };
    this.rateLimit = options.rateLimitBackoff ?? { baseMs: 1000, maxMs: 30_000 };
    this.reconcileLimit = options.reconcileLimit ?? 20_000;
    this.random = options.random ?? Math.random;
  }

  /** Reports the still-pending events among `eventIds`. Safe to run twice, and concurrently with itself. */
  async reportEvents(eventIds: readonly string[]): Promise<ReportSummary> {
    return inSpan(tracer, 'StripeReporting.reportEvents', { 'meterdesk.events': eventIds.length, 'stripe.api': this.processor.api }, async (span) => {
      const summary: ReportSummary = { claimed: 0, reported: 0, failed: 0, retrying: 0, expired: 0, rateLimited: 0 };
      const ctx = span.spanContext();
      const traceId = trace.isSpanContextValid(ctx) ? ctx.traceId : null;
      for (let i = 0; i < eventIds.length; i += this.batchSize) {
        await this.reportChunk(eventIds.slice(i, i + this.batchSize), traceId, summary);
      }
      for (const [k, v] of Object.entries(summary)) span.setAttribute(`meterdesk.${k}`, v);
      return summary;
    });
  }

  private async reportChunk(ids: string[], traceId: string | null, summary: ReportSummary): Promise<void> {
    const claimed = await this.claim(ids);
    summary.expired += claimed.expired;
    if (claimed.rows.length === 0) return;
    summary.claimed += claimed.rows.length;
    batchSizes().record(claimed.rows.length, { api: this.processor.api });

    const events: MeterEventToReport[] = claimed.rows.map((r) => ({
      id: r.id,
      identifier: r.identifier,
      eventName: r.event_name,
      processorCustomerId: r.processor_customer_id,
      value: r.value,
      occurredAt: new Date(r.occurred_at),
    }));
    let outcomes: ReportOutcome[];
    try {
      outcomes = await this.processor.reportMeterEvents(events, { deadline: Date.now() + this.callBudgetMs });
    } catch (error) {
      // The seam promises per-event outcomes; if it throws anyway, release the claims so the retry is not
      // delayed until the claim times out.
      await this.release(claimed.rows).catch(() => undefined);
      throw error;
    }
    await this.settle(claimed.rows, outcomes, traceId, summary);
  }

  private async claim(ids: string[]): Promise<{ rows: ClaimedRow[]; expired: number }> {
    return withTransaction(this.pool, async (client) => {
      // Named: planned once per connection (planning these statements costs about as much as a small chunk).
      const { rows } = await client.query<{ claimed: ClaimedRow[]; expired: Array<{ id: string; identifier: string; first_attempt_at: string }> }>({
        name: 'meterdesk_stripe_claim',
        text: CLAIM_SQL,
        values: [ids, this.claimTimeoutMs, DEDUPE_GUARD_MS, DEDUPE_EXPIRED_MESSAGE, DEDUPE_EXPIRED_ATTENTION],
      });
      const { claimed, expired } = rows[0]!;
      if (expired.length > 0) await recordOpsEvents(client, expired.map((e) => expiredOpsEvent(e, 'sync')));
      return { rows: claimed, expired: expired.length };
    });
  }

  private async release(rows: ClaimedRow[]): Promise<void> {
    await this.pool.query(
      `UPDATE meter_events e SET claimed_at = NULL, attempts = e.attempts - 1
       FROM unnest($1::uuid[], $2::timestamptz[]) AS r(id, claimed_at)
       WHERE e.id = r.id AND e.status = 'pending' AND e.claimed_at = r.claimed_at`,
      [rows.map((r) => r.id), rows.map((r) => r.claimed_at)],
    );
  }

  private async settle(rows: ClaimedRow[], outcomes: ReportOutcome[], traceId: string | null, summary: ReportSummary): Promise<void> {
    const byId = new Map(rows.map((r) => [r.id, r]));
    const reportedIds: string[] = [];
    const rejected = { ids: [] as string[], codes: [] as string[], messages: [] as string[], statuses: [] as Array<number | null> };
    const released = { ids: [] as string[], attempted: [] as boolean[], codes: [] as Array<string | null>, messages: [] as Array<string | null>, claimedAt: [] as Date[], groups: [] as string[] };
    const attempts = {
      ids: [] as string[], startedAt: [] as Date[], durations: [] as number[], outcomes: [] as string[],
      statuses: [] as Array<number | null>, codes: [] as Array<string | null>, messages: [] as Array<string | null>, responses: [] as Array<string | null>,
    };
    const rateLimitedCall = outcomes.some((o) => o.outcome === 'rate_limited');
    const counts: Record<string, number> = {};
    for (const o of outcomes) {
      counts[o.outcome] = (counts[o.outcome] ?? 0) + 1;
      const row = byId.get(o.eventId);
      if (!row) continue;
      if (o.outcome !== 'not_attempted') {
        attempts.ids.push(o.eventId);
        attempts.startedAt.push(o.startedAt);
        attempts.durations.push(o.durationMs);
        attempts.outcomes.push(o.outcome);
        attempts.statuses.push(o.httpStatus);
        attempts.codes.push(o.code);
        attempts.messages.push(o.message);
        attempts.responses.push(o.response === null || o.response === undefined ? null : JSON.stringify(o.response));
      }
      switch (o.outcome) {
        case 'reported':
        case 'duplicate':
          reportedIds.push(o.eventId);
          break;
        case 'rejected':
          rejected.ids.push(o.eventId);
          rejected.codes.push(o.code ?? 'rejected');
          rejected.messages.push(o.message ?? 'rejected by Stripe');
          rejected.statuses.push(o.httpStatus);
          break;
        default: {
          const attempted = o.outcome !== 'not_attempted';
          released.ids.push(o.eventId);
          released.attempted.push(attempted);
          released.codes.push(attempted ? (o.code ?? o.outcome) : null);
          released.messages.push(attempted ? (o.message ?? o.outcome) : null);
          released.claimedAt.push(new Date(row.claimed_at));
          // Events held back because this call hit a 429 wait out the same backoff as the 429s themselves.
          released.groups.push(o.outcome === 'rate_limited' || (o.outcome === 'not_attempted' && rateLimitedCall) ? 'rate_limited' : o.outcome === 'not_attempted' ? 'now' : 'transient');
        }
      }
    }
    for (const [outcome, n] of Object.entries(counts)) attemptCounter().add(n, { api: this.processor.api, outcome });

    await withTransaction(this.pool, async (client) => {
      const { rows: result } = await client.query<{
        latencies: number[];
        rejected: Array<{ id: string; identifier: string; code: string; message: string; http_status: number | null }>;
        released: Array<{ id: string; attempts: number; grp: 'rate_limited' | 'transient' | 'now' }>;
        attempts: number;
      }>({
        name: 'meterdesk_stripe_settle',
        text: SETTLE_SQL,
        values: [
          reportedIds,
          rejected.ids, rejected.codes, rejected.messages, rejected.statuses,
          released.ids, released.attempted, released.codes, released.messages, released.claimedAt, released.groups,
          attempts.ids, attempts.startedAt, traceId, attempts.durations, attempts.outcomes, attempts.statuses, attempts.codes,
          attempts.messages, attempts.responses,
        ],
      });
      const r = result[0]!;
      for (const ms of r.latencies) latency().record(ms, { api: this.processor.api });
      summary.reported += r.latencies.length;
      summary.failed += r.rejected.length;
      summary.retrying += r.released.length;

      const ops: OpsEventInput[] = r.rejected.map((e) => ({
        type: 'meter_reporting_failed',
        processor: 'stripe',
        source: 'sync',
        subjectType: 'meter_event',
        subjectId: e.id,
        metadata: { identifier: e.identifier, code: e.code, message: e.message, httpStatus: e.http_status },
      }));

      const groups = new Map<string, { ids: string[]; attempts: number }>();
      for (const e of r.released) {
        const g = groups.get(e.grp) ?? { ids: [], attempts: 0 };
        g.ids.push(e.id);
        g.attempts = Math.max(g.attempts, e.attempts);
        groups.set(e.grp, g);
      }
      for (const [grp, g] of groups) {
        const delayMs =
          grp === 'rate_limited' ? backoffDelay(g.attempts, this.rateLimit.baseMs, this.rateLimit.maxMs, this.random)
          : grp === 'transient' ? backoffDelay(g.attempts, this.transient.baseMs, this.transient.maxMs, this.random)
          : 0;
        await addJob(client, REPORT_TASK, { eventIds: g.ids }, { runAt: new Date(Date.now() + delayMs) });
        if (grp === 'rate_limited') {
          summary.rateLimited += g.ids.length;
          // One ops event per backoff episode (this call's 429s and the events held back with them), not per event.
          ops.push({
            type: 'processor_rate_limited',
            processor: 'stripe',
            source: 'sync',
            metadata: { api: this.processor.api, events: g.ids.length, rateLimitedCalls: counts.rate_limited ?? 0, delayMs },
          });
        }
      }
      if (ops.length > 0) await recordOpsEvents(client, ops);
    });
  }

  /**
   * The crontab's safety net: flags pending events past the dedupe guard, and re-enqueues (same identifiers) those
   * claimed long ago and never finished (a killed worker) or never claimed at all (a lost job).
   */
  async reconcile(): Promise<ReconcileSummary> {
    return tracer.startActiveSpan('StripeReporting.reconcile', async (span) => {
      try {
        let expired = 0;
        for (;;) {
          const n = await withTransaction(this.pool, async (client) => {
            const { rows } = await client.query<{ id: string; identifier: string; first_attempt_at: string }>(
              `WITH c AS (
                 SELECT id FROM meter_events
                 WHERE status = 'pending' AND processor = 'stripe' AND first_attempt_at < now() - $1 * interval '1 millisecond'
                   AND (claimed_at IS NULL OR claimed_at < now() - $2 * interval '1 millisecond')
                 ORDER BY id LIMIT 1000
                 FOR UPDATE SKIP LOCKED)
               UPDATE meter_events e
               SET status = 'failed', claimed_at = NULL, last_error_code = '${DEDUPE_EXPIRED_CODE}', last_error_message = $3,
                   last_error_source = 'reconciler', attention_reason = $4
               FROM c WHERE e.id = c.id
               RETURNING e.id, e.identifier, e.first_attempt_at`,
              [DEDUPE_GUARD_MS, this.claimTimeoutMs, DEDUPE_EXPIRED_MESSAGE, DEDUPE_EXPIRED_ATTENTION],
            );
            if (rows.length > 0) await recordOpsEvents(client, rows.map((e) => expiredOpsEvent(e, 'reconciler')));
            return rows.length;
          });
          expired += n;
          if (n < 1000) break;
        }

        const { rows: stale } = await this.pool.query<{ id: string }>(
          `SELECT e.id FROM meter_events e
           WHERE e.status = 'pending' AND e.processor = 'stripe'
             AND ((e.claimed_at IS NOT NULL AND e.claimed_at < now() - $1 * interval '1 millisecond')
               OR (e.claimed_at IS NULL AND e.received_at < now() - $2 * interval '1 millisecond'
                   AND NOT EXISTS (SELECT 1 FROM event_attempts a
                                   WHERE a.meter_event_id = e.id AND a.started_at >= now() - $2 * interval '1 millisecond')))
           ORDER BY e.id LIMIT $3`,
          [this.claimTimeoutMs, this.lostAfterMs, this.reconcileLimit],
        );
        if (stale.length > 0) {
          await withTransaction(this.pool, async (client) => {
            for (let i = 0; i < stale.length; i += MAX_JOB_EVENTS) {
              // A fixed key per chunk: a run that finds the same events still waiting replaces its earlier job
              // instead of piling up duplicates behind a long queue.
              await addJob(client, REPORT_TASK, { eventIds: stale.slice(i, i + MAX_JOB_EVENTS).map((r) => r.id) }, { jobKey: `stripe:reconcile:${i / MAX_JOB_EVENTS}` });
            }
          });
        }
        if (expired) reconciled().add(expired, { kind: 'expired' });
        if (stale.length) reconciled().add(stale.length, { kind: 'requeued' });
        span.setAttributes({ 'meterdesk.expired': expired, 'meterdesk.requeued': stale.length });
        return { expired, requeued: stale.length };
      } finally {
        span.end();
      }
    });
  }
}

function expiredOpsEvent(e: { id: string; identifier: string; first_attempt_at: string }, source: 'sync' | 'reconciler'): OpsEventInput {
  return {
    type: 'meter_reporting_failed',
    processor: 'stripe',
    source,
    subjectType: 'meter_event',
    subjectId: e.id,
    metadata: { identifier: e.identifier, code: DEDUPE_EXPIRED_CODE, firstAttemptAt: e.first_attempt_at },
  };
}
