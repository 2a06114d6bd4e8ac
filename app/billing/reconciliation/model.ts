// The words of a reconciliation: drift kinds, options, findings, run summaries, and the context one run shares.
import type pg from 'pg';
import type { Semaphore } from '../processors/limits';
import type { ChargeProcessor, MeterEventSource, ProcessorName } from '../processors/types';

export const RECONCILE_TASK = 'ops__reconcile_ledger';
/** The job key of a run asked for from the desk: asking twice before it starts queues one run. */
export const RECONCILE_DESK_JOB_KEY = 'ops__reconcile_ledger:desk';
export const DEFAULT_LOOKBACK_DAYS = 3;
/** Stripe accepts usage up to 35 days old; nothing older can still change. */
export const MAX_LOOKBACK_DAYS = 35;
export const DEFAULT_GRACE_MS = 15 * 60_000;
export const DAY_MS = 86_400_000;

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

export interface OpenDrift {
  id: string;
  dedupeKey: string;
  processor: ProcessorName;
  customerId: string | null;
  eventName: string | null;
  periodStart: Date | null;
  windowId: string | null;
}

export interface LedgerBucket {
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

export interface CustomerInfo {
  processorCustomerId: string;
  label: string;
}

export interface Compared {
  checked: number;
  skipped: number;
  errors: number;
  findings: Finding[];
  /** Dedupe keys of the buckets/windows compared (equal or not): the scope in which open drift can be resolved. */
  comparedKeys: Set<string>;
  firstError: string | null;
}

/** What every part of one run reads: its client (holding the run's advisory lock), clock, days and limits. */
export interface RunContext {
  readonly client: pg.ClientBase;
  readonly now: Date;
  readonly graceSince: Date;
  readonly from: Date;
  readonly to: Date;
  readonly gate: Semaphore;
}
