import type pg from 'pg';
import type { RouterContextProvider } from 'react-router';
import { writeAudit } from '../billing/audit';
import { withTransaction } from '../billing/db';
import { actorOf, getOptionalUser } from './permissions.server';
import { endAllSessions, endSession, readSessionToken } from './session.server';

/** Ends this browser's session, or (everywhere) all of the user's sessions. Returns how many sessions ended. */
export async function logOut(
  request: Request,
  context: Readonly<RouterContextProvider>,
  pool: pg.Pool,
  { everywhere }: { everywhere: boolean },
): Promise<number> {
  const token = readSessionToken(request, context);
  if (!token) return 0;
  const user = await getOptionalUser(request, context);
  if (!everywhere || !user) {
    await endSession(pool, token);
    return 1;
  }
  return withTransaction(pool, async (tx) => {
    const ended = await endAllSessions(tx, user.id);
    await writeAudit(tx, {
      actor: actorOf(user),
      action: 'session.logout_everywhere',
      subjectType: 'user',
      subjectId: user.id,
      after: { sessionsEnded: ended },
    });
    return ended;
  });
}
