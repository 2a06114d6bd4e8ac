// One reconciliation run: one at a time (a session advisory lock), its row in reconciliation_runs, the Stripe and
// Braintree comparisons, then in one transaction the drift recorded, the findings stored and drift no longer found
// resolved (only within what this run compared).
import type pg from 'pg';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { Semaphore } from '../processors/limits';
import type { ProcessorName } from '../processors/types';
import { inTransaction, withClient } from '../windows/transaction';
import { compareBraintree } from './braintree';
import {
  DAY_MS,
  DEFAULT_GRACE_MS,
  DEFAULT_LOOKBACK_DAYS,
  MAX_LOOKBACK_DAYS,
  utcDay,
  type Compared,
  type OpenDrift,
  type ProcessorCheck,
  type ReconcileOptions,
  type ReconcileResult,
  type ReconciliationTrigger,
  type RunContext,
} from './model';
import { insertFindings, recordDrift } from './record';
import { compareStripe } from './stripe';

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

class Reconciliation implements RunContext {
  readonly now: Date;
  readonly graceSince: Date;
  readonly from: Date;
  readonly to: Date;
  private readonly trigger: ReconciliationTrigger;
  readonly gate: Semaphore;

  constructor(
    readonly client: pg.ClientBase,
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
    const stripe = this.options.stripe ? await compareStripe(this, this.options.stripe, open.filter((o) => o.processor === 'stripe')) : null;
    const braintree = this.options.braintree ? await compareBraintree(this, this.options.braintree, open.filter((o) => o.processor === 'braintree')) : null;
    const findings = [...(stripe?.findings ?? []), ...(braintree?.findings ?? [])];
    const compared = new Set([...(stripe?.comparedKeys ?? []), ...(braintree?.comparedKeys ?? [])]);
    const found = new Set(findings.map((f) => f.dedupeKey));
    const toResolve = open.filter((o) => compared.has(o.dedupeKey) && !found.has(o.dedupeKey)).map((o) => o.id);
    const firstError = stripe?.firstError ?? braintree?.firstError ?? null;

    const { newDrift, resolved, finishedAt } = await inTransaction(this.client, async () => {
      const opsIds = await recordDrift(this, runId, findings);
      await insertFindings(this, runId, findings, opsIds);
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
}
