/// <reference lib="webworker" />
/**
 * A Web Worker that runs one model shard with onnxruntime-web (WebGPU first, wasm fallback),
 * exposed with comlink. The page talks to it through {@link createWorkerShardRunner}.
 */
import * as Comlink from 'comlink';
import { createAbortRegistry, wire } from './worker-rpc';
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
const calls = createAbortRegistry();

/** The worker's comlink surface: {@link ShardRunner} with abort by operation id. */
export const workerApi = {
  load(request: LoadRequest, opId: number, onProgress?: (p: LoadProgress) => void) {
    return calls.run(opId, (signal) => runner.load(request, { signal, onProgress }));
  },
  openSession: () => wire(() => runner.openSession()),
  async step(sessionId: string, input: StepInput, opId: number) {
    const out = await calls.run(opId, (signal) => runner.step(sessionId, input, { signal }));
    return Comlink.transfer(out, [out.data.buffer]);
  },
  closeSession: (sessionId: string) => wire(() => runner.closeSession(sessionId)),
  info: () => wire(() => runner.info()),
  dispose: () => runner.dispose(),
  abort(opId: number) {
    calls.abort(opId);
  },
};
export type WorkerApi = typeof workerApi;

Comlink.expose(workerApi);
