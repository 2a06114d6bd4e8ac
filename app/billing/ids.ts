import { v7 as uuidv7 } from 'uuid';

// Random bytes for ids come from a pool refilled 4 KiB at a time: uuid's own source asks the Web Crypto API for 16
// bytes per id, which was ~7 µs of every ingested event (a CPU profile of `npm run bench -- ingest` (c)). Web Crypto,
// not node:crypto: the desk's browser bundle imports this module too (receivedIdRange).
const POOL_BYTES = 4096;
const pool = new Uint8Array(POOL_BYTES);
let poolOffset = POOL_BYTES;
function random16(): Uint8Array {
  if (poolOffset + 16 > POOL_BYTES) {
    globalThis.crypto.getRandomValues(pool);
    poolOffset = 0;
  }
  const bytes = pool.subarray(poolOffset, poolOffset + 16);
  poolOffset += 16;
  return bytes;
}

// Monotonic within this process as uuid's own v7 is (RFC 9562 method 1): a 32-bit counter seeded at random each
// millisecond and incremented within it, carrying into the timestamp when it wraps.
const state = { msecs: -Infinity, seq: 0 };

/** Time-ordered ids for ledger rows: the primary key doubles as an insertion-order index. */
export function newEventId(): string {
  const random = random16();
  const now = Date.now();
  if (now > state.msecs) {
    state.msecs = now;
    state.seq = ((random[6]! & 0x7f) << 24) | (random[7]! << 16) | (random[8]! << 8) | random[9]!;
  } else {
    state.seq = (state.seq + 1) | 0;
    if (state.seq === 0) state.msecs++;
  }
  return uuidv7({ random, msecs: state.msecs, seq: state.seq });
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
