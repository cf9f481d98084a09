/**
 * Token buckets: the per-connection frame limiter and error budget, and the per-client-address
 * connection and new-session rates.
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

/** Token buckets by key (a client address bucket), bounded in number. */
export interface KeyedRateLimiter {
  /** Takes `n` tokens (default 1) from `key`'s bucket (created full on first use); false when short. */
  take(key: string, n?: number): boolean;
  /** Forgets buckets that refilled completely (they are indistinguishable from new ones). */
  prune(): void;
  readonly size: number;
}

/** Options of {@link createKeyedRateLimiter}. */
export interface KeyedRateLimiterOptions extends TokenBucketOptions {
  /** At most this many buckets are kept; past it the oldest is dropped (default 100,000). */
  maxKeys?: number;
}

/**
 * Creates per-key token buckets. Memory stays bounded however many keys strangers invent: full
 * buckets are pruned, and past `maxKeys` the oldest bucket goes (that key merely gets a fresh quota).
 */
export function createKeyedRateLimiter(opts: KeyedRateLimiterOptions): KeyedRateLimiter {
  const maxKeys = opts.maxKeys ?? 100_000;
  const buckets = new Map<string, TokenBucket>();
  return {
    take(key, n = 1) {
      let b = buckets.get(key);
      if (!b) {
        if (buckets.size >= maxKeys) {
          const oldest = buckets.keys().next();
          if (!oldest.done) buckets.delete(oldest.value);
        }
        b = createTokenBucket(opts);
        buckets.set(key, b);
      }
      return b.take(n);
    },
    prune() {
      for (const [k, b] of buckets) if (b.level() >= b.capacity) buckets.delete(k);
    },
    get size() {
      return buckets.size;
    },
  };
}
