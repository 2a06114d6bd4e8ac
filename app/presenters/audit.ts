// The audit log page's reads: newest first, keyset pagination on (at, id) (no OFFSET, no COUNT over the table),
// filters that each match one of the table's indexes.
import { z } from 'zod';
import type { Queryable } from '../billing/db';
import { filledParams, filterText as text, keysetPage, pageFields, placeholders, utcMinute } from '../billing/filters';
import { decodeCursor, encodeCursor } from './cursor';

export const PAGE_SIZE = 50;


export const AuditFiltersSchema = z.object({
  action: text(100).optional().catch(undefined),
  actor: text(254).optional().catch(undefined),
  subjectType: text(100).optional().catch(undefined),
  subjectId: text(200).optional().catch(undefined),
  from: utcMinute.optional().catch(undefined),
  to: utcMinute.optional().catch(undefined),
  ...pageFields,
});
export type AuditFilters = z.infer<typeof AuditFiltersSchema>;

export function parseAuditFilters(url: URL): AuditFilters {
  const raw = filledParams(url.searchParams);
  return AuditFiltersSchema.parse(raw);
}

export interface AuditRow {
  id: string;
  at: string;
  actorUserId: string | null;
  actorLabel: string;
  actorRole: string | null;
  action: string;
  subjectType: string;
  subjectId: string | null;
  reason: string | null;
  before: unknown;
  after: unknown;
}

export interface AuditPage {
  entries: AuditRow[];
  /** Cursor for the next older page, null on the last one. */
  older: string | null;
  /** Cursor for the next newer page, null on the first one. */
  newer: string | null;
}

export async function listAuditEntries(db: Queryable, filters: AuditFilters): Promise<AuditPage> {
  const where: string[] = [];
  const params: unknown[] = [];
  const param = placeholders(params);

  if (filters.action) where.push(`action = ${param(filters.action)}`);
  if (filters.actor) {
    // A person is matched by user id (stable across email changes, and indexed); system actors by their label.
    const { rows } = await db.query<{ id: string }>('SELECT id FROM users WHERE email = $1', [filters.actor.toLowerCase()]);
    where.push(rows[0] ? `actor_user_id = ${param(rows[0].id)}` : `actor_label = ${param(filters.actor)}`);
  }
  if (filters.subjectType) where.push(`subject_type = ${param(filters.subjectType)}`);
  if (filters.subjectId) where.push(`subject_id = ${param(filters.subjectId)}`);
  if (filters.from) where.push(`at >= ${param(filters.from)}`);
  if (filters.to) where.push(`at < ${param(filters.to)}`);

  const cursor = decodeCursor(filters.cursor, 'bigint');
  const newer = cursor !== null && filters.direction === 'newer';
  if (cursor) where.push(`(at, id) ${newer ? '>' : '<'} (${param(cursor.at)}::timestamptz, ${param(cursor.id)}::bigint)`);

  const order = newer ? 'at ASC, id ASC' : 'at DESC, id DESC';
  const { rows } = await db.query<{
    id: string;
    at: Date;
    actor_user_id: string | null;
    actor_label: string;
    actor_role: string | null;
    action: string;
    subject_type: string;
    subject_id: string | null;
    reason: string | null;
    before: unknown;
    after: unknown;
  }>(
    `SELECT id, at, actor_user_id, actor_label, actor_role, action, subject_type, subject_id, reason, before, after
       FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY ${order} LIMIT ${PAGE_SIZE + 1}`,
    params,
  );
  const { items, older, newer: newerCursor } = keysetPage(rows, {
    size: PAGE_SIZE,
    newer,
    fromCursor: cursor !== null,
    toItem: (r) => ({
      id: String(r.id),
      at: r.at.toISOString(),
      actorUserId: r.actor_user_id,
      actorLabel: r.actor_label,
      actorRole: r.actor_role,
      action: r.action,
      subjectType: r.subject_type,
      subjectId: r.subject_id,
      reason: r.reason,
      before: r.before,
      after: r.after,
    }),
    cursorOf: (e) => encodeCursor(e.at, e.id),
  });
  return { entries: items, older, newer: newerCursor };
}

/** The distinct values of an indexed audit_log column, one index probe per value (a loose index scan). */
const distinctAuditValues = (column: 'action' | 'subject_type') => `WITH RECURSIVE d(v) AS (
     (SELECT ${column} FROM audit_log ORDER BY ${column} LIMIT 1)
     UNION ALL
     SELECT (SELECT ${column} FROM audit_log WHERE ${column} > d.v ORDER BY ${column} LIMIT 1) FROM d WHERE d.v IS NOT NULL
   ) SELECT v FROM d WHERE v IS NOT NULL`;

export async function auditFilterOptions(db: Queryable): Promise<{ actions: string[]; subjectTypes: string[]; actors: string[] }> {
  const [actions, subjectTypes, actors] = await Promise.all([
    db.query<{ v: string }>(distinctAuditValues('action')),
    db.query<{ v: string }>(distinctAuditValues('subject_type')),
    db.query<{ v: string }>('SELECT email AS v FROM users ORDER BY email LIMIT 500'),
  ]);
  return {
    actions: actions.rows.map((r) => r.v),
    subjectTypes: subjectTypes.rows.map((r) => r.v),
    actors: actors.rows.map((r) => r.v),
  };
}

/** Each audit action in words, as the log shows it (the raw action stays the filter's value). */
export const AUDIT_ACTION_WORDS: Record<string, string> = {
  'api_key.create': 'Created an API key',
  'api_key.revoke': 'Revoked an API key',
  'ledger.archive_partition': 'Archived a ledger month',
  'meter.create': 'Added a definition',
  'meter.replay': 'Replayed a definition',
  'meter_event.retry': 'Retried events',
  'reconciliation.run': 'Ran a reconciliation',
  'session.logout_everywhere': 'Signed out everywhere',
  'user.change_role': 'Changed a role',
  'user.create': 'Created a desk user',
  'user.disable': 'Disabled a desk user',
  'user.enable': 'Enabled a desk user',
  'window.reauthor': 'Re-authored a window',
  'window.repair_stale': 'Repaired a stale renewal',
  'window.settle_again': 'Settled a window again',
  'window.write_off': 'Wrote off a window',
};

export const auditActionWords = (action: string): string => AUDIT_ACTION_WORDS[action] ?? action;

/** The desk page of an audit entry's subject, where it has one. */
export function auditSubjectHref(subjectType: string, subjectId: string | null): string | null {
  if (!subjectId) return null;
  switch (subjectType) {
    case 'meter_event':
      return `/events/${subjectId}`;
    case 'window':
      return `/windows/${subjectId}`;
    case 'customer':
      return `/customers/${subjectId}`;
    case 'meter':
      return '/definitions';
    case 'user':
      return '/admin/users';
    case 'api_key':
      return '/admin/api-keys';
    case 'reconciliation':
      return '/reconciliation';
    default:
      return null;
  }
}
