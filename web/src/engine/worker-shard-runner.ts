import * as Comlink from 'comlink';
import { RingworkError } from '../../../shared/errors';
import type { ShardRunner } from '../../../shared/runtime/shard-runner';
import type { WorkerApi } from './runner.worker';
import { rethrow, sharedClock } from './worker-rpc';

let nextOp = 0;

/** Options of {@link createWorkerShardRunner}. */
export interface WorkerShardRunnerOptions {
  /**
   * Tooling only (bench:swarm's `--null-compute`): steps skip the model. Checked before every load
   * by `allowNullCompute`, which throws `TOOLING_ONLY` unless the page's server is in test mode.
   */
  nullCompute?: { allowed: () => Promise<void> };
  /** ONNX Runtime wasm threads of this worker (1-4; default: `defaultWasmThreads`). */
  threads?: number;
  /**
   * How long the worker warms its engine up after its first load, ms (see
   * `OrtShardRunnerDeps.warmUpMs`; default 0 = off). A contributor sets {@link DEFAULT_WARM_UP_MS}:
   * its load happens while a ring forms, ahead of the tokens it serves; a requester running a model
   * itself would only delay its first token.
   */
  warmUpMs?: number;
}

/**
 * The worker's warm-up after its first load, ms: enough decode-shaped steps for V8 to move the
 * hottest kernels a decode step runs onto optimized code (see `OrtShardRunnerDeps.warmUpMs`).
 * With it on, the worker goes on warming up in the background until its first real step
 * (runner.worker.ts `IDLE_WARM_UP_MS`): V8 keeps tiering kernels up for seconds.
 */
export const DEFAULT_WARM_UP_MS = 600;

/**
 * A {@link ShardRunner} that runs in its own Web Worker. Hidden-state inputs are transferred, not
 * copied: the caller's `input.hidden` buffer is detached after `step`. An aborted call rejects at
 * once with ABORTED (the worker is told to drop the work); after {@link ShardRunner.dispose} the
 * worker is gone and calls fail with RUNNER_DISPOSED.
 */
export function createWorkerShardRunner(
  opts: WorkerShardRunnerOptions = {},
): ShardRunner & { worker: Worker } {
  const worker = new Worker(new URL('./runner.worker.ts', import.meta.url), {
    type: 'module',
    name: 'ringwork-shard',
  });
  const api = Comlink.wrap<WorkerApi>(worker);
  let disposed: Promise<void> | undefined;
  /** Calls in flight, so that dispose() can settle them once the worker is gone. */
  const pending = new Set<(e: RingworkError) => void>();
  const disposedError = () =>
    new RingworkError('RUNNER_DISPOSED', 'The runner was disposed: create a new one.');

  /** Runs one worker call: typed errors rebuilt, abort and dispose settle it at once. */
  const call = <T>(signal: AbortSignal | undefined, fn: (opId: number) => Promise<T>): Promise<T> => {
    if (disposed) return Promise.reject(disposedError());
    if (signal?.aborted) {
      return Promise.reject(new RingworkError('ABORTED', 'The call was aborted.', { cause: signal.reason }));
    }
    const opId = ++nextOp;
    return new Promise<T>((resolve, reject) => {
      const cancel = (e: RingworkError) => {
        cleanup();
        reject(e);
      };
      const onAbort = () => {
        void api.abort(opId).catch(() => undefined);
        cancel(new RingworkError('ABORTED', 'The call was aborted.', { cause: signal?.reason }));
      };
      const cleanup = () => {
        signal?.removeEventListener('abort', onAbort);
        pending.delete(cancel);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      pending.add(cancel);
      fn(opId).then(
        (v) => (cleanup(), resolve(v)),
        (e: unknown) => {
          cleanup();
          try {
            rethrow(e);
          } catch (typed) {
            reject(typed);
          }
        },
      );
    });
  };
  return {
    worker,
    load: async (request, o = {}) => {
      if (opts.nullCompute) await opts.nullCompute.allowed();
      return call(o.signal, (op) =>
        api.load(
          request,
          op,
          o.onProgress ? Comlink.proxy(o.onProgress) : undefined,
          !!opts.nullCompute,
          opts.threads,
          opts.warmUpMs ?? 0,
        ),
      );
    },
    warm: () => (disposed ? Promise.resolve() : call(undefined, () => api.warm()).catch(() => undefined)),
    openSession: () => call(undefined, () => api.openSession()),
    step: (sessionId, input, o = {}) =>
      call(o.signal, async (op) => {
        const transfer = input.hidden ? [input.hidden.buffer] : [];
        const sentAt = sharedClock();
        const { receivedAt, repliedAt, ...out } = await api.step(
          sessionId,
          Comlink.transfer(input, transfer as Transferable[]),
          op,
        );
        // The two messages' times (hot-path timings): the clock is shared, not each realm's own.
        const phases = { ...out.phases, postMs: receivedAt - sentAt, returnMs: sharedClock() - repliedAt };
        return { ...out, phases };
      }),
    // Releasing is idempotent: after dispose there is nothing left to free.
    closeSession: (id) => (disposed ? Promise.resolve() : call(undefined, () => api.closeSession(id))),
    info: () =>
      disposed ? Promise.resolve({ loaded: false, sessions: 0 }) : call(undefined, () => api.info()),
    dispose() {
      disposed ??= (async () => {
        await api.dispose().catch(() => undefined);
        api[Comlink.releaseProxy]();
        worker.terminate();
        // Whatever was still waiting on the worker will never hear back.
        for (const cancel of [...pending]) cancel(disposedError());
      })();
      return disposed;
    },
  };
}
