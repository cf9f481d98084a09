/**
 * Who may serve which model: the operator's membership rule (e.g. a stake gate, per security
 * level), the models a peer failed to load, and the lightweight models a category-C peer could run
 * whole when it has no stage.
 */
import type { ModelState, PeerState } from './coordinator-state.js';
import type { CoordinatorOptions } from './coordinator-types.js';
import { servingOf } from './lightweight-replicas.js';

/** The coordinator state membership reads. */
export interface MembershipContext {
  membership: CoordinatorOptions['membership'];
  catalogOrder: readonly string[];
  byModel: Map<string, ModelState>;
}

/** Builds the membership helpers over the catalog. */
export function createMembership(ctx: MembershipContext) {
  const { membership, catalogOrder, byModel } = ctx;
  /** Why membership refuses `peer` model `model` at security level `level` (null: admitted). */
  const refusalOf = (peer: string, model: string, level = 1): string | null =>
    membership?.(peer, model, level) ?? null;
  /** Models `p` may not serve: those it failed to load and those membership refuses it. */
  const barredModels = (p: PeerState): ReadonlySet<string> => {
    if (!membership) return p.failedModels;
    const out = new Set(p.failedModels);
    for (const id of catalogOrder) if (refusalOf(p.id, id) !== null) out.add(id);
    return out;
  };
  /** The reason when membership refuses `p` every catalog model (its unassigned reason). */
  const allRefused = (p: PeerState): string | undefined => {
    if (!membership || catalogOrder.length === 0) return undefined;
    const reasons = catalogOrder.map((id) => refusalOf(p.id, id));
    return reasons.every((r) => r !== null) ? (reasons[0] ?? undefined) : undefined;
  };

  /** Catalog models an unassigned category-C peer could run alone (lightweight, fits, not refused). */
  const lightweightFor = (p: PeerState): string[] => {
    const memory = p.capability?.memoryBytes;
    if (p.category !== 'C' || memory === undefined) return [];
    return catalogOrder.filter((id) => {
      const ms = byModel.get(id);
      return (
        ms !== undefined &&
        servingOf(ms.model) === 'lightweight' &&
        !p.failedModels.has(id) &&
        refusalOf(p.id, id) === null &&
        ms.model.totalBytes <= memory
      );
    });
  };

  return { refusalOf, barredModels, allRefused, lightweightFor };
}
