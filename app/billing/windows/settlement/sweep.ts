// The settlement sweep (crontab): settle jobs again for windows whose job was lost or whose worker died.
import type { Queryable } from '../../db';
import { addJobCall } from '../../../db/graphile-jobs';
import { SETTLE_WINDOW_TASK } from '../types';

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
