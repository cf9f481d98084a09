/**
 * What the coordinator tells a requester of a model (its `ring` message's content): the ring it was
 * last sent while that still serves, else the least loaded ring serving the model (the planned ring
 * and its lightweight replicas), each stage with its registered validation key; at a security level
 * above 1 the validator rings (planned, or other whole-model replicas on a lightweight model), or a
 * no-ring that says what is missing — including a ring peer short of the level's minimum stake.
 * Introductions follow what was sent: ring neighbours, and a requester with the first stage and
 * the head of each ring it was sent.
 */
import { ringIdsOfKey, type RingView } from './assignment-diff.js';
import type { ModelState, PeerState } from './coordinator-state.js';
import type { CoordinatorOptions, Ring } from './coordinator-types.js';
import { pickRing, replicaValidators, servingRings } from './lightweight-replicas.js';
import type { ValidationRegistry } from './validation-registry.js';
import { ringSpotRate } from './validation-spot.js';
import {
  floorLevel,
  type SecurityPolicy,
  type SecurityView,
  type ValidatorRings,
} from './validator-rings.js';

/** The coordinator state the views read. */
export interface RingViewContext {
  opts: Pick<CoordinatorOptions, 'membership' | 'allowAnyRelay'>;
  byModel: Map<string, ModelState>;
  peers: Map<string, PeerState>;
  validation: ValidationRegistry;
  validators: ValidatorRings;
  securityPolicy: SecurityPolicy;
  /** Why membership refuses `peer` model `model` at `level` (null: admitted). */
  refusalOf(peer: string, model: string, level?: number): string | null;
}

/** Builds the views over the coordinator's state. */
export function createRingViews(ctx: RingViewContext): {
  /** What `peer` (a requester; absent: the plain view) is told of `modelId`; undefined: not in the catalog. */
  viewOf(modelId: string, peer?: string): RingView | undefined;
  /** Whether `a` and `b` are introduced: ring neighbours, or a requester and a stage of a ring it was sent. */
  canSignal(a: string, b: string): boolean;
  /** Whether `requester` was sent a ring (or validator ring) whose first stage or head is `stage`. */
  introducedByRing(requester: PeerState, stage: string): boolean;
} {
  const { opts, byModel, peers, validation, validators, securityPolicy, refusalOf } = ctx;
  /** Requesters the coordinator sent a ring (the sessions it knows of on that ring). */
  const loadOf = (modelId: string, ringId: string): number => {
    let n = 0;
    for (const q of peers.values()) if (ringIdsOfKey(q.subscriptions.get(modelId))[0] === ringId) n++;
    return n;
  };

  // Each stage's registered validation key goes with the ring: requesters verify commitments with it.
  const withKeys = <R extends { stages: { peer: string }[] }>(r: R): R => ({
    ...r,
    stages: r.stages.map((s) => {
      const key = validation.keyOf(s.peer);
      return key !== undefined ? { ...s, key } : s;
    }),
  });

  /**
   * What `peer` (a requester; absent: the plain view) is told of a model: the ring it was last sent
   * while that still serves, else the least loaded of the rings serving it (the planned ring and its
   * lightweight replicas); with validator rings when it asked for a security level above 1.
   */
  const viewOf = (modelId: string, peer?: string): RingView | undefined => {
    const view = securityViewOf(modelId, peer);
    return view && peer !== undefined ? withLevelStake(modelId, view) : view;
  };

  /**
   * A level-k answer only when every peer of its rings (primary and validators) meets level k's
   * minimum stake (membership at that level); otherwise a no-ring whose security names the level
   * and who falls short by how much (`STAKE_INSUFFICIENT`). Primary rings are planned under level
   * 1's minimum so one requester's level cannot take the ring from everyone else's requests.
   */
  const withLevelStake = (modelId: string, view: RingView): RingView => {
    const k = view.security?.k ?? 1;
    if (!opts.membership || !view.ring || k <= 1) return view;
    const short = [view.ring, ...(view.validators ?? [])]
      .flatMap((r) => r.stages)
      .flatMap((s) => {
        const why = refusalOf(s.peer, modelId, k);
        return why === null ? [] : [`${s.peer}: ${why}`];
      });
    if (short.length === 0) return view;
    const reason =
      `security level ${k} needs its minimum stake from every ring peer; ${short.length} short (${short.join('; ')})`.slice(
        0,
        500,
      );
    const { validators: _dropped, ...rest } = view;
    return {
      ...rest,
      ring: null,
      noRing: { reason },
      security: { requested: view.security!.requested, k: 0, missing: reason, code: 'STAKE_INSUFFICIENT' },
    };
  };

  const securityViewOf = (modelId: string, peer?: string): RingView | undefined => {
    const ms = byModel.get(modelId);
    if (!ms) return undefined;
    const requester = peer === undefined ? undefined : peers.get(peer);
    const chosen = pickRing(servingRings(ms), requester?.subscriptions.get(modelId), (r) =>
      loadOf(modelId, r),
    );
    const base: RingView = {
      descriptor: ms.model.descriptor,
      totalBytes: ms.model.totalBytes,
      ring: chosen && withKeys(chosen),
      noRing: ms.noRing,
    };
    if (peer === undefined) return base;
    const sec = validators.viewFor(peer, modelId);
    const byReplicas = replicaSecurityView(ms, modelId, peer, chosen, sec, base);
    if (byReplicas) return byReplicas;
    if (!ms.ring) return base;
    if (sec.refusal) {
      // A ring exists, but not the level asked for: a no-ring that says what is missing.
      return { ...base, ring: null, noRing: { reason: sec.refusal.message }, security: sec.security! };
    }
    if (sec.validators.length === 0) return { ...base, ...(sec.security ? { security: sec.security } : {}) };
    // Validator rings mirror the planned ring's unit boundaries: a validated request uses that ring.
    // Spot-check mode: the rate is the primary ring's least trusted peer's (validation-spot.ts).
    const security = sec.security?.spot
      ? {
          ...sec.security,
          spot: {
            f: ringSpotRate(
              ms.ring.stages.map((s) => s.peer),
              (p) => validation.standing(p),
              sec.security.spot.f,
            ),
          },
        }
      : sec.security;
    return {
      ...base,
      ring: withKeys(ms.ring),
      validators: sec.validators.map(withKeys),
      ...(security ? { security } : {}),
    };
  };

  /**
   * Security level k on a lightweight model: whole-model replicas validate each other (every one
   * has the primary's unit boundaries), so phones serving a model whole can check one another. Used
   * when no planned ring serves the model, or when its validator rings fall short of the level and
   * enough replicas serve. Undefined: the planned ring's answer stands.
   */
  const replicaSecurityView = (
    ms: ModelState,
    modelId: string,
    peer: string,
    chosen: Ring | null,
    sec: SecurityView,
    base: RingView,
  ): RingView | undefined => {
    const requested = sec.security?.requested ?? 1;
    if (requested <= 1 || ms.replicas.length === 0) return undefined;
    if (ms.ring && !sec.refusal && (sec.security?.k ?? 1) >= requested) return undefined;
    const sent = peers.get(peer)?.subscriptions.get(modelId);
    const primary =
      chosen && ms.replicas.includes(chosen)
        ? chosen
        : pickRing(ms.replicas, sent, (r) => loadOf(modelId, r))!;
    const rv = replicaValidators(
      ms.replicas,
      primary,
      requested,
      (r) => loadOf(modelId, r),
      ringIdsOfKey(sent).slice(1),
      securityPolicy.networkOf,
    );
    const served = {
      ...base,
      ring: withKeys(primary),
      validators: rv.validators.map(withKeys),
    };
    if (!rv.short) return { ...served, security: { requested, k: requested } };
    // Too few replicas: a planned ring (if any) answers as it would have; else refuse or degrade.
    if (ms.ring) return undefined;
    const k = 1 + rv.validators.length;
    const missing = `security level ${requested} needs ${requested} replicas of ${modelId} on distinct peers${
      securityPolicy.networkOf ? ' and networks' : ''
    }; ${k} can serve it now`;
    if (validators.requestOf(peer, modelId)?.degrade === true && k >= floorLevel(securityPolicy, modelId))
      return { ...served, security: { requested, k, missing } };
    return { ...base, ring: null, noRing: { reason: missing }, security: { requested, k: 0, missing } };
  };

  const canSignal = (a: string, b: string): boolean => {
    if (a === b) return false;
    const pa = peers.get(a);
    const pb = peers.get(b);
    if (!pa || !pb) return false;
    if (opts.allowAnyRelay) return true;
    const aa = pa.assignment;
    if (aa?.kind === 'assigned' && (aa.prev === b || aa.next === b)) return true;
    return introducedByRing(pa, b) || introducedByRing(pb, a);
  };

  const introducedByRing = (requester: PeerState, stage: string): boolean => {
    for (const [modelId, sent] of requester.subscriptions) {
      const ms = byModel.get(modelId);
      // A requester talks to the first stage (token ids in) and the head (tokens out) only, of the
      // ring it was sent (planned or a replica) and of the validator rings it was sent.
      const ids = ringIdsOfKey(sent);
      const ring = ms && servingRings(ms).find((r) => r.ringId === ids[0]);
      if (!ring) continue;
      // Validator rings: planned ones, or (lightweight models) other replicas.
      const checking = [...validators.ringsOf(modelId), ...servingRings(ms)].filter(
        (x) => x !== ring && ids.slice(1).includes(x.ringId),
      );
      for (const r of [ring, ...checking]) {
        const st = r.stages;
        if (st[0]?.peer === stage || st[st.length - 1]?.peer === stage) return true;
      }
    }
    return false;
  };

  return { viewOf, canSignal, introducedByRing };
}
