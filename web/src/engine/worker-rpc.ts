/**
 * Helpers for both sides of every comlink worker boundary: typed errors cross it as
 * {@link RingworkError.toJSON} data (comlink keeps only name/message/stack of Error instances) and
 * are rebuilt with {@link rethrow}; long calls are aborted by operation id because an AbortSignal
 * cannot be transferred. DOM-free, so the round trip is testable in Node.
 */
import { isRingworkError, rethrow, type RingworkErrorJSON } from '../../../shared/errors';

export { rethrow };

/** Runs `fn` (worker side), rethrowing a RingworkError as its JSON form so the page can rebuild it. */
export async function wire<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw isRingworkError(e) ? (e.toJSON() satisfies RingworkErrorJSON) : e;
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
