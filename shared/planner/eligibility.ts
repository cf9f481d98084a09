/**
 * Who may join a ring (the category policy), the speed ranking, and the infeasibility error.
 */
import { RingworkError } from '../errors.js';
import type { Instance } from './cost.js';

const INF = Number.POSITIVE_INFINITY;

/** Human-readable bytes (decimal units, as memory is usually advertised). */
export function fmtBytes(b: number): string {
  if (b >= 1e9) return `${(b / 1e9).toFixed(2)} GB`;
  if (b >= 1e6) return `${(b / 1e6).toFixed(2)} MB`;
  if (b >= 1e3) return `${(b / 1e3).toFixed(2)} kB`;
  return `${Math.round(b)} B`;
}

/** Peers the planner may use, and the others with the reason they are left out. */
export interface Eligibility {
  cands: number[];
  excluded: Map<number, string>;
}

/**
 * The eligibility policy. Category C peers never take a shard of a model they cannot hold whole: a
 * slow peer with little memory would be the ring's bottleneck, so it is kept for lightweight models it
 * can run on its own. If the whole model (weights + KV at the context) fits on a C peer, the model is
 * lightweight for it and the peer is an ordinary candidate. Any peer that cannot hold even the
 * smallest unit can never take a stage and is left out too.
 */
export function eligibility(inst: Instance): Eligibility {
  const total = inst.memPrefix[inst.L]!;
  let smallest = INF;
  for (const m of inst.layerMem) smallest = Math.min(smallest, m);
  const cands: number[] = [];
  const excluded = new Map<number, string>();
  for (let p = 0; p < inst.n; p++) {
    const cap = inst.memCap[p]!;
    if (inst.categories[p] === 'C' && cap < total) {
      excluded.set(
        p,
        `category C: available for lightweight whole models (this one needs ${fmtBytes(total)}, the peer offers ${fmtBytes(cap)})`,
      );
    } else if (cap < smallest) {
      excluded.set(
        p,
        `cannot hold any single unit (the smallest needs ${fmtBytes(smallest)} at ${inst.ctx} tokens, the peer offers ${fmtBytes(cap)})`,
      );
    } else cands.push(p);
  }
  return { cands, excluded };
}

// Per-instance memo: the planner, the lower bound and re-planning all rank the same peers.
const tauCache = new WeakMap<Instance, { tau: Float64Array; done: Uint8Array }>();

/** Total roofline time of the whole model on each peer (a speed ranking; also the one-peer plan). */
export function totalTimes(inst: Instance, cands: readonly number[]): Float64Array {
  const cached = tauCache.get(inst);
  if (cached && cands.every((p) => cached.done[p])) return cached.tau;
  const entry = cached ?? { tau: new Float64Array(inst.n), done: new Uint8Array(inst.n) };
  tauCache.set(inst, entry);
  const { tau, done } = entry;
  const { L, flops, weights, flopRate, byteRate } = inst;
  // Summed in unit order exactly like timePrefix, so tau[p] === timePrefix(p)[L], without caching a
  // prefix array for every peer of a large fleet.
  for (const p of cands) {
    if (done[p]) continue;
    done[p] = 1;
    const fr = flopRate[p]!;
    const br = byteRate[p]!;
    let t = 0;
    for (let l = 0; l < L; l++) t += Math.max(flops[l]! / fr, weights[l]! / br);
    tau[p] = t;
  }
  return tau;
}

/** The typed infeasibility error: how much memory is missing, and what would make the model fit. */
export function infeasibleError(inst: Instance, elig: Eligibility): RingworkError {
  const { L, memPrefix, layerMem } = inst;
  const required = memPrefix[L]!;
  let available = 0;
  let largestPeer = 0;
  for (const p of elig.cands) {
    available += inst.memCap[p]!;
    largestPeer = Math.max(largestPeer, inst.memCap[p]!);
  }
  let largestLayer = 0;
  let largestName = '';
  layerMem.forEach((m, l) => {
    if (m > largestLayer) {
      largestLayer = m;
      largestName = inst.profile.layers[l]!.name;
    }
  });
  // Greedy contiguous packing, biggest peers first: what it leaves over is a suffix one more peer of
  // that size would take, so the figure is sufficient (the deficits below are necessary).
  const byMem = [...elig.cands].sort((a, b) => inst.memCap[b]! - inst.memCap[a]! || a - b);
  let s = 0;
  for (const p of byMem) {
    let e = s;
    while (e < L && memPrefix[e + 1]! - memPrefix[s]! <= inst.memCap[p]!) e++;
    if (e === s) break;
    s = e;
    if (s === L) break;
  }
  const extraPeer = required - memPrefix[s]!;
  const missing = Math.max(required - available, largestLayer - largestPeer, 0);
  const excludedC = [...elig.excluded.values()].filter((r) => r.startsWith('category C')).length;
  const parts = [
    `The model "${inst.profile.name}" needs ${fmtBytes(required)} (weights + KV cache for ${inst.ctx} tokens) but the ${elig.cands.length} eligible peer${elig.cands.length === 1 ? '' : 's'} offer ${fmtBytes(available)}:`,
    missing > 0
      ? `${fmtBytes(missing)} of memory is missing.`
      : `the total would suffice but the units cannot be packed contiguously onto distinct peers.`,
  ];
  if (largestLayer > largestPeer) {
    parts.push(
      `Its largest unit ("${largestName}") needs ${fmtBytes(largestLayer)}, more than any eligible peer offers.`,
    );
  }
  if (extraPeer > 0) parts.push(`One more peer with ${fmtBytes(extraPeer)} would make it fit.`);
  if (excludedC > 0)
    parts.push(`${excludedC} category C peer(s) were left out: they only run models they can hold whole.`);
  return new RingworkError('PLAN_INFEASIBLE', parts.join(' '), {
    details: {
      model: inst.profile.name,
      contextTokens: inst.ctx,
      requiredBytes: required,
      availableBytes: available,
      missingBytes: missing > 0 ? missing : extraPeer,
      extraPeerBytes: extraPeer,
      largestUnitBytes: largestLayer,
      largestPeerBytes: largestPeer,
      eligiblePeers: elig.cands.length,
      excludedPeers: elig.excluded.size,
    },
  });
}
