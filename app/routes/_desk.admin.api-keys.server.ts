// API keys for the admin page; each change commits with its audit row. The key itself exists only in the
// response that creates it (and the encrypted flash that shows it once): the table keeps its SHA-256.
import type pg from 'pg';
import { displayPrefix, generateApiKey, hashApiKey } from '../billing/access/api-keys';
import { writeAudit, type Actor } from '../billing/audit';
import { withTransaction, type Queryable } from '../billing/db';
import type { AdminResult } from './_desk.admin.users.server';

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

export async function createDeskApiKey(
  pool: pg.Pool,
  actor: Actor,
  input: { name: string; reason?: string },
): Promise<AdminResult<{ id: string; key: string; prefix: string }>> {
  const key = generateApiKey();
  const prefix = displayPrefix(key);
  return withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ id: string }>(
      `INSERT INTO api_keys (id, name, prefix, key_hash, created_by_id) VALUES (gen_random_uuid(), $1, $2, $3, $4) RETURNING id`,
      [input.name, prefix, hashApiKey(key), actor.userId],
    );
    const id = rows[0]!.id;
    await writeAudit(tx, {
      actor,
      action: 'api_key.create',
      subjectType: 'api_key',
      subjectId: id,
      reason: input.reason,
      after: { name: input.name, prefix },
    });
    return { ok: true, value: { id, key, prefix } };
  });
}

export async function revokeApiKey(
  pool: pg.Pool,
  actor: Actor,
  input: { apiKeyId: string; reason?: string },
): Promise<AdminResult<{ name: string }>> {
  return withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ name: string; prefix: string; revoked_at: Date }>(
      `UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING name, prefix, revoked_at`,
      [input.apiKeyId],
    );
    const row = rows[0];
    if (!row) return { ok: false, message: 'That key does not exist or is already revoked.' };
    await writeAudit(tx, {
      actor,
      action: 'api_key.revoke',
      subjectType: 'api_key',
      subjectId: input.apiKeyId,
      reason: input.reason,
      before: { name: row.name, prefix: row.prefix, revokedAt: null },
      after: { name: row.name, prefix: row.prefix, revokedAt: row.revoked_at.toISOString() },
    });
    return { ok: true, value: { name: row.name } };
  });
}
