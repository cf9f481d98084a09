/**
 * Chains-on-chains: the exact optimum of either objective for a fixed ring order, by dynamic
 * programming over contiguous unit ranges. Rows are indexed by "units covered so far" j ∈ [0, L].
 *
 * Both recurrences read a window of start positions s ∈ [ms(j), j−1], where ms(j) is the first start
 * whose range still fits the peer's memory. ms is non-decreasing in j (memory prefix sums are
 * monotone), so the windows slide and each row costs O(L) (latency, sliding-window minimum) or
 * O(L log L) (throughput, a monotone deque searched by bisection).
 */
import type { IndexedStage, Instance } from './cost.js';
import type { Objective } from './types.js';

const INF = Number.POSITIVE_INFINITY;

/** Buffers reused across solves so that the hot loops do not allocate (large fleets solve often). */
export interface Scratch {
  L: number;
  deque: Int32Array;
  hop: Float64Array;
  /** The link `hop` currently holds (hops are link-only functions of bytes: refill only on change). */
  hopLink: object | null | undefined;
  rows: Float64Array[];
  args: Int32Array[];
}

/** Scratch for an instance with L units. */
export function createScratch(L: number): Scratch {
  return {
    L,
    deque: new Int32Array(L + 1),
    hop: new Float64Array(L + 1),
    hopLink: undefined,
    rows: [],
    args: [],
  };
}

function rowOf(sc: Scratch, i: number): Float64Array {
  while (sc.rows.length <= i) sc.rows.push(new Float64Array(sc.L + 1));
  return sc.rows[i]!;
}

function argOf(sc: Scratch, i: number): Int32Array {
  while (sc.args.length <= i) sc.args.push(new Int32Array(sc.L + 1));
  return sc.args[i]!;
}

function resetBase(r: Float64Array): Float64Array {
  r.fill(INF);
  r[0] = 0;
  return r;
}

/**
 * Latency row: E[j] = P[j] + min over s ∈ [ms[j], j−1] of (A[s] + hin[s] − P[s]) for j ≤ jMax, where
 * A is the previous row (cost of [0, s) without the hop into this stage), hin[s] the hop into this
 * stage when it starts at s, P the peer's time prefix sums. `arg[j]` gets the chosen s (or −1).
 */
export function latencyRow(
  A: Float64Array,
  hin: Float64Array,
  P: Float64Array,
  ms: Int32Array,
  jMax: number,
  E: Float64Array,
  arg: Int32Array,
  dq: Int32Array,
): void {
  E[0] = INF;
  arg[0] = -1;
  let head = 0;
  let tail = 0;
  for (let j = 1; j <= jMax; j++) {
    const s = j - 1;
    const as = A[s]!;
    if (as < INF) {
      const v = as + hin[s]! - P[s]!;
      while (tail > head) {
        const b = dq[tail - 1]!;
        if (A[b]! + hin[b]! - P[b]! >= v) tail--;
        else break;
      }
      dq[tail++] = s;
    }
    const lo = ms[j]!;
    while (head < tail && dq[head]! < lo) head++;
    if (head < tail) {
      const b = dq[head]!;
      E[j] = A[b]! + hin[b]! - P[b]! + P[j]!;
      arg[j] = b;
    } else {
      E[j] = INF;
      arg[j] = -1;
    }
  }
  for (let j = jMax + 1; j < E.length; j++) {
    E[j] = INF;
    arg[j] = -1;
  }
}

/**
 * Throughput row: E[j] = min over s ∈ [ms[j], j−1] of max(A[s], P[j] − P[s] + hout[j]) for j ≤ jMax,
 * where A is the previous row (the worst stage so far, hops included) and hout[j] the hop out of this
 * stage when it ends at j. A start s is dominated by a later s' with A[s'] ≤ A[s] (the later start
 * also leaves less work), so the live starts form a deque with A increasing and P[j] − P[s]
 * decreasing; the min of the max sits at their crossing, found by bisection.
 */
export function throughputRow(
  A: Float64Array,
  hout: Float64Array,
  P: Float64Array,
  ms: Int32Array,
  jMax: number,
  E: Float64Array,
  arg: Int32Array,
  dq: Int32Array,
): void {
  E[0] = INF;
  arg[0] = -1;
  let head = 0;
  let tail = 0;
  for (let j = 1; j <= jMax; j++) {
    const s = j - 1;
    const as = A[s]!;
    if (as < INF) {
      while (tail > head && A[dq[tail - 1]!]! >= as) tail--;
      dq[tail++] = s;
    }
    const lo = ms[j]!;
    while (head < tail && dq[head]! < lo) head++;
    if (head === tail) {
      E[j] = INF;
      arg[j] = -1;
      continue;
    }
    const c = P[j]! + hout[j]!;
    // First deque position where A[s] ≥ c − P[s].
    let a = head;
    let b = tail;
    while (a < b) {
      const m = (a + b) >>> 1;
      const sm = dq[m]!;
      if (A[sm]! >= c - P[sm]!) b = m;
      else a = m + 1;
    }
    let best = INF;
    let bestS = -1;
    if (a < tail) {
      best = A[dq[a]!]!;
      bestS = dq[a]!;
    }
    if (a > head) {
      const sp = dq[a - 1]!;
      const v = c - P[sp]!;
      if (v < best || (v === best && sp > bestS)) {
        best = v;
        bestS = sp;
      }
    }
    E[j] = best;
    arg[j] = bestS;
  }
  for (let j = jMax + 1; j < E.length; j++) {
    E[j] = INF;
    arg[j] = -1;
  }
}

/** A plan for a ring order with its DP value (ulp-close to the cost model's evaluation). */
export interface ChainSolution {
  value: number;
  stages: IndexedStage[];
}

/** Fills `sc.hop[x]` with the hop from p to q carrying out[x−1] for x ∈ [1, L]; hop[0] = 0. */
export function fillHops(inst: Instance, p: number, q: number, sc: Scratch): void {
  const link = inst.link(p, q);
  if (sc.hopLink === link) return;
  sc.hopLink = link;
  const h = sc.hop;
  h[0] = 0;
  const { out, L } = inst;
  if (link === null) {
    h.fill(0, 1, L + 1);
    return;
  }
  const a = link.rttMs / 2 / 1000;
  const rate = (link.mbps * 1e6) / 8;
  for (let x = 1; x <= L; x++) h[x] = a + out[x - 1]! / rate;
}

/** Row 0: nothing covered, cost 0. */
export function baseRow(L: number): Float64Array {
  const r = new Float64Array(L + 1).fill(INF);
  r[0] = 0;
  return r;
}

/**
 * Exact optimum for a fixed ring order in which every peer gets at least one unit, or null when no
 * such split fits memory. Hops follow the order and close back to its first peer.
 */
export function solveOrder(
  inst: Instance,
  order: readonly number[],
  objective: Objective,
  sc: Scratch = createScratch(inst.L),
): ChainSolution | null {
  const { L } = inst;
  const k = order.length;
  if (k === 0 || k > L) return null;
  resetBase(rowOf(sc, 0));
  const h = sc.hop;
  for (let i = 0; i < k; i++) {
    const q = order[i]!;
    const A = rowOf(sc, i);
    const E = rowOf(sc, i + 1);
    const arg = argOf(sc, i);
    // Stage i must leave at least one unit to each later stage.
    const jMax = L - (k - 1 - i);
    if (objective === 'latency') {
      if (i === 0) {
        h.fill(0);
        sc.hopLink = undefined;
      } else fillHops(inst, order[i - 1]!, q, sc);
      latencyRow(A, h, inst.timePrefix(q), inst.memStart(q), jMax, E, arg, sc.deque);
    } else {
      fillHops(inst, q, order[(i + 1) % k]!, sc);
      throughputRow(A, h, inst.timePrefix(q), inst.memStart(q), jMax, E, arg, sc.deque);
    }
  }
  let value = rowOf(sc, k)[L]!;
  if (!(value < INF)) return null;
  if (objective === 'latency') value += inst.hop(order[k - 1]!, order[0]!, inst.out[L - 1]!);
  const stages: IndexedStage[] = new Array<IndexedStage>(k);
  let j = L;
  for (let i = k - 1; i >= 0; i--) {
    const st = sc.args[i]![j]!;
    stages[i] = { peer: order[i]!, start: st, end: j };
    j = st;
  }
  return { value, stages };
}

/**
 * Optimum over the sub-sequences of `order` (any peer may be skipped). Exact for the order when hops
 * do not depend on which peers they join (no link data); with link data each stage's hop is priced
 * towards the next peer of `order`, an estimate the caller re-solves exactly with {@link solveOrder}.
 * A ring of one peer is priced with a closing hop here; callers treat single peers separately.
 */
export function solveOrderSkipping(
  inst: Instance,
  order: readonly number[],
  objective: Objective,
  sc: Scratch = createScratch(inst.L),
): ChainSolution | null {
  const { L } = inst;
  const k = order.length;
  if (k === 0) return null;
  let prev = resetBase(rowOf(sc, 0));
  let next = rowOf(sc, 1);
  const E = rowOf(sc, 2);
  const h = sc.hop;
  // Without link data hops depend on bytes only, so pricing them towards a neighbour in \`order\` is
  // exact whichever peers end up skipped.
  for (let i = 0; i < k; i++) {
    const q = order[i]!;
    const arg = argOf(sc, i);
    if (objective === 'latency') {
      fillHops(inst, i === 0 ? order[k > 1 ? 1 : 0]! : order[i - 1]!, q, sc);
      latencyRow(prev, h, inst.timePrefix(q), inst.memStart(q), L, E, arg, sc.deque);
    } else {
      fillHops(inst, q, order[(i + 1) % k]!, sc);
      throughputRow(prev, h, inst.timePrefix(q), inst.memStart(q), L, E, arg, sc.deque);
    }
    for (let j = 0; j <= L; j++) {
      if (E[j]! < prev[j]!) next[j] = E[j]!;
      else {
        next[j] = prev[j]!;
        arg[j] = -2; // skipped
      }
    }
    const t = prev;
    prev = next;
    next = t;
  }
  let value = prev[L]!;
  if (!(value < INF)) return null;
  const stages: IndexedStage[] = [];
  let j = L;
  for (let i = k - 1; i >= 0 && j > 0; i--) {
    const s = sc.args[i]![j]!;
    if (s === -2) continue;
    stages.push({ peer: order[i]!, start: s, end: j });
    j = s;
  }
  stages.reverse();
  if (objective === 'latency') {
    const last = stages[stages.length - 1]!.peer;
    const first = stages[0]!.peer;
    value += inst.hop(last, first, inst.out[L - 1]!);
  }
  return { value, stages };
}
