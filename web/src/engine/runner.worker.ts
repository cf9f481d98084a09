/// <reference lib="webworker" />
/**
 * A Web Worker that runs one model shard with onnxruntime-web (WebGPU first, wasm fallback),
 * exposed with comlink. The page talks to it through {@link createWorkerShardRunner}.
 */
import * as Comlink from 'comlink';
import { createAbortRegistry, wire } from './worker-rpc';
import { createHttpFileOpener } from '../../../shared/model/http-source';
import { openModelLocation } from '../../../shared/model/open-model';
import { throwIfAborted } from '../../../shared/errors';
import type { ModelSource } from '../../../shared/model/types';
import { createNullComputeRunner } from '../../../shared/runtime/null-compute-runner';
import { createOrtShardRunner } from '../../../shared/runtime/ort-shard-runner';
import type { LoadProgress, LoadRequest, ShardRunner, StepInput } from '../../../shared/runtime/shard-runner';
import { createCachedFileOpener } from './cached-opener';
import * as ortModule from 'onnxruntime-web';
import { configureOrt } from './ort-env';
import { sharedClock } from './worker-rpc';

// Configured on the first load (`threads` may come with it); env settings count until the first
// session is created.
const ort = ortModule;
/**
 * The model last opened, kept for the next load: a re-planned survivor or a standby swapped in
 * loads another range of the same model, and opening it again (its config, the file probes) took
 * 0.1–1.2 s of a failover's recovery on a busy machine. A source reads its files lazily, so keeping
 * it holds no weights. One entry: a contributor serves one model at a time.
 */
let lastOpened: { key: string; source: Promise<ModelSource> } | undefined;
/** The warm-up after the first load, ms (set by each load; only the first load's counts). */
let warmUpMs = 0;
/**
 * After a warm-up, the worker goes on warming up in the background for this long, until its first
 * real step (OrtShardRunnerDeps.idleWarmUpMs): a stage page's thread pool spent as much CPU per
 * token as its model runs on V8 compiling ORT's kernels to optimized code through the first answer
 * (README, bench:swarm). Idle time until a request comes; it does not delay the page's `ready`.
 */
const IDLE_WARM_UP_MS = 6000;
const ortRunner = createOrtShardRunner({
  ort,
  get warmUpMs() {
    return warmUpMs;
  },
  get idleWarmUpMs() {
    return warmUpMs > 0 ? IDLE_WARM_UP_MS : 0;
  },
  openModel: async (ref, signal) => {
    const key = `${ref.url}|${ref.tokenizerUrl ?? ''}`;
    if (lastOpened?.key !== key) {
      // Not the caller's signal: the open is shared with later loads, which one abort must not fail.
      const source = openModelLocation(ref, (root) =>
        createCachedFileOpener(createHttpFileOpener(new URL(root, self.location.href).href)),
      ).then((m) => m.source);
      const entry = { key, source };
      lastOpened = entry;
      // A failed open is not kept: the next load tries again.
      source.catch(() => {
        if (lastOpened === entry) lastOpened = undefined;
      });
    }
    const source = await lastOpened.source;
    throwIfAborted(signal, 'Opening the model');
    return source;
  },
});
/** The ORT runner, or (tooling only, checked by the page) its null-compute wrapper. */
let runner: ShardRunner = ortRunner;
const calls = createAbortRegistry();

/** The worker's comlink surface: {@link ShardRunner} with abort by operation id. */
export const workerApi = {
  /**
   * Loads the shard. `nullCompute` (tooling only: the page allows it on a test-mode server alone)
   * makes every later step skip the model (shared/runtime/null-compute-runner.ts). `threads`
   * (tooling: a page's `threads=N`) sets ONNX Runtime's wasm threads; only the first load's counts.
   * `warmUp`: ms of engine warm-up after the runner's first load (OrtShardRunnerDeps.warmUpMs).
   */
  load(
    request: LoadRequest,
    opId: number,
    onProgress?: (p: LoadProgress) => void,
    nullCompute = false,
    threads?: number,
    warmUp = 0,
  ) {
    configureOrt(threads === undefined ? {} : { threads });
    // A null-compute runner never runs the model: nothing to warm up.
    warmUpMs = nullCompute ? 0 : warmUp;
    runner = nullCompute ? createNullComputeRunner(ortRunner) : ortRunner;
    return calls.run(opId, (signal) => runner.load(request, { signal, onProgress }));
  },
  warm: () => ortRunner.warm!(),
  openSession: () => wire(() => runner.openSession()),
  /**
   * One step; the result carries when the call arrived here and when it left (ms on the shared
   * clock, see {@link sharedClock}), so the page can tell the two messages' times from the run.
   */
  async step(sessionId: string, input: StepInput, opId: number) {
    const receivedAt = sharedClock();
    const out = await calls.run(opId, (signal) => runner.step(sessionId, input, { signal }));
    const reply = { ...out, receivedAt, repliedAt: sharedClock() };
    return Comlink.transfer(reply, [out.data.buffer]);
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
