// API keys: 256-bit random, shown once, stored as SHA-256 (a slow hash buys nothing for keys this long).
import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { PrismaClient } from '../../db/clients';

const PREFIX = 'md_';

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function generateApiKey(): string {
  return PREFIX + randomBytes(32).toString('base64url');
}

/** Shown in the desk to recognise a key; reveals 6 random characters of 43. */
export function displayPrefix(key: string): string {
  return key.slice(0, PREFIX.length + 6);
}

export async function createApiKey(prisma: PrismaClient, input: { name: string; createdById?: string | null }) {
  const key = generateApiKey();
  const apiKey = await prisma.apiKey.create({
    data: { name: input.name, prefix: displayPrefix(key), keyHash: hashApiKey(key), createdById: input.createdById ?? null },
  });
  return { key, apiKey };
}

/** Makes sure a given key (e.g. METERDESK_BOOTSTRAP_API_KEY) is accepted; idempotent. */
export async function ensureApiKey(prisma: PrismaClient, key: string, name: string) {
  return prisma.apiKey.upsert({
    where: { keyHash: hashApiKey(key) },
    update: { revokedAt: null },
    create: { name, prefix: displayPrefix(key), keyHash: hashApiKey(key) },
  });
}

/**
 * Verifies bearer keys on the ingest hot path. Accepted keys are remembered for `ttlMs` (a revoked key stops
 * working within that time); `last_used_at` is written at most once a minute per key, off the request path.
 */
export class ApiKeyVerifier {
  private cache = new Map<string, { id: string; until: number }>();
  private lastTouched = new Map<string, number>();

  constructor(private readonly pool: pg.Pool, private readonly ttlMs = 5_000) {}

  async verify(key: string): Promise<{ id: string } | null> {
    if (key.length < 20 || key.length > 200) return null;
    const hash = hashApiKey(key);
    const now = Date.now();
    const cached = this.cache.get(hash);
    if (cached && cached.until > now) return { id: cached.id };
    const { rows } = await this.pool.query<{ id: string }>(
      'SELECT id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL',
      [hash],
    );
    const row = rows[0];
    if (!row) {
      this.cache.delete(hash);
      return null;
    }
    this.cache.set(hash, { id: row.id, until: now + this.ttlMs });
    if ((this.lastTouched.get(row.id) ?? 0) < now - 60_000) {
      this.lastTouched.set(row.id, now);
      this.pool.query('UPDATE api_keys SET last_used_at = now() WHERE id = $1', [row.id]).catch(() => {});
    }
    return { id: row.id };
  }
}
