/**
 * The ring planner: which peers serve a model, in which ring order, with which contiguous range of
 * model-profile units each. Pure and deterministic (no clocks, no randomness, peers canonicalised by
 * id), with no DOM or Node dependencies, so the coordinator and the browser run the same code.
 *
 * Default cost model (all figures seconds per token; `plan --json` always reports this one):
 * - unit l on peer p: `max(flops_l / (tflops·1e12), weightBytes_l / (bandwidthGBps·1e9))` (roofline);
 * - hop p → q: `rttMs/2` ms + `outBytes / (mbps·1e6/8)` s, outBytes = the stage's last unit's
 *   `outBytesPerToken`; 20 ms / 100 Mbit/s without link data; links apply in both directions unless
 *   the reverse is given; the ring closes (last stage → first peer); a one-peer ring has no hop;
 * - memory of p: Σ (weightBytes + kvBytesPerToken × contextTokens) ≤ memoryBytes;
 * - `latency` = Σ stage times + Σ hops; `throughput` = max over stages of (stage time + outgoing hop).
 *
 * Category policy: peers are A (> 20 TFLOPS), B (5–20) or C (< 5) unless they declare one. C peers
 * never take a shard of a model they cannot hold whole; they are listed in `excluded` as available
 * for lightweight whole models. A model that fits whole on a C peer is lightweight for it, and the
 * peer is then an ordinary candidate.
 *
 * Algorithms: {@link planExo} (exo's memory-weighted ring, the baseline), {@link planRingwork} (exact
 * for ≤ 8 eligible peers, heuristic with a {@link lowerBound} beyond), {@link replan} (stable
 * re-planning on joins and leaves).
 */
import { createInstance } from './cost.js';
import { planInstance } from './search.js';
import type { Plan, PlanInput } from './types.js';

export {
  categorize,
  evaluatePlan,
  hopSeconds,
  layerSeconds,
  DEFAULT_CATEGORY_THRESHOLDS,
  DEFAULT_CONTEXT_TOKENS,
  DEFAULT_LINK,
  type PlanEvaluation,
} from './cost.js';
export { lowerBound, type LowerBounds } from './bounds.js';
export { planExo, pyRound5, type ExoOptions } from './exo.js';
export { replan, REPLAN_TOLERANCE, type ReplanResult } from './replan.js';
export { EXHAUSTIVE_LIMIT } from './search.js';
export {
  linkSchema,
  objectiveSchema,
  parseOrThrow,
  peerProfileSchema,
  peersFileSchema,
  planInputSchema,
  plannerOptionsSchema,
  planSchema,
  planStageSchema,
  type CategoryThresholds,
  type DefaultLink,
  type ExcludedPeer,
  type LinkInput,
  type Objective,
  type PeerCategory,
  type PeerProfileInput,
  type PeersFile,
  type Plan,
  type PlanInput,
  type PlanJson,
  type PlannerOptions,
  type PlanStage,
} from './types.js';

/**
 * Ringwork's layer-aware plan: the optimum of the input's objective under the default cost model for
 * fleets of up to 8 eligible peers (`optimal: true`), a heuristic with a proven `lowerBound` beyond.
 * Throws `PLAN_BAD_INPUT` for invalid input and `PLAN_INFEASIBLE` (with the missing memory in
 * `details`) when no ring fits.
 */
export function planRingwork(input: PlanInput): Plan {
  return planInstance(createInstance(input)).plan;
}
