/**
 * Exact searches of Ringwork's planner, for up to `exhaustiveLimit` (8) eligible peers, exact under
 * the default cost model:
 * - without link data, a DP over subsets of peers (hops then do not depend on who is adjacent, so one
 *   row per subset suffices);
 * - with link data, a depth-first search over every ordered subset, one DP row per search node
 *   (shared by all extensions of a prefix), pruned by the incumbent, by bounds on what the rest of
 *   the model must still cost, and by memory.
 * Both stop early when a plan meets the lower bound (bounds.ts).
 */
import { minHop } from './bounds.js';
import { createScratch, fillHops, latencyRow, throughputRow } from './chain.js';
import type { Found, IndexedStage, Instance } from './cost.js';
import type { Objective } from './types.js';

const INF = Number.POSITIVE_INFINITY;

/** Default number of eligible peers searched exhaustively. */
export const EXHAUSTIVE_LIMIT = 8;

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
      const v = row[L]! + inst.hop(p, seq[0]!, out[L - 1]!);
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
    const closing = inst.hop(p, seq[0]!, out[L - 1]!);
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
    if (inst.memStart(p)[L] === 0) {
      // A one-peer ring has no hop; hop(p, p) is its stage overhead alone.
      const v = P[L]! + inst.hop(p, p, out[L - 1]!);
      if (!single || v < single.value) single = { value: v, stages: [{ peer: p, start: 0, end: L }] };
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
