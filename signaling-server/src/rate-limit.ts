/**
 * Token buckets: the per-connection frame limiter and the per-connection error budget.
 */
import { systemClock, type Clock } from './clock.js';

/** A token bucket that holds at most `capacity` tokens and gains `refillPerSecond` per second. */
export interface TokenBucket {
  /** Takes `n` tokens if available; false (and takes nothing) otherwise. */
  take(n?: number): boolean;
  /** Tokens available now (fractional). */
  level(): number;
  readonly capacity: number;
}

/** Options of {@link createTokenBucket}. */
export interface TokenBucketOptions {
  capacity: number;
  refillPerSecond: number;
  clock?: Pick<Clock, 'now'>;
}

/** Creates a full token bucket. Refill is computed lazily from the clock, so no timers run. */
export function createTokenBucket(opts: TokenBucketOptions): TokenBucket {
  const clock = opts.clock ?? systemClock;
  const { capacity, refillPerSecond } = opts;
  let tokens = capacity;
  let last = clock.now();
  const refill = (): void => {
    const now = clock.now();
    // A clock that steps backwards must not mint tokens; it just restarts the accounting.
    if (now > last) tokens = Math.min(capacity, tokens + ((now - last) / 1000) * refillPerSecond);
    last = now;
  };
  return {
    capacity,
    take(n = 1) {
      refill();
      if (tokens < n) return false;
      tokens -= n;
      return true;
    },
    level() {
      refill();
      return tokens;
    },
  };
}
