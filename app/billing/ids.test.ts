import { describe, expect, it } from 'vitest';
import { newEventId, receivedIdRange, uuidv7Floor, uuidv7Time } from './ids';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('event ids', () => {
  it('are UUIDv7s of the current millisecond, unique and strictly increasing within the process', () => {
    const before = Date.now();
    const ids = Array.from({ length: 200_000 }, () => newEventId());
    const after = Date.now();
    for (const id of ids) expect(id).toMatch(UUID_V7);
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) if (!(ids[i - 1]! < ids[i]!)) throw new Error(`not increasing at ${i}: ${ids[i - 1]} then ${ids[i]}`);
    expect(uuidv7Time(ids[0]!)).toBeGreaterThanOrEqual(before);
    // The counter may carry into the timestamp when a millisecond holds more ids than it has values, never far.
    expect(uuidv7Time(ids.at(-1)!)).toBeLessThanOrEqual(after + 1);
    // The random tail differs from id to id (the pooled source is refilled, not reused).
    expect(new Set(ids.map((id) => id.slice(-12))).size).toBe(ids.length);
  });

  it('floor and time round-trip, and receipt ranges are id bounds', () => {
    const ms = Date.UTC(2026, 11, 3, 7, 0, 0);
    expect(uuidv7Time(uuidv7Floor(ms))).toBe(ms);
    const id = newEventId();
    const t = uuidv7Time(id);
    const range = receivedIdRange(new Date(t), new Date(t + 1));
    expect(range.gte! <= id && id < range.lt!).toBe(true);
  });
});
