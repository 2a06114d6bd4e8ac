// One task per file, named area__verb. Registered here so the worker and tests share one list.
import type { TaskList } from 'graphile-worker';
import type Stripe from 'stripe';
import type { StripeReporting } from '../../app/billing/ledger/reporting';
import { createProcessWebhookTask } from './stripe__process_webhook';
import { createReconcilePendingTask } from './stripe__reconcile_pending';
import { createReportEventsTask } from './stripe__report_events';
import type { SettlementOptions } from '../../app/billing/windows/settlement';
import { braintreeCloseWindow } from './braintree__close_window';
import { braintreeCloseWindows, createCloseWindowsTask } from './braintree__close_windows';
import { braintreeOpenWindows } from './braintree__open_windows';
import { braintreeProcessWebhook } from './braintree__process_webhook';
import { braintreeReconcileStaleRenewals } from './braintree__reconcile_stale_renewals';
import { createSettleWindowTask } from './braintree__settle_window';
import { braintreeSweepSettlements, createSweepSettlementsTask, type SweepSettlementsOptions } from './braintree__sweep_settlements';
import { alertsDeliver, createDeliverAlertTask } from './alerts__deliver';
import { alertsEvaluate } from './alerts__evaluate';
import { deskRollupEvents } from './desk__rollup_events';
import { ledgerCreatePartitions } from './ledger__create_partitions';
import { createReconcileLedgerTask } from './ops__reconcile_ledger';
import { createSweepWebhooksTask, opsSweepWebhooks } from './ops__sweep_webhooks';
import type { SweepWebhooksOptions } from '../../app/billing/webhook-sweep';
import type { ReconcileOptions } from '../../app/billing/reconciliation';
import { StripeMeterEventSummaries } from '../../app/billing/processors/stripe/meter-summaries';

/**
 * The tasks that need no services. `stripe__process_webhook` is not among them: it needs a Stripe client to fetch
 * thin events, so only `createTaskList` with `stripeClient` registers it (a worker without one leaves those jobs
 * queued for a worker that can do them).
 */
export const taskList: TaskList = {
  alerts__evaluate: alertsEvaluate,
  alerts__deliver: alertsDeliver,
  braintree__open_windows: braintreeOpenWindows,
  braintree__close_windows: braintreeCloseWindows,
  braintree__close_window: braintreeCloseWindow,
  braintree__reconcile_stale_renewals: braintreeReconcileStaleRenewals,
  braintree__sweep_settlements: braintreeSweepSettlements,
  braintree__process_webhook: braintreeProcessWebhook,
  desk__rollup_events: deskRollupEvents,
  ledger__create_partitions: ledgerCreatePartitions,
  ops__sweep_webhooks: opsSweepWebhooks,
};

/** The services tasks need, built once per process from configuration (tasks never read env). */
export interface TaskDependencies {
  /** Stripe meter event reporting; without it the reporting tasks are not registered. */
  stripeReporting?: StripeReporting;
  /** Stripe webhook processing (fetches thin events); without it `stripe__process_webhook` is not registered. */
  stripeClient?: Stripe;
  /** Braintree window settlement (the processor and retry policy); without it `braintree__settle_window` is not registered. */
  braintree?: SettlementOptions & { closeGraceMs?: number; sweep?: SweepSettlementsOptions };
  /**
   * `ops__reconcile_ledger`: the processor sides to compare with the ledger. Default: Stripe's meter event summaries
   * through `stripeClient` and Braintree's sales through `braintree.processor`, whichever are given.
   */
  reconciliation?: Omit<ReconcileOptions, 'lookbackDays' | 'trigger' | 'requestedBy'>;
  /** `ops__sweep_webhooks` timings (default: a webhook unprocessed for 5 minutes gets a job again). */
  webhookSweep?: Omit<SweepWebhooksOptions, 'now'>;
  /**
   * `alerts__deliver`: the desk's public origin for the links notifications carry (DESK_URL), the timeout, and the SMTP
   * server and sender for email channels (SMTP_URL, ALERTS_EMAIL_FROM).
   */
  alerts?: { deskUrl?: string; timeoutMs?: number; email?: { smtpUrl: string; from: string } };
}

/** The full task list: `taskList` plus the tasks that need services. */
export function createTaskList(deps: TaskDependencies): TaskList {
  const tasks: TaskList = { ...taskList };
  if (deps.stripeClient) tasks.stripe__process_webhook = createProcessWebhookTask({ stripe: deps.stripeClient });
  if (deps.stripeReporting) {
    tasks.stripe__report_events = createReportEventsTask(deps.stripeReporting);
    tasks.stripe__reconcile_pending = createReconcilePendingTask(deps.stripeReporting);
  }
  if (deps.braintree) {
    const { closeGraceMs, sweep, ...settlement } = deps.braintree;
    tasks.braintree__settle_window = createSettleWindowTask(settlement);
    if (closeGraceMs !== undefined) tasks.braintree__close_windows = createCloseWindowsTask({ graceMs: closeGraceMs });
    if (sweep) tasks.braintree__sweep_settlements = createSweepSettlementsTask(sweep);
  }
  if (deps.alerts) tasks.alerts__deliver = createDeliverAlertTask(deps.alerts);
  if (deps.webhookSweep) tasks.ops__sweep_webhooks = createSweepWebhooksTask(deps.webhookSweep);
  const reconciliation = deps.reconciliation ?? {
    stripe: deps.stripeClient ? new StripeMeterEventSummaries({ client: deps.stripeClient }) : null,
    braintree: deps.braintree?.processor ?? null,
  };
  if (reconciliation.stripe || reconciliation.braintree) tasks.ops__reconcile_ledger = createReconcileLedgerTask(reconciliation);
  return tasks;
}
