/**
 * Lightweight models and their replicas. The catalog marks each model `lightweight` (small enough
 * for one modest device: served by whole-model replicas, one peer each) or `sharded` (planned into a
 * ring of stronger peers). Category C peers (phones: `mobile` is never above C) are kept out of every
 * multi-peer ring: each one that can hold a lightweight model whole serves it alone, as its own
 * one-peer ring (a replica). A C peer never holds a shard of anything.
 *
 * Requests for a model go to one of the rings serving it (its planned ring, if any, and its
 * replicas), least loaded first: the load of a ring is the number of requesters the coordinator has
 * sent that ring (the sessions it knows of). A requester stays on its ring while that ring serves.
 *
 * Pure functions: the coordinator (coordinator.ts) and the planning step (ring-planning.ts) call them.
 */
import { fmtBytes } from '../../shared/planner/eligibility.js';
import type { ModelServing } from '../../shared/protocol/signaling.js';
import type { Ring } from './coordinator-types.js';
import type { PlanningModel, PlanningPeer } from './ring-planning.js';

export type { ModelServing };

/** How a catalog model is served (models registered without a kind are sharded). */
export const servingOf = (m: { descriptor: { serving?: ModelServing | undefined } }): ModelServing =>
  m.descriptor.serving ?? 'sharded';

/** True for a category C peer: it serves lightweight models whole and joins no multi-peer ring. */
export const isCategoryC = (p: PlanningPeer): boolean => p.capability.category === 'C';

/** The replicas chosen in one planning round, per model (same order as the input models). */
export interface ReplicaPlan {
  /** Replica rings per model index (empty for sharded models); unchanged replicas keep their object. */
  replicas: Ring[][];
  /** Peers serving a replica. */
  used: Set<string>;
  /** Why a C peer serves nothing (no lightweight model fits it, or it failed them). */
  reasons: Map<string, string>;
}

/**
 * Gives every category C peer not already `used` a lightweight model whole: the one with the fewest
 * replicas so far that fits its memory (weights + KV at the model's context) and that it did not fail
 * to load; ties go to the model planned first (the biggest). A peer that already serves a replica of
 * a model that still fits keeps it (no reload). New replica rings get id `<model>:<epoch>~<n>` at the
 * epoch given (the caller stamps the round's epoch when anything changed).
 */
export function planReplicas(
  models: readonly PlanningModel[],
  contributors: readonly PlanningPeer[],
  used: ReadonlySet<string>,
): ReplicaPlan {
  const replicas: Ring[][] = models.map(() => []);
  const taken = new Set<string>();
  const reasons = new Map<string, string>();
  const light = models.map((ms, i) => ({ ms, i })).filter(({ ms }) => servingOf(ms.model) === 'lightweight');
  const fits = (p: PlanningPeer, ms: PlanningModel) =>
    !p.failedModels.has(ms.model.descriptor.id) && p.capability.memoryBytes >= ms.model.totalBytes;
  const previous = (ms: PlanningModel, peer: string): Ring | undefined =>
    (ms.replicas ?? []).find((r) => r.stages.length === 1 && r.stages[0]!.peer === peer);
  const cs = contributors.filter((p) => isCategoryC(p) && !used.has(p.id));
  // Keep what peers already serve, then place the rest.
  for (const p of cs) {
    const kept = light.find(({ ms }) => previous(ms, p.id) && fits(p, ms));
    if (!kept) continue;
    replicas[kept.i]!.push(previous(kept.ms, p.id)!);
    taken.add(p.id);
  }
  for (const p of cs) {
    if (taken.has(p.id)) continue;
    let best: { ms: PlanningModel; i: number } | undefined;
    for (const l of light)
      if (fits(p, l.ms) && (!best || replicas[l.i]!.length < replicas[best.i]!.length)) best = l;
    if (!best) {
      const smallest = light.reduce((a, l) => Math.min(a, l.ms.model.totalBytes), Number.POSITIVE_INFINITY);
      reasons.set(
        p.id,
        light.length === 0
          ? 'category C: serves lightweight models whole, and the catalog has none'
          : `category C: serves lightweight models whole; none fits (the smallest needs ${fmtBytes(smallest)}, the peer offers ${fmtBytes(p.capability.memoryBytes)})`,
      );
      continue;
    }
    const id = best.ms.model.descriptor.id;
    replicas[best.i]!.push({
      ringId: '',
      model: id,
      epoch: 0,
      stages: [{ peer: p.id, range: [0, best.ms.model.descriptor.units] }],
    });
    taken.add(p.id);
  }
  for (const list of replicas) list.sort((a, b) => (a.stages[0]!.peer < b.stages[0]!.peer ? -1 : 1));
  return { replicas, used: taken, reasons };
}

/** True when the replica lists differ (a replica appeared or went away). */
export function replicasChanged(before: readonly Ring[] | undefined, after: readonly Ring[]): boolean {
  const b = before ?? [];
  return b.length !== after.length || after.some((r) => !b.includes(r));
}

/** Stamps new replicas (those without an id) with the round's epoch and a unique id. */
export function stampReplicas(replicas: readonly Ring[], epoch: number): void {
  replicas.forEach((r, n) => {
    if (r.ringId !== '') return;
    r.epoch = epoch;
    r.ringId = `${r.model}:${epoch}~${n}`;
  });
}

/** Every ring serving a model: its planned ring first, then its replicas. */
export function servingRings(ms: { ring: Ring | null; replicas?: readonly Ring[] | undefined }): Ring[] {
  return [...(ms.ring ? [ms.ring] : []), ...(ms.replicas ?? [])];
}

/**
 * The ring a requester is sent for a model: the one it was last sent while that still serves
 * (`sentKey` is `ring|<ringId>[|validator rings]`), else the least loaded (`load`: requesters on it), first on ties.
 */
export function pickRing(
  rings: readonly Ring[],
  sentKey: string | null | undefined,
  load: (ringId: string) => number,
): Ring | null {
  const sentId = sentKey?.startsWith('ring|') ? sentKey.split('|')[1] : undefined;
  const kept = rings.find((r) => r.ringId === sentId);
  if (kept) return kept;
  let best: Ring | null = null;
  let bestLoad = Number.POSITIVE_INFINITY;
  for (const r of rings) {
    const l = load(r.ringId);
    if (l < bestLoad) {
      best = r;
      bestLoad = l;
    }
  }
  return best;
}

/** What {@link replicaValidators} chose for one validated request. */
export interface ReplicaValidation {
  /** The other replicas that run every step too (at most `level − 1`). */
  validators: Ring[];
  /** True when fewer than `level − 1` replicas could be used. */
  short: boolean;
}

/**
 * Security level k on a lightweight model: its replicas hold the whole model each, so they already
 * share the primary's unit boundaries ([0, units), one stage), and k − 1 other replicas validate the
 * primary replica's work step by step. The ones a requester was last sent (`keep`) stay while they
 * serve; the rest are the least loaded. With `networkOf` no two chosen replicas may share a network
 * (one operator must not hold two of the rings that check each other).
 */
export function replicaValidators(
  replicas: readonly Ring[],
  primary: Ring,
  level: number,
  load: (ringId: string) => number,
  keep: readonly string[] = [],
  networkOf?: (peer: string) => string | undefined,
): ReplicaValidation {
  const want = Math.max(0, level - 1);
  const nets = new Set<string>();
  const netOf = (r: Ring) => (networkOf ? networkOf(r.stages[0]!.peer) : undefined);
  const addNet = (r: Ring) => {
    const n = netOf(r);
    if (n !== undefined) nets.add(n);
  };
  addNet(primary);
  const others = replicas.filter((r) => r !== primary && r.ringId !== primary.ringId);
  const ordered = [
    ...others.filter((r) => keep.includes(r.ringId)),
    ...others
      .filter((r) => !keep.includes(r.ringId))
      .sort((a, b) => load(a.ringId) - load(b.ringId) || (a.ringId < b.ringId ? -1 : 1)),
  ];
  const validators: Ring[] = [];
  for (const r of ordered) {
    if (validators.length >= want) break;
    const n = netOf(r);
    if (n !== undefined && nets.has(n)) continue;
    validators.push(r);
    addNet(r);
  }
  return { validators, short: validators.length < want };
}
