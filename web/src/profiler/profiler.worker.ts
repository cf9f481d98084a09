/// <reference lib="webworker" />
/**
 * The device profiler's Web Worker, exposed with comlink. Benchmarks run here so the page stays
 * responsive; the page talks to it through {@link createProfilerClient}.
 */
import * as Comlink from 'comlink';
import { isRingworkError } from '../../../shared/errors';
import { runProfile, verifyGpuMatmul, type ProfileProgress, type ProfileRequest } from './run-profile';

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

/** The worker's comlink surface: one profile at a time, aborted by operation id. */
export const profilerApi = {
  profile(request: ProfileRequest, opId: number, onProgress?: (p: ProfileProgress) => void) {
    return withAbort(opId, (signal) => runProfile(request, { signal, onProgress }));
  },
  verifyMatmul: () => wire(() => verifyGpuMatmul()),
  abort(opId: number) {
    inflight.get(opId)?.abort(new Error('aborted by caller'));
  },
};
export type ProfilerApi = typeof profilerApi;

Comlink.expose(profilerApi);
