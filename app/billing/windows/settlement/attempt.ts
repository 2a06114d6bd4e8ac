// The attempt's state machine: under the window's advisory lock, decide (nothing to do, not due, search first,
// zero total, no payment method, budget spent) and mark the attempt sent before any sale leaves the process; then
// the sale, or the search for a sale whose answer was lost; then the outcome is recorded (outcomes.ts).
import type pg from 'pg';
import { addJob } from '../../db';
import { inTransaction, withClient } from '../transaction';
import { SETTLE_WINDOW_TASK, settleJobKey, type WindowState } from '../types';
import { orderIdFor, windowLockKey, type AttemptRow, type Claim, type Outcome, type SettlementOptions, type SettleResult } from './model';
import { OutcomeRecorder } from './outcomes';
import { searchOutcome } from './search';

export class Settler extends OutcomeRecorder {
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

  protected saleRequest(claim: Claim) {
    return {
      orderId: claim.attempt.order_id,
      amountMinor: BigInt(claim.attempt.amount_minor),
      currency: claim.currency,
      paymentMethodToken: claim.token!,
      customerId: claim.processorCustomerId,
    };
  }

  /** Phase 1: decide under the window lock, and mark the attempt before anything leaves the process. */
  protected async claim(): Promise<{ result: SettleResult } | { claim: Claim; mustSearch: boolean }> {
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
  protected async claimAfterSearch(claim: Claim): Promise<{ result: SettleResult } | { claim: Claim }> {
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

  protected async markSent(claim: Claim, now: Date): Promise<{ result: SettleResult } | { claim: Claim }> {
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
}

/**
 * Settles one window (the `braintree__settle_window` task). Safe to run twice and concurrently: a second run
 * either finds the window's lock held (and looks again later) or finds nothing left to do.
 */
export async function settleWindow(db: pg.Pool | pg.ClientBase, windowId: string, options: SettlementOptions): Promise<SettleResult> {
  return withClient(db, (client) => new Settler(client, windowId, options).run());
}
