// Reconciliation: does each processor hold what the ledger says it does? (docs/decisions/011-reconciliation.md)
//
// - Stripe, per customer × meter (event name) × UTC day of usage time: the ledger's `reported` events, aggregated
//   with the Stripe meter's formula (sum / count / last), against Stripe's meter event summaries for that day.
// - Braintree, per window: the ledger's view (paid, and for how much, per its charge attempt) against the sales the
//   gateway finds by the window's order id. Only approved sales count as money taken.
//
// A bucket or window with work in flight is skipped, not compared: a report claimed but not settled, a report or a
// sale younger than the grace period (Stripe's summaries are eventually consistent; an error-report webhook may
// still turn a `reported` event into `failed`), a window in `settling`. Each remaining difference is a finding of
// the run and one open `ledger_drift` ops event per subject and period (its dedupe key), so a re-run does not
// duplicate it; a later run that compares the same bucket or window and finds it equal resolves the ops event.
// One run at a time (a session advisory lock); runs and findings are stored for the desk.
import type pg from 'pg';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { addJob, type Queryable } from './db';
import { jobByKey } from '../db/graphile-jobs';
import { writeAudit, type Actor } from './audit';
import { recordOpsEvents, type OpsEventInput } from './ops-events';
import { APPROVED_SALE_STATUSES } from './processors/braintree/processor';
import { Semaphore } from './processors/limits';
import type { ChargeProcessor, FindSaleResult, FoundSale, MeterAggregation, MeterEventSource, MeterTotalsResult, ProcessorName } from './processors/types';
import { orderIdFor } from './windows/settlement';
import { inTransaction, withClient } from './windows/transaction';

export const RECONCILE_TASK = 'ops__reconcile_ledger';
/** The job key of a run asked for from the desk: asking twice before it starts queues one run. */
export const RECONCILE_DESK_JOB_KEY = 'ops__reconcile_ledger:desk';
export const DEFAULT_LOOKBACK_DAYS = 3;
/** Stripe accepts usage up to 35 days old; nothing older can still change. */
export const MAX_LOOKBACK_DAYS = 35;
export const DEFAULT_GRACE_MS = 15 * 60_000;
const DAY_MS = 86_400_000;

export const STRIPE_DRIFT_KINDS = ['missing_at_processor', 'extra_at_processor', 'value_mismatch', 'no_processor_meter'] as const;
export const BRAINTREE_DRIFT_KINDS = ['sale_missing', 'duplicate_sale', 'amount_mismatch', 'unrecorded_sale'] as const;
export type DriftKind = (typeof STRIPE_DRIFT_KINDS)[number] | (typeof BRAINTREE_DRIFT_KINDS)[number];

export const DRIFT_KIND_LABELS: Record<DriftKind, string> = {
  missing_at_processor: 'Stripe counted less than the ledger reported',
  extra_at_processor: 'Stripe counted more than the ledger reported',
  value_mismatch: 'Stripe’s last value differs from the ledger’s',
  no_processor_meter: 'Stripe has no meter for this event name',
  sale_missing: 'Window paid, but no sale at Braintree',
  duplicate_sale: 'More than one sale for one window',
  amount_mismatch: 'Sale amount differs from the charge',
  unrecorded_sale: 'A sale for a window the ledger thinks unpaid',
};

export type ReconciliationTrigger = 'schedule' | 'desk' | 'cli';

export interface ReconciliationSources {
  /** What Stripe counted; absent: Stripe is not checked in this run. */
  stripe?: MeterEventSource | null;
  /** Braintree's sales by order id; absent: Braintree is not checked in this run. */
  braintree?: Pick<ChargeProcessor, 'findByOrderId'> | null;
}

export interface ReconcileOptions extends ReconciliationSources {
  /** Whole UTC days of usage time compared, today included. Default 3; at most 35. */
  lookbackDays?: number;
  /** Reports and sales younger than this are in flight (their bucket or window is skipped). Default 15 min. */
  graceMs?: number;
  /** Processor calls this run keeps in flight. Default 4 (each source also paces itself). */
  concurrency?: number;
  trigger?: ReconciliationTrigger;
  /** The desk user who asked for the run. */
  requestedBy?: string | null;
  now?: () => Date;
}

export interface Finding {
  processor: ProcessorName;
  kind: DriftKind;
  customerId: string;
  customerLabel: string;
  eventName: string | null;
  windowId: string | null;
  periodStart: Date;
  periodEnd: Date;
  /** Usage (Stripe) or minor units (Braintree), as decimal text. */
  ledger: { value: string; count: number };
  processorSide: { value: string; count: number | null };
  /** processor - ledger. */
  difference: string;
  currency: string | null;
  detail: Record<string, unknown>;
  dedupeKey: string;
}

export interface ProcessorCheck {
  checked: number;
  skipped: number;
  errors: number;
}

export interface ReconciliationRunSummary {
  id: string;
  trigger: ReconciliationTrigger;
  startedAt: Date;
  finishedAt: Date;
  periodFrom: Date;
  periodTo: Date;
  /** Null: that processor was not checked. */
  stripe: ProcessorCheck | null;
  braintree: ProcessorCheck | null;
  driftCount: number;
  newDriftCount: number;
  resolvedCount: number;
  /** The first error a processor answered with (those subjects were not compared). */
  error: string | null;
}

export type ReconcileResult =
  | { status: 'finished'; run: ReconciliationRunSummary; findings: Finding[] }
  /** Another run holds the lock; nothing was done. */
  | { status: 'busy' };

const tracer = trace.getTracer('meterdesk.reconciliation');

/** Runs one reconciliation. Safe to call concurrently: a second caller gets `busy` while a run is under way. */
export async function reconcileLedger(db: pg.Pool | pg.ClientBase, options: ReconcileOptions): Promise<ReconcileResult> {
  return tracer.startActiveSpan('Reconciliation.run', async (span) => {
    try {
      const result = await withClient(db, (client) => new Reconciliation(client, options).run());
      if (result.status === 'finished') {
        span.setAttribute('meterdesk.drift', result.run.driftCount);
        span.setAttribute('meterdesk.resolved', result.run.resolvedCount);
      } else span.setAttribute('meterdesk.busy', true);
      return result;
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** 00:00 UTC of the day holding `at`. */
export function utcDay(at: Date): Date {
  return new Date(Math.floor(at.getTime() / DAY_MS) * DAY_MS);
}

export function stripeDriftKey(customerId: string, eventName: string, day: Date): string {
  return `ledger_drift:stripe:${customerId}:${day.toISOString().slice(0, 10)}:${eventName}`;
}

export function braintreeDriftKey(windowId: string): string {
  return `ledger_drift:braintree:${windowId}`;
}

// ───────────────────────────── the run ─────────────────────────────

interface OpenDrift {
  id: string;
  dedupeKey: string;
  processor: ProcessorName;
  customerId: string | null;
  eventName: string | null;
  periodStart: Date | null;
  windowId: string | null;
}

interface LedgerBucket {
  customerId: string;
  eventName: string;
  day: Date;
  reportedCount: number;
  reportedSum: string;
  reportedLast: string | null;
  pending: number;
  failed: number;
  inFlight: number;
}

interface CustomerInfo {
  processorCustomerId: string;
  label: string;
}

interface Compared {
  checked: number;
  skipped: number;
  errors: number;
  findings: Finding[];
  /** Dedupe keys of the buckets/windows compared (equal or not): the scope in which open drift can be resolved. */
  comparedKeys: Set<string>;
  firstError: string | null;
}

class Reconciliation {
  private readonly now: Date;
  private readonly graceSince: Date;
  private readonly from: Date;
  private readonly to: Date;
  private readonly trigger: ReconciliationTrigger;
  private readonly gate: Semaphore;

  constructor(
    private readonly client: pg.ClientBase,
    private readonly options: ReconcileOptions,
  ) {
    this.now = (options.now ?? (() => new Date()))();
    const days = Math.min(MAX_LOOKBACK_DAYS, Math.max(1, Math.floor(options.lookbackDays ?? DEFAULT_LOOKBACK_DAYS)));
    this.to = new Date(utcDay(this.now).getTime() + DAY_MS);
    this.from = new Date(this.to.getTime() - days * DAY_MS);
    this.graceSince = new Date(this.now.getTime() - (options.graceMs ?? DEFAULT_GRACE_MS));
    this.trigger = options.trigger ?? 'schedule';
    this.gate = new Semaphore(Math.max(1, options.concurrency ?? 4));
  }

  async run(): Promise<ReconcileResult> {
    const c = this.client;
    const lock = await c.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock(hashtext('meterdesk'), hashtext('reconciliation')) AS locked`);
    if (!lock.rows[0]?.locked) return { status: 'busy' };
    try {
      // Holding the lock, any other `running` row is a run whose process died.
      await c.query(
        `UPDATE reconciliation_runs SET status = 'failed', finished_at = $1, error = 'abandoned: the process stopped before the run finished'
          WHERE status = 'running'`,
        [this.now],
      );
      const inserted = await c.query<{ id: string }>(
        `INSERT INTO reconciliation_runs (id, started_at, status, trigger, requested_by, period_from, period_to)
         VALUES (gen_random_uuid(), $1, 'running', $2, $3, $4, $5) RETURNING id`,
        [this.now, this.trigger, this.options.requestedBy ?? null, this.from, this.to],
      );
      const runId = inserted.rows[0]!.id;
      try {
        return await this.compareAndRecord(runId);
      } catch (error) {
        await c
          .query(`UPDATE reconciliation_runs SET status = 'failed', finished_at = now(), error = $2 WHERE id = $1`, [
            runId,
            (error instanceof Error ? error.message : String(error)).slice(0, 1000),
          ])
          .catch(() => {});
        throw error;
      }
    } finally {
      await c.query(`SELECT pg_advisory_unlock(hashtext('meterdesk'), hashtext('reconciliation'))`).catch(() => {});
    }
  }

  private async compareAndRecord(runId: string): Promise<ReconcileResult> {
    const open = await this.openDrift();
    const stripe = this.options.stripe ? await this.compareStripe(this.options.stripe, open.filter((o) => o.processor === 'stripe')) : null;
    const braintree = this.options.braintree ? await this.compareBraintree(this.options.braintree, open.filter((o) => o.processor === 'braintree')) : null;
    const findings = [...(stripe?.findings ?? []), ...(braintree?.findings ?? [])];
    const compared = new Set([...(stripe?.comparedKeys ?? []), ...(braintree?.comparedKeys ?? [])]);
    const found = new Set(findings.map((f) => f.dedupeKey));
    const toResolve = open.filter((o) => compared.has(o.dedupeKey) && !found.has(o.dedupeKey)).map((o) => o.id);
    const firstError = stripe?.firstError ?? braintree?.firstError ?? null;

    const { newDrift, resolved, finishedAt } = await inTransaction(this.client, async () => {
      const opsIds = await this.recordDrift(runId, findings);
      await this.insertFindings(runId, findings, opsIds);
      const r = toResolve.length
        ? await this.client.query(`UPDATE ops_events SET resolved_at = $2 WHERE id = ANY($1::uuid[]) AND resolved_at IS NULL`, [toResolve, this.now])
        : { rowCount: 0 };
      const counts = (p: Compared | null) => (p ? [p.checked, p.skipped, p.errors] : [null, null, null]);
      const finished = await this.client.query<{ finished_at: Date }>(
        `UPDATE reconciliation_runs SET status = 'succeeded', finished_at = clock_timestamp(),
                stripe_checked = $2, stripe_skipped = $3, stripe_errors = $4,
                braintree_checked = $5, braintree_skipped = $6, braintree_errors = $7,
                drift_count = $8, new_drift_count = $9, resolved_count = $10, error = $11
          WHERE id = $1 RETURNING finished_at`,
        [runId, ...counts(stripe), ...counts(braintree), findings.length, opsIds.created, r.rowCount ?? 0, firstError],
      );
      return { newDrift: opsIds.created, resolved: r.rowCount ?? 0, finishedAt: finished.rows[0]!.finished_at };
    });
    const check = (p: Compared | null): ProcessorCheck | null => (p ? { checked: p.checked, skipped: p.skipped, errors: p.errors } : null);
    return {
      status: 'finished',
      findings,
      run: {
        id: runId,
        trigger: this.trigger,
        startedAt: this.now,
        finishedAt,
        periodFrom: this.from,
        periodTo: this.to,
        stripe: check(stripe),
        braintree: check(braintree),
        driftCount: findings.length,
        newDriftCount: newDrift,
        resolvedCount: resolved,
        error: firstError,
      },
    };
  }

  /** Open ledger_drift ops events this reconciliation raised (what a run may resolve). */
  private async openDrift(): Promise<OpenDrift[]> {
    const { rows } = await this.client.query<{ id: string; dedupe_key: string; processor: ProcessorName; metadata: Record<string, unknown> | null }>(
      `SELECT id, dedupe_key, processor::text AS processor, metadata FROM ops_events
        WHERE resolved_at IS NULL AND type = 'ledger_drift' AND source = 'reconciliation' AND dedupe_key IS NOT NULL`,
    );
    return rows.map((r) => {
      const m = r.metadata ?? {};
      const text = (k: string) => (typeof m[k] === 'string' ? (m[k] as string) : null);
      const start = text('period_start');
      return {
        id: r.id,
        dedupeKey: r.dedupe_key,
        processor: r.processor,
        customerId: text('customer_id'),
        eventName: text('event_name'),
        periodStart: start ? new Date(start) : null,
        windowId: text('window_id'),
      };
    });
  }

  // ─────────────── Stripe ───────────────

  private async compareStripe(source: MeterEventSource, open: OpenDrift[]): Promise<Compared> {
    const out: Compared = { checked: 0, skipped: 0, errors: 0, findings: [], comparedKeys: new Set(), firstError: null };
    const ledger = await this.ledgerBuckets();
    // Per (customer, event name): the days to compare. Open drift in this run's days is compared again even when the
    // ledger no longer has events there, so that it can be resolved.
    const pairs = new Map<string, { customerId: string; eventName: string; days: Set<number>; ledgerBuckets: number }>();
    const pairOf = (customerId: string, eventName: string) => {
      const key = `${customerId}\u0000${eventName}`;
      let pair = pairs.get(key);
      if (!pair) pairs.set(key, (pair = { customerId, eventName, days: new Set(), ledgerBuckets: 0 }));
      return pair;
    };
    for (const b of ledger.values()) {
      const pair = pairOf(b.customerId, b.eventName);
      pair.days.add(b.day.getTime());
      pair.ledgerBuckets += 1;
    }
    for (const o of open) {
      if (o.customerId && o.eventName && o.periodStart && o.periodStart >= this.from && o.periodStart < this.to) {
        pairOf(o.customerId, o.eventName).days.add(utcDay(o.periodStart).getTime());
      }
    }
    if (pairs.size === 0) return out;
    const customers = await this.customers([...new Set([...pairs.values()].map((p) => p.customerId))]);

    const answers = await Promise.all(
      [...pairs.values()].map((pair) =>
        this.gate.run(async (): Promise<{ pair: typeof pair; result: MeterTotalsResult }> => {
          const customer = customers.get(pair.customerId);
          if (!customer) return { pair, result: { outcome: 'error', code: 'unknown_customer', message: `customer ${pair.customerId} is not in the ledger` } };
          return { pair, result: await source.dailyTotals({ processorCustomerId: customer.processorCustomerId, eventName: pair.eventName, from: this.from, to: this.to }) };
        }),
      ),
    );

    interface Candidate {
      customerId: string;
      eventName: string;
      day: Date;
      aggregation: MeterAggregation | null;
      meterId: string | null;
      processorValue: number;
    }
    const candidates: Candidate[] = [];
    for (const { pair, result } of answers) {
      if (result.outcome === 'error') {
        out.errors += Math.max(1, pair.ledgerBuckets);
        out.firstError ??= `Stripe ${result.code}: ${result.message}`;
        continue;
      }
      const counted = new Map<number, number>();
      for (const d of result.days) {
        const day = utcDay(d.periodStart).getTime();
        counted.set(day, (counted.get(day) ?? 0) + d.value);
      }
      for (const day of new Set([...pair.days, ...counted.keys()])) {
        if (day < this.from.getTime() || day >= this.to.getTime()) continue;
        candidates.push({
          customerId: pair.customerId,
          eventName: pair.eventName,
          day: new Date(day),
          aggregation: result.aggregation,
          meterId: result.meterId,
          processorValue: counted.get(day) ?? 0,
        });
      }
    }

    // First pass on the ledger as read before Stripe; a difference is confirmed against the ledger read after
    // Stripe answered (a report that landed in between shows up there as in flight, not as drift).
    const differing: Candidate[] = [];
    for (const cand of candidates) {
      const b = ledger.get(bucketKey(cand.customerId, cand.eventName, cand.day));
      if (b && b.inFlight > 0) continue;
      if (!equalValues(ledgerValue(b, cand.aggregation), cand.processorValue)) differing.push(cand);
    }
    const confirmed = differing.length ? await this.ledgerBuckets(differing) : new Map<string, LedgerBucket>();
    const differs = new Set(differing.map((d) => bucketKey(d.customerId, d.eventName, d.day)));

    for (const cand of candidates) {
      const key = bucketKey(cand.customerId, cand.eventName, cand.day);
      const b = differs.has(key) ? confirmed.get(key) : ledger.get(key);
      if (b && b.inFlight > 0) {
        out.skipped += 1;
        continue;
      }
      out.checked += 1;
      const dedupeKey = stripeDriftKey(cand.customerId, cand.eventName, cand.day);
      out.comparedKeys.add(dedupeKey);
      const ledgerText = ledgerValue(b, cand.aggregation);
      if (equalValues(ledgerText, cand.processorValue)) continue;
      const processorText = decimalText(cand.processorValue);
      const difference = subtract(processorText, ledgerText);
      const kind: DriftKind =
        cand.meterId === null ? 'no_processor_meter' : cand.aggregation === 'last' ? 'value_mismatch' : difference.startsWith('-') ? 'missing_at_processor' : 'extra_at_processor';
      out.findings.push({
        processor: 'stripe',
        kind,
        customerId: cand.customerId,
        customerLabel: customers.get(cand.customerId)?.label ?? cand.customerId,
        eventName: cand.eventName,
        windowId: null,
        periodStart: cand.day,
        periodEnd: new Date(cand.day.getTime() + DAY_MS),
        ledger: { value: ledgerText, count: b?.reportedCount ?? 0 },
        processorSide: { value: processorText, count: cand.aggregation === 'count' ? Math.round(cand.processorValue) : null },
        difference,
        currency: null,
        detail: {
          meter_id: cand.meterId,
          aggregation: cand.aggregation,
          processor_customer_id: customers.get(cand.customerId)?.processorCustomerId ?? null,
          ledger_pending: b?.pending ?? 0,
          ledger_failed: b?.failed ?? 0,
        },
        dedupeKey,
      });
    }
    return out;
  }

  /** The ledger's Stripe events in this run's days, per customer, event name and UTC day (only `only`'s buckets when given). */
  private async ledgerBuckets(only?: ReadonlyArray<{ customerId: string; eventName: string; day: Date }>): Promise<Map<string, LedgerBucket>> {
    const params: unknown[] = [this.from, this.to, this.graceSince];
    let filter = '';
    if (only) {
      params.push(only.map((o) => o.customerId), only.map((o) => o.eventName), only.map((o) => o.day));
      filter = `AND (e.customer_id, e.event_name, date_trunc('day', e.occurred_at, 'UTC')) IN (SELECT * FROM unnest($4::uuid[], $5::text[], $6::timestamptz[]))`;
    }
    // In flight: claimed for a report that has not settled, or reported / first sent within the grace period.
    const { rows } = await this.client.query<{
      customer_id: string;
      event_name: string;
      day: Date;
      reported_count: number;
      reported_sum: string;
      reported_last: string | null;
      pending: number;
      failed: number;
      in_flight: number;
    }>(
      `SELECT e.customer_id, e.event_name, date_trunc('day', e.occurred_at, 'UTC') AS day,
              count(*) FILTER (WHERE e.status = 'reported')::int AS reported_count,
              COALESCE(sum(e.value) FILTER (WHERE e.status = 'reported'), 0)::text AS reported_sum,
              (array_agg(e.value::text ORDER BY e.occurred_at DESC, e.id DESC) FILTER (WHERE e.status = 'reported'))[1] AS reported_last,
              count(*) FILTER (WHERE e.status = 'pending')::int AS pending,
              count(*) FILTER (WHERE e.status = 'failed')::int AS failed,
              count(*) FILTER (WHERE (e.status = 'pending' AND e.first_attempt_at IS NOT NULL)
                                  OR COALESCE(e.reported_at, e.first_attempt_at) >= $3)::int AS in_flight
         FROM meter_events e
        WHERE e.processor = 'stripe' AND e.occurred_at >= $1 AND e.occurred_at < $2 ${filter}
        GROUP BY 1, 2, 3`,
      params,
    );
    const map = new Map<string, LedgerBucket>();
    for (const r of rows) {
      map.set(bucketKey(r.customer_id, r.event_name, r.day), {
        customerId: r.customer_id,
        eventName: r.event_name,
        day: r.day,
        reportedCount: r.reported_count,
        reportedSum: r.reported_sum,
        reportedLast: r.reported_last,
        pending: r.pending,
        failed: r.failed,
        inFlight: r.in_flight,
      });
    }
    return map;
  }

  private async customers(ids: string[]): Promise<Map<string, CustomerInfo>> {
    const { rows } = await this.client.query<{ id: string; processor_customer_id: string; label: string }>(
      `SELECT id, processor_customer_id, COALESCE(name, external_id) AS label FROM customers WHERE id = ANY($1::uuid[])`,
      [ids],
    );
    return new Map(rows.map((r) => [r.id, { processorCustomerId: r.processor_customer_id, label: r.label }]));
  }

  // ─────────────── Braintree ───────────────

  private async compareBraintree(processor: Pick<ChargeProcessor, 'findByOrderId'>, open: OpenDrift[]): Promise<Compared> {
    const out: Compared = { checked: 0, skipped: 0, errors: 0, findings: [], comparedKeys: new Set(), firstError: null };
    // Windows that may have been charged recently, and those with open drift whatever their age.
    const { rows: candidates } = await this.client.query<{ id: string }>(
      `SELECT w.id FROM windows w LEFT JOIN charge_attempts a ON a.window_id = w.id
        WHERE w.state <> 'open' AND (w.period_end >= $1 OR w.paid_at >= $1 OR a.updated_at >= $1)
       UNION
       SELECT unnest($2::uuid[])`,
      [this.from, open.map((o) => o.windowId).filter((id): id is string => id !== null)],
    );
    if (candidates.length === 0) return out;
    const searches = new Map<string, FindSaleResult>();
    await Promise.all(candidates.map((w) => this.gate.run(async () => void searches.set(w.id, await processor.findByOrderId(orderIdFor(w.id))))));

    // Read after the searches: a sale the search saw was marked sent (settling, last_sent_at) before it left.
    const { rows } = await this.client.query<{
      id: string;
      customer_id: string;
      customer_label: string;
      period_start: Date;
      period_end: Date;
      state: string;
      currency: string;
      total_minor: string | null;
      charge_status: string | null;
      amount_minor: string | null;
      transaction_id: string | null;
      last_sent_at: Date | null;
    }>(
      `SELECT w.id, w.customer_id, COALESCE(c.name, c.external_id) AS customer_label, w.period_start, w.period_end,
              w.state::text AS state, w.currency, i.total_minor::text AS total_minor, a.status::text AS charge_status,
              a.amount_minor::text AS amount_minor, a.transaction_id, a.last_sent_at
         FROM windows w JOIN customers c ON c.id = w.customer_id
         LEFT JOIN invoices i ON i.window_id = w.id LEFT JOIN charge_attempts a ON a.window_id = w.id
        WHERE w.id = ANY($1::uuid[])`,
      [candidates.map((w) => w.id)],
    );
    for (const w of rows) {
      if (w.state === 'open' || w.state === 'settling' || (w.last_sent_at && w.last_sent_at >= this.graceSince)) {
        out.skipped += 1;
        continue;
      }
      const search = searches.get(w.id);
      if (!search || search.outcome === 'error') {
        out.errors += 1;
        out.firstError ??= search ? `Braintree ${search.code}: ${search.message}` : `Braintree: no answer for window ${w.id}`;
        continue;
      }
      out.checked += 1;
      const dedupeKey = braintreeDriftKey(w.id);
      out.comparedKeys.add(dedupeKey);
      const sales: FoundSale[] = search.outcome === 'found' ? search.sales : [];
      const approved = sales.filter((s) => APPROVED_SALE_STATUSES.has(s.status));
      const paid = w.state === 'paid';
      // What the ledger says was taken: the charge attempt's amount (the invoice total when there is no attempt).
      const ledgerAmount = paid ? BigInt(w.amount_minor ?? w.total_minor ?? '0') : 0n;
      const ledgerCount = paid && ledgerAmount > 0n ? 1 : 0;
      const processorAmount = approved.reduce((sum, s) => sum + s.amountMinor, 0n);
      const currencyOff = approved.some((s) => s.currency.toLowerCase() !== w.currency.trim().toLowerCase());
      let kind: DriftKind | null = null;
      if (approved.length > 1) kind = 'duplicate_sale';
      else if (approved.length === 1 && !paid) kind = 'unrecorded_sale';
      else if (approved.length === 0 && ledgerCount === 1) kind = 'sale_missing';
      else if (approved.length === 1 && (processorAmount !== ledgerAmount || currencyOff)) kind = 'amount_mismatch';
      if (!kind) continue;
      out.findings.push({
        processor: 'braintree',
        kind,
        customerId: w.customer_id,
        customerLabel: w.customer_label,
        eventName: null,
        windowId: w.id,
        periodStart: w.period_start,
        periodEnd: w.period_end,
        ledger: { value: ledgerAmount.toString(), count: ledgerCount },
        processorSide: { value: processorAmount.toString(), count: approved.length },
        difference: (processorAmount - ledgerAmount).toString(),
        currency: w.currency.trim(),
        detail: {
          order_id: orderIdFor(w.id),
          window_state: w.state,
          charge_status: w.charge_status,
          recorded_transaction_id: w.transaction_id,
          approved_sales: approved.map((s) => ({ id: s.transactionId, status: s.status, amount_minor: s.amountMinor.toString(), currency: s.currency })),
          other_sales: sales.length - approved.length,
        },
        dedupeKey,
      });
    }
    return out;
  }

  // ─────────────── recording ───────────────

  /** One open ledger_drift ops event per finding (new ones counted), its metadata refreshed to this run's numbers. */
  private async recordDrift(runId: string, findings: Finding[]): Promise<{ created: number; ids: Map<string, string> }> {
    if (findings.length === 0) return { created: 0, ids: new Map() };
    const keys = findings.map((f) => f.dedupeKey);
    // A drift resolved earlier (by a run or by hand) that is back: the old event keeps its history under another key.
    await this.client.query(
      `UPDATE ops_events SET dedupe_key = dedupe_key || ':resolved:' || id::text WHERE dedupe_key = ANY($1::text[]) AND resolved_at IS NOT NULL`,
      [keys],
    );
    const events: OpsEventInput[] = findings.map((f) => ({
      type: 'ledger_drift',
      processor: f.processor,
      source: 'reconciliation',
      subjectType: f.windowId ? 'window' : 'customer',
      subjectId: f.windowId ?? f.customerId,
      dedupeKey: f.dedupeKey,
      metadata: driftMetadata(runId, f),
    }));
    const created = await recordOpsEvents(this.client, events);
    const { rows } = await this.client.query<{ id: string; dedupe_key: string }>(
      `UPDATE ops_events o SET metadata = v.metadata
         FROM unnest($1::text[], $2::jsonb[]) AS v(dedupe_key, metadata)
        WHERE o.dedupe_key = v.dedupe_key AND o.resolved_at IS NULL
       RETURNING o.id, o.dedupe_key`,
      [keys, events.map((e) => JSON.stringify(e.metadata))],
    );
    return { created, ids: new Map(rows.map((r) => [r.dedupe_key, r.id])) };
  }

  private async insertFindings(runId: string, findings: Finding[], ops: { ids: Map<string, string> }): Promise<void> {
    if (findings.length === 0) return;
    await this.client.query(
      `INSERT INTO reconciliation_findings (id, run_id, processor, kind, customer_id, event_name, window_id, period_start, period_end,
                                            ledger_value, ledger_count, processor_value, processor_count, difference, currency, ops_event_id, detail)
       SELECT gen_random_uuid(), $1, * FROM unnest($2::processor[], $3::text[], $4::uuid[], $5::text[], $6::uuid[], $7::timestamptz[], $8::timestamptz[],
                                                   $9::numeric[], $10::int[], $11::numeric[], $12::int[], $13::numeric[], $14::text[], $15::uuid[], $16::jsonb[])`,
      [
        runId,
        findings.map((f) => f.processor),
        findings.map((f) => f.kind),
        findings.map((f) => f.customerId),
        findings.map((f) => f.eventName),
        findings.map((f) => f.windowId),
        findings.map((f) => f.periodStart),
        findings.map((f) => f.periodEnd),
        findings.map((f) => f.ledger.value),
        findings.map((f) => f.ledger.count),
        findings.map((f) => f.processorSide.value),
        findings.map((f) => f.processorSide.count),
        findings.map((f) => f.difference),
        findings.map((f) => f.currency),
        findings.map((f) => ops.ids.get(f.dedupeKey) ?? null),
        findings.map((f) => JSON.stringify(f.detail)),
      ],
    );
  }
}

function driftMetadata(runId: string, f: Finding): Record<string, unknown> {
  return {
    kind: f.kind,
    ledger: f.ledger,
    processor: f.processorSide,
    difference: f.difference,
    currency: f.currency,
    customer_id: f.customerId,
    event_name: f.eventName,
    window_id: f.windowId,
    period_start: f.periodStart.toISOString(),
    period_end: f.periodEnd.toISOString(),
    run_id: runId,
    ...f.detail,
  };
}

function bucketKey(customerId: string, eventName: string, day: Date): string {
  return `${customerId}\u0000${eventName}\u0000${day.getTime()}`;
}

/** The ledger's side of a bucket under Stripe's formula (no meter at Stripe: the sum, compared with nothing). */
function ledgerValue(b: LedgerBucket | undefined, aggregation: MeterAggregation | null): string {
  if (!b) return '0';
  if (aggregation === 'count') return String(b.reportedCount);
  if (aggregation === 'last') return b.reportedLast ?? '0';
  return b.reportedSum;
}

/** The ledger's integers are exact; Stripe's aggregated_value is a double: compare exactly when it is an integer. */
function equalValues(ledger: string, processor: number): boolean {
  if (Number.isInteger(processor)) return BigInt(ledger) === BigInt(processor);
  return false;
}

function decimalText(value: number): string {
  if (Number.isInteger(value)) return BigInt(value).toString();
  return value.toFixed(6).replace(/0+$/, '').replace(/\.$/, '');
}

/** a - b for decimal texts with at most 6 decimals (the findings' numeric scale). */
function subtract(a: string, b: string): string {
  const scaled = (t: string) => {
    const negative = t.startsWith('-');
    const [whole = '0', frac = ''] = (negative ? t.slice(1) : t).split('.');
    const v = BigInt(whole) * 1_000_000n + BigInt((frac + '000000').slice(0, 6));
    return negative ? -v : v;
  };
  const d = scaled(a) - scaled(b);
  const abs = d < 0n ? -d : d;
  const whole = (abs / 1_000_000n).toString();
  const frac = (abs % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${d < 0n ? '-' : ''}${whole}${frac ? `.${frac}` : ''}`;
}

// ───────────────────────────── asking for a run (desk) ─────────────────────────────

/** Queues a run now (the worker holds the processor clients), audited. Asking again before it starts queues one run. */
export async function requestReconciliation(pool: pg.Pool, input: { actor: Actor; reason?: string | null }): Promise<void> {
  await withClient(pool, (client) =>
    inTransaction(client, async () => {
      await addJob(client, RECONCILE_TASK, { trigger: 'desk', requestedBy: input.actor.userId }, { jobKey: RECONCILE_DESK_JOB_KEY, maxAttempts: 1 });
      await writeAudit(client, {
        actor: input.actor,
        action: 'reconciliation.run',
        subjectType: 'reconciliation',
        reason: input.reason ?? null,
        after: { queued: true, task: RECONCILE_TASK },
      });
    }),
  );
}

// ───────────────────────────── reads (desk, CLI) ─────────────────────────────

export interface StoredRun {
  id: string;
  status: 'running' | 'succeeded' | 'failed';
  trigger: string;
  requestedBy: string | null;
  startedAt: string;
  finishedAt: string | null;
  periodFrom: string;
  periodTo: string;
  stripe: ProcessorCheck | null;
  braintree: ProcessorCheck | null;
  driftCount: number;
  newDriftCount: number;
  resolvedCount: number;
  error: string | null;
}

export interface StoredFinding {
  id: string;
  processor: ProcessorName;
  kind: DriftKind;
  customerId: string;
  customerLabel: string;
  eventName: string | null;
  windowId: string | null;
  periodStart: string;
  periodEnd: string;
  ledgerValue: string;
  ledgerCount: number;
  processorValue: string;
  processorCount: number | null;
  difference: string;
  currency: string | null;
  opsEventId: string | null;
  opsEventOpen: boolean;
}

export interface ReconciliationPage {
  /** The latest run that finished (succeeded or failed). */
  last: StoredRun | null;
  /** A run under way now, if any. */
  running: StoredRun | null;
  /** A run asked for from the desk and not started yet. */
  queuedAt: string | null;
  findings: StoredFinding[];
  recent: StoredRun[];
  /** Open ledger_drift ops events of reconciliation, whichever run raised them (a run resolves only what it compared). */
  openDrift: number;
}

const RUN_COLUMNS = `id, status::text AS status, trigger, requested_by, started_at, finished_at, period_from, period_to,
  stripe_checked, stripe_skipped, stripe_errors, braintree_checked, braintree_skipped, braintree_errors,
  drift_count, new_drift_count, resolved_count, error`;

interface RunRow {
  id: string;
  status: StoredRun['status'];
  trigger: string;
  requested_by: string | null;
  started_at: Date;
  finished_at: Date | null;
  period_from: Date;
  period_to: Date;
  stripe_checked: number | null;
  stripe_skipped: number | null;
  stripe_errors: number | null;
  braintree_checked: number | null;
  braintree_skipped: number | null;
  braintree_errors: number | null;
  drift_count: number;
  new_drift_count: number;
  resolved_count: number;
  error: string | null;
}

function toStoredRun(r: RunRow): StoredRun {
  const check = (checked: number | null, skipped: number | null, errors: number | null) =>
    checked === null ? null : { checked, skipped: skipped ?? 0, errors: errors ?? 0 };
  return {
    id: r.id,
    status: r.status,
    trigger: r.trigger,
    requestedBy: r.requested_by,
    startedAt: r.started_at.toISOString(),
    finishedAt: r.finished_at?.toISOString() ?? null,
    periodFrom: r.period_from.toISOString(),
    periodTo: r.period_to.toISOString(),
    stripe: check(r.stripe_checked, r.stripe_skipped, r.stripe_errors),
    braintree: check(r.braintree_checked, r.braintree_skipped, r.braintree_errors),
    driftCount: r.drift_count,
    newDriftCount: r.new_drift_count,
    resolvedCount: r.resolved_count,
    error: r.error,
  };
}

export async function readRunFindings(db: Queryable, runId: string, limit = 500): Promise<StoredFinding[]> {
  const { rows } = await db.query<{
    id: string;
    processor: ProcessorName;
    kind: DriftKind;
    customer_id: string;
    customer_label: string | null;
    event_name: string | null;
    window_id: string | null;
    period_start: Date;
    period_end: Date;
    ledger_value: string;
    ledger_count: number;
    processor_value: string;
    processor_count: number | null;
    difference: string;
    currency: string | null;
    ops_event_id: string | null;
    ops_open: boolean | null;
  }>(
    `SELECT f.id, f.processor::text AS processor, f.kind, f.customer_id, COALESCE(c.name, c.external_id) AS customer_label,
            f.event_name, f.window_id, f.period_start, f.period_end, trim_scale(f.ledger_value)::text AS ledger_value, f.ledger_count,
            trim_scale(f.processor_value)::text AS processor_value, f.processor_count, trim_scale(f.difference)::text AS difference,
            trim(f.currency) AS currency, f.ops_event_id, (o.resolved_at IS NULL) AS ops_open
       FROM reconciliation_findings f
       LEFT JOIN customers c ON c.id = f.customer_id
       LEFT JOIN ops_events o ON o.id = f.ops_event_id
      WHERE f.run_id = $1
      ORDER BY f.processor, customer_label, f.period_start, f.event_name NULLS LAST
      LIMIT $2`,
    [runId, limit],
  );
  return rows.map((r) => ({
    id: r.id,
    processor: r.processor,
    kind: r.kind,
    customerId: r.customer_id,
    customerLabel: r.customer_label ?? r.customer_id,
    eventName: r.event_name,
    windowId: r.window_id,
    periodStart: r.period_start.toISOString(),
    periodEnd: r.period_end.toISOString(),
    ledgerValue: r.ledger_value,
    ledgerCount: r.ledger_count,
    processorValue: r.processor_value,
    processorCount: r.processor_count,
    difference: r.difference,
    currency: r.currency,
    opsEventId: r.ops_event_id,
    opsEventOpen: r.ops_event_id !== null && r.ops_open === true,
  }));
}

export const ReconciliationPresenter = {
  async call(db: Queryable): Promise<ReconciliationPage> {
    return tracer.startActiveSpan('ReconciliationPresenter.call', async (span) => {
      try {
        const [recentRows, queued, open] = await Promise.all([
          db.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM reconciliation_runs ORDER BY started_at DESC LIMIT 10`),
          jobByKey(db, RECONCILE_DESK_JOB_KEY),
          db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ops_events WHERE resolved_at IS NULL AND type = 'ledger_drift' AND source = 'reconciliation'`),
        ]);
        const recent = recentRows.rows.map(toStoredRun);
        const running = recent.find((r) => r.status === 'running') ?? null;
        let last = recent.find((r) => r.status !== 'running') ?? null;
        if (!last && !running) {
          const older = await db.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM reconciliation_runs WHERE status <> 'running' ORDER BY started_at DESC LIMIT 1`);
          last = older.rows[0] ? toStoredRun(older.rows[0]) : null;
        }
        const findings = last ? await readRunFindings(db, last.id) : [];
        return { last, running, queuedAt: queued && !queued.lockedAt ? queued.runAt.toISOString() : null, findings, recent, openDrift: open.rows[0]?.n ?? 0 };
      } finally {
        span.end();
      }
    });
  },
};

/** A run's summary as the CLI prints it (and as the desk says it): drift stated plainly, zero included. */
export function describeRun(run: Pick<ReconciliationRunSummary, 'stripe' | 'braintree' | 'driftCount' | 'newDriftCount' | 'resolvedCount' | 'periodFrom' | 'periodTo' | 'error'>): string[] {
  const days = Math.round((run.periodTo.getTime() - run.periodFrom.getTime()) / DAY_MS);
  const side = (name: string, unit: string, c: ProcessorCheck | null) =>
    c === null
      ? `${name}: not checked (not configured here)`
      : `${name}: ${c.checked} ${unit}${c.checked === 1 ? '' : 's'} compared, ${c.skipped} in flight (left for a later run), ${c.errors} not compared (processor error)`;
  const lines = [
    `period: ${run.periodFrom.toISOString().slice(0, 10)} .. ${new Date(run.periodTo.getTime() - DAY_MS).toISOString().slice(0, 10)} (${days} UTC day${days === 1 ? '' : 's'})`,
    side('Stripe', 'customer-meter-day', run.stripe),
    side('Braintree', 'window', run.braintree),
    run.driftCount === 0
      ? 'zero drift: the ledger and the processors agree on everything compared'
      : `${run.driftCount} difference${run.driftCount === 1 ? '' : 's'} (${run.newDriftCount} new)`,
  ];
  if (run.resolvedCount > 0) lines.push(`${run.resolvedCount} earlier difference${run.resolvedCount === 1 ? '' : 's'} now gone (resolved)`);
  if (run.error) lines.push(`first processor error: ${run.error}`);
  return lines;
}
