/**
 * The coordinator's planning step as pure functions: contributors and the previous rings in, rings,
 * the reasons peers were left out and every contributor's assignment out. No clock, no sending, no
 * logging: the coordinator applies the result and the assignment diff (assignment-diff.ts) decides
 * what to send, so the planning can be tested (and reasoned about) without a transport.
 */
import { isRingworkError } from '../../shared/errors.js';
import {
  planRingwork,
  replan,
  type LinkInput,
  type Objective,
  type PeerProfileInput,
  type Plan,
  type PlannerOptions,
} from '../../shared/planner/index.js';
import type { PeerCapability } from '../../shared/protocol/signaling.js';
import type { CatalogModel } from './catalog.js';
import type { NoRing, PeerAssignment, Ring, RingStage } from './coordinator-types.js';
import { isCategoryC, planReplicas, replicasChanged, stampReplicas } from './lightweight-replicas.js';

/** One catalog model as the planning step sees it. */
export interface PlanningModel {
  readonly model: CatalogModel;
  /** The last plan that produced a ring (replan's stability anchor; kept through infeasible spells). */
  readonly lastPlan: Plan | null;
  /** The ring currently formed for the model, if any. */
  readonly ring: Ring | null;
  /** Its whole-model replicas on category C peers (lightweight models; see lightweight-replicas.ts). */
  readonly replicas?: readonly Ring[] | undefined;
}

/** A contributor that may be planned: online, with a capability. */
export interface PlanningPeer {
  readonly id: string;
  readonly capability: PeerCapability;
  /** Models this peer reported it failed to load: it is not offered them again. */
  readonly failedModels: ReadonlySet<string>;
  /** True while the peer has not proven itself (see peer-trust.ts): its share of a model is capped. */
  readonly unverified?: boolean;
}

/** Input of {@link planRings}. */
export interface PlanRingsInput {
  /** In planning order (biggest first: they have the fewest feasible rings). */
  readonly models: readonly PlanningModel[];
  /** Sorted by id, so that the result does not depend on join order. */
  readonly contributors: readonly PlanningPeer[];
  /** The epoch of the current configuration; a change of any ring takes the next one. */
  readonly epoch: number;
  readonly objective: Objective;
  readonly plannerOptions?: PlannerOptions | undefined;
  /**
   * One unverified peer may hold at most this share of a model's bytes while the pool can carry the
   * model that way; only when it cannot is the cap lifted (default 1: no cap).
   */
  readonly maxUnverifiedShare?: number | undefined;
  /**
   * Measured links between contributors (the coordinator's proximity matrix, see link-matrix.ts);
   * pairs without one get the planner's default link.
   */
  readonly links?: readonly LinkInput[] | undefined;
  /**
   * Links measured below this many Mbit/s are not planned on: they get a prohibitive hop
   * ({@link EXCLUDED_LINK_RTT_MS}), and a peer whose every measured link is below it is left out.
   */
  readonly minLinkMbps?: number | undefined;
  /**
   * Standby replicas held now (peer → the model and units it has loaded ahead): a ring that lost
   * stages whose units a standby in the pool holds is repaired by swapping the standby in, and a
   * standby that is still needed keeps its units.
   */
  readonly standbys?: ReadonlyMap<string, StandbyOf> | undefined;
  /**
   * Validator rings serving now (model id → rings; see validator-rings.ts). A ring that lost stages
   * (a peer left or was excluded as a proven deviant) is replaced by a complete validator ring of
   * its model as it is — same ring id, epoch and stages — so that ring keeps serving: the answer a
   * requester continues on it after locating a deviant in the primary goes on, and nothing reloads.
   */
  readonly validatorRings?: ReadonlyMap<string, readonly Ring[]> | undefined;
}

/** The units a standby replica holds. */
export interface StandbyOf {
  readonly model: string;
  readonly range: readonly [number, number];
}

/** The RTT given to a link below the minimum bandwidth: a ring uses it only when nothing else fits. */
export const EXCLUDED_LINK_RTT_MS = 60_000;

/** What planning decided for one model (same order as {@link PlanRingsInput.models}). */
export interface ModelOutcome {
  /** This round's plan (null when no ring could be formed). */
  plan: Plan | null;
  noRing: NoRing | null;
  /** The ring after this round: the previous object when unchanged, a new one (new epoch) otherwise. */
  ring: Ring | null;
  lastPlan: Plan | null;
  /** True when the ring appeared, disappeared or changed stages, or a replica came or went. */
  changed: boolean;
  /** Whole-model replicas on category C peers (empty for sharded models). */
  replicas: Ring[];
  /** An unexpected planner failure (not PLAN_INFEASIBLE), for the caller to log. */
  error?: unknown;
}

/** Result of {@link planRings}. */
export interface PlanRingsResult {
  epoch: number;
  outcomes: ModelOutcome[];
  /** The first reason each left-out peer was given (`<model>: <why>`). */
  reasons: Map<string, string>;
  /** Peers left out of every ring that back up a live stage instead (see {@link assignStandbys}). */
  standbys: Map<string, StandbyOf>;
}

const sameStages = (a: readonly RingStage[], b: readonly RingStage[]): boolean =>
  a.length === b.length &&
  a.every((s, i) => s.peer === b[i]!.peer && s.range[0] === b[i]!.range[0] && s.range[1] === b[i]!.range[1]);

const plannerPeer = (p: PlanningPeer): PeerProfileInput => ({
  id: p.id,
  tflops: p.capability.tflops,
  bandwidthGBps: p.capability.bandwidthGBps,
  memoryBytes: p.capability.memoryBytes,
  ...(p.capability.category ? { category: p.capability.category } : {}),
});

/** The links among `pool`'s peers, with links below the minimum bandwidth made prohibitive. */
function poolLinks(pool: readonly PeerProfileInput[], input: PlanRingsInput): LinkInput[] | undefined {
  if (!input.links?.length) return undefined;
  const ids = new Set(pool.map((p) => p.id));
  const min = input.minLinkMbps ?? 0;
  const out = input.links
    .filter((l) => ids.has(l.from) && ids.has(l.to) && l.from !== l.to)
    .map((l) => (l.mbps < min ? { ...l, rttMs: Math.max(l.rttMs, EXCLUDED_LINK_RTT_MS) } : l));
  return out.length > 0 ? out : undefined;
}

/** Peers whose every measured link is below the minimum bandwidth: not worth a place in a ring. */
function slowLinkPeers(pool: readonly PlanningPeer[], input: PlanRingsInput): Map<string, string> {
  const out = new Map<string, string>();
  const min = input.minLinkMbps ?? 0;
  if (min <= 0 || !input.links?.length) return out;
  const ids = new Set(pool.map((p) => p.id));
  const best = new Map<string, number>();
  for (const l of input.links) {
    if (!ids.has(l.from) || !ids.has(l.to)) continue;
    for (const end of [l.from, l.to]) best.set(end, Math.max(best.get(end) ?? 0, l.mbps));
  }
  for (const [id, mbps] of best)
    if (mbps < min)
      out.set(id, `its links measure ${mbps.toFixed(1)} Mbit/s at best, below the ${min} Mbit/s minimum`);
  return out;
}

function runPlanner(ms: PlanningModel, pool: readonly PeerProfileInput[], input: PlanRingsInput): Plan {
  const { objective, plannerOptions } = input;
  const { profile, descriptor } = ms.model;
  const links = poolLinks(pool, input);
  // With a previous plan, prefer the ring that moves the fewest units: moving units means downloads.
  if (ms.lastPlan)
    return replan(
      ms.lastPlan,
      profile,
      links ? { peers: [...pool], links } : pool,
      objective,
      descriptor.contextLength,
      plannerOptions,
    ).plan;
  return planRingwork({
    profile,
    peers: pool,
    links,
    objective,
    contextTokens: descriptor.contextLength,
    options: plannerOptions,
  });
}

/**
 * Plans with unverified peers' memory capped to their share of the model, so that one peer's claim
 * cannot take a whole model from honest capacity; falls back to the uncapped pool when the capped
 * one cannot carry the model (no honest capacity to protect).
 */
function planWithShareCap(ms: PlanningModel, pool: readonly PlanningPeer[], input: PlanRingsInput): Plan {
  const share = input.maxUnverifiedShare ?? 1;
  const plain = pool.map(plannerPeer);
  if (share >= 1 || !pool.some((p) => p.unverified)) return runPlanner(ms, plain, input);
  const capBytes = Math.floor(share * ms.model.totalBytes);
  const capped = pool.map((p) => {
    const peer = plannerPeer(p);
    return p.unverified ? { ...peer, memoryBytes: Math.min(peer.memoryBytes, capBytes) } : peer;
  });
  try {
    return runPlanner(ms, capped, input);
  } catch (e) {
    if (!isRingworkError(e, 'PLAN_INFEASIBLE')) throw e;
    return runPlanner(ms, plain, input);
  }
}

/**
 * A ring that lost stages, repaired with standbys: each lost stage's peer replaced by a standby in
 * `pool` that holds exactly its units, every other stage kept. Null when some lost stage has no
 * standby (the planner decides then) or nothing was lost. The plan follows (same figures, peer ids
 * swapped) so that the next re-plan's stability anchor is the repaired ring.
 */
function swapInStandbys(
  ms: PlanningModel,
  pool: readonly PlanningPeer[],
  standbys: ReadonlyMap<string, StandbyOf>,
): { stages: RingStage[]; plan: Plan | null } | null {
  const ring = ms.ring;
  if (!ring) return null;
  const inPool = new Set(pool.map((p) => p.id));
  const lost = ring.stages.filter((s) => !inPool.has(s.peer));
  if (lost.length === 0) return null;
  const taken = new Set<string>();
  const swap = new Map<string, string>();
  for (const st of lost) {
    const sb = [...standbys].find(
      ([peer, of]) =>
        inPool.has(peer) &&
        !taken.has(peer) &&
        of.model === ring.model &&
        of.range[0] === st.range[0] &&
        of.range[1] === st.range[1],
    );
    if (!sb) return null;
    taken.add(sb[0]);
    swap.set(st.peer, sb[0]);
  }
  const stages = ring.stages.map((s) => ({ peer: swap.get(s.peer) ?? s.peer, range: s.range }));
  const base = ms.lastPlan;
  const plan =
    base && base.ring.length === stages.length
      ? { ...base, ring: base.ring.map((s) => ({ ...s, peer: swap.get(s.peer) ?? s.peer })) }
      : null;
  return { stages, plan };
}

/**
 * A ring that lost stages, replaced by one of its model's validator rings: the first whose every
 * peer is in `pool` and whose stages cut the model exactly like the lost ring (validator rings
 * always do). Null when nothing was lost or no validator ring is whole. The plan follows (peers
 * swapped by range) so that the next re-plan's stability anchor is the promoted ring.
 */
function promoteValidatorRing(
  ms: PlanningModel,
  pool: readonly PlanningPeer[],
  validators: readonly Ring[] | undefined,
): { ring: Ring; plan: Plan | null } | null {
  const ring = ms.ring;
  if (!ring || !validators?.length) return null;
  const inPool = new Set(pool.map((p) => p.id));
  if (ring.stages.every((s) => inPool.has(s.peer))) return null;
  const sameCut = (v: Ring) =>
    v.stages.length === ring.stages.length &&
    v.stages.every(
      (s, i) => s.range[0] === ring.stages[i]!.range[0] && s.range[1] === ring.stages[i]!.range[1],
    );
  const v = validators.find(
    (r) => r.model === ring.model && sameCut(r) && r.stages.every((s) => inPool.has(s.peer)),
  );
  if (!v) return null;
  const base = ms.lastPlan;
  const peerAt = (layers: readonly [number, number]) =>
    v.stages.find((s) => s.range[0] === layers[0] && s.range[1] === layers[1])?.peer;
  const plan =
    base && base.ring.length === v.stages.length && base.ring.every((s) => peerAt(s.layers) !== undefined)
      ? { ...base, ring: base.ring.map((s) => ({ ...s, peer: peerAt(s.layers)! })) }
      : null;
  return { ring: v, plan };
}

/** Bytes a stage's holder needs: the plan's figure, else the stage's share of the model. */
export function stageNeed(ms: PlanningModel, plan: Plan | null, range: readonly [number, number]): number {
  const st = plan?.ring.find((s) => s.layers[0] === range[0] && s.layers[1] === range[1]);
  if (st?.memoryBytes !== undefined) return st.memoryBytes;
  const units = Math.max(1, ms.model.descriptor.units);
  return (ms.model.totalBytes * (range[1] - range[0])) / units;
}

/**
 * Spare capacity becomes standby replicas: peers in no ring back up one live stage each (at most
 * one standby per stage), when their memory holds the stage; category C peers are never standbys
 * (a standby is swapped into a ring: they serve lightweight models whole instead). A standby that still fits keeps
 * its units (no reload); others go to the stages in ring order, biggest models first.
 */
export function assignStandbys(
  input: PlanRingsInput,
  outcomes: readonly ModelOutcome[],
  used: ReadonlySet<string>,
  slowLinks: ReadonlySet<string> = new Set(),
): Map<string, StandbyOf> {
  const out = new Map<string, StandbyOf>();
  // A peer left out for its links below the minimum is never swapped in: backing up is wasted.
  const spare = input.contributors.filter((p) => !used.has(p.id) && !slowLinks.has(p.id));
  const covered = new Set<string>();
  const stageKey = (model: string, r: readonly [number, number]) => `${model}|${r[0]}-${r[1]}`;
  const fits = (p: PlanningPeer, ms: PlanningModel, need: number) =>
    !p.failedModels.has(ms.model.descriptor.id) &&
    p.capability.memoryBytes >= need &&
    // A standby is swapped into a ring: category C peers hold no shard (they serve replicas).
    !isCategoryC(p);
  const live = input.models.flatMap((ms, i) => {
    const o = outcomes[i];
    return o?.ring ? [{ ms, ring: o.ring, plan: o.plan ?? o.lastPlan }] : [];
  });
  // Keep standbys that still back up a stage of a live ring.
  for (const p of spare) {
    const was = input.standbys?.get(p.id);
    if (!was) continue;
    const at = live.find((l) => l.ring.model === was.model);
    const st = at?.ring.stages.find((s) => s.range[0] === was.range[0] && s.range[1] === was.range[1]);
    const key = stageKey(was.model, was.range);
    if (!at || !st || covered.has(key) || !fits(p, at.ms, stageNeed(at.ms, at.plan, st.range))) continue;
    covered.add(key);
    out.set(p.id, { model: was.model, range: st.range });
  }
  for (const { ms, ring, plan } of live) {
    for (const st of ring.stages) {
      const key = stageKey(ring.model, st.range);
      if (covered.has(key)) continue;
      const need = stageNeed(ms, plan, st.range);
      const p = spare.find((q) => !out.has(q.id) && fits(q, ms, need));
      if (!p) continue;
      covered.add(key);
      out.set(p.id, { model: ring.model, range: st.range });
    }
  }
  return out;
}

/**
 * Plans one ring per model, biggest first, each ring's peers taken out of the pool for the next model
 * (the planner applies the category policy). Pure: the same input gives the same result.
 */
export function planRings(input: PlanRingsInput): PlanRingsResult {
  const { contributors } = input;
  const used = new Set<string>();
  const reasons = new Map<string, string>();
  const outcomes: ModelOutcome[] = [];
  const slowLinks = new Set<string>();
  const promotedRings = new Set<Ring>();
  for (const ms of input.models) {
    const id = ms.model.descriptor.id;
    // Category C peers join no multi-peer ring: they serve lightweight models whole (replicas, below).
    const candidates = contributors.filter(
      (p) => !used.has(p.id) && !p.failedModels.has(id) && !isCategoryC(p),
    );
    const slow = slowLinkPeers(candidates, input);
    for (const [peerId, why] of slow) {
      if (!reasons.has(peerId)) reasons.set(peerId, `${id}: ${why}`);
      slowLinks.add(peerId);
    }
    const pool = candidates.filter((p) => !slow.has(p.id));
    const out: ModelOutcome = {
      plan: null,
      noRing: null,
      ring: ms.ring,
      lastPlan: ms.lastPlan,
      changed: false,
      replicas: [],
    };
    const promoted = promoteValidatorRing(ms, pool, input.validatorRings?.get(id));
    if (promoted) {
      // Kept as it is (its ring id and epoch too): its stages are not restarted, its sessions go on.
      for (const s of promoted.ring.stages) used.add(s.peer);
      out.ring = promoted.ring;
      out.changed = true;
      if (promoted.plan) out.plan = out.lastPlan = promoted.plan;
      promotedRings.add(promoted.ring);
      outcomes.push(out);
      continue;
    }
    const swapped = input.standbys?.size ? swapInStandbys(ms, pool, input.standbys) : null;
    if (swapped) {
      // A lost stage with a standby for its units: swap it in (a replay for the requester, not a
      // download for anyone) instead of re-planning the ring around the loss.
      for (const s of swapped.stages) used.add(s.peer);
      out.ring = { ringId: '', model: id, epoch: 0, stages: swapped.stages };
      out.changed = true;
      if (swapped.plan) out.plan = out.lastPlan = swapped.plan;
      outcomes.push(out);
      continue;
    }
    if (pool.length === 0) {
      out.noRing = {
        reason:
          contributors.length === 0
            ? 'no contributor has joined yet'
            : contributors.every(isCategoryC)
              ? 'every contributor is category C (phones, slow devices): they serve lightweight models whole, never a shard'
              : 'every contributor is serving another model or cannot load this one',
        missingBytes: ms.model.totalBytes,
      };
    } else {
      try {
        out.plan = planWithShareCap(ms, pool, input);
      } catch (e) {
        if (isRingworkError(e, 'PLAN_INFEASIBLE')) {
          const missing = Number(e.details.missingBytes);
          out.noRing = {
            reason: e.message,
            ...(Number.isFinite(missing) && missing >= 0 ? { missingBytes: missing } : {}),
          };
        } else {
          out.error = e;
          out.noRing = { reason: `the planner failed: ${e instanceof Error ? e.message : String(e)}` };
        }
      }
    }
    if (out.plan) {
      out.lastPlan = out.plan;
      const stages: RingStage[] = out.plan.ring.map((s) => ({
        peer: s.peer,
        range: [s.layers[0], s.layers[1]],
      }));
      for (const s of stages) used.add(s.peer);
      for (const ex of out.plan.excluded)
        if (!reasons.has(ex.peer)) reasons.set(ex.peer, `${id}: ${ex.reason}`);
      if (!ms.ring || !sameStages(ms.ring.stages, stages)) {
        out.ring = { ringId: '', model: id, epoch: 0, stages };
        out.changed = true;
      }
    } else {
      out.changed = ms.ring !== null;
      out.ring = null;
      const why = out.noRing?.reason ?? 'no plan';
      for (const p of pool)
        if (!reasons.has(p.id)) reasons.set(p.id, `${id}: waiting for more peers (${why})`);
    }
    outcomes.push(out);
  }
  // Only a planned ring that changed takes the new epoch (a replica change must not reload it).
  const ringChanged = outcomes.map((o) => o.changed);
  // Category C peers: whole lightweight models, one peer each.
  const rp = planReplicas(input.models, contributors, used);
  for (const peer of rp.used) used.add(peer);
  for (const [peer, why] of rp.reasons) reasons.set(peer, why);
  outcomes.forEach((o, i) => {
    o.replicas = rp.replicas[i] ?? [];
    if (replicasChanged(input.models[i]?.replicas, o.replicas)) o.changed = true;
    // A model its replicas serve has a ring; why its planned ring is missing is no one's concern.
    if (o.replicas.length > 0) o.noRing = null;
  });
  // One epoch per configuration change, shared by every ring that changed in this round.
  const epoch = outcomes.some((o) => o.changed) ? input.epoch + 1 : input.epoch;
  for (const o of outcomes) stampReplicas(o.replicas, epoch);
  for (const [i, o] of outcomes.entries()) {
    if (ringChanged[i] && o.ring && !promotedRings.has(o.ring)) {
      o.ring.epoch = epoch;
      o.ring.ringId = `${o.ring.model}:${epoch}`;
    }
  }
  return { epoch, outcomes, reasons, standbys: assignStandbys(input, outcomes, used, slowLinks) };
}

/** The assignments a set of rings implies: every stage's peer with its range and ring neighbours. */
export function ringAssignments(rings: Iterable<Ring | null>): Map<string, PeerAssignment> {
  const assigned = new Map<string, PeerAssignment>();
  for (const ring of rings) {
    if (!ring) continue;
    const k = ring.stages.length;
    ring.stages.forEach((s, i) => {
      // The ring closes (the last stage hands back to the first), so with k >= 2 every stage has both.
      assigned.set(s.peer, {
        kind: 'assigned',
        epoch: ring.epoch,
        ringId: ring.ringId,
        model: ring.model,
        range: s.range,
        prev: k > 1 ? ring.stages[(i - 1 + k) % k]!.peer : null,
        next: k > 1 ? ring.stages[(i + 1) % k]!.peer : null,
      });
    });
  }
  return assigned;
}
