/**
 * The baseline: exo's ring memory-weighted partitioning, reproduced as exo does it
 * (`RingMemoryWeightedPartitioningStrategy` + `map_partitions_to_shards`):
 *
 * - peers sorted by (memory, id) descending (Python's `sort(key=(memory, id), reverse=True)`);
 * - each gets the fraction [start, start + memory/total), the end rounded to 5 decimals with Python's
 *   `round` (half to even on the exact binary value), the next start = that end;
 * - units `int(start·L)` … `int(end·L) − 1`; the last range stretched to L − 1; empty ranges dropped
 *   (and, as exo does, the last kept range stretched again if a dropped one was last);
 * - ring order = that sort order.
 *
 * exo ignores compute speed, links and whether a share actually fits; the plan is evaluated under the
 * same cost model as Ringwork's and `memoryOk` says whether it fits.
 */
import { RingworkError } from '../errors.js';
import { createInstance, type IndexedStage } from './cost.js';
import { eligibility } from './eligibility.js';
import { buildPlan } from './search.js';
import type { ExcludedPeer, Plan, PlanInput } from './types.js';

/** Options of {@link planExo}. */
export interface ExoOptions {
  /**
   * Apply Ringwork's eligibility policy first (category C peers out unless the model fits whole).
   * exo itself uses every peer; this isolates the split from the peer selection in comparisons.
   */
  eligibleOnly?: boolean;
}

/** Python's `round(x, 5)` for x ≥ 0: round half to even on the exact value of the double. */
export function pyRound5(x: number): number {
  if (!Number.isFinite(x)) return x;
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const expBits = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let exp: number;
  if (expBits === 0) exp = -1074;
  else {
    mant |= 1n << 52n;
    exp = expBits - 1075;
  }
  // |x|·10^5 = mant · 2^exp · 10^5 as an exact fraction num / den.
  let num = mant * 100000n;
  let den = 1n;
  if (exp >= 0) num <<= BigInt(exp);
  else den <<= BigInt(-exp);
  let q = num / den;
  const r2 = (num % den) * 2n;
  if (r2 > den || (r2 === den && q % 2n === 1n)) q += 1n;
  const v = Number(`${q}e-5`);
  return x < 0 ? -v : v;
}

/** exo's partition of `input`'s model over its peers (see the module comment). */
export function planExo(input: PlanInput, opts: ExoOptions = {}): Plan {
  const inst = createInstance(input);
  const elig = eligibility(inst);
  const pool = opts.eligibleOnly ? elig.cands : Array.from({ length: inst.n }, (_, i) => i);
  if (pool.length === 0) {
    throw new RingworkError('PLAN_INFEASIBLE', 'exo baseline: no eligible peers.', {
      details: { peers: inst.n },
    });
  }
  const nodes = [...pool].sort((a, b) => {
    const ma = inst.memCap[a]!;
    const mb = inst.memCap[b]!;
    if (ma !== mb) return mb - ma;
    const ia = inst.peers[a]!.id;
    const ib = inst.peers[b]!.id;
    return ia < ib ? 1 : ia > ib ? -1 : 0;
  });
  const totalMemory = nodes.reduce((acc, p) => acc + inst.memCap[p]!, 0);
  if (!(totalMemory > 0)) {
    throw new RingworkError(
      'PLAN_INFEASIBLE',
      'exo baseline: the peers offer no memory to weight the split by.',
      {
        details: { peers: nodes.length },
      },
    );
  }
  const L = inst.L;
  const shards: IndexedStage[] = [];
  let start = 0;
  nodes.forEach((p, i) => {
    const end = pyRound5(start + inst.memCap[p]! / totalMemory);
    const first = Math.trunc(start * L);
    let last = Math.trunc(end * L) - 1;
    if (i === nodes.length - 1) last = L - 1;
    if (first <= last) shards.push({ peer: p, start: first, end: last + 1 });
    start = end;
  });
  const tail = shards[shards.length - 1];
  if (!tail)
    throw new RingworkError('PLAN_INFEASIBLE', 'exo baseline: every range came out empty.', { details: {} });
  if (tail.end < L) tail.end = L;
  const inRing = new Set(shards.map((s) => s.peer));
  const excluded: ExcludedPeer[] = [];
  for (let p = 0; p < inst.n; p++) {
    if (inRing.has(p)) continue;
    const policy = opts.eligibleOnly ? elig.excluded.get(p) : undefined;
    excluded.push({
      peer: inst.peers[p]!.id,
      reason: policy ?? 'exo: its memory share rounds to an empty layer range',
    });
  }
  return buildPlan(inst, shards, { algorithm: 'exo', optimal: false, lowerBound: 0, excluded });
}
