// The admin page's changes to desk users. Each change and its audit row commit in one transaction: there is never a change
// without its record, nor a record of a change that rolled back.
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { writeAudit, type Actor } from '../audit';
import { withTransaction, type Queryable } from '../db';
import type { RoleName } from './permissions';
import { endAllSessions } from './sessions';
import { hashPassword } from './users';

/** A refusal the admin can act on (shown on the form); nothing was written. */
export type AdminResult<T> = { ok: true; value: T } | { ok: false; field?: string; message: string };

interface UserSnapshot {
  email: string;
  name: string | null;
  role: string;
  disabledAt: string | null;
}

export async function createDeskUser(
  pool: pg.Pool,
  actor: Actor,
  input: { email: string; name?: string; role: RoleName; password?: string; reason?: string },
): Promise<AdminResult<{ id: string; email: string; password: string | null }>> {
  const generated = input.password === undefined;
  const password = input.password ?? randomBytes(18).toString('base64url');
  // argon2 before the transaction: no row locks or pooled connection held while it runs.
  const passwordHash = await hashPassword(password);
  return withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ id: string }>(
      `INSERT INTO users (id, email, name, password_hash, role_id, updated_at)
       SELECT gen_random_uuid(), $1, $2, $3, r.id, now() FROM roles r WHERE r.name = $4
       ON CONFLICT (email) DO NOTHING
       RETURNING id`,
      [input.email, input.name ?? null, passwordHash, input.role],
    );
    const id = rows[0]?.id;
    if (!id) return { ok: false, field: 'email', message: `A user with the email ${input.email} already exists.` };
    const after: UserSnapshot & { passwordGenerated: boolean } = {
      email: input.email,
      name: input.name ?? null,
      role: input.role,
      disabledAt: null,
      passwordGenerated: generated,
    };
    await writeAudit(tx, { actor, action: 'user.create', subjectType: 'user', subjectId: id, reason: input.reason, after });
    return { ok: true, value: { id, email: input.email, password: generated ? password : null } };
  });
}

export async function changeUserRole(
  pool: pg.Pool,
  actor: Actor,
  input: { userId: string; role: RoleName; reason?: string },
): Promise<AdminResult<{ email: string; role: RoleName }>> {
  if (input.userId === actor.userId) {
    return { ok: false, message: 'You cannot change your own role: ask another admin, so nobody locks themselves out.' };
  }
  return withTransaction(pool, async (tx) => {
    const before = await lockUser(tx, input.userId);
    if (!before) return { ok: false, message: 'That user no longer exists.' };
    if (before.role === input.role) return { ok: false, field: 'role', message: `${before.email} already has the role ${input.role}.` };
    if (before.role === 'admin' && !before.disabledAt && (await otherActiveAdmins(tx, input.userId)) === 0) {
      return { ok: false, message: 'This is the last active admin; make someone else an admin first.' };
    }
    await tx.query(
      `UPDATE users SET role_id = (SELECT id FROM roles WHERE name = $2), updated_at = now() WHERE id = $1`,
      [input.userId, input.role],
    );
    await writeAudit(tx, {
      actor,
      action: 'user.change_role',
      subjectType: 'user',
      subjectId: input.userId,
      reason: input.reason,
      before: { role: before.role },
      after: { role: input.role },
    });
    return { ok: true, value: { email: before.email, role: input.role } };
  });
}

/** Disabling ends every session of the user in the same transaction: they are out on their next request. */
export async function setUserDisabled(
  pool: pg.Pool,
  actor: Actor,
  input: { userId: string; disabled: boolean; reason?: string },
): Promise<AdminResult<{ email: string; sessionsEnded: number }>> {
  if (input.disabled && input.userId === actor.userId) {
    return { ok: false, message: 'You cannot disable your own account.' };
  }
  return withTransaction(pool, async (tx) => {
    const before = await lockUser(tx, input.userId);
    if (!before) return { ok: false, message: 'That user no longer exists.' };
    if (Boolean(before.disabledAt) === input.disabled) {
      return { ok: false, message: `${before.email} is already ${input.disabled ? 'disabled' : 'active'}.` };
    }
    if (input.disabled && before.role === 'admin' && (await otherActiveAdmins(tx, input.userId)) === 0) {
      return { ok: false, message: 'This is the last active admin; make someone else an admin first.' };
    }
    const { rows } = await tx.query<{ disabled_at: Date | null }>(
      `UPDATE users SET disabled_at = CASE WHEN $2 THEN now() ELSE NULL END, updated_at = now() WHERE id = $1
       RETURNING disabled_at`,
      [input.userId, input.disabled],
    );
    const sessionsEnded = input.disabled ? await endAllSessions(tx, input.userId) : 0;
    await writeAudit(tx, {
      actor,
      action: input.disabled ? 'user.disable' : 'user.enable',
      subjectType: 'user',
      subjectId: input.userId,
      reason: input.reason,
      before: { disabledAt: before.disabledAt },
      after: { disabledAt: rows[0]?.disabled_at?.toISOString() ?? null, ...(input.disabled ? { sessionsEnded } : {}) },
    });
    return { ok: true, value: { email: before.email, sessionsEnded } };
  });
}

async function lockUser(tx: Queryable, userId: string): Promise<UserSnapshot | null> {
  const { rows } = await tx.query<{ email: string; name: string | null; role: string; disabled_at: Date | null }>(
    `SELECT u.email, u.name, r.name AS role, u.disabled_at
       FROM users u JOIN roles r ON r.id = u.role_id WHERE u.id = $1 FOR UPDATE OF u`,
    [userId],
  );
  const row = rows[0];
  return row ? { email: row.email, name: row.name, role: row.role, disabledAt: row.disabled_at?.toISOString() ?? null } : null;
}

/**
 * Active admins other than `userId`, locking their rows: two admins demoting each other at the same moment are
 * serialised, and the second sees the first's change, so the desk never ends up with no admin.
 */
async function otherActiveAdmins(tx: Queryable, userId: string): Promise<number> {
  const { rows } = await tx.query(
    `SELECT u.id FROM users u JOIN roles r ON r.id = u.role_id
      WHERE r.name = 'admin' AND u.disabled_at IS NULL AND u.id <> $1 FOR UPDATE OF u`,
    [userId],
  );
  return rows.length;
}
