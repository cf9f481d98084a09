/**
 * Security level k (issue 10): the coordinator plans k − 1 **validator rings** per model next to its
 * primary ring. A validator ring cuts the model at exactly the primary's unit boundaries (so the
 * rings' signed sketches compare stage by stage) and holds none of the primary's peers nor another
 * validator ring's: distinct identities always, and distinct networks (an IPv6 /64 or an IPv4
 * address, the server's address buckets) unless the rule is switched off — on one test machine every
 * tab shares 127.0.0.1, so test mode plans without it (`--validator-networks any`).
 *
 * Pure: the coordinator passes the pool (contributors in no primary ring, not excluded) and applies
 * the result. A validator ring that still fits is kept as it is (no reload); a stage with no peer
 * to hold it is named in `missing`, which becomes the requester's typed answer.
 */
import { RingworkError } from '../../shared/errors.js';
import { MAX_SECURITY_LEVEL, type SecurityRequest } from '../../shared/protocol/signaling.js';
import type { Ring, RingStage } from './coordinator-types.js';
import type { PlanningPeer } from './ring-planning.js';

/** How a server decides security levels. */
export interface SecurityPolicy {
  /** The level of a request that asks for none (`--security-level`, default 1). */
  defaultLevel: number;
  /** Per model id: the lowest level any request for it gets (`--model-security id=k`). */
  modelMinimum: Readonly<Record<string, number>>;
  /**
   * The network a peer connects from (its address bucket); undefined: the distinct-network rule is
   * off (test mode, or `--validator-networks any`).
   */
  networkOf?: ((peer: string) => string | undefined) | undefined;
}

/** The level a request gets: its own (or the default), never below the model's minimum. */
export function requestedLevel(
  policy: SecurityPolicy,
  model: string,
  req: SecurityRequest | undefined,
): number {
  const asked = req?.k ?? policy.defaultLevel;
  return clampLevel(Math.max(asked, policy.modelMinimum[model] ?? 1));
}

/** The lowest level a degrading request may fall to: the model's minimum. */
export function floorLevel(policy: SecurityPolicy, model: string): number {
  return clampLevel(policy.modelMinimum[model] ?? 1);
}

/**
 * Spot-check mode as granted: asked for at level 2, and the model's minimum is below 2 (a model that
 * must be checked on every step is). `f` here is the request's own (0: none); the coordinator
 * raises it to the primary ring's peers' rates (validation-spot.ts) before answering.
 */
function spotOf(
  policy: SecurityPolicy,
  model: string,
  req: SecurityRequest | undefined,
  level: number,
): { spot?: { f: number } } {
  if (!req?.spot || level !== 2 || (policy.modelMinimum[model] ?? 1) >= 2) return {};
  return { spot: { f: req.spot.f ?? 0 } };
}

const clampLevel = (k: number): number => Math.min(MAX_SECURITY_LEVEL, Math.max(1, Math.floor(k)));

/** Input of {@link planValidatorRings}. */
export interface ValidatorPlanInput {
  model: string;
  primary: Ring;
  /** Validator rings wanted: the highest level asked for this model, minus one. */
  count: number;
  /** Contributors that may serve: online, not excluded, in no primary ring. */
  pool: readonly PlanningPeer[];
  /** This model's validator rings now (kept where they still fit). */
  previous: readonly Ring[];
  /** Bytes a stage's holder needs. */
  need: (range: readonly [number, number]) => number;
  /** Bytes of the whole model (a category C peer only takes a shard of a model it could hold whole). */
  totalBytes: number;
  networkOf?: ((peer: string) => string | undefined) | undefined;
}

/** One stage no validator ring could fill. */
export interface MissingStage {
  /** Validator ring index (1 = the first validator ring). */
  ring: number;
  range: [number, number];
  bytes: number;
  /** Why: no free peer holds it, or only peers on a network another ring already uses. */
  why: 'memory' | 'network';
}

/** What {@link planValidatorRings} decided. */
export interface ValidatorPlan {
  /** Complete validator rings, in order (new ones with `ringId: ''`, the caller numbers them). */
  rings: Ring[];
  /** Stages of the first ring that could not be completed (empty when every wanted ring formed). */
  missing: MissingStage[];
  /** True when the rings differ from `previous`. */
  changed: boolean;
}

const sameStages = (a: readonly RingStage[], b: readonly RingStage[]): boolean =>
  a.length === b.length &&
  a.every((s, i) => s.peer === b[i]!.peer && s.range[0] === b[i]!.range[0] && s.range[1] === b[i]!.range[1]);

/**
 * Plans up to `count` validator rings for one model. Stages are filled biggest first with the
 * smallest free peer that holds them (big peers stay free for big stages); a peer that held the same
 * units in the previous validator ring keeps them.
 */
export function planValidatorRings(input: ValidatorPlanInput): ValidatorPlan {
  const used = new Set(input.primary.stages.map((s) => s.peer));
  const netOf = input.networkOf;
  const usedNets = new Set<string>();
  if (netOf) for (const s of input.primary.stages) addNet(usedNets, netOf(s.peer));
  const fits = (p: PlanningPeer, need: number) =>
    !p.failedModels.has(input.model) &&
    p.capability.memoryBytes >= need &&
    (p.capability.category !== 'C' || p.capability.memoryBytes >= input.totalBytes);
  const rings: Ring[] = [];
  const missing: MissingStage[] = [];
  const ranges = input.primary.stages.map((s) => s.range);
  for (let j = 0; j < Math.max(0, input.count); j++) {
    const prev = input.previous[j];
    const ringNets = new Set<string>();
    const taken = new Set<string>();
    const chosen = new Map<number, string>();
    const order = ranges
      .map((r, i) => ({ i, r, need: input.need(r) }))
      .sort((a, b) => b.need - a.need || a.i - b.i);
    const lacking: MissingStage[] = [];
    for (const { i, r, need } of order) {
      const free = input.pool.filter((p) => !used.has(p.id) && !taken.has(p.id) && fits(p, need));
      // Networks of the primary and earlier validator rings are off limits; within this ring a
      // network may repeat (the rule is between rings: one operator must not hold two of them).
      const allowed = free.filter((p) => {
        if (!netOf) return true;
        const n = netOf(p.id);
        return n === undefined || !usedNets.has(n);
      });
      const keep = prev?.stages.find((s) => s.range[0] === r[0] && s.range[1] === r[1])?.peer;
      const pick =
        allowed.find((p) => p.id === keep) ??
        [...allowed].sort((a, b) => a.capability.memoryBytes - b.capability.memoryBytes)[0];
      if (!pick) {
        lacking.push({
          ring: j + 1,
          range: [r[0], r[1]],
          bytes: need,
          why: free.length ? 'network' : 'memory',
        });
        continue;
      }
      taken.add(pick.id);
      chosen.set(i, pick.id);
      if (netOf) addNet(ringNets, netOf(pick.id));
    }
    if (lacking.length > 0) {
      missing.push(...lacking.sort((a, b) => a.range[0] - b.range[0]));
      break;
    }
    const stages: RingStage[] = ranges.map((r, i) => ({ peer: chosen.get(i)!, range: [r[0], r[1]] }));
    for (const s of stages) used.add(s.peer);
    for (const n of ringNets) usedNets.add(n);
    rings.push(
      prev && sameStages(prev.stages, stages) ? prev : { ringId: '', model: input.model, epoch: 0, stages },
    );
  }
  const changed = rings.length !== input.previous.length || rings.some((r, i) => r !== input.previous[i]);
  return { rings, missing, changed };
}

function addNet(set: Set<string>, n: string | undefined): void {
  if (n !== undefined) set.add(n);
}

/** A person-readable account of what the missing stages need ("1 peer with ≥ 0.52 MB for units [0, 3) …"). */
export function describeMissing(missing: readonly MissingStage[], requested: number): string {
  const parts = missing.map(
    (m) =>
      `units [${m.range[0]}, ${m.range[1]}) of validator ring ${m.ring}: ${
        m.why === 'network'
          ? 'only peers on a network another ring already uses'
          : `no free peer with ${(m.bytes / 1e6).toFixed(2)} MB`
      }`,
  );
  return `security level ${requested} needs ${requested - 1} validator ring(s) of peers disjoint from the primary ring; missing: ${parts.join('; ')}`.slice(
    0,
    500,
  );
}

/** The typed error a requester gets when its level cannot be served and it may not degrade. */
export function notEnoughPeers(
  model: string,
  requested: number,
  missing: readonly MissingStage[],
): RingworkError {
  return new RingworkError('VALIDATION_NOT_ENOUGH_PEERS', describeMissing(missing, requested), {
    details: { model, requested, missing },
  });
}

/** One model as the validator planner sees it after the primary rings are planned. */
export interface ValidatorModelInput {
  id: string;
  primary: Ring | null;
  need: (range: readonly [number, number]) => number;
  totalBytes: number;
  /** Whether `peer` may serve this model's rings at security `level` (stake); absent: everyone. */
  admits?: (peer: string, level: number) => boolean;
}

/** The security part of a requester's answer for one model. */
export interface SecurityView {
  /** Validator rings this requester is sent (k − 1 of them). */
  validators: Ring[];
  /** Absent for a request that neither asked for a level nor got one above 1. */
  security?: { requested: number; k: number; missing?: string; spot?: { f: number } };
  /** Set when the level cannot be served and the request may not degrade: answer `no-ring` with it. */
  refusal?: RingworkError;
}

/** The coordinator's validator-ring state: who asked for which level, and the rings planned. */
export interface ValidatorRings {
  /** A requester's level for a model (its `ring-request`); true when the demand rose (re-plan). */
  request(peer: string, model: string, req: SecurityRequest | undefined): boolean;
  /** Forgets a departed requester's levels; true when the demand fell (the rings can go). */
  forget(peer: string): boolean;
  /**
   * Plans every model's validator rings from the pool left after the primary rings (disjoint across
   * models too). New rings are numbered `<model>:<epoch>:v<j>`; returns the epoch to use (one more
   * than `epoch` when validator rings changed but no primary did) and the peers now in validator rings.
   */
  plan(input: {
    models: readonly ValidatorModelInput[];
    pool: readonly PlanningPeer[];
    /** The epoch after the primary rings were planned. */
    epoch: number;
    /** True when that epoch is new (a primary ring changed this round). */
    epochIsNew: boolean;
  }): { epoch: number; peers: Set<string> };
  /** Every validator ring now, all models. */
  all(): Ring[];
  /** One model's validator rings now. */
  ringsOf(model: string): readonly Ring[];
  /** What `peer` is answered for `model` (its level against the rings planned). */
  viewFor(peer: string, model: string): SecurityView;
  /** The security part of `peer`'s last request for `model` (undefined: none asked). */
  requestOf(peer: string, model: string): SecurityRequest | undefined;
}

/** Creates the validator-ring state over a policy. */
export function createValidatorRings(policy: SecurityPolicy): ValidatorRings {
  const asks = new Map<string, Map<string, SecurityRequest | undefined>>();
  const rings = new Map<string, Ring[]>();
  const missingOf = new Map<string, MissingStage[]>();
  const demand = (model: string): number => {
    let k = 1;
    for (const req of asks.get(model)?.values() ?? []) k = Math.max(k, requestedLevel(policy, model, req));
    return k;
  };
  return {
    request(peer, model, req) {
      const before = demand(model);
      let m = asks.get(model);
      if (!m) asks.set(model, (m = new Map()));
      m.set(peer, req);
      return demand(model) > before && (rings.get(model)?.length ?? 0) < demand(model) - 1;
    },
    forget(peer) {
      let fell = false;
      for (const [model, m] of asks) {
        if (!m.has(peer)) continue;
        const before = demand(model);
        m.delete(peer);
        if (demand(model) < before) fell = true;
      }
      return fell;
    },
    plan({ models, pool, epoch, epochIsNew }) {
      const taken = new Set<string>();
      const planned = new Map<string, ValidatorPlan>();
      for (const m of models) {
        const count = m.primary ? demand(m.id) - 1 : 0;
        const plan = m.primary
          ? planValidatorRings({
              model: m.id,
              primary: m.primary,
              count,
              // Validator rings serve every level up to the highest asked: their peers meet its minimum.
              pool: pool.filter((p) => !taken.has(p.id) && (m.admits?.(p.id, demand(m.id)) ?? true)),
              previous: rings.get(m.id) ?? [],
              need: m.need,
              totalBytes: m.totalBytes,
              networkOf: policy.networkOf,
            })
          : { rings: [], missing: [], changed: (rings.get(m.id)?.length ?? 0) > 0 };
        for (const r of plan.rings) for (const s of r.stages) taken.add(s.peer);
        planned.set(m.id, plan);
      }
      const anyNew = [...planned.values()].some((p) => p.rings.some((r) => r.ringId === ''));
      const next = anyNew && !epochIsNew ? epoch + 1 : epoch;
      for (const [id, plan] of planned) {
        plan.rings.forEach((r, j) => {
          if (r.ringId !== '') return;
          r.epoch = next;
          r.ringId = `${id}:${next}:v${j + 1}`;
        });
        rings.set(id, plan.rings);
        missingOf.set(id, plan.missing);
      }
      return { epoch: next, peers: taken };
    },
    all: () => [...rings.values()].flat(),
    ringsOf: (model) => rings.get(model) ?? [],
    requestOf: (peer, model) => asks.get(model)?.get(peer),
    viewFor(peer, model) {
      const req = asks.get(model)?.get(peer);
      const requested = requestedLevel(policy, model, req);
      const have = rings.get(model) ?? [];
      const available = 1 + have.length;
      const shown = req !== undefined || requested > 1;
      if (requested <= available) {
        return {
          validators: have.slice(0, requested - 1),
          ...(shown
            ? { security: { requested, k: requested, ...spotOf(policy, model, req, requested) } }
            : {}),
        };
      }
      const missing = missingOf.get(model) ?? [];
      const why = missing.length
        ? describeMissing(missing, requested)
        : `security level ${requested} needs ${requested - 1} validator ring(s); they are being planned`;
      if (req?.degrade === true && available >= floorLevel(policy, model)) {
        return { validators: have, security: { requested, k: available, missing: why } };
      }
      return {
        validators: [],
        security: { requested, k: 0, missing: why },
        refusal: notEnoughPeers(model, requested, missing),
      };
    },
  };
}
