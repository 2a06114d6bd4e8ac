// The end of a seed: faults off, and every pending event, webhook and window given time to finish; whatever does not
// is a violation. Then the operator's view of the same proof (a reconciliation run) and the Braintree summary.
import type pg from 'pg';
import { jobsByPayloadField } from '../app/db/graphile-jobs';
import { reconcileLedger } from '../app/billing/reconciliation';
import { reconciliationSources } from '../app/cli/reconcile';
import { CLOSE_GRACE_MS, sleep } from './plan';
import type { BraintreeEnv, CampaignProcesses, SimulatorControl } from './processes';

export interface BraintreeSummary {
  subscriptions: number;
  /** Windows by final state. */
  windows: Record<string, number>;
  /** Transactions the simulator recorded (any outcome), and the approved ones. */
  sales: number;
  approved: number;
  /** Braintree events by final ledger status; late ones billed on a late-usage line. */
  events: Record<string, number>;
  lateBilled: number;
}

export interface SettleContext {
  seed: number;
  pool: pg.Pool;
  control: SimulatorControl;
  processes: CampaignProcesses;
  violations: string[];
  /** When the ingest started, and the last Braintree period end after it (ms). */
  T0: number;
  lastPeriodEnd: number;
  log: (line: string) => void;
  /** Lists every window at the end (the campaign's --verbose). */
  listWindows: boolean;
}

export async function settle({ seed, pool, control, processes, violations, T0, lastPeriodEnd, log, listWindows }: SettleContext): Promise<void> {
  // Settle: Stripe faults off (the Braintree rules fire a few times each and are spent), processes up, then give
  // every pending event, webhook and window time to finish.
  await control('faults', undefined, 'DELETE');
  await processes.ensureRunning();
  const settleStarted = Date.now();
  const deadline = Date.now() + 120_000;
  for (;;) {
    const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM meter_events WHERE status = 'pending'`);
    if (rows[0]!.n === 0) break;
    if (Date.now() > deadline) {
      violations.push(`${rows[0]!.n} events still pending 120 s after the faults stopped`);
      break;
    }
    await sleep(250);
  }
  // Error reports (accepted then rejected) arrive as webhooks; send any still queued, wait until every webhook
  // event the simulator created has been taken, including deliveries still in flight (it retries deliveries that
  // found the web process down, as Stripe does), then until every stored webhook is processed.
  await control('flush_error_reports', {});
  const webhookDeadline = Date.now() + 90_000;
  for (;;) {
    const { data: created } = (await control('events')) as { data: Array<{ id: string }> };
    const { data } = (await control('webhook_deliveries')) as { data: Array<{ event_id: string; ok: boolean }> };
    const taken = new Set(data.filter((d) => d.ok).map((d) => d.event_id));
    const untaken = created.filter((e) => !taken.has(e.id));
    if (untaken.length === 0) break;
    if (Date.now() > webhookDeadline) {
      violations.push(`${untaken.length} webhook events never taken by the web process`);
      break;
    }
    await sleep(500);
  }
  // A webhook job that failed (its database restarted under it) is retried with graphile-worker's backoff, and one
  // whose worker died is queued again by the webhook sweep: wait, and call it a violation only if it never happens.
  const appliedDeadline = Date.now() + 150_000;
  for (;;) {
    const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM webhook_events WHERE processed_at IS NULL`);
    if (rows[0]!.n === 0) break;
    if (Date.now() > appliedDeadline) {
      // What each one went through, and where its job is, so the line says why.
      const { rows: stuck } = await pool.query<{ id: string; line: string }>(
        `SELECT w.id, w.processor_event_id || ' ' || w.type || ' attempts=' || w.attempts || ' last_error=' || coalesce(w.last_error, '-') AS line
         FROM webhook_events w WHERE w.processed_at IS NULL`,
      );
      const jobs = await jobsByPayloadField(pool, 'webhookEventId', stuck.map((w) => w.id));
      const jobLine = (id: string) =>
        jobs
          .filter((j) => j.value === id)
          .map((j) => `attempts ${j.attempts}/${j.maxAttempts} locked_at ${j.lockedAt?.toISOString() ?? '-'} run_at ${j.runAt.toISOString()} error ${j.lastError?.slice(0, 200) ?? '-'}`)
          .join(', ') || 'none';
      violations.push(`${rows[0]!.n} stored webhook events still unprocessed 150 s after the faults stopped: ${stuck.map((w) => `${w.line} jobs=${jobLine(w.id)}`).join('; ')}`);
      break;
    }
    await sleep(250);
  }
  // Braintree: every period that ended has its window closed, authored and settled (paid, exhausted or waiting for a
  // payment method); the retry backoffs and the search after a lost answer are seconds here.
  while (Date.now() < T0 + lastPeriodEnd + CLOSE_GRACE_MS + 500) await sleep(100);
  const windowsDeadline = Date.now() + 120_000;
  for (;;) {
    const { rows } = await pool.query<{ line: string }>(
      `SELECT 'window ' || w.id || ' ' || w.state::text AS line FROM windows w
       WHERE w.state IN ('closed', 'settling', 'retry_scheduled') OR (w.state = 'open' AND w.period_end <= now() - $1 * interval '1 millisecond')
       UNION ALL
       SELECT 'subscription ' || s.processor_subscription_id || ' has no window for its period ending ' || s.current_period_end FROM subscriptions s
       WHERE s.processor = 'braintree' AND s.current_period_end <= now() - $1 * interval '1 millisecond'
         AND NOT EXISTS (SELECT 1 FROM windows w WHERE w.subscription_id = s.id AND w.period_end = s.current_period_end)`,
      [CLOSE_GRACE_MS + 1_000],
    );
    if (rows.length === 0) break;
    if (Date.now() > windowsDeadline) {
      violations.push(`Braintree not settled 120 s after the faults stopped: ${rows.map((r) => r.line).join('; ')}`);
      break;
    }
    await sleep(250);
  }
  log(`  seed ${seed}: settled in ${((Date.now() - settleStarted) / 1000).toFixed(1)} s`);
  if (listWindows) {
    const { rows: ws } = await pool.query<{ line: string }>(
      `SELECT s.processor_subscription_id || ' ' || to_char(w.period_start, 'MM-DD HH24:MI:SS') || '..' || to_char(w.period_end, 'HH24:MI:SS') || ' ' || w.state ||
              ' total ' || coalesce(i.total_minor::text, '-') || ' events ' || (SELECT count(*) FROM meter_events e WHERE e.window_id = w.id) ||
              ' tries ' || coalesce(a.tries::text, '-') || ' ' || coalesce(a.status::text, '') || coalesce(' ' || a.last_failure_code, '') AS line
       FROM windows w JOIN subscriptions s ON s.id = w.subscription_id LEFT JOIN invoices i ON i.window_id = w.id LEFT JOIN charge_attempts a ON a.window_id = w.id
       ORDER BY s.processor_subscription_id, w.period_start`,
    );
    for (const w of ws) log(`    window ${w.line}`);
  }

}

/** One reconciliation run over the last three days (late usage is up to two days old), nothing in flight any more. */
export async function reconciliationDrift(pool: pg.Pool, stripeApiBase: string, braintree: BraintreeEnv): Promise<string[]> {
  const { sources } = reconciliationSources({ STRIPE_SECRET_KEY: undefined, STRIPE_API_BASE: stripeApiBase, ...braintree });
  try {
    const result = await reconcileLedger(pool, { ...sources, trigger: 'cli', lookbackDays: 3, graceMs: 0 });
    if (result.status === 'busy') return ['reconciliation: another run was in progress at the end of the seed'];
    if (result.run.driftCount === 0) return [];
    const shown = result.findings.slice(0, 5).map((f) => `${f.processor} ${f.kind} ${f.customerLabel} ${f.eventName ?? f.windowId}: ledger ${f.ledger.value}, processor ${f.processorSide.value}`);
    return [`reconciliation found ${result.run.driftCount} difference(s) between the ledger and the processors: ${shown.join('; ')}`];
  } catch (error) {
    return [`reconciliation failed: ${error instanceof Error ? error.message : String(error)}`];
  }
}

export async function braintreeSummary(pool: pg.Pool, subscriptions: number, stats: { approved: number; sales: number }): Promise<BraintreeSummary> {
  const { rows } = await pool.query<{ windows: Record<string, number> | null; events: Record<string, number> | null; late: number }>(
    `SELECT (SELECT json_object_agg(state, n) FROM (SELECT state::text, count(*)::int AS n FROM windows GROUP BY state) w) AS windows,
            (SELECT json_object_agg(status, n) FROM (SELECT status::text, count(*)::int AS n FROM meter_events WHERE processor = 'braintree' GROUP BY status) e) AS events,
            (SELECT count(*)::int FROM meter_events e JOIN invoice_lines l ON l.id = e.invoice_line_id WHERE l.kind = 'late_usage') AS late`,
  );
  const r = rows[0]!;
  return { subscriptions, windows: r.windows ?? {}, sales: stats.sales, approved: stats.approved, events: r.events ?? {}, lateBilled: r.late };
}
