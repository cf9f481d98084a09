/**
 * Cluster mode: every instance's copy of what the active coordinator told each peer (assignment,
 * rings) for the peers it holds, rebuilt from the coordinator's messages to them (the leader's
 * instance sends each to the peer's holder only). Followers answer `canSignal`, `getRing` and
 * `getAssignment` from it with the coordinator's own rules (coordinator.ts `canSignal`): ring
 * neighbours, and a requester with the first stage and the head of the ring it was last sent for a
 * model. A pair across instances is allowed when either side's instance finds it so (the sender's
 * instance vouches, the receiver's checks its own peer).
 */
import type { ServerMessage } from '../../../shared/protocol/signaling.js';
import type { PeerAssignment, Ring } from '../coordinator-types.js';

/** The mirror. */
export interface IntroductionsMirror {
  /** Records a message the coordinator sent to `peer` (null: the coordinator forgot the peer). */
  observe(peer: string, msg: ServerMessage | null): void;
  canSignal(a: string, b: string): boolean;
  getAssignment(peer: string): PeerAssignment | null;
  getRing(modelId: string): Ring | null;
  /** The id of the ring `peer` was last sent for `modelId` (null: none, or a no-ring since). */
  ringSent(peer: string, modelId: string): string | null;
  /** The validator rings last sent (to any requester held here) with a ring of `modelId`. */
  getValidatorRings(modelId: string): Ring[];
  /** The highest epoch seen. */
  readonly epoch: number;
  /** Peers with an entry. */
  readonly size: number;
}

interface PeerView {
  assignment: PeerAssignment | null;
  /** model id -> the ring this peer was last sent for it, with its validator rings. */
  rings: Map<string, Ring>;
  validators: Map<string, Ring[]>;
}

/** Creates an empty mirror. */
export function createIntroductionsMirror(): IntroductionsMirror {
  const peers = new Map<string, PeerView>();
  const latestRing = new Map<string, Ring>();
  const latestValidators = new Map<string, Ring[]>();
  let epoch = 0;
  const viewOf = (peer: string): PeerView => {
    let v = peers.get(peer);
    if (!v) {
      v = { assignment: null, rings: new Map(), validators: new Map() };
      peers.set(peer, v);
    }
    return v;
  };
  const endsWith = (ring: Ring, stage: string): boolean => {
    const st = ring.stages;
    return st[0]?.peer === stage || st[st.length - 1]?.peer === stage;
  };
  /** True when `requester` was last sent a ring (or validator ring) whose first stage or head is `stage`. */
  const byRing = (requester: string, stage: string): boolean => {
    const v = peers.get(requester);
    for (const ring of v?.rings.values() ?? []) if (endsWith(ring, stage)) return true;
    for (const rings of v?.validators.values() ?? []) if (rings.some((r) => endsWith(r, stage))) return true;
    return false;
  };
  return {
    observe(peer, msg) {
      if (msg === null) {
        peers.delete(peer);
        return;
      }
      switch (msg.type) {
        case 'assignment':
          epoch = Math.max(epoch, msg.epoch);
          viewOf(peer).assignment = {
            kind: 'assigned',
            epoch: msg.epoch,
            ringId: msg.ringId,
            model: msg.model.id,
            range: msg.range,
            prev: msg.prev,
            next: msg.next,
          };
          return;
        case 'unassigned':
          epoch = Math.max(epoch, msg.epoch);
          viewOf(peer).assignment = {
            kind: 'unassigned',
            epoch: msg.epoch,
            reason: msg.reason,
            lightweightModels: msg.lightweightModels,
          };
          return;
        case 'ring': {
          epoch = Math.max(epoch, msg.epoch);
          const ring: Ring = {
            ringId: msg.ringId,
            model: msg.model.id,
            epoch: msg.epoch,
            stages: msg.stages,
          };
          const view = viewOf(peer);
          view.rings.set(ring.model, ring);
          const validators: Ring[] = (msg.validators ?? []).map((r) => ({
            ringId: r.ringId,
            model: ring.model,
            epoch: r.epoch,
            stages: r.stages,
          }));
          if (validators.length > 0) {
            view.validators.set(ring.model, validators);
            latestValidators.set(ring.model, validators);
          } else view.validators.delete(ring.model);
          const prev = latestRing.get(ring.model);
          if (!prev || prev.epoch <= ring.epoch) latestRing.set(ring.model, ring);
          return;
        }
        case 'no-ring':
          peers.get(peer)?.rings.delete(msg.model);
          peers.get(peer)?.validators.delete(msg.model);
          latestRing.delete(msg.model);
          return;
        default:
          return;
      }
    },
    canSignal(a, b) {
      if (a === b) return false;
      const aa = peers.get(a)?.assignment;
      if (aa?.kind === 'assigned' && (aa.prev === b || aa.next === b)) return true;
      const ba = peers.get(b)?.assignment;
      if (ba?.kind === 'assigned' && (ba.prev === a || ba.next === a)) return true;
      return byRing(a, b) || byRing(b, a);
    },
    getAssignment: (peer) => peers.get(peer)?.assignment ?? null,
    getRing: (modelId) => latestRing.get(modelId) ?? null,
    ringSent: (peer, modelId) => peers.get(peer)?.rings.get(modelId)?.ringId ?? null,
    getValidatorRings: (modelId) => latestValidators.get(modelId) ?? [],
    get epoch() {
      return epoch;
    },
    get size() {
      return peers.size;
    },
  };
}
