/**
 * Ringwork's layer-aware planner: which peers form the ring, in which order, and the exact split for
 * that order (see chain.ts). {@link planInstance} picks the search: exhaustive.ts (exact) up to
 * `exhaustiveLimit` (8) eligible peers, heuristic.ts beyond, and turns the winner into a {@link Plan}.
 * Every search stops early when a plan meets the lower bound (bounds.ts).
 */
import { lowerBoundFor } from './bounds.js';
import { evaluateStages, objectiveValue, type Found, type IndexedStage, type Instance } from './cost.js';
import { eligibility, infeasibleError, totalTimes, type Eligibility } from './eligibility.js';
import { EXHAUSTIVE_LIMIT, exhaustiveSearch, subsetSearch } from './exhaustive.js';
import { heuristicSearch } from './heuristic.js';
import type { ExcludedPeer, Plan } from './types.js';

// Re-exported so callers of the former single-file search keep one import site.
export { EXHAUSTIVE_LIMIT, exhaustiveSearch, subsetSearch } from './exhaustive.js';
export { heuristicSearch, packingOrder, type HeuristicOptions } from './heuristic.js';
export type { Found } from './cost.js';

/** Turns indexed stages into a {@link Plan} under the default cost model. */
export function buildPlan(
  inst: Instance,
  stages: readonly IndexedStage[],
  meta: { algorithm: Plan['algorithm']; optimal: boolean; lowerBound: number; excluded: ExcludedPeer[] },
): Plan {
  const e = evaluateStages(inst, stages);
  const value = objectiveValue(e, inst.objective);
  return {
    ring: e.stages,
    objective: { kind: inst.objective, value },
    excluded: meta.excluded,
    model: inst.profile.name,
    contextTokens: inst.ctx,
    algorithm: meta.algorithm,
    optimal: meta.optimal,
    lowerBound: Math.min(meta.lowerBound, value),
    predicted: {
      latencyS: e.latencyS,
      throughputS: e.throughputS,
      tokensPerSecond: e.throughputS > 0 ? 1 / e.throughputS : 0,
    },
    memoryOk: e.memoryOk,
  };
}

/** The excluded list of a ring: policy exclusions, then eligible peers the plan did not use. */
export function excludedList(
  inst: Instance,
  elig: Eligibility,
  stages: readonly IndexedStage[],
  exact: boolean,
): ExcludedPeer[] {
  const inRing = new Set(stages.map((s) => s.peer));
  const out: ExcludedPeer[] = [];
  for (let p = 0; p < inst.n; p++) {
    if (inRing.has(p)) continue;
    const reason =
      elig.excluded.get(p) ??
      (exact
        ? `not needed: the optimal ${inst.objective} ring is better without it`
        : `not selected: the ${inst.objective} search did not need it`);
    out.push({ peer: inst.peers[p]!.id, reason });
  }
  return out;
}

/** Plans an indexed instance with Ringwork's planner (see the module comment). */
export function planInstance(inst: Instance): { plan: Plan; found: Found; elig: Eligibility } {
  const elig = eligibility(inst);
  if (elig.cands.length === 0) throw infeasibleError(inst, elig);
  const objective = inst.objective;
  const limit = inst.input.options?.exhaustiveLimit ?? EXHAUSTIVE_LIMIT;
  const budget = inst.input.options?.searchBudget;
  const exact = elig.cands.length <= limit;
  const lb = lowerBoundFor(inst, elig.cands, objective);
  // A plan that meets the lower bound is optimal: every search may stop there.
  const stopAt = lb * (1 + 1e-9);
  // When the search is exhaustive the heuristic only supplies an incumbent: keep it cheap.
  const heur = heuristicSearch(inst, elig.cands, objective, {
    budget: exact ? Math.min(budget ?? 20_000, 20_000) : budget,
    stopAt,
  });
  // The heuristic's plan seeds the exhaustive search's pruning; the DFS only replaces it when better.
  let found = heur;
  if (exact) {
    // Without link data a subset DP is exact and fast; with links the order matters pairwise and the
    // pruned enumeration of orders is used.
    if (heur && heur.value <= stopAt) found = heur;
    else if (inst.hasLinks)
      found = exhaustiveSearch(inst, orderForSearch(inst, elig.cands), objective, heur, stopAt);
    else {
      const sub = subsetSearch(inst, elig.cands, objective);
      if (sub && (!heur || sub.value < heur.value)) found = sub;
    }
  }
  if (!found) throw infeasibleError(inst, elig);
  const optimal = exact || found.value <= stopAt;
  const plan = buildPlan(inst, found.stages, {
    algorithm: exact ? 'ringwork-exhaustive' : 'ringwork-heuristic',
    optimal,
    lowerBound: optimal ? found.value : lb,
    excluded: excludedList(inst, elig, found.stages, optimal),
  });
  if (optimal) plan.lowerBound = plan.objective.value;
  return { plan, found, elig };
}

/** Fast peers first, so the exhaustive search meets good incumbents early and prunes more. */
function orderForSearch(inst: Instance, cands: readonly number[]): number[] {
  const tau = totalTimes(inst, cands);
  return [...cands].sort((a, b) => tau[a]! - tau[b]! || a - b);
}
