/**
 * The planner's heuristic for fleets too large to enumerate (more than `exhaustiveLimit` eligible
 * peers). A pool of useful peers (the fastest ones, enough big-memory ones to fit the model), a few
 * orders solved by the skipping DP (exact over all sub-sequences of the order when there is no link
 * data), seeded restarts and swap search over pool orders, then local search on the ring (replace /
 * insert / remove / swap / relocate around the bottleneck) with the exact fixed-order DP, all under a
 * deterministic work budget. It stops early when a plan meets the lower bound (bounds.ts), which also
 * says how far from optimal its plan can be.
 */
import { createScratch, solveOrder, solveOrderSkipping, type Scratch } from './chain.js';
import { evaluateStages, type Found, type Instance } from './cost.js';
import { totalTimes } from './eligibility.js';
import type { Objective } from './types.js';
import { mulberry32Float } from '../util/prng.js';

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
    // Seeded: restarts must be reproducible.
    const rand = mulberry32Float(0x5eed);
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
      const cur = bestOrder;
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
  const bo = bestOrder;
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
        } else [order[i], order[j]] = [order[j]!, order[i]];
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
