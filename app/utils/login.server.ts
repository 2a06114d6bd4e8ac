// Password login with throttling from `login_attempts` (docs/decisions/007-desk-sessions-csrf-throttling.md).
//
// Every attempt is recorded as a failure BEFORE the password is checked, then counted: concurrent guesses see
// each other's rows, so a burst of parallel requests cannot slip past the limit, and no lock or connection is
// held while argon2 runs. A success flips its own row. An attempt refused by the throttle removes its row again,
// so hammering a locked email does not extend the lock for the real user.
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { hashPassword, verifyPassword } from '../billing/access/users';

export const LOGIN_THROTTLE = {
  windowMs: 15 * 60_000,
  /** Failures per email in the window (since its last success) before further attempts are refused. */
  perEmail: 5,
  /** Failures per client address in the window: password spraying across many emails. */
  perAddress: 30,
} as const;

export type LoginResult =
  | { status: 'ok'; userId: string }
  | { status: 'invalid' }
  | { status: 'disabled' }
  | { status: 'throttled'; retryAfterSeconds: number };

// Unknown emails are verified against this hash, so they cost the same argon2 time as real ones and response
// timing does not reveal which emails have accounts.
let dummyHash: Promise<string> | undefined;
function timingDummy(): Promise<string> {
  dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
  return dummyHash;
}

export async function attemptLogin(
  pool: pg.Pool,
  input: { email: string; password: string; ip: string | null },
): Promise<LoginResult> {
  const email = input.email.trim().toLowerCase();
  const windowSeconds = LOGIN_THROTTLE.windowMs / 1000;
  const { rows: inserted } = await pool.query<{ id: string }>(
    'INSERT INTO login_attempts (email, ip, succeeded) VALUES ($1, $2, false) RETURNING id',
    [email, input.ip],
  );
  const attemptId = inserted[0]!.id;

  const retryAfter = await throttledFor(pool, email, input.ip, windowSeconds);
  if (retryAfter !== null) {
    await pool.query('DELETE FROM login_attempts WHERE id = $1', [attemptId]);
    return { status: 'throttled', retryAfterSeconds: retryAfter };
  }

  const { rows } = await pool.query<{ id: string; password_hash: string; disabled_at: Date | null }>(
    'SELECT id, password_hash, disabled_at FROM users WHERE email = $1',
    [email],
  );
  const user = rows[0];
  const valid = await verifyPassword(user?.password_hash ?? (await timingDummy()), input.password);
  if (!user || !valid) return { status: 'invalid' };
  // Only someone holding the right password learns that the account is disabled.
  if (user.disabled_at) return { status: 'disabled' };
  await pool.query('UPDATE login_attempts SET succeeded = true WHERE id = $1', [attemptId]);
  return { status: 'ok', userId: user.id };
}

/**
 * Seconds until the limits allow another attempt, or null when this attempt (already recorded) may proceed.
 * Counts include in-flight attempts; a success resets the per-email count (not the per-address one: an attacker
 * could reset it with an account of their own).
 */
async function throttledFor(pool: pg.Pool, email: string, ip: string | null, windowSeconds: number): Promise<number | null> {
  const { rows } = await pool.query<{ email_wait: number | null; ip_wait: number | null }>(
    `WITH email_failures AS (
       SELECT at FROM login_attempts
        WHERE email = $1 AND NOT succeeded
          AND at > greatest(now() - make_interval(secs => $3),
                            coalesce((SELECT max(at) FROM login_attempts WHERE email = $1 AND succeeded), '-infinity'))
        ORDER BY at DESC LIMIT $4
     ), ip_failures AS (
       SELECT at FROM login_attempts
        WHERE $2::text IS NOT NULL AND ip = $2 AND NOT succeeded AND at > now() - make_interval(secs => $3)
        ORDER BY at DESC LIMIT $5
     )
     SELECT
       CASE WHEN (SELECT count(*) FROM email_failures) >= $4
            THEN extract(epoch FROM (SELECT min(at) FROM email_failures) + make_interval(secs => $3) - now()) END AS email_wait,
       CASE WHEN (SELECT count(*) FROM ip_failures) >= $5
            THEN extract(epoch FROM (SELECT min(at) FROM ip_failures) + make_interval(secs => $3) - now()) END AS ip_wait`,
    // +1: the attempt being made is among the rows; the limit counts the failures before it.
    [email, ip, windowSeconds, LOGIN_THROTTLE.perEmail + 1, LOGIN_THROTTLE.perAddress + 1],
  );
  const waits = [rows[0]?.email_wait, rows[0]?.ip_wait].filter((w): w is number => w !== null && w !== undefined).map(Number);
  if (waits.length === 0) return null;
  return Math.max(1, Math.ceil(Math.max(...waits)));
}
