/**
 * What to tell peers after a re-plan: old assignments and rings against new ones → messages. Pure:
 * the coordinator applies the changes to its state and hands the messages to its sender. Peers are
 * sent only changes (keys compare what a peer was last told), because every `assignment` may make a
 * contributor reload weights and every `ring` makes a requester reconnect.
 */
import {
  SIGNALING_VERSION,
  type ModelDescriptor,
  type SecurityAnswer,
  type ServerMessage,
} from '../../shared/protocol/signaling.js';
import type { NoRing, PeerAssignment, Ring } from './coordinator-types.js';

/** A key that changes exactly when a peer must be told about its assignment again. */
export function assignmentKey(a: PeerAssignment): string {
  if (a.kind === 'assigned') return `a|${a.ringId}|${a.range.join('-')}|${a.prev}|${a.next}`;
  // Not the ring id: a standby of the same units stays put (no message, no reload) across epochs.
  if (a.kind === 'standby') return `s|${a.model}|${a.range.join('-')}`;
  return `u|${a.reason}|${a.lightweightModels.join(',')}`;
}

/** The `assignment` / `standby` / `unassigned` message for an assignment (`describe` maps model id → descriptor). */
export function assignmentMessage(
  a: PeerAssignment,
  describe: (modelId: string) => ModelDescriptor,
): ServerMessage {
  if (a.kind === 'standby') {
    return {
      type: 'standby',
      v: SIGNALING_VERSION,
      epoch: a.epoch,
      ringId: a.ringId,
      model: describe(a.model),
      range: a.range,
    };
  }
  return a.kind === 'assigned'
    ? {
        type: 'assignment',
        v: SIGNALING_VERSION,
        epoch: a.epoch,
        ringId: a.ringId,
        model: describe(a.model),
        range: a.range,
        prev: a.prev,
        next: a.next,
      }
    : {
        type: 'unassigned',
        v: SIGNALING_VERSION,
        epoch: a.epoch,
        reason: a.reason.slice(0, 500),
        lightweightModels: a.lightweightModels.slice(0, 100),
      };
}

/** What the coordinator knows of one model when answering requesters. */
export interface RingView {
  descriptor: ModelDescriptor;
  totalBytes: number;
  ring: Ring | null;
  noRing: NoRing | null;
  /** Result validation: the validator rings this requester is sent (validator-rings.ts). */
  validators?: readonly Ring[];
  /** Result validation: the level asked for and served (absent: not asked, k = 1). */
  security?: SecurityAnswer;
}

/** A key that changes exactly when a requester must be sent the model's ring (or no-ring) again. */
export function ringKey(view: RingView | undefined): string {
  if (!view) return 'unknown';
  const sec = view.security ? `|k${view.security.k}/${view.security.requested}` : '';
  return view.ring
    ? `ring|${view.ring.ringId}${
        view.validators?.length || sec
          ? `|${(view.validators ?? []).map((r) => r.ringId).join(',')}${sec}`
          : ''
      }`
    : `none|${view.noRing?.reason}|${view.noRing?.missingBytes}${sec}`;
}

/** The ring ids a requester was sent with a ring key (primary first, then validator rings). */
export function ringIdsOfKey(key: string | null | undefined): string[] {
  if (!key?.startsWith('ring|')) return [];
  const [, primary, validators] = key.split('|');
  return [primary!, ...(validators ? validators.split(',') : [])];
}

const stagesOut = (stages: Ring['stages']) =>
  stages.map((s) => ({ peer: s.peer, range: s.range, ...(s.key !== undefined ? { key: s.key } : {}) }));

/** The `ring` / `no-ring` answer for a model (`catalog` lists the ids for an unknown one). */
export function ringMessage(
  modelId: string,
  view: RingView | undefined,
  catalog: readonly string[],
): ServerMessage {
  if (!view) {
    return {
      type: 'no-ring',
      v: SIGNALING_VERSION,
      model: modelId.slice(0, 200),
      reason: `unknown model; the catalog has: ${catalog.join(', ')}`.slice(0, 500),
    };
  }
  if (view.ring) {
    return {
      type: 'ring',
      v: SIGNALING_VERSION,
      epoch: view.ring.epoch,
      ringId: view.ring.ringId,
      model: view.descriptor,
      stages: stagesOut(view.ring.stages),
      totalBytes: view.totalBytes,
      ...(view.validators?.length
        ? {
            validators: view.validators.map((r) => ({
              ringId: r.ringId,
              epoch: r.epoch,
              stages: stagesOut(r.stages),
            })),
          }
        : {}),
      ...(view.security ? { security: view.security } : {}),
    };
  }
  const nr = view.noRing ?? { reason: 'not planned yet', missingBytes: view.totalBytes };
  return {
    type: 'no-ring',
    v: SIGNALING_VERSION,
    model: modelId,
    reason: nr.reason.slice(0, 500),
    ...(nr.missingBytes !== undefined ? { missingBytes: nr.missingBytes } : {}),
    // What a requester needs to run the model alone when it fits: where it lives and its size.
    descriptor: view.descriptor,
    totalBytes: view.totalBytes,
    ...(view.security ? { security: view.security } : {}),
  };
}

/** A contributor's assignment state before the diff: what it holds and the key it was last sent. */
export interface AssignedPeer {
  readonly id: string;
  readonly assignment: PeerAssignment | null;
  readonly sentKey: string | null;
}

/** One contributor whose assignment changed: the new state and the message to send. */
export interface AssignmentChange {
  peer: string;
  assignment: PeerAssignment;
  key: string;
  message: ServerMessage;
}

/**
 * Compares each peer's current assignment with its next one (`next.get(id)`; peers not in `next` are
 * left alone) and returns the changes. A peer whose key is unchanged keeps its assignment — and so
 * its epoch: a new epoch elsewhere must not make it reload.
 */
export function diffAssignments(
  peers: Iterable<AssignedPeer>,
  next: ReadonlyMap<string, PeerAssignment>,
  describe: (modelId: string) => ModelDescriptor,
): AssignmentChange[] {
  const changes: AssignmentChange[] = [];
  for (const p of peers) {
    const a = next.get(p.id);
    if (!a) continue;
    const key = assignmentKey(a);
    if (key === p.sentKey && p.assignment) continue;
    changes.push({ peer: p.id, assignment: a, key, message: assignmentMessage(a, describe) });
  }
  return changes;
}

/** A requester's subscriptions: model id → key of the last ring/no-ring sent (null: answer owed). */
export interface Subscriber {
  readonly id: string;
  readonly subscriptions: ReadonlyMap<string, string | null>;
}

/** One ring/no-ring a subscriber must be sent, with the key to record. */
export interface RingUpdate {
  peer: string;
  model: string;
  key: string;
  message: ServerMessage;
}

/** The ring answers subscribers are owed: every subscription whose ring key changed since last sent. */
export function diffSubscriptions(
  subscribers: Iterable<Subscriber>,
  view: (modelId: string, peer: string) => RingView | undefined,
  catalog: readonly string[],
): RingUpdate[] {
  const updates: RingUpdate[] = [];
  for (const p of subscribers) {
    for (const [modelId, sent] of p.subscriptions) {
      const v = view(modelId, p.id);
      const key = ringKey(v);
      if (key === sent) continue;
      updates.push({ peer: p.id, model: modelId, key, message: ringMessage(modelId, v, catalog) });
    }
  }
  return updates;
}
