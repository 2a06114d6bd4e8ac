// Asking for a run from the desk, and the reads of runs and findings for the desk and the CLI.
import type pg from 'pg';
import { trace } from '@opentelemetry/api';
import { jobByKey } from '../../db/graphile-jobs';
import { writeAudit, type Actor } from '../audit';
import { addJob, type Queryable } from '../db';
import type { ProcessorName } from '../processors/types';
import { inTransaction, withClient } from '../windows/transaction';
import { DAY_MS, RECONCILE_DESK_JOB_KEY, RECONCILE_TASK, type DriftKind, type ProcessorCheck, type ReconciliationRunSummary } from './model';

const tracer = trace.getTracer('meterdesk.reconciliation');

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
  /** Null when the finding names a customer the desk cannot find. */
  customerExternalId: string | null;
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
    customer_external_id: string | null;
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
    `SELECT f.id, f.processor::text AS processor, f.kind, f.customer_id, COALESCE(c.name, c.external_id) AS customer_label, c.external_id AS customer_external_id,
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
    customerExternalId: r.customer_external_id,
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
