// Outcome recording: what a sale (or a search) answered is stored on the charge attempt, then the window moves,
// guarded (only from the states named), with its retry job or ops event written only when the row moved.
import type pg from 'pg';
import { addJob } from '../../db';
import { backoffDelay } from '../../processors/limits';
import { recordOpsEvents } from '../../ops-events';
import { SETTLE_WINDOW_TASK, settleJobKey, type WindowState } from '../types';
import { DEFAULT_RETRY_POLICY, PAYMENT_METHOD_CODES, type AttemptRow, type Claim, type Outcome, type RetryPolicy, type SettlementOptions, type SettleResult } from './model';

/** One window's settlement state: its client (holding the window's advisory lock), policy and clock. */
export class OutcomeRecorder {
  protected readonly policy: RetryPolicy;
  protected readonly searchDelayMs: number;
  protected readonly now: () => Date;
  protected readonly random: () => number;

  constructor(
    protected readonly client: pg.ClientBase,
    protected readonly windowId: string,
    protected readonly options: SettlementOptions,
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

  protected async scheduleRetry(claim: Claim, now: Date, backoff: { baseMs: number; maxMs: number }) {
    const attempt = claim.attempt;
    const delay = backoffDelay(attempt.budget_tries, backoff.baseMs, backoff.maxMs, this.random);
    const at = new Date(now.getTime() + delay);
    const budgetStart = attempt.budget_started_at ?? now;
    if (attempt.budget_tries >= this.policy.maxTries || at.getTime() - budgetStart.getTime() > this.policy.maxElapsedMs) {
      return this.exhaust(claim, now, 'budget_spent', null);
    }
    return this.retryAt(claim, now, at);
  }

  protected async retryAt(claim: Claim, now: Date, at: Date) {
    const moved = await this.moveWindow(['settling'], 'retry_scheduled', now);
    if (moved) {
      await this.client.query(`UPDATE charge_attempts SET next_retry_at = $2, updated_at = $3 WHERE id = $1`, [claim.attempt.id, at, now]);
      await addJob(this.client, SETTLE_WINDOW_TASK, { windowId: this.windowId }, { jobKey: settleJobKey(this.windowId), runAt: at });
    }
    return { outcome: 'retry_scheduled' as const, state: moved ? ('retry_scheduled' as const) : claim.state, detail: `next try at ${at.toISOString()}` };
  }

  protected async exhaust(claim: Claim, now: Date, reason: string, code: string | null) {
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

  protected async toAwaitingPaymentMethod(claim: Claim, now: Date, code: string, message: string) {
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
  protected async noteFailure(
    attemptId: string,
    status: string | null,
    code: string,
    message: string,
    now: Date,
    extra: { transactionId?: string | null; processorStatus?: string | null; responseCode?: string | null } = {},
  ) {
    // A sale that failed (declined, rejected, refused or errored, not an ambiguous answer or a search): one ops event
    // each, with its code, which failure-rate alert rules on sales count (ADR 037).
    if (status !== null && status !== 'ambiguous') {
      await recordOpsEvents(this.client, [
        {
          type: 'metered_sale_failed',
          processor: 'braintree',
          source: 'settlement',
          subjectType: 'window',
          subjectId: this.windowId,
          metadata: { charge_attempt_id: attemptId, outcome: status, code, message: message.slice(0, 200) },
        },
      ]);
    }
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

  protected async moveWindow(from: WindowState[], to: WindowState, now: Date): Promise<boolean> {
    const r = await this.client.query(
      `UPDATE windows SET state = $3::window_state, updated_at = $4, paid_at = CASE WHEN $3 = 'paid' THEN $4 ELSE paid_at END
       WHERE id = $1 AND state = ANY($2::window_state[])`,
      [this.windowId, from, to, now],
    );
    return r.rowCount === 1;
  }
}
