/// <reference lib="webworker" />
/**
 * The device profiler's Web Worker, exposed with comlink. Benchmarks run here so the page stays
 * responsive; the page talks to it through {@link createProfilerClient}.
 */
import * as Comlink from 'comlink';
import { createAbortRegistry, wire } from '../engine/worker-rpc';
import { runProfile, verifyGpuMatmul, type ProfileProgress, type ProfileRequest } from './run-profile';

const calls = createAbortRegistry();

/** The worker's comlink surface: one profile at a time, aborted by operation id. */
export const profilerApi = {
  profile(request: ProfileRequest, opId: number, onProgress?: (p: ProfileProgress) => void) {
    return calls.run(opId, (signal) => runProfile(request, { signal, onProgress }));
  },
  verifyMatmul: () => wire(() => verifyGpuMatmul()),
  abort(opId: number) {
    calls.abort(opId);
  },
};
export type ProfilerApi = typeof profilerApi;

Comlink.expose(profilerApi);
