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
//
// Split by job: model.ts (drift kinds, options, findings, the run's context), run.ts (one run: lock, run row,
// resolution), stripe.ts and braintree.ts (fetching each side and comparing), values.ts (exact decimal comparison),
// record.ts (drift ops events and stored findings), hints.ts (what each kind means and the action that resolves it), reads.ts (asking for a run, the desk's and the CLI's reads).
export {
  BRAINTREE_DRIFT_KINDS,
  braintreeDriftKey,
  DEFAULT_GRACE_MS,
  DEFAULT_LOOKBACK_DAYS,
  DRIFT_KIND_LABELS,
  MAX_LOOKBACK_DAYS,
  RECONCILE_DESK_JOB_KEY,
  RECONCILE_TASK,
  STRIPE_DRIFT_KINDS,
  stripeDriftKey,
  utcDay,
  type DriftKind,
  type Finding,
  type ProcessorCheck,
  type ReconcileOptions,
  type ReconcileResult,
  type ReconciliationRunSummary,
  type ReconciliationSources,
  type ReconciliationTrigger,
} from './reconciliation/model';
export { DRIFT_HINTS, driftHint, type DriftHint, type HintSubject } from './reconciliation/hints';
export { reconcileLedger } from './reconciliation/run';
export {
  describeRun,
  readRunFindings,
  ReconciliationPresenter,
  requestReconciliation,
  type ReconciliationPage,
  type StoredFinding,
  type StoredRun,
} from './reconciliation/reads';
