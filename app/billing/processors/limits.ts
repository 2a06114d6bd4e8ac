// Client-side limits for processor calls: a rate limiter (so we never earn a 429 for our own pace), a bound on
// calls in flight, and one call at a time per key (Stripe: one concurrent meter event per customer and meter).

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Generic cell rate algorithm: each `take(n)` reserves n / rate seconds of the schedule synchronously, then waits
 * for its slot. Bursts are bounded by `burst` units, so the server's own bucket (Stripe's is one second deep)
 * never runs dry while we go at or below its rate. `pause(ms)` pushes every later reservation back (a backoff
 * shared by every caller in the process).
 */
export class RateLimiter {
  private readonly interval: number;
  private readonly tolerance: number;
  private tat = 0;
  private pausedUntil = 0;

  constructor(
    readonly ratePerSecond: number,
    burst = 1,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(ratePerSecond > 0)) throw new Error('ratePerSecond must be positive');
    this.interval = 1000 / ratePerSecond;
    this.tolerance = Math.max(0, burst - 1) * this.interval;
  }

  /** Milliseconds the caller must wait before using `n` units; reserves them. */
  reserve(n = 1): number {
    const now = this.now();
    const tat = Math.max(this.tat, now, this.pausedUntil);
    const allowedAt = Math.max(now, tat - this.tolerance, this.pausedUntil);
    this.tat = tat + n * this.interval;
    return allowedAt - now;
  }

  async take(n = 1): Promise<void> {
    const wait = this.reserve(n);
    if (wait >= 1) await sleep(wait);
  }

  pause(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, this.now() + ms);
  }
}

export class Semaphore {
  private available: number;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly size: number) {
    this.available = size;
  }

  async acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.available++;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}

/** Runs functions one at a time per key, in call order; different keys run concurrently. */
export class KeyedSerializer {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(fn, fn);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  get activeKeys(): number {
    return this.tails.size;
  }
}

/** Exponential backoff with "equal jitter": half the delay fixed, half random, so retries spread but never bunch at 0. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}
