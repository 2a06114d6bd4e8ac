// Sale sending for many windows at once (the settle task's batch payload): fresh windows are marked sent in one
// transaction, their sales go out concurrently, approvals are stored in one transaction; anything else goes through
// the one-window state machine (attempt.ts), under the same advisory locks.
import type pg from 'pg';
import type { SaleResult } from '../../processors/types';
import { inTransaction, withClient } from '../transaction';
import type { WindowState } from '../types';
import { orderIdFor, windowLockKey, type AttemptRow, type Claim, type SettlementOptions, type SettleResult } from './model';
import { Settler } from './attempt';

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
