/**
 * Time as the signaling server sees it. Everything that waits or measures goes through a
 * {@link Clock} so tests can drive it (vitest fake timers patch the globals this default reads).
 */

/** An opaque timer handle. */
export type TimerHandle = ReturnType<typeof setTimeout>;

/** Wall-clock reads and timers, injectable for tests. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle): void;
}

/**
 * The real clock. Globals are looked up at call time (not captured at import) so that
 * `vi.useFakeTimers()` installed after import still takes effect.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h),
  setInterval: (fn, ms) => globalThis.setInterval(fn, ms),
  clearInterval: (h) => globalThis.clearInterval(h),
};

/** Marks a timer as not keeping the process alive (a no-op for fake timers without `unref`). */
export function unrefTimer(handle: TimerHandle): TimerHandle {
  (handle as { unref?: () => void }).unref?.();
  return handle;
}
