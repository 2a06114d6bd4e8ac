// The audit log: who did what, to what, why, with before/after. The table refuses UPDATE and DELETE.
import type { Queryable } from './db';

export interface Actor {
  /** Null for system actors (CLI, jobs). */
  userId: string | null;
  /** The user's email, or e.g. `cli` / `job:stripe__reconcile_pending`. */
  label: string;
  role: string | null;
}

export interface AuditEntry {
  actor: Actor;
  /** verb.noun, e.g. `meter_event.retry`, `window.write_off`. */
  action: string;
  subjectType: string;
  subjectId?: string | null;
  reason?: string | null;
  before?: unknown;
  after?: unknown;
}

/** Appends one entry and returns its id (a bigint, as a string). */
export async function writeAudit(db: Queryable, entry: AuditEntry): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO audit_log (actor_user_id, actor_label, actor_role, action, subject_type, subject_id, reason, before, after)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb) RETURNING id::text AS id`,
    [
      entry.actor.userId,
      entry.actor.label,
      entry.actor.role,
      entry.action,
      entry.subjectType,
      entry.subjectId ?? null,
      entry.reason ?? null,
      entry.before === undefined ? null : JSON.stringify(entry.before),
      entry.after === undefined ? null : JSON.stringify(entry.after),
    ],
  );
  return rows[0]!.id;
}
