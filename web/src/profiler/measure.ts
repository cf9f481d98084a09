/**
 * Budgeted, adaptive measurement: grow the problem until one run is long enough to time well but
 * short enough to repeat within the budget, then repeat it and summarise. The same loop drives the
 * GPU matmul, the bandwidth kernels and the wasm MatMul, so a SwiftShader adapter (0.3 GFLOPS) and a
 * discrete GPU (tens of TFLOPS) both finish on time.
 */
import { RingworkError, throwIfAborted } from '../../../shared/errors';
import { summarize, type SampleSummary } from '../../../shared/device/stats';

/** Repeats every measurement gets even when its budget ran out: a spread needs at least three. */
export const MIN_SAMPLES = 3;

/** Resolves on a later macrotask, so pending messages (an abort from the page) are handled first. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** One prepared problem size. */
export interface Trial {
  /** Work units (FLOPs, bytes) of one repetition. */
  work: number;
  /** Runs `reps` back-to-back repetitions and resolves with the elapsed wall-clock ms. */
  run(reps: number): Promise<number>;
  /** Frees what `prepare` allocated. */
  dispose(): void;
}

/**
 * Time of one repetition for sizing decisions: the faster of two, since interference (another
 * process, a GC) only ever makes a run slower, and one slow probe would stop the growth early.
 */
async function probe(trial: Trial): Promise<number> {
  return Math.min(await trial.run(1), await trial.run(1));
}

/** Options of {@link measureAdaptive}. */
export interface AdaptiveOptions<S> {
  /** Candidate sizes, smallest first. */
  sizes: readonly S[];
  /** Work of one repetition at a size (used to predict the next size's time before preparing it). */
  workOf(size: S): number;
  prepare(size: S): Promise<Trial>;
  /** Wall-clock budget for the whole measurement, ms. */
  budgetMs: number;
  /** Repeats wanted (fewer when the budget runs out, never fewer than {@link MIN_SAMPLES}). */
  samples: number;
  signal?: AbortSignal | undefined;
  /** What to call this in an abort message. */
  what: string;
}

/** The outcome: rate summary (work units per second) and how it was measured. */
export interface AdaptiveResult<S> {
  rate: SampleSummary;
  size: S;
  reps: number;
  /** True when the budget ran out before `samples` repeats. */
  truncated: boolean;
}

/**
 * Measures work/second. Each sample is aimed at `budget / (samples + 3)` ms: enough repeats to
 * dwarf the submit/await overhead (~0.1–1 ms on a GPU queue), with the remaining three shares left
 * for warm-up and growing the size.
 */
export async function measureAdaptive<S>(o: AdaptiveOptions<S>): Promise<AdaptiveResult<S>> {
  const start = performance.now();
  const elapsed = () => performance.now() - start;
  const target = o.budgetMs / (o.samples + 3);
  let idx = 0;
  // Held here so the finally block disposes whatever is live, exactly once, even if a prepare throws.
  let live: Trial | undefined = await o.prepare(o.sizes[0]!);
  try {
    let trial: Trial = live;
    // The first run pays for pipeline compilation, lazy zeroing and JIT; it is never timed.
    await trial.run(1);
    let t1 = await probe(trial);
    while (idx + 1 < o.sizes.length) {
      await yieldToEventLoop();
      throwIfAborted(o.signal, o.what);
      const predicted = (t1 * o.workOf(o.sizes[idx + 1]!)) / trial.work;
      // Growing costs a warm-up plus two probes at the new size; keep half the budget for samples.
      if (predicted > target || elapsed() + 3 * predicted > o.budgetMs / 2) break;
      live = undefined;
      trial.dispose();
      idx++;
      trial = live = await o.prepare(o.sizes[idx]!);
      await trial.run(1);
      t1 = await probe(trial);
    }
    const reps = Math.max(1, Math.min(256, Math.floor(target / Math.max(t1, 0.01))));
    const rates: number[] = [];
    let truncated = false;
    for (let s = 0; s < o.samples; s++) {
      // A macrotask turn between samples: GPU and wasm awaits can resolve as microtasks only, and
      // the worker must get to process an abort message from the page.
      await yieldToEventLoop();
      throwIfAborted(o.signal, o.what);
      if (s >= MIN_SAMPLES && elapsed() + t1 * reps > o.budgetMs) {
        truncated = true;
        break;
      }
      const ms = await trial.run(reps);
      rates.push((trial.work * reps) / (Math.max(ms, 1e-3) / 1000));
    }
    return { rate: summarize(rates), size: o.sizes[idx]!, reps, truncated };
  } finally {
    live?.dispose();
  }
}

/**
 * Settles with `p`, or rejects with `ABORTED` as soon as `signal` fires. For steps that cannot be
 * interrupted (shader compilation, loading the wasm runtime): the caller stops waiting at once and
 * whoever owns the result cleans it up when it arrives.
 */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return p;
  throwIfAborted(signal, what);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () =>
      reject(new RingworkError('ABORTED', `${what} was aborted.`, { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
