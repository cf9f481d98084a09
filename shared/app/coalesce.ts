/**
 * Coalesces a stream of values into at most one delivery per interval, the latest value always
 * delivered: a contributor's stage reports its counters after every step (~100 a second on a fast
 * ring), and each report delivered to a page's store re-renders the page and composites a frame —
 * CPU taken from the stage computing the next step on the same cores. A change that matters at
 * once (`urgent`: a session opened or ended, an error) is delivered at once.
 */
import type { AppClock } from './network-port.js';

/** Pushes values; delivers at most one per `everyMs` (leading and trailing edge). */
export interface Coalescer<T> {
  /** Delivers `v` now (first value, urgent, or the interval has passed) or at the interval's end. */
  push(v: T): void;
  /** Delivers a value still waiting, now, and cancels the timer (safe twice). */
  flush(): void;
}

export interface CoalescerOptions<T> {
  /** Least time between deliveries, ms; 0 delivers every value at once. */
  everyMs: number;
  clock: Pick<AppClock, 'now' | 'sleep'>;
  deliver: (v: T) => void;
  /** True when `next` must not wait (compared with the last value delivered). */
  urgent?: (last: T | undefined, next: T) => boolean;
}

/** Creates a {@link Coalescer}. */
export function createCoalescer<T>(o: CoalescerOptions<T>): Coalescer<T> {
  let last: T | undefined;
  let lastAt = -Infinity;
  let pending: { v: T } | undefined;
  let timer: AbortController | undefined;

  const deliverNow = () => {
    timer?.abort();
    timer = undefined;
    const p = pending;
    if (!p) return;
    pending = undefined;
    last = p.v;
    lastAt = o.clock.now();
    o.deliver(p.v);
  };

  return {
    push(v) {
      pending = { v };
      const wait = lastAt + o.everyMs - o.clock.now();
      if (o.everyMs <= 0 || wait <= 0 || o.urgent?.(last, v)) return deliverNow();
      if (timer) return; // the timer already set delivers the latest value
      const ac = new AbortController();
      timer = ac;
      void o.clock.sleep(wait, ac.signal).then(() => {
        if (!ac.signal.aborted) deliverNow();
      });
    },
    flush: deliverNow,
  };
}
