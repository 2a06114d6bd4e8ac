// The desk lists' keyset cursor: the last row's sort time and id, opaque to the browser (base64url of `at|id`).
// A cursor that does not decode is treated as none: the list starts from its newest page.
import { z } from 'zod';

export type CursorId = 'uuid' | 'bigint';

export function encodeCursor(at: string, id: string): string {
  return Buffer.from(`${at}|${id}`, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string | undefined, idKind: CursorId = 'uuid'): { at: string; id: string } | null {
  if (!cursor) return null;
  const [at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (!at || !id || Number.isNaN(Date.parse(at))) return null;
  const idOk = idKind === 'uuid' ? z.uuid().safeParse(id).success : /^\d{1,19}$/.test(id);
  return idOk ? { at, id } : null;
}
