/**
 * Page-side entry point of the device profiler: gathers the facts only a page can read, runs the
 * benchmarks in a dedicated worker, and returns a validated {@link DeviceProfile}.
 */
import * as Comlink from 'comlink';
import {
  DEFAULT_DEVICE_CATEGORY_THRESHOLDS,
  deviceCategoryThresholdsSchema,
  deviceProfileSchema,
  type DeviceCategoryThresholds,
  type DeviceProfile,
} from '../../../shared/device/profile';
import { rethrow, RingworkError, throwIfAborted } from '../../../shared/errors';
import { formatZodIssues, zodIssueDetails } from '../../../shared/util/zod-issues';
import { collectPageFacts } from './device-info';
import type { ProfilerApi } from './profiler.worker';
import type { MatmulVerification, ProfileProgress } from './run-profile';

export type { MatmulVerification, ProfilePhase, ProfileProgress } from './run-profile';

/** Options of {@link ProfilerClient.profile}. */
export interface ProfileOptions {
  /** Signaling server base URL (absolute or relative to the page); adds RTT and throughput. */
  serverUrl?: string;
  /** Time budget for the measurements, ms (default 3000: the whole profile should stay under 5 s). */
  budgetMs?: number;
  /** Upper bound of the WebGPU usable-memory probe, bytes (default 4 GiB). */
  memoryCapBytes?: number;
  /** Repeats per measurement (default 5, 3–20). */
  samples?: number;
  /** Category thresholds (default A > 20 TFLOPS, C < 5). */
  categoryThresholds?: DeviceCategoryThresholds;
  signal?: AbortSignal;
  onProgress?: (p: ProfileProgress) => void;
}

/** A handle on the profiler worker. */
export interface ProfilerClient {
  /** Profiles this device. Rejects with `ABORTED` when `signal` fires, `INVALID_ARGUMENT` on bad options. */
  profile(opts?: ProfileOptions): Promise<DeviceProfile>;
  /** Runs only the WGSL matmul check against the CPU reference. */
  verifyMatmul(): Promise<MatmulVerification>;
  /** Terminates the worker; the client cannot be used afterwards. */
  dispose(): void;
}

/**
 * Default measurement budget, ms. Loading the wasm runtime and compiling kernels come on top, so
 * 3 s keeps the whole profile under the issue's 5 s on an ordinary machine.
 */
export const DEFAULT_BUDGET_MS = 3000;
/** Default cap of the WebGPU memory probe: enough for any shard a browser peer would hold. */
export const DEFAULT_MEMORY_CAP_BYTES = 4 * 2 ** 30;
/** Default repeats per measurement (median and spread are reported). */
export const DEFAULT_SAMPLES = 5;
/**
 * How long an aborted worker gets to notice before it is terminated. Benchmarks check the signal
 * between samples (tens of ms), but one in-flight GPU submission or wasm run cannot be interrupted.
 */
const ABORT_GRACE_MS = 1500;

let nextOp = 0;

function invalid(message: string, details: Record<string, unknown>): never {
  throw new RingworkError('INVALID_ARGUMENT', message, { details });
}

/** Creates a profiler client. The worker starts on the first call and is reused afterwards. */
export function createProfilerClient(): ProfilerClient {
  let worker: Worker | undefined;
  let api: Comlink.Remote<ProfilerApi> | undefined;
  let busy = false;
  let disposed = false;

  const ensure = (): Comlink.Remote<ProfilerApi> => {
    if (disposed) throw new RingworkError('INVALID_ARGUMENT', 'This profiler client has been disposed.');
    if (!api) {
      worker = new Worker(new URL('./profiler.worker.ts', import.meta.url), {
        type: 'module',
        name: 'ringwork-profiler',
      });
      api = Comlink.wrap<ProfilerApi>(worker);
    }
    return api;
  };
  /** Kills the worker (a fresh one starts on the next call): the only way to stop a stuck benchmark. */
  const kill = () => {
    api?.[Comlink.releaseProxy]();
    worker?.terminate();
    api = undefined;
    worker = undefined;
  };

  return {
    async profile(opts = {}) {
      const t0 = performance.now();
      throwIfAborted(opts.signal, 'Device profiling');
      const budgetMs = opts.budgetMs ?? DEFAULT_BUDGET_MS;
      if (!(Number.isFinite(budgetMs) && budgetMs >= 200 && budgetMs <= 120_000)) {
        invalid(`budgetMs must be between 200 and 120000 ms, got ${budgetMs}.`, { budgetMs });
      }
      const memoryCapBytes = opts.memoryCapBytes ?? DEFAULT_MEMORY_CAP_BYTES;
      if (!(Number.isSafeInteger(memoryCapBytes) && memoryCapBytes >= 0)) {
        invalid(`memoryCapBytes must be a non-negative integer, got ${memoryCapBytes}.`, { memoryCapBytes });
      }
      const samples = opts.samples ?? DEFAULT_SAMPLES;
      if (!(Number.isInteger(samples) && samples >= 3 && samples <= 20)) {
        invalid(`samples must be an integer between 3 and 20, got ${samples}.`, { samples });
      }
      const thresholds = deviceCategoryThresholdsSchema.safeParse(
        opts.categoryThresholds ?? DEFAULT_DEVICE_CATEGORY_THRESHOLDS,
      );
      if (!thresholds.success) {
        invalid(`categoryThresholds are invalid: ${formatZodIssues(thresholds.error)}`, {
          categoryThresholds: opts.categoryThresholds,
          issues: zodIssueDetails(thresholds.error),
        });
      }
      let serverUrl: string | undefined;
      if (opts.serverUrl !== undefined) {
        try {
          // Resolved here: the worker's own URL (under /assets/) would resolve relative URLs differently.
          serverUrl = new URL(opts.serverUrl, location.href).href;
        } catch {
          invalid(`serverUrl "${opts.serverUrl}" is not a URL.`, { serverUrl: opts.serverUrl });
        }
      }
      if (busy) {
        invalid('A profile is already running on this client; profiles would skew each other.', {});
      }
      busy = true;
      const opId = ++nextOp;
      const remote = ensure();
      let onAbort: (() => void) | undefined;
      try {
        const facts = await collectPageFacts();
        throwIfAborted(opts.signal, 'Device profiling');
        const run = remote.profile(
          { facts, serverUrl, budgetMs, memoryCapBytes, samples, categoryThresholds: thresholds.data },
          opId,
          opts.onProgress ? Comlink.proxy(opts.onProgress) : undefined,
        );
        const aborted = new Promise<never>((_, reject) => {
          onAbort = () => {
            void remote.abort(opId);
            const timer = setTimeout(() => {
              kill();
              reject(
                new RingworkError('ABORTED', 'Device profiling was aborted.', { cause: opts.signal?.reason }),
              );
            }, ABORT_GRACE_MS);
            // The worker normally answers with its own ABORTED first; then the timer is moot.
            run.finally(() => clearTimeout(timer)).catch(() => undefined);
          };
          opts.signal?.addEventListener('abort', onAbort, { once: true });
        });
        const raw = await Promise.race([run, aborted]).catch(rethrow);
        const parsed = deviceProfileSchema.safeParse({ ...raw, durationMs: performance.now() - t0 });
        if (!parsed.success) {
          throw new RingworkError(
            'RUNNER_BACKEND_FAILED',
            `The profiler produced an invalid device profile: ${formatZodIssues(parsed.error)}.`,
            { details: { issues: zodIssueDetails(parsed.error) } },
          );
        }
        return parsed.data;
      } finally {
        if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
        busy = false;
      }
    },
    async verifyMatmul() {
      return ensure().verifyMatmul().catch(rethrow);
    },
    dispose() {
      disposed = true;
      kill();
    },
  };
}
