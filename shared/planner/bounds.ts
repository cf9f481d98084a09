/**
 * Lower bounds on the optimum of each objective, from relaxations of the planning problem. They are
 * what makes the heuristic's gap known: objective ÷ lower bound ≥ objective ÷ optimum.
 *
 * Every multi-peer ring pays at least one hop per stage, and its closing hop carries the last unit's
 * output; a one-peer ring pays no hop at all, so each bound is min(best one-peer plan, multi-peer
 * relaxation).
 *
 * - throughput (period): max of (a) the slowest unit on its fastest peer plus the cheapest hop, (b) the
 *   last unit on its fastest peer plus the cheapest closing hop, (c) work: every used peer computes at
 *   most (period − cheapest hop) per token, so all FLOPs and all weight bytes must stream within the
 *   fleet's combined rate, a peer streaming no more weight bytes than it holds.
 * - latency: unit times relax to (a) each unit on its fastest peer, or (b) weight bytes poured into
 *   the highest-bandwidth peers up to their memory (fractional knapsack); plus the hops of the fewest
 *   peers whose memory can hold the model; or (c) a knapsack in which every byte placed on a peer also
 *   pays its share of that peer's hop (small-memory peers cost more hops per byte).
 */
import { hopSeconds, createInstance, type Instance } from './cost.js';
import { eligibility, totalTimes } from './eligibility.js';
import type { Objective, PlanInput } from './types.js';

const INF = Number.POSITIVE_INFINITY;

/** Lower bounds of both objectives, seconds per token (Infinity when no plan can fit memory). */
export interface LowerBounds {
  latency: number;
  throughput: number;
}

/**
 * Lower bounds on the optimal latency and throughput period of `input`, over the peers the planner
 * may use (category C peers excluded as in {@link planRingwork}).
 */
export function lowerBound(input: PlanInput): LowerBounds {
  const inst = createInstance(input);
  const { cands } = eligibility(inst);
  return {
    latency: lowerBoundFor(inst, cands, 'latency'),
    throughput: lowerBoundFor(inst, cands, 'throughput'),
  };
}

/** The cheapest hop any two distinct candidates can have carrying `bytes`. */
export function minHop(inst: Instance, cands: readonly number[], bytes: number): number {
  if (!inst.hasLinks) return hopSeconds(inst.defaultLink, bytes);
  const isCand = new Uint8Array(inst.n);
  for (const p of cands) isCand[p] = 1;
  let best = INF;
  const pairs = new Set<number>();
  for (const l of inst.input.links ?? []) {
    const a = inst.index.get(l.from)!;
    const b = inst.index.get(l.to)!;
    if (!isCand[a] || !isCand[b]) continue;
    pairs.add(Math.min(a, b) * inst.n + Math.max(a, b));
    best = Math.min(best, hopSeconds(l, bytes));
  }
  const c = cands.length;
  // Some pair without link data in either direction uses the default link.
  if (pairs.size < (c * (c - 1)) / 2) best = Math.min(best, hopSeconds(inst.defaultLink, bytes));
  return best;
}

/** Lower bound of `objective` over plans that use only `cands`. */
export function lowerBoundFor(inst: Instance, cands: readonly number[], objective: Objective): number {
  const { L, memPrefix, memCap, out } = inst;
  const total = memPrefix[L]!;
  const tau = totalTimes(inst, cands);
  let single = INF;
  for (const p of cands) if (memCap[p]! >= total) single = Math.min(single, tau[p]!);
  if (cands.length < 2 || L < 2) return single;

  // A peer at least as fast in both FLOPs and bandwidth is at least as fast on every unit, so the
  // fastest time per unit is found among the Pareto front of (flop rate, byte rate).
  const minLayer = new Float64Array(L).fill(INF);
  const front = [...cands].sort(
    (a, b) => inst.flopRate[b]! - inst.flopRate[a]! || inst.byteRate[b]! - inst.byteRate[a]!,
  );
  let bestBw = -1;
  for (const p of front) {
    if (inst.byteRate[p]! <= bestBw) continue;
    bestBw = inst.byteRate[p]!;
    for (let l = 0; l < L; l++) minLayer[l] = Math.min(minLayer[l]!, inst.layerTime(l, p));
  }
  let minOut = INF;
  for (let l = 0; l < L - 1; l++) minOut = Math.min(minOut, out[l]!);
  // Internal hops carry some unit's output other than the last one; the closing hop carries the last.
  const h0 = minHop(inst, cands, minOut);
  const hL = minHop(inst, cands, out[L - 1]!);
  // Any stage's outgoing hop, closing or not.
  const hAny = Math.min(h0, hL);
  const weights = inst.profile.layers.reduce((a, l) => a + l.weightBytes, 0);
  let capMem = 0;
  for (const p of cands) capMem += memCap[p]!;
  if (capMem < total) return single;

  if (objective === 'throughput') {
    let b1 = 0;
    for (let l = 0; l < L; l++) b1 = Math.max(b1, minLayer[l]!);
    const flops = inst.profile.layers.reduce((a, l) => a + l.flopsPerToken, 0);
    let rate = 0;
    for (const p of cands) rate += inst.peers[p]!.tflops * 1e12;
    const multi = Math.max(
      b1 + hAny,
      minLayer[L - 1]! + hL,
      hAny + flops / rate,
      hAny + streamTime(inst, cands, weights),
    );
    return Math.min(single, multi);
  }

  let perUnit = 0;
  for (let l = 0; l < L; l++) perUnit += minLayer[l]!;
  // Fractional knapsack: weight bytes go to the highest-bandwidth peers first, up to their memory.
  const byBw = [...cands].sort(
    (a, b) => inst.peers[b]!.bandwidthGBps - inst.peers[a]!.bandwidthGBps || a - b,
  );
  let rem = weights;
  let knap = 0;
  for (const p of byBw) {
    if (rem <= 0) break;
    const take = Math.min(rem, memCap[p]!);
    knap += take / (inst.peers[p]!.bandwidthGBps * 1e9);
    rem -= take;
  }
  // Fewest peers whose memory can hold the model: at least that many stages, hence hops.
  const byMem = [...cands].sort((a, b) => memCap[b]! - memCap[a]!);
  let kMin = 0;
  let acc = 0;
  for (const p of byMem) {
    kMin++;
    acc += memCap[p]!;
    if (acc >= total) break;
  }
  kMin = Math.max(2, kMin);
  // Hops priced into the knapsack: a ring of k peers pays (k − 1) internal hops, and k ≥ Σ_p b_p/M_p
  // for the weight bytes b_p each peer holds, so each byte on p also costs h0/M_p (minus one hop).
  const items = cands
    .map((p) => ({ cost: 1 / (inst.peers[p]!.bandwidthGBps * 1e9) + h0 / memCap[p]!, cap: memCap[p]! }))
    .sort((a, b) => a.cost - b.cost);
  let rest = weights;
  let priced = 0;
  for (const it of items) {
    if (rest <= 0) break;
    const take = Math.min(rest, it.cap);
    priced += take * it.cost;
    rest -= take;
  }
  const multi = Math.max(Math.max(perUnit, knap) + (kMin - 1) * h0, priced - h0) + hL;
  return Math.min(single, multi);
}

/**
 * Smallest x with Σ_p min(bandwidth_p · x, memory_p) ≥ bytes: the time the fleet needs to stream the
 * model's weights once per token when no peer streams more than it holds.
 */
function streamTime(inst: Instance, cands: readonly number[], bytes: number): number {
  const items = cands
    .map((p) => ({ bw: inst.peers[p]!.bandwidthGBps * 1e9, mem: inst.memCap[p]! }))
    .sort((a, b) => a.mem / a.bw - b.mem / b.bw);
  let rate = items.reduce((a, it) => a + it.bw, 0);
  let saturated = 0;
  for (const it of items) {
    const x = it.mem / it.bw;
    // g(x) = saturated + rate·x on this piece.
    if (saturated + rate * x >= bytes) return (bytes - saturated) / rate;
    saturated += it.mem;
    rate -= it.bw;
  }
  return INF;
}
