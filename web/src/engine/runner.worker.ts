/// <reference lib="webworker" />
/**
 * A Web Worker that runs one model shard with onnxruntime-web (WebGPU first, wasm fallback),
 * exposed with comlink. The page talks to it through {@link createWorkerShardRunner}.
 */
import * as Comlink from 'comlink';
import { isRingworkError } from '../../../shared/errors';
import { createHttpFileOpener } from '../../../shared/model/http-source';
import { openModelLocation } from '../../../shared/model/open-model';
import { createOrtShardRunner } from '../../../shared/runtime/ort-shard-runner';
import type { LoadProgress, LoadRequest, StepInput } from '../../../shared/runtime/shard-runner';
import { createCachedFileOpener } from './cached-opener';
import { configureOrt } from './ort-env';

const ort = configureOrt();
const runner = createOrtShardRunner({
  ort,
  openModel: async (ref, signal) =>
    (
      await openModelLocation(
        ref,
        (root) => createCachedFileOpener(createHttpFileOpener(new URL(root, self.location.href).href)),
        signal,
      )
    ).source,
});
const inflight = new Map<number, AbortController>();

/**
 * comlink serialises Error instances as {name, message, stack} only; a typed error is thrown as
 * its plain JSON form so the page can rebuild it with its code and details.
 */
async function wire<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw isRingworkError(e) ? e.toJSON() : e;
  }
}

async function withAbort<T>(opId: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  inflight.set(opId, ac);
  try {
    return await wire(() => fn(ac.signal));
  } finally {
    inflight.delete(opId);
  }
}

/** The worker's comlink surface: {@link ShardRunner} with abort by operation id. */
export const workerApi = {
  load(request: LoadRequest, opId: number, onProgress?: (p: LoadProgress) => void) {
    return withAbort(opId, (signal) => runner.load(request, { signal, onProgress }));
  },
  openSession: () => wire(() => runner.openSession()),
  async step(sessionId: string, input: StepInput, opId: number) {
    const out = await withAbort(opId, (signal) => runner.step(sessionId, input, { signal }));
    return Comlink.transfer(out, [out.data.buffer]);
  },
  closeSession: (sessionId: string) => wire(() => runner.closeSession(sessionId)),
  info: () => runner.info(),
  dispose: () => runner.dispose(),
  abort(opId: number) {
    inflight.get(opId)?.abort(new Error('aborted by caller'));
  },
};
export type WorkerApi = typeof workerApi;

Comlink.expose(workerApi);
