import { v7 as uuidv7 } from 'uuid';

/** Time-ordered ids for ledger rows: the primary key doubles as an insertion-order index. */
export function newEventId(): string {
  return uuidv7();
}

/** The identifier of an event sent without one: unique because the id is (never a short hash). */
export function derivedIdentifier(eventId: string): string {
  return `md_${eventId}`;
}

/** The smallest UUIDv7 for a millisecond timestamp: 48-bit big-endian ms, then all zero bits. */
export function uuidv7Floor(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0 || ms >= 2 ** 48) throw new RangeError(`not a UUIDv7 timestamp: ${ms}`);
  const hex = ms.toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

/** The millisecond timestamp of a UUIDv7. */
export function uuidv7Time(id: string): number {
  return parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}

/**
 * The id range of the events received in [from, to): event ids are UUIDv7 minted at receipt, so "received between"
 * is a primary-key range, in the same order the desk lists events (docs/decisions/012-received-time-filter.md).
 */
export function receivedIdRange(from: Date | undefined, to: Date | undefined): { gte?: string; lt?: string } {
  const clamp = (d: Date) => Math.min(Math.max(Math.floor(d.getTime()), 0), 2 ** 48 - 1);
  return { gte: from ? uuidv7Floor(clamp(from)) : undefined, lt: to ? uuidv7Floor(clamp(to)) : undefined };
}
