import { describe, expect, it } from 'vitest';
import { KeyedSerializer, RateLimiter, Semaphore, backoffDelay } from './limits';

describe('RateLimiter', () => {
  it('spaces reservations at the rate once the burst is spent', () => {
    let now = 0;
    const limiter = new RateLimiter(1000, 3, () => now);
    expect([limiter.reserve(), limiter.reserve(), limiter.reserve()]).toEqual([0, 0, 0]);
    expect(limiter.reserve()).toBeCloseTo(1);
    expect(limiter.reserve()).toBeCloseTo(2);
    now = 100; // idle long enough: the burst is available again, not more
    expect([limiter.reserve(), limiter.reserve(), limiter.reserve(), limiter.reserve()]).toEqual([0, 0, 0, expect.closeTo(1)]);
  });

  it('holds a long-run rate of at most `rate` units per second', () => {
    let now = 0;
    const limiter = new RateLimiter(10_000, 500, () => now);
    let last = 0;
    for (let i = 0; i < 1000; i++) last = limiter.reserve(100); // 100,000 units
    // 100,000 units at 10,000/s = 10 s, minus the 500-unit burst (50 ms) and the first batch.
    expect(last).toBeGreaterThanOrEqual(9_940);
    expect(last).toBeLessThanOrEqual(10_000);
  });

  it('pause pushes every later reservation back', () => {
    let now = 0;
    const limiter = new RateLimiter(100, 1, () => now);
    expect(limiter.reserve()).toBe(0);
    limiter.pause(500);
    expect(limiter.reserve()).toBe(500);
    now = 600;
    expect(limiter.reserve()).toBe(0);
  });

  it('take() waits in real time', async () => {
    const limiter = new RateLimiter(200, 1);
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) await limiter.take();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(18);
  });
});

describe('KeyedSerializer and Semaphore', () => {
  it('runs one call at a time per key, keys concurrently, in order', async () => {
    const serializer = new KeyedSerializer();
    const log: string[] = [];
    let concurrentA = 0;
    let maxA = 0;
    const task = (key: string, i: number, ms: number) =>
      serializer.run(key, async () => {
        if (key === 'a') maxA = Math.max(maxA, ++concurrentA);
        log.push(`${key}${i}:start`);
        await new Promise((r) => setTimeout(r, ms));
        log.push(`${key}${i}:end`);
        if (key === 'a') concurrentA--;
        return `${key}${i}`;
      });
    const results = await Promise.all([task('a', 1, 20), task('a', 2, 5), task('b', 1, 5), task('a', 3, 1)]);
    expect(results).toEqual(['a1', 'a2', 'b1', 'a3']);
    expect(maxA).toBe(1);
    expect(log.filter((l) => l.startsWith('a'))).toEqual(['a1:start', 'a1:end', 'a2:start', 'a2:end', 'a3:start', 'a3:end']);
    expect(log.indexOf('b1:end')).toBeLessThan(log.indexOf('a1:end'));
    expect(serializer.activeKeys).toBe(0);
  });

  it('a failing call does not block the next one of its key', async () => {
    const serializer = new KeyedSerializer();
    await expect(serializer.run('k', async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    await expect(serializer.run('k', async () => 'next')).resolves.toBe('next');
  });

  it('Semaphore bounds calls in flight', async () => {
    const semaphore = new Semaphore(3);
    let inFlight = 0;
    let max = 0;
    await Promise.all(
      Array.from({ length: 20 }, () =>
        semaphore.run(async () => {
          max = Math.max(max, ++inFlight);
          await new Promise((r) => setTimeout(r, 2));
          inFlight--;
        }),
      ),
    );
    expect(max).toBe(3);
  });
});

describe('backoffDelay', () => {
  it('doubles per attempt up to the cap, with half of it jittered', () => {
    expect(backoffDelay(1, 1000, 60_000, () => 0)).toBe(500);
    expect(backoffDelay(1, 1000, 60_000, () => 1)).toBe(1000);
    expect(backoffDelay(3, 1000, 60_000, () => 0.5)).toBe(3000);
    expect(backoffDelay(20, 1000, 60_000, () => 1)).toBe(60_000);
  });
});
