import * as Comlink from 'comlink';
import type { ShardRunner } from '../../../shared/runtime/shard-runner';
import type { WorkerApi } from './runner.worker';
import { rethrow } from './worker-rpc';

let nextOp = 0;

/**
 * A {@link ShardRunner} that runs in its own Web Worker. Hidden-state inputs are transferred, not
 * copied: the caller's `input.hidden` buffer is detached after `step`.
 */
export function createWorkerShardRunner(): ShardRunner & { worker: Worker } {
  const worker = new Worker(new URL('./runner.worker.ts', import.meta.url), {
    type: 'module',
    name: 'ringwork-shard',
  });
  const api = Comlink.wrap<WorkerApi>(worker);
  let disposed = false;
  const abortable = async <T>(
    signal: AbortSignal | undefined,
    fn: (opId: number) => Promise<T>,
  ): Promise<T> => {
    const opId = ++nextOp;
    const onAbort = () => void api.abort(opId);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await fn(opId);
    } catch (e) {
      return rethrow(e);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  };
  return {
    worker,
    load: (request, opts = {}) =>
      abortable(opts.signal, (op) =>
        api.load(request, op, opts.onProgress ? Comlink.proxy(opts.onProgress) : undefined),
      ),
    openSession: () => api.openSession().catch(rethrow),
    step: (sessionId, input, opts = {}) =>
      abortable(opts.signal, (op) => {
        const transfer = input.hidden ? [input.hidden.buffer] : input.tokens ? [] : [];
        return api.step(sessionId, Comlink.transfer(input, transfer as Transferable[]), op);
      }),
    closeSession: (id) => api.closeSession(id).catch(rethrow),
    info: () => api.info().catch(rethrow),
    async dispose() {
      if (disposed) return;
      disposed = true;
      await api.dispose().catch(() => undefined);
      api[Comlink.releaseProxy]();
      worker.terminate();
    },
  };
}
