/**
 * Browser test harness for the device profiler: `window.ringworkProfiler.run(opts)` profiles this
 * device in the profiler worker and reports the profile (or the typed error), the progress events
 * and the wall-clock time the page saw.
 */
import { isRingworkError } from '../../../shared/errors';
import type { DeviceProfile } from '../../../shared/device/profile';
import {
  createProfilerClient,
  type MatmulVerification,
  type ProfilePhase,
  type ProfileProgress,
} from './profiler-client';

/** Plain-JSON options (an AbortSignal cannot cross `page.evaluate`). */
export interface HarnessProfileOptions {
  serverUrl?: string;
  budgetMs?: number;
  memoryCapBytes?: number;
  samples?: number;
  /** Abort as soon as this phase starts. */
  abortOnPhase?: ProfilePhase;
  /** Abort this many ms after the call. */
  abortAfterMs?: number;
}

export type HarnessProfileResult =
  | { ok: true; profile: DeviceProfile; progress: ProfileProgress[]; pageMs: number }
  | {
      ok: false;
      code: string | undefined;
      message: string;
      isRingworkError: boolean;
      progress: ProfileProgress[];
      pageMs: number;
      /** ms from firing the abort to the rejection, when the harness aborted. */
      abortToRejectMs?: number;
    };

const client = createProfilerClient();
const out = () => document.getElementById('out');

async function run(opts: HarnessProfileOptions = {}): Promise<HarnessProfileResult> {
  const progress: ProfileProgress[] = [];
  const ac = new AbortController();
  let abortedAt: number | undefined;
  const abort = () => {
    if (abortedAt === undefined) {
      abortedAt = performance.now();
      ac.abort(new Error('aborted by the harness'));
    }
  };
  const timer = opts.abortAfterMs !== undefined ? setTimeout(abort, opts.abortAfterMs) : undefined;
  const t0 = performance.now();
  try {
    const profile = await client.profile({
      ...(opts.serverUrl !== undefined ? { serverUrl: opts.serverUrl } : {}),
      ...(opts.budgetMs !== undefined ? { budgetMs: opts.budgetMs } : {}),
      ...(opts.memoryCapBytes !== undefined ? { memoryCapBytes: opts.memoryCapBytes } : {}),
      ...(opts.samples !== undefined ? { samples: opts.samples } : {}),
      signal: ac.signal,
      onProgress: (p) => {
        progress.push(p);
        if (p.type === 'phase-start' && p.phase === opts.abortOnPhase) abort();
      },
    });
    const pageMs = performance.now() - t0;
    out()!.textContent = JSON.stringify(profile, null, 2);
    return { ok: true, profile, progress, pageMs };
  } catch (e) {
    const now = performance.now();
    out()!.textContent = String(e);
    return {
      ok: false,
      code: isRingworkError(e) ? e.code : undefined,
      message: e instanceof Error ? e.message : String(e),
      isRingworkError: isRingworkError(e),
      progress,
      pageMs: now - t0,
      ...(abortedAt !== undefined ? { abortToRejectMs: now - abortedAt } : {}),
    };
  } finally {
    clearTimeout(timer);
  }
}

declare global {
  interface Window {
    ringworkProfiler: {
      run: (opts?: HarnessProfileOptions) => Promise<HarnessProfileResult>;
      verifyMatmul: () => Promise<MatmulVerification>;
    };
  }
}
window.ringworkProfiler = { run, verifyMatmul: () => client.verifyMatmul() };
