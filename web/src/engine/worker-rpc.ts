/**
 * Helpers for both sides of every comlink worker boundary: typed errors cross it as
 * {@link RingworkError.toJSON} data (comlink keeps only name/message/stack of Error instances) and
 * are rebuilt with {@link rethrow}; long calls are aborted by operation id because an AbortSignal
 * cannot be transferred. DOM-free, so the round trip is testable in Node.
 */
import { rethrow, toRingworkError, type ErrorCode, type RingworkErrorJSON } from '../../../shared/errors';

export { rethrow };

/**
 * Runs `fn` (worker side) and throws any failure as {@link RingworkErrorJSON} so the page can
 * rebuild it with {@link rethrow}: a RingworkError keeps its code, anything else becomes `fallback`
 * (default `RUNNER_BACKEND_FAILED`) with the original's name and message as the cause.
 */
export async function wire<T>(
  fn: () => Promise<T>,
  fallback: ErrorCode = 'RUNNER_BACKEND_FAILED',
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toRingworkError(e, fallback).toJSON() satisfies RingworkErrorJSON;
  }
}

/** Operation ids → abort controllers of the calls in flight. */
export function createAbortRegistry() {
  const inflight = new Map<number, AbortController>();
  return {
    /** Runs `fn` with a signal that `abort(opId)` fires. */
    async run<T>(opId: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
      const ac = new AbortController();
      inflight.set(opId, ac);
      try {
        return await wire(() => fn(ac.signal));
      } finally {
        inflight.delete(opId);
      }
    },
    abort(opId: number, reason = 'aborted by caller'): void {
      inflight.get(opId)?.abort(new Error(reason));
    },
  };
}

/**
 * Milliseconds on a clock both sides of a worker boundary share (`performance.now()` counts from
 * each realm's own time origin): what the hot-path timings subtract across it.
 */
export function sharedClock(): number {
  return performance.timeOrigin + performance.now();
}
