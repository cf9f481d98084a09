/**
 * Stable re-planning for the coordinator: when peers join or leave, moving units means re-downloading
 * weights and rebuilding KV caches, so a plan within 5% of the fresh optimum that moves fewer units is
 * preferred.
 *
 * Candidates are ring orders close to the previous one (its surviving peers in their order; one of
 * them dropped; one newcomer inserted anywhere) plus the fresh plan. For each order, the split that
 * moves the fewest units while staying within the 5% bound is found by DP: exactly for throughput
 * (minimise moved units subject to every stage ≤ the bound), by a Lagrangian sweep for latency
 * (minimise latency + λ·moved, λ bisected to the largest value still within the bound).
 */
import { baseRow, createScratch, fillHops, latencyRow, type Scratch } from './chain.js';
import { createInstance, evaluateStages, objectiveValue, type IndexedStage, type Instance } from './cost.js';
import { totalTimes } from './eligibility.js';
import { buildPlan, excludedList, planInstance } from './search.js';
import {
  parseOrThrow,
  peersFileSchema,
  planSchema,
  type Objective,
  type PeerProfileInput,
  type PeersFile,
  type Plan,
  type PlanJson,
  type PlannerOptions,
} from './types.js';
import type { ModelProfile } from '../model/profile.js';

const INF = Number.POSITIVE_INFINITY;

/** How much worse than the fresh optimum a stable plan may be (5%). */
export const REPLAN_TOLERANCE = 0.05;

/** Result of {@link replan}. */
export interface ReplanResult {
  /** The plan to run: the stablest one within tolerance of `fresh`. `plan.layersMoved` is set. */
  plan: Plan;
  /** Units whose peer changed against the previous plan. */
  layersMoved: number;
  /** The plan a from-scratch planning gives, and what it would move. */
  fresh: Plan;
  freshLayersMoved: number;
}

/**
 * Re-plans after the fleet changed, preferring plans that move few units when they are within
 * {@link REPLAN_TOLERANCE} of the fresh plan's objective.
 */
export function replan(
  previous: PlanJson,
  profile: ModelProfile,
  fleet: PeersFile | readonly PeerProfileInput[],
  objective: Objective,
  contextTokens?: number,
  options?: PlannerOptions,
): ReplanResult {
  const prev = parseOrThrow(planSchema, previous, 'previous plan');
  const f: PeersFile = Array.isArray(fleet)
    ? { peers: [...(fleet as readonly PeerProfileInput[])] }
    : parseOrThrow(peersFileSchema, fleet, 'peers file');
  const inst = createInstance({ profile, peers: f.peers, links: f.links, objective, contextTokens, options });
  const { plan: fresh, elig } = planInstance(inst);
  const { L } = inst;
  const owner = new Int32Array(L).fill(-1);
  for (const st of prev.ring) {
    const p = inst.index.get(st.peer) ?? -2;
    for (let l = st.layers[0]; l < Math.min(st.layers[1], L); l++) owner[l] = p;
  }
  const moved = (stages: readonly IndexedStage[]): number => {
    let m = 0;
    for (const s of stages) for (let l = s.start; l < s.end; l++) if (owner[l] !== s.peer) m++;
    return m;
  };
  const freshStages = fresh.ring.map((s) => ({
    peer: inst.index.get(s.peer)!,
    start: s.layers[0],
    end: s.layers[1],
  }));
  const freshMoved = moved(freshStages);
  const bound = fresh.objective.value * (1 + REPLAN_TOLERANCE);

  const isCand = new Set(elig.cands);
  const survivors = prev.ring
    .map((s) => inst.index.get(s.peer))
    .filter((p): p is number => p !== undefined && isCand.has(p));
  const inPrev = new Set(survivors);
  const tau = totalTimes(inst, elig.cands);
  const newcomers = elig.cands
    .filter((p) => !inPrev.has(p))
    .sort((a, b) => tau[a]! - tau[b]! || a - b)
    .slice(0, 4);
  const orders: number[][] = [];
  if (survivors.length > 0) {
    orders.push(survivors);
    if (survivors.length > 1)
      for (let i = 0; i < survivors.length; i++) orders.push(survivors.filter((_, x) => x !== i));
  }
  for (const u of newcomers) {
    for (let i = 0; i <= survivors.length; i++)
      orders.push([...survivors.slice(0, i), u, ...survivors.slice(i)]);
  }

  let best = {
    stages: freshStages as IndexedStage[],
    moved: freshMoved,
    value: fresh.objective.value,
    isFresh: true,
  };
  const sc = createScratch(L);
  for (const order of orders) {
    if (order.length > L) continue;
    const stages =
      objective === 'throughput'
        ? minMovedThroughput(inst, order, bound, owner, sc)
        : minMovedLatency(inst, order, bound, owner, sc);
    if (!stages) continue;
    const value = objectiveValue(evaluateStages(inst, stages), objective);
    if (value > bound * (1 + 1e-12)) continue;
    const m = moved(stages);
    if (m < best.moved || (m === best.moved && value < best.value * (1 - 1e-12)))
      best = { stages, moved: m, value, isFresh: false };
  }
  if (best.isFresh) {
    const plan = { ...fresh, layersMoved: freshMoved };
    return { plan, layersMoved: freshMoved, fresh, freshLayersMoved: freshMoved };
  }
  const plan = buildPlan(inst, best.stages, {
    algorithm: 'ringwork-replan',
    optimal: fresh.optimal && best.value <= fresh.objective.value * (1 + 1e-12),
    lowerBound: fresh.lowerBound,
    excluded: excludedList(inst, elig, best.stages, false).map((e) =>
      e.reason.startsWith('not selected') || e.reason.startsWith('not needed')
        ? {
            peer: e.peer,
            reason: `not used: the previous ring, kept for stability, is within 5% of the fresh optimum without it`,
          }
        : e,
    ),
  });
  plan.layersMoved = best.moved;
  return { plan, layersMoved: best.moved, fresh, freshLayersMoved: freshMoved };
}

/** Prefix counts of units previously on peer q. */
function keptPrefix(owner: Int32Array, q: number): Int32Array {
  const K = new Int32Array(owner.length + 1);
  for (let l = 0; l < owner.length; l++) K[l + 1] = K[l]! + (owner[l] === q ? 1 : 0);
  return K;
}

/**
 * Fewest moved units for a fixed order (every peer ≥ 1 unit) with every stage's time + outgoing hop
 * ≤ bound. E[j] = (j − K[j]) + min over feasible s of (E'[s] − s + K[s]); feasible starts form
 * [max(ms[j], t(j)), j − 1] with t(j) found by bisection on the time prefix, and the minimum over
 * such a suffix window comes from a monotone stack.
 */
function minMovedThroughput(
  inst: Instance,
  order: readonly number[],
  bound: number,
  owner: Int32Array,
  sc: Scratch,
): IndexedStage[] | null {
  const { L } = inst;
  const k = order.length;
  const limit = bound * (1 + 1e-12);
  let prev = baseRow(L);
  const args: Int32Array[] = [];
  const stack = new Int32Array(L + 1);
  const V = new Float64Array(L + 1);
  for (let i = 0; i < k; i++) {
    const q = order[i]!;
    const P = inst.timePrefix(q);
    const ms = inst.memStart(q);
    const K = keptPrefix(owner, q);
    fillHops(inst, q, order[(i + 1) % k]!, sc);
    const E = new Float64Array(L + 1).fill(INF);
    const arg = new Int32Array(L + 1).fill(-1);
    const jMax = L - (k - 1 - i);
    let top = 0;
    for (let j = 1; j <= jMax; j++) {
      const s = j - 1;
      if (prev[s]! < INF) {
        V[s] = prev[s]! - s + K[s]!;
        while (top > 0 && V[stack[top - 1]!]! >= V[s]) top--;
        stack[top++] = s;
      }
      if (top === 0) continue;
      // Smallest start whose stage fits the bound: P[s] ≥ P[j] + hop − bound.
      const need = P[j]! + sc.hop[j]! - limit;
      let a = 0;
      let b = j;
      while (a < b) {
        const m = (a + b) >>> 1;
        if (P[m]! >= need) b = m;
        else a = m + 1;
      }
      const lo = Math.max(a, ms[j]!);
      let x = 0;
      let y = top;
      while (x < y) {
        const m = (x + y) >>> 1;
        if (stack[m]! >= lo) y = m;
        else x = m + 1;
      }
      if (x === top) continue;
      const sBest = stack[x]!;
      E[j] = V[sBest]! + j - K[j]!;
      arg[j] = sBest;
    }
    args.push(arg);
    prev = E;
  }
  if (!(prev[L]! < INF)) return null;
  return backtrack(order, args, L);
}

function backtrack(order: readonly number[], args: readonly Int32Array[], L: number): IndexedStage[] {
  const stages: IndexedStage[] = [];
  let j = L;
  for (let i = order.length - 1; i >= 0; i--) {
    const s = args[i]![j]!;
    stages.push({ peer: order[i]!, start: s, end: j });
    j = s;
  }
  return stages.reverse();
}

/** Latency + λ·moved for a fixed order (every peer ≥ 1 unit), exact by the latency row DP. */
function penalisedLatency(
  inst: Instance,
  order: readonly number[],
  lambda: number,
  owner: Int32Array,
  sc: Scratch,
): IndexedStage[] | null {
  const { L } = inst;
  const k = order.length;
  let prev = baseRow(L);
  const args: Int32Array[] = [];
  for (let i = 0; i < k; i++) {
    const q = order[i]!;
    const P = inst.timePrefix(q);
    const Q = new Float64Array(L + 1);
    for (let l = 0; l < L; l++) Q[l + 1] = Q[l]! + (P[l + 1]! - P[l]!) + (owner[l] === q ? 0 : lambda);
    if (i === 0) {
      sc.hop.fill(0);
      sc.hopLink = undefined;
    } else fillHops(inst, order[i - 1]!, q, sc);
    const E = new Float64Array(L + 1);
    const arg = new Int32Array(L + 1);
    latencyRow(prev, sc.hop, Q, inst.memStart(q), L - (k - 1 - i), E, arg, sc.deque);
    args.push(arg);
    prev = E;
  }
  if (!(prev[L]! < INF)) return null;
  return backtrack(order, args, L);
}

function minMovedLatency(
  inst: Instance,
  order: readonly number[],
  bound: number,
  owner: Int32Array,
  sc: Scratch,
): IndexedStage[] | null {
  const limit = bound * (1 + 1e-12);
  const movedOf = (st: readonly IndexedStage[]): number => {
    let m = 0;
    for (const s of st) for (let l = s.start; l < s.end; l++) if (owner[l] !== s.peer) m++;
    return m;
  };
  const latencyOf = (st: readonly IndexedStage[]): number => evaluateStages(inst, st).latencyS;
  const base = penalisedLatency(inst, order, 0, owner, sc);
  if (!base || latencyOf(base) > limit) return null;
  let best = base;
  let bestMoved = movedOf(base);
  // λ large enough that one moved unit outweighs any latency difference: fewest moves for the order.
  const hiLambda = Math.max(1, 10 * bound);
  const greedy = penalisedLatency(inst, order, hiLambda, owner, sc);
  if (greedy && latencyOf(greedy) <= limit) return greedy;
  let lo = 0;
  let hi = hiLambda;
  for (let it = 0; it < 30 && bestMoved > 0; it++) {
    const mid = (lo + hi) / 2;
    const st = penalisedLatency(inst, order, mid, owner, sc);
    if (st && latencyOf(st) <= limit) {
      const m = movedOf(st);
      if (m < bestMoved) {
        best = st;
        bestMoved = m;
      }
      lo = mid;
    } else hi = mid;
  }
  return best;
}
