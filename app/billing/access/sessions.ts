// Ending desk sessions, shared by log-out-everywhere (app/utils/logout.server.ts) and disabling a user (desk-users.ts).
import type { Queryable } from '../db';

/** "Log out everywhere", and what disabling a user does: every session of the user ends. Returns how many. */
export async function endAllSessions(db: Queryable, userId: string): Promise<number> {
  const result = await db.query('DELETE FROM sessions WHERE user_id = $1', [userId]);
  return result.rowCount ?? 0;
}
