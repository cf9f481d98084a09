/**
 * Ringwork's layer-aware planner: which peers form the ring, in which order, and the exact split for
 * that order (see chain.ts).
 *
 * - Up to `exhaustiveLimit` (8) eligible peers, exact under the default cost model:
 *   without link data, a DP over subsets of peers (hops then do not depend on who is adjacent, so one
 *   row per subset suffices); with link data, a depth-first search over every ordered subset, one DP
 *   row per search node (shared by all extensions of a prefix), pruned by the incumbent, by bounds on
 *   what the rest of the model must still cost, and by memory.
 * - Beyond: a heuristic. A pool of useful peers (the fastest ones, enough big-memory ones to fit the
 *   model), a few orders solved by the skipping DP (exact over all sub-sequences of the order when
 *   there is no link data), seeded restarts and swap search over pool orders, then local search on
 *   the ring (replace / insert / remove / swap / relocate around the bottleneck) with the exact
 *   fixed-order DP, all under a deterministic work budget.
 * - Every search stops early when a plan meets the lower bound (bounds.ts), which also says how far
 *   from optimal a heuristic plan can be.
 */
import { lowerBoundFor, minHop } from './bounds.js';
import {
  createScratch,
  fillHops,
  latencyRow,
  solveOrder,
  solveOrderSkipping,
  throughputRow,
  type Scratch,
} from './chain.js';
import { evaluateStages, objectiveValue, type IndexedStage, type Instance } from './cost.js';
import { eligibility, infeasibleError, totalTimes, type Eligibility } from './eligibility.js';
import type { ExcludedPeer, Objective, Plan } from './types.js';

const INF = Number.POSITIVE_INFINITY;

/** Default number of eligible peers searched exhaustively. */
export const EXHAUSTIVE_LIMIT = 8;

/** Best plan found so far by index, with its DP value. */
export interface Found {
  value: number;
  stages: IndexedStage[];
}

/**
 * Exhaustive search over ordered subsets of `cands`. Exact under the default cost model. `incumbent`
 * (a known plan) only speeds up pruning; it is returned when nothing strictly better exists. The
 * search stops as soon as a plan reaches `stopAt` (a lower bound: nothing can be better).
 */
export function exhaustiveSearch(
  inst: Instance,
  cands: readonly number[],
  objective: Objective,
  incumbent: Found | null,
  stopAt = 0,
): Found | null {
  const { L, out, memPrefix } = inst;
  const k = cands.length;
  const rows = Array.from({ length: k + 1 }, () => new Float64Array(L + 1));
  const args = Array.from({ length: k + 1 }, () => new Int32Array(L + 1));
  rows[0]!.fill(INF);
  rows[0]![0] = 0;
  const sc = createScratch(L);
  const seq = new Int32Array(k);
  const used = new Uint8Array(k);
  let unusedMem = 0;
  for (const p of cands) unusedMem += inst.memCap[p]!;
  let best = incumbent ? incumbent.value : INF;
  let bestStages = incumbent ? incumbent.stages : null;
  // Completion bounds for pruning: every remaining unit runs at least as slowly as on its fastest
  // candidate, and every further stage pays at least the cheapest hop.
  const minT = new Float64Array(L).fill(INF);
  for (const p of cands) {
    const P = inst.timePrefix(p);
    for (let l = 0; l < L; l++) minT[l] = Math.min(minT[l]!, P[l + 1]! - P[l]!);
  }
  let minOut = INF;
  for (let l = 0; l < L - 1; l++) minOut = Math.min(minOut, out[l]!);
  const hInner = k > 1 && L > 1 ? minHop(inst, cands, minOut) : 0;
  const hClose = k > 1 ? minHop(inst, cands, out[L - 1]!) : 0;
  const hAny = Math.min(hInner, hClose);
  const sufSum = new Float64Array(L + 1);
  const sufMax = new Float64Array(L + 1);
  const sufW = new Float64Array(L + 1);
  const sufF = new Float64Array(L + 1);
  for (let l = L - 1; l >= 0; l--) {
    sufSum[l] = sufSum[l + 1]! + minT[l]!;
    sufMax[l] = Math.max(sufMax[l + 1]!, minT[l]!);
    sufW[l] = sufW[l + 1]! + inst.weights[l]!;
    sufF[l] = sufF[l + 1]! + inst.flops[l]!;
  }
  // Combined rates of the peers not in the current prefix (throughput's work bound).
  let unusedBw = 0;
  let unusedFl = 0;
  for (const p of cands) {
    unusedBw += inst.byteRate[p]!;
    unusedFl += inst.flopRate[p]!;
  }

  const record = (depth: number, finalStart: number, value: number): void => {
    best = value;
    const stages: IndexedStage[] = [];
    let j = L;
    let s = finalStart;
    for (let d = depth; d >= 1; d--) {
      if (d < depth) s = args[d]![j]!;
      stages.push({ peer: seq[d - 1]!, start: s, end: j });
      j = s;
    }
    bestStages = stages.reverse();
  };

  // Latency: rows[d] = cost of [0, j) by seq[0..d-1], hops between them included, none out of the last.
  const dfsLatency = (depth: number): void => {
    if (best <= stopAt) return;
    const p = seq[depth - 1]!;
    const row = rows[depth]!;
    if (row[L]! < INF) {
      const v = row[L]! + (depth === 1 ? 0 : inst.hop(p, seq[0]!, out[L - 1]!));
      if (v < best) record(depth, args[depth]![L]!, v);
    }
    if (depth === k) return;
    // Extending means at least one more stage: its units, a hop into it and the closing hop.
    let minRow = INF;
    let maxJ = -1;
    for (let j = 1; j < L; j++) {
      if (row[j]! < INF) {
        const v = row[j]! + sufSum[j]!;
        if (v < minRow) minRow = v;
        maxJ = j;
      }
    }
    if (maxJ < 0 || minRow + hInner + hClose >= best || memPrefix[L]! - memPrefix[maxJ]! > unusedMem) return;
    for (let c = 0; c < k; c++) {
      if (used[c]) continue;
      const q = cands[c]!;
      fillHops(inst, p, q, sc);
      latencyRow(
        row,
        sc.hop,
        inst.timePrefix(q),
        inst.memStart(q),
        L,
        rows[depth + 1]!,
        args[depth + 1]!,
        sc.deque,
      );
      used[c] = 1;
      unusedMem -= inst.memCap[q]!;
      seq[depth] = q;
      dfsLatency(depth + 1);
      used[c] = 0;
      unusedMem += inst.memCap[q]!;
    }
  };

  // Throughput: rows[d] = worst stage of [0, j) by seq[0..d-1], each with its hop to its successor
  // (so a row is computed once the next peer is chosen); the last stage is closed in place.
  const dfsThroughput = (depth: number): void => {
    if (best <= stopAt) return;
    const p = seq[depth - 1]!;
    const R = rows[depth - 1]!;
    const P = inst.timePrefix(p);
    const ms = inst.memStart(p);
    const closing = depth === 1 ? 0 : inst.hop(p, seq[0]!, out[L - 1]!);
    let bestV = INF;
    let bestS = -1;
    for (let s = ms[L]!; s < L; s++) {
      if (R[s]! < INF) {
        const v = Math.max(R[s]!, P[L]! - P[s]! + closing);
        if (v < bestV) {
          bestV = v;
          bestS = s;
        }
      }
    }
    if (bestV < best) record(depth, bestS, bestV);
    if (depth === k) return;
    for (let c = 0; c < k; c++) {
      if (used[c]) continue;
      const q = cands[c]!;
      fillHops(inst, p, q, sc);
      const E = rows[depth]!;
      throughputRow(R, sc.hop, P, ms, L - 1, E, args[depth]!, sc.deque);
      // The rest of the units still need stages, each at least its slowest unit's best time + a hop.
      let minRow = INF;
      let maxJ = -1;
      for (let j = 1; j < L; j++) {
        if (E[j]! < INF) {
          // ...and the unused peers together must stream the rest within (period − a hop).
          const v = Math.max(
            E[j]!,
            sufMax[j]! + hAny,
            hAny + sufW[j]! / unusedBw,
            hAny + sufF[j]! / unusedFl,
          );
          if (v < minRow) minRow = v;
          maxJ = j;
        }
      }
      if (maxJ < 0 || minRow >= best || memPrefix[L]! - memPrefix[maxJ]! > unusedMem) continue;
      used[c] = 1;
      unusedMem -= inst.memCap[q]!;
      unusedBw -= inst.byteRate[q]!;
      unusedFl -= inst.flopRate[q]!;
      seq[depth] = q;
      dfsThroughput(depth + 1);
      used[c] = 0;
      unusedMem += inst.memCap[q]!;
      unusedBw += inst.byteRate[q]!;
      unusedFl += inst.flopRate[q]!;
    }
  };

  for (let c = 0; c < k && best > stopAt; c++) {
    const q = cands[c]!;
    seq[0] = q;
    used[c] = 1;
    unusedMem -= inst.memCap[q]!;
    unusedBw -= inst.byteRate[q]!;
    unusedFl -= inst.flopRate[q]!;
    if (objective === 'latency') {
      const P = inst.timePrefix(q);
      const ms = inst.memStart(q);
      const r = rows[1]!;
      const a = args[1]!;
      for (let j = 0; j <= L; j++) {
        r[j] = j > 0 && ms[j] === 0 ? P[j]! : INF;
        a[j] = 0;
      }
      dfsLatency(1);
    } else dfsThroughput(1);
    used[c] = 0;
    unusedMem += inst.memCap[q]!;
    unusedBw += inst.byteRate[q]!;
    unusedFl += inst.flopRate[q]!;
  }
  return bestStages ? { value: best, stages: bestStages } : null;
}

/**
 * Exact search without link data, by DP over subsets. Hops then depend on bytes only, so what the rest
 * of the ring can do from "units [0, j) covered by exactly the peers in S" does not depend on the
 * order inside S or on which peer came last: one row per subset (the elementwise best over all
 * orders of S) is enough, and a row transform commutes with that minimum. 2^k rows, k·2^(k−1) row
 * transforms — much faster than enumerating orders, and exact.
 */
export function subsetSearch(inst: Instance, cands: readonly number[], objective: Objective): Found | null {
  const { L, out, memPrefix } = inst;
  const k = cands.length;
  const size = 1 << k;
  const rows: (Float64Array | undefined)[] = new Array(size);
  const lastOf: (Int32Array | undefined)[] = new Array(size);
  const startOf: (Int32Array | undefined)[] = new Array(size);
  const sc = createScratch(L);
  const base = new Float64Array(L + 1).fill(INF);
  base[0] = 0;
  const E = new Float64Array(L + 1);
  const arg = new Int32Array(L + 1);
  // Any distinct pair prices the default hop; the ring's own closing hop is added at the end.
  const other = (q: number): number => cands[q === cands[0] ? 1 : 0] ?? q;
  const capOf = new Float64Array(size);
  for (let S = 1; S < size; S++) {
    const low = 31 - Math.clz32(S & -S);
    capOf[S] = capOf[S & (S - 1)]! + inst.memCap[cands[low]!]!;
  }
  let best = INF;
  let bestS = -1;
  let single: Found | null = null;
  for (let c = 0; c < k; c++) {
    const p = cands[c]!;
    const P = inst.timePrefix(p);
    if (inst.memStart(p)[L] === 0 && (!single || P[L]! < single.value)) {
      single = { value: P[L]!, stages: [{ peer: p, start: 0, end: L }] };
    }
  }
  for (let S = 0; S < size; S++) {
    const A = S === 0 ? base : rows[S];
    if (!A) continue;
    if (S !== 0 && (S & (S - 1)) !== 0 && A[L]! < INF) {
      const v = A[L]! + (objective === 'latency' ? inst.hop(cands[0]!, cands[1]!, out[L - 1]!) : 0);
      if (v < best) {
        best = v;
        bestS = S;
      }
    }
    // Memory left in the peers outside S must hold what is not covered yet.
    let maxJ = -1;
    for (let j = L - 1; j >= 0; j--) {
      if (A[j]! < INF) {
        maxJ = j;
        break;
      }
    }
    if (maxJ < 0 || memPrefix[L]! - memPrefix[maxJ]! > capOf[(size - 1) & ~S]!) continue;
    for (let c = 0; c < k; c++) {
      if (S & (1 << c)) continue;
      const q = cands[c]!;
      fillHops(inst, objective === 'latency' ? other(q) : q, objective === 'latency' ? q : other(q), sc);
      if (objective === 'latency') {
        latencyRow(A, sc.hop, inst.timePrefix(q), inst.memStart(q), L, E, arg, sc.deque);
      } else throughputRow(A, sc.hop, inst.timePrefix(q), inst.memStart(q), L, E, arg, sc.deque);
      const T = S | (1 << c);
      let row = rows[T];
      let lq = lastOf[T];
      let st = startOf[T];
      if (!row || !lq || !st) {
        row = rows[T] = new Float64Array(L + 1).fill(INF);
        lq = lastOf[T] = new Int32Array(L + 1).fill(-1);
        st = startOf[T] = new Int32Array(L + 1).fill(-1);
      }
      for (let j = 1; j <= L; j++) {
        if (E[j]! < row[j]!) {
          row[j] = E[j]!;
          lq[j] = c;
          st[j] = arg[j]!;
        }
      }
    }
  }
  let found: Found | null = null;
  if (bestS > 0) {
    const stages: IndexedStage[] = [];
    let S = bestS;
    let j = L;
    while (S !== 0) {
      const c = lastOf[S]![j]!;
      const s = startOf[S]![j]!;
      stages.push({ peer: cands[c]!, start: s, end: j });
      S &= ~(1 << c);
      j = s;
    }
    found = { value: best, stages: stages.reverse() };
  }
  if (single && (!found || single.value < found.value)) found = single;
  return found;
}

/** Options of {@link heuristicSearch}. */
export interface HeuristicOptions {
  /** Work budget of the local search, in DP cells (stages × units per solve). */
  budget?: number | undefined;
  /** Stop improving once a plan reaches this value (a lower bound: it is then optimal). */
  stopAt?: number | undefined;
}

/**
 * The heuristic for fleets too large to enumerate: pool, ordered skipping DPs, local search.
 * Deterministic: every tie breaks on peer index, the budget counts work, not time.
 */
export function heuristicSearch(
  inst: Instance,
  cands: readonly number[],
  objective: Objective,
  opts: HeuristicOptions = {},
): Found | null {
  const { L, memCap } = inst;
  const total = inst.memPrefix[L]!;
  const tau = totalTimes(inst, cands);
  const sc = createScratch(L);
  let best: Found | null = null;
  let bestMulti: Found | null = null;
  const starts = new Map<string, Found>();
  const consider = (f: Found | null): void => {
    if (!f) return;
    if (!best || f.value < best.value) best = f;
    if (f.stages.length > 1) {
      if (!bestMulti || f.value < bestMulti.value) bestMulti = f;
      const key = f.stages.map((x) => x.peer).join(',');
      const had = starts.get(key);
      if (!had || f.value < had.value) starts.set(key, f);
    }
  };
  // A peer that holds everything runs with no hop at all.
  for (const p of cands)
    if (memCap[p]! >= total) consider({ value: tau[p]!, stages: [{ peer: p, start: 0, end: L }] });
  if (cands.length < 2 || L < 2) return best;

  const byTau = [...cands].sort((a, b) => tau[a]! - tau[b]! || memCap[b]! - memCap[a]! || a - b);
  const byMem = [...cands].sort((a, b) => memCap[b]! - memCap[a]! || tau[a]! - tau[b]! || a - b);
  const stopAt = opts.stopAt ?? 0;
  const buildPool = (fast: number): Set<number> => {
    const pool = new Set<number>();
    // Enough big peers to fit the model (plus spares), so that a memory-feasible order always exists.
    let acc = 0;
    let spare = 4;
    for (const p of byMem) {
      pool.add(p);
      acc += memCap[p]!;
      if (acc >= total && spare-- <= 0) break;
    }
    for (const p of byTau.slice(0, fast)) pool.add(p);
    if (objective === 'latency') {
      // Latency pays a hop per stage: also peers that hold much of the model quickly.
      const score = (p: number): number => Math.min(memCap[p]!, total) / tau[p]!;
      const byScore = [...cands].sort((a, b) => score(b) - score(a) || a - b);
      for (const p of byScore.slice(0, 16)) pool.add(p);
    }
    return pool;
  };
  // Throughput improves with every stage added, up to one unit per peer, so its pool may need up to
  // L + 8 of the fastest peers; it starts small and doubles while the best ring uses most of it.
  const maxFast = objective === 'throughput' ? Math.min(cands.length, L + 8) : 16;
  let fast = Math.min(maxFast, 24);
  let pool = buildPool(fast);
  let poolByTau: number[] = [];
  let poolByMem: number[] = [];
  let bestOrder: { order: number[]; value: number } | null = null;
  for (;;) {
    poolByTau = byTau.filter((p) => pool.has(p));
    poolByMem = byMem.filter((p) => pool.has(p));
    const orders: number[][] = [
      poolByTau,
      [...poolByTau.slice(1), poolByTau[0]!],
      [...poolByTau].reverse(),
      poolByMem,
      [...poolByMem].reverse(),
    ];
    for (const order of orders) {
      const b = best as Found | null;
      if (b && b.value <= stopAt) return b;
      const sol = solveOrderSkipping(inst, order, objective, sc);
      if (!sol) continue;
      if (sol.stages.length === 1) continue;
      if (!bestOrder || sol.value < bestOrder.value) bestOrder = { order, value: sol.value };
      // Exact re-solve on the peers actually used (link-priced hops may have assumed skipped ones).
      consider(
        solveOrder(
          inst,
          sol.stages.map((s) => s.peer),
          objective,
          sc,
        ),
      );
    }
    const used = (bestMulti as Found | null)?.stages.length ?? 0;
    if (fast >= maxFast || used < fast - 4) break;
    fast = Math.min(maxFast, fast * 2);
    pool = buildPool(fast);
  }
  if (!bestMulti) {
    // Memory is tight enough that none of the orders packs: search for any order that does.
    const order = packingOrder(inst, cands, 50_000);
    if (order && order.length > 1) {
      consider(solveOrder(inst, order, objective, sc));
      // A full order that starts with the packing gives the order search a feasible start.
      const inOrder = new Set(order);
      const full = [...order, ...poolByTau.filter((p) => !inOrder.has(p))];
      const sol = solveOrderSkipping(inst, full, objective, sc);
      if (sol && sol.stages.length > 1) bestOrder = { order: full, value: sol.value };
    }
  }
  if (!bestMulti) return best;

  const totalBudget = opts.budget ?? defaultBudget(inst, pool.size);
  let ringBudget = totalBudget;
  if (!inst.hasLinks) {
    // Restarts from seeded shuffles of the pool: memory-tight fleets have orders that the swap
    // search cannot reach one swap at a time. A fixed seed keeps the planner deterministic.
    const restartBudget = totalBudget * 0.2;
    ringBudget -= restartBudget;
    const rand = mulberry32(0x5eed);
    const base = bestOrder ? (bestOrder as { order: number[] }).order : poolByTau;
    const cost = base.length * L;
    for (let spent = 0, r = 0; spent + cost <= restartBudget && r < 64; spent += cost, r++) {
      const order = [...base];
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      const sol = solveOrderSkipping(inst, order, objective, sc);
      if (!sol || sol.stages.length === 1) continue;
      const cur = bestOrder as { order: number[]; value: number } | null;
      if (!cur || sol.value < cur.value) {
        bestOrder = { order, value: sol.value };
        consider(
          solveOrder(
            inst,
            sol.stages.map((x) => x.peer),
            objective,
            sc,
          ),
        );
      }
    }
  }
  const bo = bestOrder as { order: number[]; value: number } | null;
  if (!inst.hasLinks && bo) {
    // Without link data the skipping DP is exact for any order of the whole pool, so searching
    // over pool orders also searches over subsets: swaps of two pool peers, first improvement.
    const budget = { cells: totalBudget * 0.4 };
    ringBudget -= budget.cells;
    consider(orderSearch(inst, bo.order, bo.value, objective, budget, sc, stopAt));
  }
  // Local search from the best few distinct starting rings: it stops at local optima, and different
  // orders lead to different ones. Most of the budget goes to the best start.
  const ranked = [...starts.values()].sort((a, b) => a.value - b.value).slice(0, 3);
  ranked.forEach((f, i) => {
    if (best!.value <= stopAt) return;
    const budget = { cells: i === 0 ? ringBudget * 0.6 : ringBudget * 0.2 };
    consider(localSearch(inst, f, poolByTau, poolByMem, objective, budget, sc, stopAt));
  });
  return best;
}

/**
 * First-improvement swaps over a whole pool order, each order solved by the skipping DP (exact for
 * the order without link data). Small pools try every pair; large ones the pairs that touch a peer
 * in the current ring or its neighbours in the order.
 */
function orderSearch(
  inst: Instance,
  start: readonly number[],
  startValue: number,
  objective: Objective,
  budget: { cells: number },
  sc: Scratch,
  stopAt: number,
): Found | null {
  const { L } = inst;
  const order = [...start];
  const K = order.length;
  let cur: Found | null = null;
  let value = startValue;
  let improved = true;
  while (improved && budget.cells > 0 && value > stopAt) {
    improved = false;
    let positions: number[];
    if (K <= 24) positions = Array.from({ length: K }, (_, i) => i);
    else {
      const sol = cur ?? solveOrderSkipping(inst, order, objective, sc);
      const inRing = new Set(sol ? sol.stages.map((x) => x.peer) : []);
      const near = new Set<number>();
      order.forEach((p, i) => {
        if (inRing.has(p)) for (const d of [-1, 0, 1]) if (i + d >= 0 && i + d < K) near.add(i + d);
      });
      positions = [...near].sort((a, b) => a - b);
    }
    outer: for (const i of positions) {
      for (let j = 0; j < K; j++) {
        if (j === i || (positions.includes(j) && j < i)) continue;
        if (budget.cells <= 0) break outer;
        budget.cells -= K * L;
        [order[i], order[j]] = [order[j]!, order[i]!];
        const sol = solveOrderSkipping(inst, order, objective, sc);
        if (sol && sol.stages.length > 1 && sol.value < value * (1 - 1e-12)) {
          value = sol.value;
          cur = sol;
          improved = true;
          if (value <= stopAt) break outer;
        } else [order[i], order[j]] = [order[j]!, order[i]!];
      }
    }
  }
  // Re-solve the ring exactly (the skipping DP prices a one-stage ring with a hop; this does not).
  return cur
    ? solveOrder(
        inst,
        cur.stages.map((x) => x.peer),
        objective,
        sc,
      )
    : null;
}

/**
 * A ring order whose peers, each taking as many units as fit, cover the model; by depth-first search
 * with at most `nodeLimit` nodes. Taking the longest prefix is never worse for feasibility (what is
 * left is a shorter suffix), and peers of equal memory are interchangeable, so each search node tries
 * one peer per distinct memory size.
 */
export function packingOrder(inst: Instance, cands: readonly number[], nodeLimit: number): number[] | null {
  const { L, memPrefix, memCap } = inst;
  const byMem = [...cands].sort((a, b) => memCap[b]! - memCap[a]! || a - b);
  const used = new Uint8Array(byMem.length);
  const seq: number[] = [];
  let left = 0;
  for (const p of byMem) left += memCap[p]!;
  let nodes = 0;
  const reach = (cap: number, s: number): number => {
    const limit = memPrefix[s]! + cap;
    let a = s;
    let b = L;
    while (a < b) {
      const m = (a + b + 1) >>> 1;
      if (memPrefix[m]! <= limit) a = m;
      else b = m - 1;
    }
    return a;
  };
  const dfs = (s: number): boolean => {
    if (s === L) return true;
    if (++nodes > nodeLimit || memPrefix[L]! - memPrefix[s]! > left) return false;
    let lastCap = -1;
    for (let i = 0; i < byMem.length; i++) {
      if (used[i]) continue;
      const p = byMem[i]!;
      const cap = memCap[p]!;
      if (cap === lastCap) continue;
      lastCap = cap;
      const e = reach(cap, s);
      if (e === s) break; // smaller peers cannot hold the next unit either
      used[i] = 1;
      left -= cap;
      seq.push(p);
      if (dfs(e)) return true;
      seq.pop();
      left += cap;
      used[i] = 0;
    }
    return false;
  };
  return dfs(0) ? seq : null;
}

/** A budget that keeps 1,000 peers × 200 units well inside 50 ms and small fleets thorough. */
function defaultBudget(inst: Instance, pool: number): number {
  return Math.max(100_000, Math.min(600_000, 20 * pool * inst.L));
}

function localSearch(
  inst: Instance,
  start: Found,
  poolByTau: readonly number[],
  poolByMem: readonly number[],
  objective: Objective,
  budget: { cells: number },
  sc: Scratch,
  stopAt: number,
): Found {
  const { L } = inst;
  let cur = start;
  for (;;) {
    if (cur.value <= stopAt) return cur;
    const seq = cur.stages.map((s) => s.peer);
    const k = seq.length;
    const inRing = new Set(seq);
    const unused: number[] = [];
    for (const p of poolByTau) {
      if (unused.length >= 6) break;
      if (!inRing.has(p)) unused.push(p);
    }
    let extra = 0;
    for (const p of poolByMem) {
      if (extra >= 2) break;
      if (!inRing.has(p) && !unused.includes(p)) {
        unused.push(p);
        extra++;
      }
    }
    const focus = focusPositions(inst, cur, objective);
    const candidates: number[][] = [];
    const allPositions = Array.from({ length: k }, (_, i) => i);
    const swapWith = k <= 24 ? allPositions : [...new Set([...focus, 0, k - 1])];
    for (const i of focus) {
      for (const u of unused) candidates.push(seq.map((p, x) => (x === i ? u : p)));
      if (k >= 2) candidates.push(seq.filter((_, x) => x !== i));
      for (const j of swapWith) {
        if (j === i) continue;
        const sw = [...seq];
        sw[i] = seq[j]!;
        sw[j] = seq[i]!;
        candidates.push(sw);
        if (inst.hasLinks) {
          const rel = seq.filter((_, x) => x !== i);
          rel.splice(j, 0, seq[i]!);
          candidates.push(rel);
        }
      }
    }
    const insertAt =
      objective === 'throughput' && k > 24
        ? [...new Set(focus.flatMap((i) => [i, i + 1]))]
        : [...allPositions, k];
    if (k < L) {
      for (const i of insertAt)
        for (const u of unused) candidates.push([...seq.slice(0, i), u, ...seq.slice(i)]);
    }
    let next: Found | null = null;
    for (const c of candidates) {
      if (budget.cells <= 0 || (next && next.value <= stopAt)) break;
      budget.cells -= c.length * L;
      const sol = solveOrder(inst, c, objective, sc);
      if (sol && sol.value < (next ? next.value : cur.value) * (1 - 1e-12)) next = sol;
    }
    if (!next) return cur;
    cur = next;
    if (budget.cells <= 0) return cur;
  }
}

/** Positions worth changing: the bottleneck and its neighbours (throughput), every stage (latency). */
function focusPositions(inst: Instance, f: Found, objective: Objective): number[] {
  const k = f.stages.length;
  if (objective === 'latency' || k <= 6) return Array.from({ length: k }, (_, i) => i);
  const e = evaluateStages(inst, f.stages);
  let b = 0;
  let worst = -1;
  e.stages.forEach((s, i) => {
    if (s.computeS + s.hopS > worst) {
      worst = s.computeS + s.hopS;
      b = i;
    }
  });
  return [...new Set([b, b - 1, b + 1, 0, k - 1].filter((i) => i >= 0 && i < k))];
}

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

/** mulberry32: a tiny seeded PRNG (restarts must be reproducible). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
