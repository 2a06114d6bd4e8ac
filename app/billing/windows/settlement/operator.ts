// Operator actions on a window's charge: settle again (a fresh retry budget) and write off. Both audited.
import type pg from 'pg';
import { writeAudit, type Actor } from '../../audit';
import { addJob } from '../../db';
import { NotFoundError, StateError } from '../../errors';
import { inTransaction, withClient } from '../transaction';
import { SETTLE_WINDOW_TASK, settleJobKey, type WindowState } from '../types';

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
