// Desk sessions, stored in PostgreSQL so any number of web processes share them
// (docs/decisions/007-desk-sessions-csrf-throttling.md).
// The cookie holds a random 256-bit token; the `sessions` row is keyed by its SHA-256, so a leaked table (or
// backup) cannot be replayed as cookies. A session ends after 12 h without a request or 7 days after login,
// whichever comes first.
import { createHash, randomBytes } from 'node:crypto';
import type { RouterContextProvider } from 'react-router';
import { withTransaction, type Queryable } from '../billing/db';
import { getDesk, getServices } from '../server/desk-context';
import { cookieName, readCookie, serializeCookie } from './cookies.server';

export const SESSION_IDLE_MS = 12 * 3600_000;
export const SESSION_ABSOLUTE_MS = 7 * 86_400_000;
// Sliding the idle expiry costs a write; do it at most once per this interval per session.
const RENEW_AFTER_MS = 5 * 60_000;

const BASE_NAME = 'md_session';
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

type Context = Readonly<RouterContextProvider>;

export function newSessionToken(): string {
  return randomBytes(32).toString('base64url');
}

export function hashSessionToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function sessionCookieName(context: Context): string {
  return cookieName(BASE_NAME, getDesk(context).secureCookies);
}

/** The session token the request carries, if it has the shape of one (anything else is ignored unhashed). */
export function readSessionToken(request: Request, context: Context): string | null {
  const token = readCookie(request, sessionCookieName(context));
  return token && TOKEN_PATTERN.test(token) ? token : null;
}

export function sessionCookie(context: Context, token: string): string {
  const { secureCookies } = getDesk(context);
  return serializeCookie(sessionCookieName(context), token, { secure: secureCookies, maxAge: SESSION_ABSOLUTE_MS / 1000 });
}

export function clearSessionCookie(context: Context): string {
  const { secureCookies } = getDesk(context);
  return serializeCookie(sessionCookieName(context), '', { secure: secureCookies, maxAge: 0 });
}

/**
 * Starts a session for `userId` with a fresh token. Whatever session the browser presented before (`previousToken`)
 * is deleted, never upgraded: a token planted before login (session fixation) is worthless after it.
 * Run inside the login transaction.
 */
export async function startSession(
  db: Queryable,
  input: { userId: string; ip: string | null; userAgent: string | null; previousToken?: string | null },
): Promise<{ token: string; expiresAt: Date }> {
  if (input.previousToken) await db.query('DELETE FROM sessions WHERE id = $1', [hashSessionToken(input.previousToken)]);
  // Housekeeping that needs no job: a user's dead sessions go when they next log in.
  await db.query('DELETE FROM sessions WHERE user_id = $1 AND expires_at <= now()', [input.userId]);
  const token = newSessionToken();
  const { rows } = await db.query<{ expires_at: Date }>(
    `INSERT INTO sessions (id, user_id, expires_at, ip, user_agent)
     VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5)
     RETURNING expires_at`,
    [hashSessionToken(token), input.userId, SESSION_IDLE_MS / 1000, input.ip, input.userAgent?.slice(0, 500) ?? null],
  );
  return { token, expiresAt: rows[0]!.expires_at };
}

export interface SessionUserRow {
  sessionId: string;
  userId: string;
  email: string;
  name: string | null;
  role: string;
  permissions: string[];
}

/**
 * The live session's user with their role's permissions (read from role_permissions on every request, so a role
 * change or a disabled account takes effect at once), or null. Slides the idle expiry forward.
 */
export async function loadSessionUser(db: Queryable, token: string): Promise<SessionUserRow | null> {
  const sessionId = hashSessionToken(token);
  const { rows } = await db.query<{
    user_id: string;
    email: string;
    name: string | null;
    role: string;
    permissions: string[];
    expires_at: Date;
    created_at: Date;
  }>(
    `SELECT u.id AS user_id, u.email, u.name, r.name AS role, s.expires_at, s.created_at,
            coalesce(array_agg(p.action || ':' || p.entity || ':' || p.access ORDER BY p.action, p.entity, p.access)
                     FILTER (WHERE p.id IS NOT NULL), '{}') AS permissions
       FROM sessions s
       JOIN users u ON u.id = s.user_id
       JOIN roles r ON r.id = u.role_id
       LEFT JOIN role_permissions rp ON rp.role_id = r.id
       LEFT JOIN permissions p ON p.id = rp.permission_id
      WHERE s.id = $1 AND s.expires_at > now() AND u.disabled_at IS NULL
      GROUP BY u.id, r.name, s.expires_at, s.created_at`,
    [sessionId],
  );
  const row = rows[0];
  if (!row) return null;

  const now = Date.now();
  const absoluteEnd = row.created_at.getTime() + SESSION_ABSOLUTE_MS;
  const wanted = Math.min(now + SESSION_IDLE_MS, absoluteEnd);
  if (wanted - row.expires_at.getTime() > RENEW_AFTER_MS) {
    await db.query(
      `UPDATE sessions SET expires_at = least(now() + make_interval(secs => $2), created_at + make_interval(secs => $3))
        WHERE id = $1`,
      [sessionId, SESSION_IDLE_MS / 1000, SESSION_ABSOLUTE_MS / 1000],
    );
  }
  return {
    sessionId,
    userId: row.user_id,
    email: row.email,
    name: row.name,
    role: row.role,
    permissions: row.permissions,
  };
}

export async function endSession(db: Queryable, token: string): Promise<void> {
  await db.query('DELETE FROM sessions WHERE id = $1', [hashSessionToken(token)]);
}

export { endAllSessions } from '../billing/access/sessions';

/**
 * Logs the request's browser in as `userId`: a new session row and token (the one the browser presented, if any,
 * is deleted), returned as the Set-Cookie header for the response.
 */
export async function startSessionForRequest(request: Request, context: Context, userId: string): Promise<string> {
  const { token } = await withTransaction(getServices(context).pool, (tx) =>
    startSession(tx, {
      userId,
      ip: getDesk(context).clientAddress,
      userAgent: request.headers.get('user-agent'),
      previousToken: readSessionToken(request, context),
    }),
  );
  return sessionCookie(context, token);
}
