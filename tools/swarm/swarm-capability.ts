/**
 * What a swarm page declares (tools/swarm/swarm-run.ts): a realistic speed, and memory for 1/N of
 * the model, so that the planner must split it over all N pages for the same reason it splits a real
 * model too big for one device, and its speed figures mean what they say. Pure: no browser, no I/O.
 */
import { RingworkError } from '../../shared/errors.js';

/**
 * Declared compute of every swarm page: 5 GFLOP/s, a conservative figure for f32 matmuls in
 * single-threaded wasm SIMD on a current x86 core (tens of GFLOP/s at best). At this rate a small model's FLOPs cost milliseconds, so what a token costs is the
 * per-stage overhead the server plans with (`--stage-overhead-ms`), as it is in the browser.
 */
export const SWARM_TFLOPS = 0.005;

/**
 * Declared speed for failover runs (`kill`): ~1 MFLOP/s makes a token cost far more than a stage's
 * overhead, so the planner uses every peer by speed while each page's 4 GB let any survivors
 * re-form the ring. Its planned speed figures mean nothing.
 */
export const ROOMY_SLOW_TFLOPS = 1e-6;

/**
 * Declared speed of standby pages (`standbys`): 100× slower than {@link ROOMY_SLOW_TFLOPS}, so a
 * ring is always faster without them and the planner leaves them out; with 4 GB they can back up
 * any stage. Swapped in after a loss they serve at the real speed of the machine, as any page.
 */
export const STANDBY_SLOW_TFLOPS = 1e-8;

/**
 * Declared memory bandwidth of standby pages, GB/s (1 kB/s). A unit's planned time is the roofline
 * max(FLOPs / speed, weight bytes / bandwidth), and the embedding unit has no FLOPs: with a normal
 * bandwidth a standby swapped in after a loss cost the ring nothing as a one-unit embedding stage,
 * so the next re-plan (throughput objective: that stage is never the bottleneck) could keep it in a
 * ring of `peers + 1` stages, leaving a stage without a standby (bench:churn's "with" runs stopped
 * on that). Slow in every respect, a standby is only ever a stage by a swap.
 */
export const STANDBY_SLOW_GBPS = 1e-6;

/**
 * The smallest possible largest-stage memory when `units` (bytes each, in order) are split into at
 * most `k` contiguous stages (the linear-partition bottleneck; exact, O(k·L²) — L is small).
 */
export function minBottleneck(units: readonly number[], k: number): number {
  const L = units.length;
  const prefix = [0];
  for (const u of units) prefix.push(prefix[prefix.length - 1]! + u);
  // best[j] = smallest bottleneck covering units [0, j) with the stages used so far.
  let best = prefix.map((v) => v);
  for (let s = 2; s <= k; s++) {
    const next = best.slice();
    for (let j = 1; j <= L; j++) {
      for (let i = 1; i < j; i++) next[j] = Math.min(next[j]!, Math.max(best[i]!, prefix[j]! - prefix[i]!));
    }
    best = next;
  }
  return best[L]!;
}

/**
 * Memory each of `n` swarm pages declares so that the model (units' weights + KV at the served
 * context, as the planner counts them) fits on `n` peers but not on `n - 1`: the split is forced by
 * memory, as a real model too big for one device is, while the declared speed stays realistic.
 * Throws `INVALID_ARGUMENT` when no such figure exists (a unit too large to split around).
 */
export function swarmMemoryBytes(units: readonly number[], n: number): number {
  const fits = minBottleneck(units, n);
  if (n <= 1) return Math.max(4e9, fits);
  const tooSmall = minBottleneck(units, n - 1);
  if (tooSmall <= fits) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `--peers ${n}: the model's units cannot be split so that ${n} peers are needed but ${n - 1} are not.`,
      { details: { fits, tooSmall } },
    );
  }
  // Midway: room to balance the stages, still short of what n - 1 peers would need.
  return Math.floor((fits + tooSmall) / 2);
}
