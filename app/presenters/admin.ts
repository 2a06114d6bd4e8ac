// The admin pages' reads: desk users with their sessions, and API keys (never the key itself: only its prefix).
// Changes go through the domain (app/billing/access/desk-users.ts, desk-api-keys.ts), which audits each one.
import type { Queryable } from '../billing/db';

export interface UserListItem {
  id: string;
  email: string;
  name: string | null;
  role: string;
  disabledAt: string | null;
  createdAt: string;
  activeSessions: number;
  lastSignInAt: string | null;
}

export async function listUsers(db: Queryable): Promise<UserListItem[]> {
  const { rows } = await db.query<{
    id: string;
    email: string;
    name: string | null;
    role: string;
    disabled_at: Date | null;
    created_at: Date;
    active_sessions: number;
    last_sign_in_at: Date | null;
  }>(
    `SELECT u.id, u.email, u.name, r.name AS role, u.disabled_at, u.created_at,
            (SELECT count(*)::int FROM sessions s WHERE s.user_id = u.id AND s.expires_at > now()) AS active_sessions,
            (SELECT max(s.created_at) FROM sessions s WHERE s.user_id = u.id) AS last_sign_in_at
       FROM users u JOIN roles r ON r.id = u.role_id
      ORDER BY u.disabled_at IS NOT NULL, u.email`,
  );
  return rows.map((r) => ({
    id: r.id,
    email: r.email,
    name: r.name,
    role: r.role,
    disabledAt: r.disabled_at?.toISOString() ?? null,
    createdAt: r.created_at.toISOString(),
    activeSessions: r.active_sessions,
    lastSignInAt: r.last_sign_in_at?.toISOString() ?? null,
  }));
}

export interface ApiKeyListItem {
  id: string;
  name: string;
  prefix: string;
  createdBy: string | null;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export async function listApiKeys(db: Queryable): Promise<ApiKeyListItem[]> {
  const { rows } = await db.query<{
    id: string;
    name: string;
    prefix: string;
    created_by: string | null;
    created_at: Date;
    last_used_at: Date | null;
    revoked_at: Date | null;
  }>(
    `SELECT k.id, k.name, k.prefix, u.email AS created_by, k.created_at, k.last_used_at, k.revoked_at
       FROM api_keys k LEFT JOIN users u ON u.id = k.created_by_id
      ORDER BY k.revoked_at IS NOT NULL, k.created_at DESC`,
  );
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
    lastUsedAt: r.last_used_at?.toISOString() ?? null,
    revokedAt: r.revoked_at?.toISOString() ?? null,
  }));
}
