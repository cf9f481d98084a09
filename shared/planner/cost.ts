/**
 * The default cost model of the ring planner, and the indexed "instance" every algorithm works on.
 *
 * - Time of layer l on peer p: `max(flops_l / (p.tflops·1e12), weightBytes_l / (p.bandwidthGBps·1e9))`
 *   seconds (roofline; decode is usually bandwidth-bound).
 * - Hop from p to q: `rttMs(p,q)/2` ms `+ outBytes / (mbps(p,q)·1e6/8)` s, where outBytes is the
 *   `outBytesPerToken` of the stage's last unit. Links are looked up as (p,q), then (q,p); without link
 *   data, 20 ms RTT and 100 Mbit/s. The ring closes: the last stage's output hops back to the first
 *   peer. A one-peer ring has no hop (nothing leaves the peer).
 * - A fixed per-stage overhead (`options.stageOverheadMs`, default 0: an ORT run's dispatch, framing,
 *   hand-offs — what a tiny model's token costs besides its FLOPs) is charged with each stage's
 *   outgoing hop: `hop(p, q)` includes it, and `hop(p, p)` — a one-peer ring's — is the overhead alone.
 * - Memory of p: Σ (weightBytes + kvBytesPerToken × contextTokens) over its units ≤ p.memoryBytes.
 * - `latency` = Σ stage times + Σ hops (one token, one stream); `throughput` = max over stages of
 *   (stage time + its outgoing hop), the pipeline's period. Both are seconds per token.
 */
import { RingworkError } from '../errors.js';
import type { ModelProfile } from '../model/profile.js';
import {
  parseOrThrow,
  planInputSchema,
  type CategoryThresholds,
  type DefaultLink,
  type Objective,
  type PeerCategory,
  type PeerProfileInput,
  type PlanInput,
  type PlanStage,
} from './types.js';

/** Link figures assumed where no link data is given. */
export const DEFAULT_LINK: Readonly<DefaultLink> = Object.freeze({ rttMs: 20, mbps: 100 });
/** Context length KV memory is reserved for when the input does not say. */
export const DEFAULT_CONTEXT_TOKENS = 2048;
/** Category thresholds: A above 20 TFLOPS, C below 5, B in between (both ends inclusive). */
export const DEFAULT_CATEGORY_THRESHOLDS: Readonly<CategoryThresholds> = Object.freeze({
  aAboveTflops: 20,
  cBelowTflops: 5,
});

/** A peer's category: the one it declares, else derived from its TFLOPS. */
export function categorize(
  peer: Pick<PeerProfileInput, 'tflops' | 'category'>,
  thresholds: CategoryThresholds = DEFAULT_CATEGORY_THRESHOLDS,
): PeerCategory {
  if (peer.category) return peer.category;
  if (peer.tflops > thresholds.aAboveTflops) return 'A';
  if (peer.tflops < thresholds.cBelowTflops) return 'C';
  return 'B';
}

/** Roofline time of one unit on one peer, seconds. */
export function layerSeconds(
  flops: number,
  weightBytes: number,
  peer: Pick<PeerProfileInput, 'tflops' | 'bandwidthGBps'>,
): number {
  return Math.max(flops / (peer.tflops * 1e12), weightBytes / (peer.bandwidthGBps * 1e9));
}

/** Seconds to hand `bytes` over a link: half the round trip plus serialisation. */
export function hopSeconds(link: DefaultLink, bytes: number): number {
  return link.rttMs / 2 / 1000 + bytes / ((link.mbps * 1e6) / 8);
}

/** A stage by peer index (into {@link Instance.peers}) and half-open unit range. */
export interface IndexedStage {
  peer: number;
  start: number;
  end: number;
}

/** Best plan found so far by index, with its DP value (what every search returns). */
export interface Found {
  value: number;
  stages: IndexedStage[];
}

/**
 * A validated planning problem with everything the algorithms need precomputed. Peers are sorted by
 * id so that the result does not depend on the order the caller listed them in.
 */
export interface Instance {
  readonly profile: ModelProfile;
  readonly objective: Objective;
  readonly L: number;
  readonly ctx: number;
  readonly peers: readonly PeerProfileInput[];
  readonly n: number;
  readonly index: ReadonlyMap<string, number>;
  readonly categories: readonly PeerCategory[];
  readonly memCap: Float64Array;
  /** weightBytes + kvBytesPerToken·ctx per unit. */
  readonly layerMem: Float64Array;
  /** Prefix sums of layerMem (length L+1). */
  readonly memPrefix: Float64Array;
  readonly out: Float64Array;
  readonly flops: Float64Array;
  readonly weights: Float64Array;
  /** tflops·1e12 per peer. */
  readonly flopRate: Float64Array;
  /** bandwidthGBps·1e9 per peer. */
  readonly byteRate: Float64Array;
  readonly hasLinks: boolean;
  readonly defaultLink: DefaultLink;
  /** Fixed seconds every stage adds per token (options.stageOverheadMs / 1000). */
  readonly stageOverheadS: number;
  readonly input: PlanInput;
  /** The link used from p to q (null when p === q: no hop). */
  link(p: number, q: number): DefaultLink | null;
  /** Seconds from the end of p's stage to the start of q's, carrying `bytes`, incl. the stage overhead. */
  hop(p: number, q: number, bytes: number): number;
  /** Roofline seconds of unit l on peer p. */
  layerTime(l: number, p: number): number;
  /** Prefix sums of layerTime over units for peer p (length L+1), cached. */
  timePrefix(p: number): Float64Array;
  /** ms[j] = the smallest s with memPrefix[j] − memPrefix[s] ≤ memCap[p] (length L+1), cached. */
  memStart(p: number): Int32Array;
}

/** Validates a planner input (throws `PLAN_BAD_INPUT`) and indexes it. */
export function createInstance(rawInput: PlanInput): Instance {
  const input = parseOrThrow(planInputSchema, rawInput, 'planner input') as PlanInput;
  const { profile } = input;
  const ctx = input.contextTokens ?? DEFAULT_CONTEXT_TOKENS;
  const defaultLink = input.options?.defaultLink ?? DEFAULT_LINK;
  const stageOverheadS = (input.options?.stageOverheadMs ?? 0) / 1000;
  const thresholds = input.options?.categoryThresholds ?? DEFAULT_CATEGORY_THRESHOLDS;
  // Canonical order: plans must not depend on how the caller happened to list the peers.
  const peers = [...input.peers].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const n = peers.length;
  const L = profile.layers.length;
  const index = new Map(peers.map((p, i) => [p.id, i]));
  const memCap = Float64Array.from(peers, (p) => p.memoryBytes);
  const layerMem = Float64Array.from(profile.layers, (l) => l.weightBytes + l.kvBytesPerToken * ctx);
  const memPrefix = new Float64Array(L + 1);
  for (let l = 0; l < L; l++) memPrefix[l + 1] = memPrefix[l]! + layerMem[l]!;
  const out = Float64Array.from(profile.layers, (l) => l.outBytesPerToken);
  const flops = Float64Array.from(profile.layers, (l) => l.flopsPerToken);
  const weights = Float64Array.from(profile.layers, (l) => l.weightBytes);
  // Same arithmetic as layerSeconds (x / (tflops·1e12)), so every caller gets identical times.
  const flopRate = Float64Array.from(peers, (p) => p.tflops * 1e12);
  const byteRate = Float64Array.from(peers, (p) => p.bandwidthGBps * 1e9);
  const links = new Map<number, DefaultLink>();
  for (const l of input.links ?? []) {
    links.set(index.get(l.from)! * n + index.get(l.to)!, { rttMs: l.rttMs, mbps: l.mbps });
  }
  const timeCache: (Float64Array | undefined)[] = new Array(n);
  const msCache: (Int32Array | undefined)[] = new Array(n);

  const link = (p: number, q: number): DefaultLink | null =>
    p === q ? null : (links.get(p * n + q) ?? links.get(q * n + p) ?? defaultLink);
  const layerTime = (l: number, p: number): number =>
    Math.max(flops[l]! / flopRate[p]!, weights[l]! / byteRate[p]!);

  return {
    profile,
    objective: input.objective,
    L,
    ctx,
    peers,
    n,
    index,
    categories: peers.map((p) => categorize(p, thresholds)),
    memCap,
    layerMem,
    memPrefix,
    out,
    flops,
    weights,
    flopRate,
    byteRate,
    hasLinks: links.size > 0,
    defaultLink,
    stageOverheadS,
    input,
    link,
    hop(p, q, bytes) {
      const k = link(p, q);
      return stageOverheadS + (k === null ? 0 : hopSeconds(k, bytes));
    },
    layerTime,
    timePrefix(p) {
      let t = timeCache[p];
      if (!t) {
        t = new Float64Array(L + 1);
        for (let l = 0; l < L; l++) t[l + 1] = t[l]! + layerTime(l, p);
        timeCache[p] = t;
      }
      return t;
    },
    memStart(p) {
      let m = msCache[p];
      if (!m) {
        m = new Int32Array(L + 1);
        const cap = memCap[p]!;
        let s = 0;
        for (let j = 0; j <= L; j++) {
          while (memPrefix[j]! - memPrefix[s]! > cap) s++;
          m[j] = s;
        }
        msCache[p] = m;
      }
      return m;
    },
  };
}

/** Predictions for a concrete ring, straight from the cost model's definitions. */
export interface StageEvaluation {
  stages: PlanStage[];
  latencyS: number;
  throughputS: number;
  memoryOk: boolean;
  /** Stages whose memory exceeds their peer's, with the excess. */
  overflows: { peer: string; overBytes: number }[];
}

/** Evaluates indexed stages (assumed contiguous and covering) under the default cost model. */
export function evaluateStages(inst: Instance, stages: readonly IndexedStage[]): StageEvaluation {
  const k = stages.length;
  const out: PlanStage[] = [];
  const overflows: { peer: string; overBytes: number }[] = [];
  let latency = 0;
  let period = 0;
  for (let i = 0; i < k; i++) {
    const st = stages[i]!;
    const next = stages[(i + 1) % k]!;
    let compute = 0;
    let mem = 0;
    for (let l = st.start; l < st.end; l++) {
      compute += inst.layerTime(l, st.peer);
      mem += inst.layerMem[l]!;
    }
    const hop = inst.hop(st.peer, next.peer, inst.out[st.end - 1]!);
    latency += compute + hop;
    period = Math.max(period, compute + hop);
    const peer = inst.peers[st.peer]!;
    if (mem > peer.memoryBytes) overflows.push({ peer: peer.id, overBytes: mem - peer.memoryBytes });
    out.push({ peer: peer.id, layers: [st.start, st.end], computeS: compute, hopS: hop, memoryBytes: mem });
  }
  return { stages: out, latencyS: latency, throughputS: period, memoryOk: overflows.length === 0, overflows };
}

/** The objective's value for an evaluation. */
export function objectiveValue(
  e: Pick<StageEvaluation, 'latencyS' | 'throughputS'>,
  objective: Objective,
): number {
  return objective === 'latency' ? e.latencyS : e.throughputS;
}

/** Result of {@link evaluatePlan}. */
export interface PlanEvaluation extends StageEvaluation {
  objective: { kind: Objective; value: number };
}

/**
 * Evaluates a ring (ordered peers with half-open unit ranges) under the default cost model: per-stage
 * compute, hop and memory, latency, throughput period and the input's objective. Throws
 * `PLAN_BAD_INPUT` when the ring does not cover the model's units exactly once, in order, with
 * distinct known peers. Memory overflows are reported, not thrown (baselines may exceed memory).
 */
export function evaluatePlan(
  input: PlanInput,
  ring: readonly { peer: string; layers: readonly [number, number] }[],
): PlanEvaluation {
  const inst = createInstance(input);
  const stages = indexRing(inst, ring);
  const e = evaluateStages(inst, stages);
  return { ...e, objective: { kind: inst.objective, value: objectiveValue(e, inst.objective) } };
}

/** Maps a ring by peer id onto instance indices, checking it is a contiguous cover. */
export function indexRing(
  inst: Instance,
  ring: readonly { peer: string; layers: readonly [number, number] }[],
): IndexedStage[] {
  const bad = (msg: string): RingworkError =>
    new RingworkError('PLAN_BAD_INPUT', `Invalid ring: ${msg}`, { details: { units: inst.L } });
  if (ring.length === 0) throw bad('it has no stages.');
  const seen = new Set<string>();
  let expect = 0;
  const stages: IndexedStage[] = [];
  for (const st of ring) {
    const p = inst.index.get(st.peer);
    if (p === undefined) throw bad(`peer "${st.peer}" is not in the fleet.`);
    if (seen.has(st.peer)) throw bad(`peer "${st.peer}" appears twice.`);
    seen.add(st.peer);
    const [a, b] = st.layers;
    if (a !== expect || !Number.isInteger(b) || b <= a || b > inst.L) {
      throw bad(
        `stage of "${st.peer}" covers [${a}, ${b}) but must start at ${expect} and end after it, at most at ${inst.L}.`,
      );
    }
    stages.push({ peer: p, start: a, end: b });
    expect = b;
  }
  if (expect !== inst.L) throw bad(`it covers units [0, ${expect}) of ${inst.L}.`);
  return stages;
}
