// Settlement of a closed window: at most one charge per window, through one charge attempt whose order id is
// derived from the window. A sale is sent only after its attempt is durably marked as "sent" (state `settling`,
// tries + 1, last_sent_at), so a worker killed mid-sale leaves a trace; the next run searches the order id before
// any new sale and adopts what it finds. A session advisory lock per window (held across the HTTP call, released by
// PostgreSQL when the worker dies) tells a live settler from a dead one. State moves are guarded updates and ops
// events are written only when the row moved. Decisions: docs/decisions (Braintree windows ADR).
import type pg from 'pg';
import { writeAudit, type Actor } from '../audit';
import { addJob, type Queryable } from '../db';
import { addJobCall } from '../../db/graphile-jobs';
import { NotFoundError, StateError } from '../errors';
import { backoffDelay } from '../processors/limits';
import { APPROVED_SALE_STATUSES, HARD_DECLINE_CODES } from '../processors/braintree/processor';
import type { ChargeProcessor, FindSaleResult, FoundSale, SaleResult } from '../processors/types';
import { recordOpsEvents } from '../ops-events';
import { inTransaction, withClient } from './transaction';
import { SETTLE_WINDOW_TASK, settleJobKey, type WindowState } from './types';

export interface RetryPolicy {
  /** Sales per budget, the first included. Default 6. */
  maxTries: number;
  /** No automatic retry is scheduled past this long after the budget started. Default 7 days. */
  maxElapsedMs: number;
  /** Backoff after a soft decline (issuers need time: funds, limits). Default 6 h doubling, at most 48 h. */
  softDecline: { baseMs: number; maxMs: number };
  /** Backoff after an API error (not applied: 429, auth, connection, processor `failed`). Default 1 min doubling, at most 1 h. */
  error: { baseMs: number; maxMs: number };
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxTries: 6,
  maxElapsedMs: 7 * 24 * 3_600_000,
  softDecline: { baseMs: 6 * 3_600_000, maxMs: 48 * 3_600_000 },
  error: { baseMs: 60_000, maxMs: 3_600_000 },
};

export interface SettlementOptions {
  processor: ChargeProcessor;
  retry?: Partial<RetryPolicy>;
  /**
   * After a sale whose answer was lost, how long from sending before a "not found" search is trusted (Braintree's
   * gateway works on a sale for up to 60 s, and duplicate checking does not see in-flight sales). Default 65 s.
   */
  ambiguousSearchDelayMs?: number;
  /** When another live settler holds the window, look again this much later. Default 5 s. */
  busyRetryMs?: number;
  /** Sales one batch settlement (settleWindows) keeps in flight at once. Default DEFAULT_SALES_IN_FLIGHT. */
  salesInFlight?: number;
  now?: () => Date;
  random?: () => number;
}

export type SettleOutcome =
  | 'paid'
  | 'retry_scheduled'
  | 'failed_exhausted'
  | 'awaiting_payment_method'
  /** Another live settler holds this window; a job was queued to look again. */
  | 'busy'
  /** The window is in no state to settle (open, paid, exhausted, written off, awaiting a payment method). */
  | 'nothing_to_do'
  /** A retry exists but is not due yet (its job runs at next_retry_at). */
  | 'not_due'
  /** A lost sale answer is searched for once the gateway timeout has passed; a job was queued for then. */
  | 'search_later'
  | 'not_found';

export interface SettleResult {
  outcome: SettleOutcome;
  state: WindowState | null;
  /** Sales sent in this run (0 or 1). */
  salesSent: number;
  /** The run adopted a sale found by order id instead of sending one. */
  adopted: boolean;
  detail?: string;
}

/** The order id of a window's sale: derived from the window id, the same on every try. */
export function orderIdFor(windowId: string): string {
  return `mdw-${windowId}`;
}

/** Validation codes that mean "this customer cannot be charged with what is on file". */
const PAYMENT_METHOD_CODES = new Set(['91508', '91510', '91511', '91516', '91518']);

interface Claim {
  windowId: string;
  state: WindowState;
  currency: string;
  totalMinor: bigint;
  processorCustomerId: string;
  token: string | null;
  attempt: AttemptRow;
}

interface AttemptRow {
  id: string;
  order_id: string;
  amount_minor: string;
  status: string;
  tries: number;
  budget_tries: number;
  budget_started_at: Date | null;
  last_sent_at: Date | null;
  next_retry_at: Date | null;
}

type Outcome =
  | SaleResult
  | { outcome: 'search_error'; code: string; message: string }
  | { outcome: 'no_payment_method' };

/** The session advisory lock that tells a live settler of a window from a dead one (SQL over a uuid parameter). */
const windowLockKey = (param: string) => `('x' || substr(replace(${param}::text, '-', ''), 1, 16))::bit(64)::bigint`;

class Settler {
  private readonly policy: RetryPolicy;
  private readonly searchDelayMs: number;
  private readonly now: () => Date;
  private readonly random: () => number;

  constructor(
    private readonly client: pg.ClientBase,
    private readonly windowId: string,
    private readonly options: SettlementOptions,
  ) {
    this.policy = {
      ...DEFAULT_RETRY_POLICY,
      ...options.retry,
      softDecline: { ...DEFAULT_RETRY_POLICY.softDecline, ...options.retry?.softDecline },
      error: { ...DEFAULT_RETRY_POLICY.error, ...options.retry?.error },
    };
    this.searchDelayMs = options.ambiguousSearchDelayMs ?? 65_000;
    this.now = options.now ?? (() => new Date());
    this.random = options.random ?? Math.random;
  }

  async run(): Promise<SettleResult> {
    const key = await this.client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock(${windowLockKey('$1')}) AS locked`, [this.windowId]);
    if (!key.rows[0]?.locked) return this.busy();
    try {
      return await this.settle();
    } finally {
      // A broken connection has lost the lock already; its error must not hide the settle error.
      await this.client.query(`SELECT pg_advisory_unlock(${windowLockKey('$1')})`, [this.windowId]).catch(() => {});
    }
  }

  /** Another live settler holds the window: look again a little later. */
  async busy(): Promise<SettleResult> {
    await addJob(this.client, SETTLE_WINDOW_TASK, { windowId: this.windowId }, {
      jobKey: settleJobKey(this.windowId),
      runAt: new Date(this.now().getTime() + (this.options.busyRetryMs ?? 5000)),
    });
    return { outcome: 'busy', state: null, salesSent: 0, adopted: false };
  }

  /** The whole settlement of one window; the caller holds the window's advisory lock. */
  async settle(): Promise<SettleResult> {
    const first = await inTransaction(this.client, () => this.claim());
    if ('result' in first) return first.result;
    let claim = first.claim;
    let adopted = false;
    let salesSent = 0;
    let outcome: Outcome;

    if (first.mustSearch) {
      const found = await this.options.processor.findByOrderId(claim.attempt.order_id);
      const fromSearch = searchOutcome(found);
      if (fromSearch) {
        outcome = fromSearch;
        adopted = found.outcome === 'found';
      } else {
        // Not found after the gateway timeout: the earlier sale never happened. Only now may a new one be sent.
        const again = await inTransaction(this.client, () => this.claimAfterSearch(claim));
        if ('result' in again) return again.result;
        claim = again.claim;
        outcome = await this.options.processor.sale(this.saleRequest(claim));
        salesSent = 1;
      }
    } else {
      outcome = await this.options.processor.sale(this.saleRequest(claim));
      salesSent = 1;
    }
    const result = await inTransaction(this.client, () => this.record(claim, outcome, adopted));
    return { ...result, salesSent, adopted };
  }

  private saleRequest(claim: Claim) {
    return {
      orderId: claim.attempt.order_id,
      amountMinor: BigInt(claim.attempt.amount_minor),
      currency: claim.currency,
      paymentMethodToken: claim.token!,
      customerId: claim.processorCustomerId,
    };
  }

  /** Phase 1: decide under the window lock, and mark the attempt before anything leaves the process. */
  private async claim(): Promise<{ result: SettleResult } | { claim: Claim; mustSearch: boolean }> {
    const now = this.now();
    const c = this.client;
    const { rows } = await c.query<{ state: WindowState; currency: string; total_minor: string | null; processor_customer_id: string; token: string | null }>(
      `SELECT w.state::text AS state, w.currency, i.total_minor::text AS total_minor, cu.processor_customer_id,
              cu.default_payment_method_token AS token
       FROM windows w JOIN customers cu ON cu.id = w.customer_id LEFT JOIN invoices i ON i.window_id = w.id
       WHERE w.id = $1 FOR NO KEY UPDATE OF w`,
      [this.windowId],
    );
    const w = rows[0];
    if (!w) return { result: { outcome: 'not_found', state: null, salesSent: 0, adopted: false } };
    const nothing = (detail?: string) => ({ result: { outcome: 'nothing_to_do' as const, state: w.state, salesSent: 0, adopted: false, detail } });
    if (!['closed', 'retry_scheduled', 'settling'].includes(w.state) || w.total_minor === null) return nothing();

    await c.query(
      `INSERT INTO charge_attempts (id, window_id, order_id, amount_minor, currency, status, tries, budget_started_at, created_at, updated_at)
       VALUES (gen_random_uuid(), $1, $2, $3, $4, 'pending', 0, $5, $5, $5)
       ON CONFLICT (window_id) DO NOTHING`,
      [this.windowId, orderIdFor(this.windowId), w.total_minor, w.currency, now],
    );
    const a = await c.query<AttemptRow>(
      `SELECT id, order_id, amount_minor::text AS amount_minor, status::text AS status, tries, budget_tries, budget_started_at,
              last_sent_at, next_retry_at
       FROM charge_attempts WHERE window_id = $1 FOR UPDATE`,
      [this.windowId],
    );
    let attempt = a.rows[0]!;
    const claim: Claim = { windowId: this.windowId, state: w.state, currency: w.currency, totalMinor: BigInt(w.total_minor), processorCustomerId: w.processor_customer_id, token: w.token, attempt };

    // A hard decline is never charged again by the machine; only an operator's explicit settle-again clears it.
    if (attempt.status === 'hard_declined') return nothing('hard declined: needs an operator');
    if (w.state === 'retry_scheduled' && attempt.next_retry_at && attempt.next_retry_at > now) {
      return { result: { outcome: 'not_due', state: w.state, salesSent: 0, adopted: false, detail: `next retry at ${attempt.next_retry_at.toISOString()}` } };
    }
    if (attempt.tries === 0 && BigInt(attempt.amount_minor) !== claim.totalMinor) {
      // Re-authored before any sale: the attempt charges the invoice as it is now.
      await c.query(`UPDATE charge_attempts SET amount_minor = $2, updated_at = $3 WHERE id = $1`, [attempt.id, w.total_minor, now]);
      attempt = { ...attempt, amount_minor: w.total_minor };
      claim.attempt = attempt;
    }

    // `settling` with a sale marked sent means the last settler died before storing the answer.
    const mustSearch = attempt.tries > 0 && (w.state === 'settling' || attempt.status === 'ambiguous');
    if (mustSearch) {
      const searchAt = new Date((attempt.last_sent_at ?? now).getTime() + this.searchDelayMs);
      if (searchAt > now) {
        await this.moveWindow(['settling', 'retry_scheduled', 'closed'], 'retry_scheduled', now);
        // `ambiguous`, not left `pending`: out of `settling`, only this status makes the next run search before selling.
        await c.query(`UPDATE charge_attempts SET status = 'ambiguous', next_retry_at = $2, updated_at = $3 WHERE id = $1`, [attempt.id, searchAt, now]);
        await addJob(c, SETTLE_WINDOW_TASK, { windowId: this.windowId }, { jobKey: settleJobKey(this.windowId), runAt: searchAt });
        return { result: { outcome: 'search_later', state: 'retry_scheduled', salesSent: 0, adopted: false, detail: `search for ${attempt.order_id} at ${searchAt.toISOString()}` } };
      }
      await this.moveWindow(['settling', 'retry_scheduled', 'closed'], 'settling', now);
      return { claim: { ...claim, state: 'settling' }, mustSearch: true };
    }

    if (claim.totalMinor === 0n && attempt.tries === 0) {
      await c.query(
        `UPDATE charge_attempts SET status = 'succeeded', next_retry_at = NULL, response_code = 'zero_total', updated_at = $2 WHERE id = $1`,
        [attempt.id, now],
      );
      await this.moveWindow(['closed', 'retry_scheduled'], 'paid', now);
      return { result: { outcome: 'paid', state: 'paid', salesSent: 0, adopted: false, detail: 'zero total: no sale' } };
    }
    const sent = await this.markSent(claim, now);
    if ('result' in sent) return sent;
    return { claim: sent.claim, mustSearch: false };
  }

  /** After a search found nothing: the same checks as a first sale, then mark it sent. */
  private async claimAfterSearch(claim: Claim): Promise<{ result: SettleResult } | { claim: Claim }> {
    const now = this.now();
    const w = await this.client.query<{ state: WindowState; token: string | null }>(
      `SELECT w.state::text AS state, cu.default_payment_method_token AS token FROM windows w JOIN customers cu ON cu.id = w.customer_id
       WHERE w.id = $1 FOR NO KEY UPDATE OF w`,
      [this.windowId],
    );
    const state = w.rows[0]?.state;
    if (state !== 'settling') return { result: { outcome: 'nothing_to_do', state: state ?? null, salesSent: 0, adopted: false } };
    await this.client.query(`SELECT 1 FROM charge_attempts WHERE id = $1 FOR UPDATE`, [claim.attempt.id]);
    return this.markSent({ ...claim, token: w.rows[0]!.token }, now);
  }

  private async markSent(claim: Claim, now: Date): Promise<{ result: SettleResult } | { claim: Claim }> {
    const c = this.client;
    const attempt = claim.attempt;
    if (!claim.token) return { result: { ...(await this.toAwaitingPaymentMethod(claim, now, 'no_payment_method', 'the customer has no default payment method')), salesSent: 0, adopted: false } };
    const budgetStart = attempt.budget_started_at ?? now;
    if (attempt.budget_tries >= this.policy.maxTries || now.getTime() - budgetStart.getTime() > this.policy.maxElapsedMs) {
      return { result: { ...(await this.exhaust(claim, now, 'budget_spent', null)), salesSent: 0, adopted: false } };
    }
    await this.moveWindow(['closed', 'retry_scheduled', 'settling'], 'settling', now);
    const updated = await c.query<AttemptRow>(
      `UPDATE charge_attempts SET tries = tries + 1, budget_tries = budget_tries + 1, budget_started_at = COALESCE(budget_started_at, $2),
              last_sent_at = $2, status = 'pending', next_retry_at = NULL, updated_at = $2
       WHERE id = $1
       RETURNING id, order_id, amount_minor::text AS amount_minor, status::text AS status, tries, budget_tries, budget_started_at, last_sent_at, next_retry_at`,
      [attempt.id, now],
    );
    return { claim: { ...claim, state: 'settling', attempt: updated.rows[0]! } };
  }

  /** Phase 3: store what happened, then move the window (guarded: only from `settling`). */
  async record(claim: Claim, outcome: Outcome, adopted: boolean): Promise<Omit<SettleResult, 'salesSent' | 'adopted'>> {
    const now = this.now();
    const c = this.client;
    await c.query(`SELECT 1 FROM windows WHERE id = $1 FOR NO KEY UPDATE`, [this.windowId]);
    const a = await c.query<AttemptRow>(
      `SELECT id, order_id, amount_minor::text AS amount_minor, status::text AS status, tries, budget_tries, budget_started_at, last_sent_at, next_retry_at
       FROM charge_attempts WHERE id = $1 FOR UPDATE`,
      [claim.attempt.id],
    );
    claim = { ...claim, attempt: a.rows[0]! };
    const attemptId = claim.attempt.id;
    switch (outcome.outcome) {
      case 'succeeded': {
        await c.query(
          `UPDATE charge_attempts SET status = 'succeeded', transaction_id = $2, processor_status = $3, response_code = $4, next_retry_at = NULL, updated_at = $5 WHERE id = $1`,
          [attemptId, outcome.transactionId, outcome.status, outcome.responseCode, now],
        );
        const moved = await this.moveWindow(['settling'], 'paid', now);
        return { outcome: 'paid', state: moved ? 'paid' : claim.state, detail: adopted ? `adopted ${outcome.transactionId} found by order id` : undefined };
      }
      case 'hard_declined':
        await this.noteFailure(attemptId, 'hard_declined', outcome.responseCode, outcome.message, now, { transactionId: outcome.transactionId, processorStatus: outcome.status, responseCode: outcome.responseCode });
        return this.exhaust(claim, now, 'hard_declined', outcome.responseCode);
      case 'gateway_rejected':
        await this.noteFailure(attemptId, 'gateway_rejected', `gateway_rejected_${outcome.reason}`, outcome.message, now, { transactionId: outcome.transactionId, processorStatus: 'gateway_rejected' });
        return this.exhaust(claim, now, 'gateway_rejected', outcome.reason);
      case 'validation_error':
        if (PAYMENT_METHOD_CODES.has(outcome.code)) {
          await this.noteFailure(attemptId, 'error', outcome.code, outcome.message, now);
          return this.toAwaitingPaymentMethod(claim, now, outcome.code, outcome.message);
        }
        await this.noteFailure(attemptId, 'error', outcome.code, outcome.message, now);
        return this.exhaust(claim, now, 'validation_error', outcome.code);
      case 'no_payment_method':
        return this.toAwaitingPaymentMethod(claim, now, 'no_payment_method', 'the customer has no default payment method');
      case 'soft_declined':
        await this.noteFailure(attemptId, 'soft_declined', outcome.responseCode, outcome.message, now, { transactionId: outcome.transactionId, processorStatus: outcome.status, responseCode: outcome.responseCode });
        return this.scheduleRetry(claim, now, this.policy.softDecline);
      case 'error':
        await this.noteFailure(attemptId, 'error', outcome.code, outcome.message, now);
        return this.scheduleRetry(claim, now, this.policy.error);
      case 'ambiguous': {
        // Nothing is concluded: the order id is searched once the gateway's own timeout has passed.
        await this.noteFailure(attemptId, 'ambiguous', outcome.code, outcome.message, now);
        const searchAt = new Date(Math.max(now.getTime(), (claim.attempt.last_sent_at ?? now).getTime() + this.searchDelayMs));
        return this.retryAt(claim, now, searchAt);
      }
      case 'search_error': {
        await this.noteFailure(attemptId, null, outcome.code, outcome.message, now);
        const budgetStart = claim.attempt.budget_started_at ?? now;
        if (now.getTime() - budgetStart.getTime() > this.policy.maxElapsedMs) return this.exhaust(claim, now, 'search_failed', outcome.code);
        const delay = backoffDelay(Math.max(1, claim.attempt.budget_tries), this.policy.error.baseMs, this.policy.error.maxMs, this.random);
        return this.retryAt(claim, now, new Date(now.getTime() + delay));
      }
    }
  }

  private async scheduleRetry(claim: Claim, now: Date, backoff: { baseMs: number; maxMs: number }) {
    const attempt = claim.attempt;
    const delay = backoffDelay(attempt.budget_tries, backoff.baseMs, backoff.maxMs, this.random);
    const at = new Date(now.getTime() + delay);
    const budgetStart = attempt.budget_started_at ?? now;
    if (attempt.budget_tries >= this.policy.maxTries || at.getTime() - budgetStart.getTime() > this.policy.maxElapsedMs) {
      return this.exhaust(claim, now, 'budget_spent', null);
    }
    return this.retryAt(claim, now, at);
  }

  private async retryAt(claim: Claim, now: Date, at: Date) {
    const moved = await this.moveWindow(['settling'], 'retry_scheduled', now);
    if (moved) {
      await this.client.query(`UPDATE charge_attempts SET next_retry_at = $2, updated_at = $3 WHERE id = $1`, [claim.attempt.id, at, now]);
      await addJob(this.client, SETTLE_WINDOW_TASK, { windowId: this.windowId }, { jobKey: settleJobKey(this.windowId), runAt: at });
    }
    return { outcome: 'retry_scheduled' as const, state: moved ? ('retry_scheduled' as const) : claim.state, detail: `next try at ${at.toISOString()}` };
  }

  private async exhaust(claim: Claim, now: Date, reason: string, code: string | null) {
    const moved = await this.moveWindow(['settling', 'closed', 'retry_scheduled'], 'failed_exhausted', now);
    if (moved) {
      await this.client.query(`UPDATE charge_attempts SET next_retry_at = NULL, updated_at = $2 WHERE id = $1`, [claim.attempt.id, now]);
      const a = await this.client.query<{ status: string; tries: number; last_failure_code: string | null; first_failure_code: string | null }>(
        `SELECT status::text AS status, tries, last_failure_code, first_failure_code FROM charge_attempts WHERE id = $1`,
        [claim.attempt.id],
      );
      const r = a.rows[0]!;
      await recordOpsEvents(this.client, [
        {
          type: 'metered_charge_failed_exhausted',
          processor: 'braintree',
          source: 'settlement',
          subjectType: 'window',
          subjectId: this.windowId,
          metadata: { reason, code, charge_status: r.status, tries: r.tries, first_failure_code: r.first_failure_code, last_failure_code: r.last_failure_code, order_id: claim.attempt.order_id, amount_minor: claim.attempt.amount_minor },
        },
      ]);
    }
    return { outcome: 'failed_exhausted' as const, state: moved ? ('failed_exhausted' as const) : claim.state, detail: reason };
  }

  private async toAwaitingPaymentMethod(claim: Claim, now: Date, code: string, message: string) {
    const moved = await this.moveWindow(['settling', 'closed', 'retry_scheduled'], 'awaiting_payment_method', now);
    if (moved) {
      await this.noteFailure(claim.attempt.id, null, code, message, now);
      await this.client.query(`UPDATE charge_attempts SET next_retry_at = NULL WHERE id = $1`, [claim.attempt.id]);
      await recordOpsEvents(this.client, [
        {
          type: 'metered_charge_awaiting_payment_method',
          processor: 'braintree',
          source: 'settlement',
          subjectType: 'window',
          subjectId: this.windowId,
          metadata: { code, message, customer: claim.processorCustomerId, amount_minor: claim.attempt.amount_minor },
        },
      ]);
    }
    return { outcome: 'awaiting_payment_method' as const, state: moved ? ('awaiting_payment_method' as const) : claim.state };
  }

  /** Keeps the first failure and replaces the latest. */
  private async noteFailure(
    attemptId: string,
    status: string | null,
    code: string,
    message: string,
    now: Date,
    extra: { transactionId?: string | null; processorStatus?: string | null; responseCode?: string | null } = {},
  ) {
    await this.client.query(
      `UPDATE charge_attempts SET
         status = COALESCE($2::charge_status, status),
         first_failure_code = COALESCE(first_failure_code, $3), first_failure_message = COALESCE(first_failure_message, $4),
         first_failure_at = COALESCE(first_failure_at, $5),
         last_failure_code = $3, last_failure_message = $4, last_failure_at = $5,
         transaction_id = COALESCE($6, transaction_id), processor_status = COALESCE($7, processor_status),
         response_code = COALESCE($8, response_code), updated_at = $5
       WHERE id = $1`,
      [attemptId, status, code, message.slice(0, 500), now, extra.transactionId ?? null, extra.processorStatus ?? null, extra.responseCode ?? null],
    );
  }

  private async moveWindow(from: WindowState[], to: WindowState, now: Date): Promise<boolean> {
    const r = await this.client.query(
      `UPDATE windows SET state = $3::window_state, updated_at = $4, paid_at = CASE WHEN $3 = 'paid' THEN $4 ELSE paid_at END
       WHERE id = $1 AND state = ANY($2::window_state[])`,
      [this.windowId, from, to, now],
    );
    return r.rowCount === 1;
  }
}

/** What a search by order id says about the earlier sale(s), or null when there is none. */
function searchOutcome(found: FindSaleResult): Outcome | null {
  if (found.outcome === 'error') return { outcome: 'search_error', code: `search_${found.code}`, message: found.message };
  if (found.outcome === 'not_found') return null;
  const approved = found.sales.find((s) => APPROVED_SALE_STATUSES.has(s.status));
  if (approved) return { outcome: 'succeeded', transactionId: approved.transactionId, status: approved.status, responseCode: approved.responseCode, response: { adopted: true } };
  const latest: FoundSale = found.sales[found.sales.length - 1]!;
  switch (latest.status) {
    case 'processor_declined': {
      const code = latest.responseCode ?? '';
      const hard = latest.responseType ? latest.responseType === 'hard_declined' : HARD_DECLINE_CODES.has(code);
      return { outcome: hard ? 'hard_declined' : 'soft_declined', transactionId: latest.transactionId, status: latest.status, responseCode: code, message: `found declined sale ${latest.transactionId}`, response: { adopted: true } };
    }
    case 'gateway_rejected':
      return { outcome: 'gateway_rejected', transactionId: latest.transactionId, reason: latest.gatewayRejectionReason ?? 'unknown', message: `found rejected sale ${latest.transactionId}`, response: { adopted: true } };
    case 'failed':
      return { outcome: 'error', code: 'transaction_failed', message: `found failed sale ${latest.transactionId}`, error: null };
    default:
      // voided, settlement_declined: someone acted on the sale at Braintree; a machine must not charge again.
      return { outcome: 'hard_declined', transactionId: latest.transactionId, status: latest.status, responseCode: latest.status, message: `found sale ${latest.transactionId} in status ${latest.status}`, response: { adopted: true } };
  }
}

/**
 * Settles one window (the `braintree__settle_window` task). Safe to run twice and concurrently: a second run
 * either finds the window's lock held (and looks again later) or finds nothing left to do.
 */
export async function settleWindow(db: pg.Pool | pg.ClientBase, windowId: string, options: SettlementOptions): Promise<SettleResult> {
  return withClient(db, (client) => new Settler(client, windowId, options).run());
}

/** Sales a batch settlement keeps in flight at once (per job; the worker's concurrency multiplies it). */
export const DEFAULT_SALES_IN_FLIGHT = 16;

/**
 * Settles many windows (the `braintree__settle_window` task's batch payload) with the guarantees of settleWindow for
 * each, and a fixed number of statements for the common case, a window just closed with nothing tried yet: one
 * transaction marks every such attempt sent (inserted with tries = 1) and its window `settling`, the sales go out
 * concurrently (at most `salesInFlight` at once), and one transaction stores every approval. Any other window (a
 * retry, a search after a lost answer, a zero total, no payment method) and any other answer goes through the
 * one-window path, under the same advisory lock. Results are keyed by window id.
 */
export async function settleWindows(
  db: pg.Pool | pg.ClientBase,
  windowIds: readonly string[],
  options: SettlementOptions,
): Promise<Map<string, SettleResult>> {
  const ids = [...new Set(windowIds)];
  const results = new Map<string, SettleResult>();
  if (ids.length === 0) return results;
  return withClient(db, async (client) => {
    const settler = (windowId: string) => new Settler(client, windowId, options);
    const clock = options.now ?? (() => new Date());
    const now = clock();
    const locks = await client.query<{ id: string; locked: boolean }>(
      `SELECT id::text AS id, pg_try_advisory_lock(${windowLockKey('id')}) AS locked FROM unnest($1::uuid[]) AS id`,
      [ids],
    );
    const held = locks.rows.filter((r) => r.locked).map((r) => r.id);
    try {
      for (const r of locks.rows) if (!r.locked) results.set(r.id, await settler(r.id).busy());

      // Phase 1, for every fresh window at once: the attempt is committed as sent before any sale leaves.
      const fresh = await inTransaction(client, async () => {
        const { rows } = await client.query<{ id: string; state: WindowState; currency: string; total_minor: string | null; processor_customer_id: string; token: string | null; attempted: boolean }>(
          `SELECT w.id, w.state::text AS state, w.currency, i.total_minor::text AS total_minor, cu.processor_customer_id,
                  cu.default_payment_method_token AS token, EXISTS (SELECT 1 FROM charge_attempts a WHERE a.window_id = w.id) AS attempted
           FROM windows w JOIN customers cu ON cu.id = w.customer_id LEFT JOIN invoices i ON i.window_id = w.id
           WHERE w.id = ANY($1::uuid[]) ORDER BY w.id FOR NO KEY UPDATE OF w`,
          [held],
        );
        const eligible = rows.filter((w) => w.state === 'closed' && !w.attempted && w.token && w.total_minor !== null && BigInt(w.total_minor) > 0n);
        if (eligible.length === 0) return [];
        const inserted = await client.query<AttemptRow & { window_id: string }>(
          `INSERT INTO charge_attempts (id, window_id, order_id, amount_minor, currency, status, tries, budget_tries, budget_started_at,
                                        last_sent_at, created_at, updated_at)
           SELECT gen_random_uuid(), u.window_id, u.order_id, u.amount_minor, u.currency, 'pending', 1, 1, $5, $5, $5, $5
           FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[]) AS u(window_id, order_id, amount_minor, currency)
           ON CONFLICT (window_id) DO NOTHING
           RETURNING window_id, id, order_id, amount_minor::text AS amount_minor, status::text AS status, tries, budget_tries,
                     budget_started_at, last_sent_at, next_retry_at`,
          [eligible.map((w) => w.id), eligible.map((w) => orderIdFor(w.id)), eligible.map((w) => w.total_minor), eligible.map((w) => w.currency), now],
        );
        const byWindow = new Map(eligible.map((w) => [w.id, w]));
        const claims: Claim[] = inserted.rows.map(({ window_id, ...attempt }) => {
          const w = byWindow.get(window_id)!;
          return { windowId: window_id, state: 'settling', currency: w.currency, totalMinor: BigInt(w.total_minor!), processorCustomerId: w.processor_customer_id, token: w.token, attempt };
        });
        const moved = await client.query(`UPDATE windows SET state = 'settling', updated_at = $2 WHERE id = ANY($1::uuid[]) AND state = 'closed'`, [claims.map((c) => c.windowId), now]);
        if (moved.rowCount !== claims.length) throw new Error(`windows left the closed state while locked (${moved.rowCount} of ${claims.length} moved)`);
        return claims;
      });
      const freshIds = new Set(fresh.map((c) => c.windowId));

      // Phase 2: the sales, concurrently. A sale that throws left the process, or may have: like a lost answer.
      const outcomes = new Map<string, SaleResult>();
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(fresh.length, Math.max(1, options.salesInFlight ?? DEFAULT_SALES_IN_FLIGHT)) }, async () => {
          while (next < fresh.length) {
            const claim = fresh[next++]!;
            const request = { orderId: claim.attempt.order_id, amountMinor: BigInt(claim.attempt.amount_minor), currency: claim.currency, paymentMethodToken: claim.token!, customerId: claim.processorCustomerId };
            const outcome = await options.processor.sale(request).catch((error: unknown): SaleResult => ({ outcome: 'ambiguous', code: 'sale_threw', message: error instanceof Error ? error.message : String(error), error }));
            outcomes.set(claim.windowId, outcome);
          }
        }),
      );

      // Phase 3: every approval in one transaction; any other answer through the one-window path, each alone.
      const approved = fresh.filter((c) => outcomes.get(c.windowId)?.outcome === 'succeeded');
      if (approved.length > 0) {
        const at = clock();
        await inTransaction(client, async () => {
          const sales = approved.map((c) => outcomes.get(c.windowId) as Extract<SaleResult, { outcome: 'succeeded' }>);
          await client.query(
            `UPDATE charge_attempts a SET status = 'succeeded', transaction_id = u.transaction_id, processor_status = u.processor_status,
                    response_code = u.response_code, next_retry_at = NULL, updated_at = $5
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(id, transaction_id, processor_status, response_code)
             WHERE a.id = u.id`,
            [approved.map((c) => c.attempt.id), sales.map((x) => x.transactionId), sales.map((x) => x.status), sales.map((x) => x.responseCode), at],
          );
          const paid = await client.query<{ id: string }>(
            `UPDATE windows SET state = 'paid', paid_at = $2, updated_at = $2 WHERE id = ANY($1::uuid[]) AND state = 'settling' RETURNING id`,
            [approved.map((c) => c.windowId), at],
          );
          const paidIds = new Set(paid.rows.map((r) => r.id));
          for (const c of approved) results.set(c.windowId, { outcome: 'paid', state: paidIds.has(c.windowId) ? 'paid' : c.state, salesSent: 1, adopted: false });
        });
      }
      for (const claim of fresh) {
        const outcome = outcomes.get(claim.windowId)!;
        if (outcome.outcome === 'succeeded') continue;
        const recorded = await inTransaction(client, () => settler(claim.windowId).record(claim, outcome, false));
        results.set(claim.windowId, { ...recorded, salesSent: 1, adopted: false });
      }
      for (const id of held) if (!freshIds.has(id)) results.set(id, await settler(id).settle());
      return results;
    } finally {
      if (held.length > 0) {
        await client.query(`SELECT pg_advisory_unlock(${windowLockKey('id')}) FROM unnest($1::uuid[]) AS id`, [held]).catch(() => {});
      }
    }
  });
}

// ───────────────────────────── operator actions ─────────────────────────────

export const SETTLE_AGAIN_STATES: readonly WindowState[] = ['awaiting_payment_method', 'retry_scheduled', 'failed_exhausted'];

/**
 * An operator asks for the window to be charged again (typically after fixing the payment method): a fresh retry
 * budget and a settle job now. After a hard decline this needs `overrideHardDecline: true`. Audited.
 */
export async function settleAgain(
  db: pg.Pool | pg.ClientBase,
  input: { windowId: string; actor: Actor; reason?: string | null; overrideHardDecline?: boolean; now?: Date },
): Promise<{ state: WindowState }> {
  const now = input.now ?? new Date();
  return withClient(db, (client) =>
    inTransaction(client, async () => {
      const w = await client.query<{ state: WindowState }>(`SELECT state::text AS state FROM windows WHERE id = $1 FOR NO KEY UPDATE`, [input.windowId]);
      const state = w.rows[0]?.state;
      if (!state) throw new NotFoundError('window', input.windowId);
      if (!SETTLE_AGAIN_STATES.includes(state)) throw new StateError(`window ${input.windowId} is ${state}: settle again is allowed from ${SETTLE_AGAIN_STATES.join(', ')}`);
      const a = await client.query<{ id: string; status: string; tries: number; budget_tries: number; next_retry_at: Date | null; last_failure_code: string | null }>(
        `SELECT id, status::text AS status, tries, budget_tries, next_retry_at, last_failure_code FROM charge_attempts WHERE window_id = $1 FOR UPDATE`,
        [input.windowId],
      );
      const attempt = a.rows[0];
      if (attempt?.status === 'hard_declined' && !input.overrideHardDecline) {
        throw new StateError(`window ${input.windowId} was hard declined (${attempt.last_failure_code ?? 'no code'}): charging again needs an explicit override`);
      }
      // Nothing was ever sent: the window is simply closed again (its invoice can still be re-authored).
      const to: WindowState = !attempt || attempt.tries === 0 ? 'closed' : 'retry_scheduled';
      await client.query(`UPDATE windows SET state = $2::window_state, updated_at = $3 WHERE id = $1 AND state = $4::window_state`, [input.windowId, to, now, state]);
      if (attempt) {
        await client.query(
          `UPDATE charge_attempts SET budget_tries = 0, budget_started_at = $2, next_retry_at = $2,
                  status = CASE WHEN status = 'hard_declined' THEN 'pending'::charge_status ELSE status END, updated_at = $2
           WHERE id = $1`,
          [attempt.id, now],
        );
      }
      await addJob(client, SETTLE_WINDOW_TASK, { windowId: input.windowId }, { jobKey: settleJobKey(input.windowId) });
      await writeAudit(client, {
        actor: input.actor,
        action: 'window.settle_again',
        subjectType: 'window',
        subjectId: input.windowId,
        reason: input.reason ?? null,
        before: { state, charge_status: attempt?.status ?? null, tries: attempt?.tries ?? 0, budget_tries: attempt?.budget_tries ?? 0 },
        after: { state: to, override_hard_decline: Boolean(input.overrideHardDecline && attempt?.status === 'hard_declined') },
      });
      return { state: to };
    }),
  );
}

/** Finance writes off an exhausted charge: `failed_exhausted` -> `written_off`, never charged again. Audited. */
export async function writeOffWindow(
  db: pg.Pool | pg.ClientBase,
  input: { windowId: string; actor: Actor; reason?: string | null; now?: Date },
): Promise<{ state: 'written_off' }> {
  const now = input.now ?? new Date();
  return withClient(db, (client) =>
    inTransaction(client, async () => {
      const w = await client.query<{ state: WindowState }>(`SELECT state::text AS state FROM windows WHERE id = $1 FOR NO KEY UPDATE`, [input.windowId]);
      const state = w.rows[0]?.state;
      if (!state) throw new NotFoundError('window', input.windowId);
      if (state !== 'failed_exhausted') throw new StateError(`window ${input.windowId} is ${state}: only an exhausted charge (failed_exhausted) can be written off`);
      const a = await client.query<{ status: string; amount_minor: string; tries: number }>(
        `SELECT status::text AS status, amount_minor::text AS amount_minor, tries FROM charge_attempts WHERE window_id = $1 FOR UPDATE`,
        [input.windowId],
      );
      await client.query(`UPDATE charge_attempts SET status = 'written_off', next_retry_at = NULL, updated_at = $2 WHERE window_id = $1`, [input.windowId, now]);
      await client.query(`UPDATE windows SET state = 'written_off', updated_at = $2 WHERE id = $1 AND state = 'failed_exhausted'`, [input.windowId, now]);
      await writeAudit(client, {
        actor: input.actor,
        action: 'window.write_off',
        subjectType: 'window',
        subjectId: input.windowId,
        reason: input.reason ?? null,
        before: { state, charge_status: a.rows[0]?.status ?? null, amount_minor: a.rows[0]?.amount_minor ?? null, tries: a.rows[0]?.tries ?? 0 },
        after: { state: 'written_off', charge_status: a.rows[0] ? 'written_off' : null },
      });
      return { state: 'written_off' as const };
    }),
  );
}

// ───────────────────────────── the sweep ─────────────────────────────

/**
 * Crontab work: settle jobs for windows whose job was lost or whose worker died: `closed` for a while with no
 * settlement, `retry_scheduled` past due, `settling` untouched for a while (a killed worker; the settle run tells
 * a live settler by its lock). Queued with the window's job key, so a queued job is never doubled.
 */
export async function sweepSettlements(
  db: Queryable,
  opts: { now?: Date; closedAfterMs?: number; settlingAfterMs?: number; retryGraceMs?: number; limit?: number } = {},
): Promise<{ enqueued: number }> {
  const now = opts.now ?? new Date();
  const { rowCount } = await db.query(
    `SELECT ${addJobCall({ identifier: '$1', payload: `json_build_object('windowId', w.id)`, jobKey: `'braintree_settle:' || w.id::text`, jobKeyMode: `'preserve_run_at'`, maxAttempts: '25' })}
     FROM (
       SELECT w.id FROM windows w LEFT JOIN charge_attempts a ON a.window_id = w.id
       WHERE (w.state = 'closed' AND w.closed_at <= $2)
          OR (w.state = 'retry_scheduled' AND COALESCE(a.next_retry_at, w.updated_at) <= $3)
          OR (w.state = 'settling' AND w.updated_at <= $4)
       ORDER BY w.updated_at LIMIT $5
     ) w`,
    [
      SETTLE_WINDOW_TASK,
      new Date(now.getTime() - (opts.closedAfterMs ?? 5 * 60_000)),
      new Date(now.getTime() - (opts.retryGraceMs ?? 60_000)),
      new Date(now.getTime() - (opts.settlingAfterMs ?? 5 * 60_000)),
      opts.limit ?? 5000,
    ],
  );
  return { enqueued: rowCount ?? 0 };
}
