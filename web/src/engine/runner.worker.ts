/// <reference lib="webworker" />
/**
 * A Web Worker that runs one model shard with onnxruntime-web (WebGPU first, wasm fallback),
 * exposed with comlink. The page talks to it through {@link createWorkerShardRunner}.
 */
import * as Comlink from 'comlink';
import { createAbortRegistry, wire } from './worker-rpc';
import { createHttpFileOpener } from '../../../shared/model/http-source';
import { openModelLocation } from '../../../shared/model/open-model';
import { createNullComputeRunner } from '../../../shared/runtime/null-compute-runner';
import { createOrtShardRunner } from '../../../shared/runtime/ort-shard-runner';
import type { LoadProgress, LoadRequest, ShardRunner, StepInput } from '../../../shared/runtime/shard-runner';
import { createCachedFileOpener } from './cached-opener';
import { configureOrt } from './ort-env';

const ort = configureOrt();
const ortRunner = createOrtShardRunner({
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
/** The ORT runner, or (tooling only, checked by the page) its null-compute wrapper. */
let runner: ShardRunner = ortRunner;
const calls = createAbortRegistry();

/** The worker's comlink surface: {@link ShardRunner} with abort by operation id. */
export const workerApi = {
  /**
   * Loads the shard. `nullCompute` (tooling only: the page allows it on a test-mode server alone)
   * makes every later step skip the model (shared/runtime/null-compute-runner.ts).
   */
  load(request: LoadRequest, opId: number, onProgress?: (p: LoadProgress) => void, nullCompute = false) {
    runner = nullCompute ? createNullComputeRunner(ortRunner) : ortRunner;
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
