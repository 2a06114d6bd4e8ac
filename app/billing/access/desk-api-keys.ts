// The admin page's changes to API keys; each change commits with its audit row. The key itself exists only in the
// response that creates it (and the encrypted flash that shows it once): the table keeps its SHA-256.
import type pg from 'pg';
import { writeAudit, type Actor } from '../audit';
import { withTransaction } from '../db';
import { displayPrefix, generateApiKey, hashApiKey } from './api-keys';
import type { AdminResult } from './desk-users';

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
