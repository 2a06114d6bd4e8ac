// Operator actions on a window's charge: settle again (a fresh retry budget) and write off. Both audited.
import type pg from 'pg';
import { writeAudit, type Actor } from '../../audit';
import { addJob } from '../../db';
import { NotFoundError, StateError } from '../../errors';
import { inTransaction, withClient } from '../transaction';
import { settleAgainVerdict, writeOffVerdict } from '../actions';
import { SETTLE_WINDOW_TASK, settleJobKey, type WindowState } from '../types';

export { SETTLE_AGAIN_STATES } from '../actions';

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
      const state = await lockedWindowState(client, input.windowId);
      const a = await client.query<{ id: string; status: string; tries: number; budget_tries: number; next_retry_at: Date | null; last_failure_code: string | null }>(
        `SELECT id, status::text AS status, tries, budget_tries, next_retry_at, last_failure_code FROM charge_attempts WHERE window_id = $1 FOR UPDATE`,
        [input.windowId],
      );
      const attempt = a.rows[0];
      const verdict = settleAgainVerdict(
        { state, saleTries: attempt?.tries ?? 0, chargeStatus: attempt?.status ?? null, lastFailureCode: attempt?.last_failure_code ?? null },
        { overrideHardDecline: input.overrideHardDecline ?? false },
      );
      if (!verdict.allowed) throw new StateError(verdict.reason);
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
      const state = await lockedWindowState(client, input.windowId);
      const verdict = writeOffVerdict({ state, saleTries: 0, chargeStatus: null });
      if (!verdict.allowed) throw new StateError(verdict.reason);
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

/** The window's state, its row locked for the action (NO KEY UPDATE: ingest's foreign-key checks still pass). */
async function lockedWindowState(client: pg.ClientBase, windowId: string): Promise<WindowState> {
  const w = await client.query<{ state: WindowState }>(`SELECT state::text AS state FROM windows WHERE id = $1 FOR NO KEY UPDATE`, [windowId]);
  const state = w.rows[0]?.state;
  if (!state) throw new NotFoundError('window', windowId);
  return state;
}
