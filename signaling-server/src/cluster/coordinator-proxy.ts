/**
 * The coordinator every instance's protocol talks to in cluster mode: the real one while this
 * instance holds the lease, otherwise a forwarder that posts each call to the leader's channel and
 * answers reads (`canSignal`, assignments, rings, the snapshot) from what it mirrors of the leader's
 * messages to the peers it holds. Calls concerning a peer are remembered in `locals`, so a new
 * leader can be re-fed every peer this instance holds (cluster-node.ts `replay`).
 */
import type { Logger } from 'pino';
import type { PeerCapability, SecurityRequest } from '../../../shared/protocol/signaling.js';
import type { Coordinator, CoordinatorSnapshot } from '../coordinator-types.js';
import type { PeerRole } from '../peer-registry.js';
import {
  createValidationRegistry,
  type EvidenceVerdict,
  type ValidationRegistry,
} from '../validation-registry.js';
import type { WorkCredit } from '../validation-work.js';
import { modelOfRingId } from '../answer-usage.js';
import { refusal } from '../refusal.js';
import type { IntroductionsMirror } from './introductions-mirror.js';
import type { RedisStore } from './redis-store.js';

/** Coordinator calls a follower forwards (each one's first argument is the peer concerned). */
export const FORWARDED = [
  'addPeer',
  'setCapability',
  'setOnline',
  'removePeer',
  'requestRing',
  'assignmentStatus',
  'reportUnreachable',
  'reportStall',
  'reportLap',
  'reportLinks',
  'withdraw',
  'withdrawn',
  'resume',
  'resync',
  // Result validation (not coordinator methods: the leader's `validation` registry runs them).
  'validationKey',
  'validationEvidence',
  'validatedWork',
] as const;
export type ForwardedOp = (typeof FORWARDED)[number];
export const isForwarded = (op: unknown): op is ForwardedOp => FORWARDED.includes(op as ForwardedOp);

/** What this instance remembers of each peer it holds, to re-feed a new coordinator. */
export interface LocalPeer {
  roles: PeerRole[];
  client?: string;
  capability?: PeerCapability;
  models: Set<string>;
  tokenHash?: string;
  /** Taken over from another instance and not yet re-announced to the coordinator. */
  adopted?: boolean;
  /** The validation key it registered (re-sent to a new leader). */
  validationKey?: string;
  /** model id -> the security level it asked for (absent: level 1), re-sent with its ring requests. */
  security?: Map<string, SecurityRequest>;
}

/** What {@link createCoordinatorProxy} works with: the cluster node's state, by reference. */
export interface CoordinatorProxyDeps {
  me: string;
  locals: Map<string, LocalPeer>;
  store: RedisStore;
  mirror: IntroductionsMirror;
  log: Pick<Logger, 'debug'>;
  /** Runs a call here when leading, else publishes it to the leader. */
  forward(op: ForwardedOp, args: unknown[]): unknown;
  /** Writes a held peer's session record to Redis. */
  saveLocal(peer: string): void;
  /** The real coordinator while this instance leads, else null. */
  real(): Coordinator | null;
  /** The leader's last published snapshot (followers answer `/api/network` from it). */
  cachedSnapshot(): CoordinatorSnapshot;
  /** True while a signal from `a` to `b`, vouched for by `a`'s instance, runs through the local relay. */
  vouched?(a: string, b: string): boolean;
  /** `--allow-any-relay` (bench hook, test mode): any two peers may signal, as with the leader. */
  allowAnyRelay?: boolean;
}

/** Builds the coordinator facade of one cluster instance. */
export function createCoordinatorProxy(deps: CoordinatorProxyDeps): Coordinator {
  const { me, locals, store, mirror, log, forward, saveLocal } = deps;
  // A follower checks a key's form itself (a bad one is refused to the peer at once), then passes
  // keys, evidence and proofs of work to the leader, whose registry decides (its `ring` answers
  // carry the keys; reputation, flags and credit live there). Verdicts come back only as errors.
  const localValidation = createValidationRegistry();
  const forwardedValidation: ValidationRegistry = {
    ...localValidation,
    async setKey(peer, key) {
      await localValidation.setKey(peer, key);
      const l = locals.get(peer);
      if (l) l.validationKey = key;
      forward('validationKey', [peer, key]);
    },
    submitEvidence(reporter, evidence, ringPeers, majority) {
      forward('validationEvidence', [reporter, evidence, ringPeers, ...(majority ? [majority] : [])]);
      return Promise.resolve<EvidenceVerdict>('reported');
    },
    creditWork(rings, proof, context) {
      forward('validatedWork', [context?.requester ?? '', rings, proof, context]);
      return Promise.resolve<WorkCredit>({ steps: 0, maxDistance: 0, repeated: 0 });
    },
  };
  return {
    get validation() {
      return deps.real()?.validation ?? forwardedValidation;
    },
    // Stake standing is read per instance (stake/): only the leader's planning uses it.
    membershipChanged(reason) {
      deps.real()?.membershipChanged(reason);
    },
    addPeer(id, roles) {
      const l = locals.get(id) ?? { roles: [...roles], models: new Set<string>() };
      l.roles = [...roles];
      locals.set(id, l);
      forward('addPeer', [id, roles]);
    },
    setCapability(id, capability) {
      const l = locals.get(id);
      if (l) {
        l.capability = capability;
        saveLocal(id);
      }
      forward('setCapability', [id, capability]);
    },
    setOnline(id, online) {
      if (online) {
        forward('setOnline', [id, online]);
        return;
      }
      // Only the holder speaks for a peer: a session that moved on is not taken offline by its old instance.
      store
        .ownerOf(id)
        .then((owner) => {
          if (owner === me) forward('setOnline', [id, false]);
        })
        .catch((e: unknown) => log.debug({ err: e }, 'offline not forwarded (redis down)'));
    },
    removePeer(id, reason) {
      locals.delete(id);
      mirror.observe(id, null);
      store
        .releasePeer(id, me)
        .then(async (mine) => {
          if (!mine) return;
          await store.deleteSession(id);
          forward('removePeer', [id, reason]);
        })
        .catch((e: unknown) => log.debug({ err: e }, 'removal not forwarded (redis down)'));
    },
    requestRing(id, modelId, security) {
      const l = locals.get(id);
      if (l && !l.models.has(modelId)) {
        l.models.add(modelId);
        saveLocal(id);
      }
      // A re-fed leader must get the same level asked (a validated request stays validated).
      if (l) {
        l.security ??= new Map();
        if (security) l.security.set(modelId, security);
        else l.security.delete(modelId);
      }
      forward('requestRing', security ? [id, modelId, security] : [id, modelId]);
    },
    assignmentStatus: (id, status) => void forward('assignmentStatus', [id, status]),
    reportUnreachable(reporter, target, reason) {
      const real = deps.real();
      if (real) return real.reportUnreachable(reporter, target, reason);
      forward('reportUnreachable', [reporter, target, reason]);
      return 'noted';
    },
    reportStall(reporter, stall) {
      const real = deps.real();
      if (real) return real.reportStall(reporter, stall);
      forward('reportStall', [reporter, stall]);
      return [];
    },
    reportLap(reporter, lap) {
      // A follower refuses at once what it can check itself — a lap of a ring its requester was not
      // sent (its mirror of the coordinator's messages) — so the requester's usage, recorded where
      // it is connected, counts only laps the leader would take; the leader checks again.
      if (!deps.real() && mirror.ringSent(reporter, modelOfRingId(lap.ringId)) !== lap.ringId) {
        throw refusal('PROTOCOL_NOT_ALLOWED', `You were not sent ring ${lap.ringId}; no lap to report.`, {
          details: { ringId: lap.ringId },
        });
      }
      forward('reportLap', [reporter, lap]);
    },
    reportLinks: (reporter, entries) => void forward('reportLinks', [reporter, entries]),
    withdraw: (id, mode, drainMs) => void forward('withdraw', [id, mode, drainMs]),
    withdrawn: (id) => void forward('withdrawn', [id]),
    resume: (id) => void forward('resume', [id]),
    resync: (id) => void forward('resync', [id]),
    // A follower knows the assignments and rings of the peers it holds only: the pair is allowed when
    // its side allows it, or the other side's instance vouched for it (cluster-node.ts relay).
    canSignal: (a, b) =>
      deps.real()?.canSignal(a, b) ??
      ((deps.allowAnyRelay === true && a !== b) || mirror.canSignal(a, b) || deps.vouched?.(a, b) === true),
    flush: () => deps.real()?.flush(),
    get pending() {
      return deps.real()?.pending ?? false;
    },
    get epoch() {
      return deps.real()?.epoch ?? mirror.epoch;
    },
    snapshot: () => deps.real()?.snapshot() ?? deps.cachedSnapshot(),
    getAssignment: (id) => {
      const real = deps.real();
      return real ? real.getAssignment(id) : mirror.getAssignment(id);
    },
    getRing: (modelId, ringId) => {
      const real = deps.real();
      // The leader finds a lightweight replica by its id; a follower knows the last ring it relayed,
      // else (it holds none of that ring's peers, e.g. only the server's API requester) the ring of
      // the leader's last snapshot it read.
      if (real) return real.getRing(modelId, ringId);
      const ring =
        mirror.getRing(modelId) ?? deps.cachedSnapshot().models.find((m) => m.id === modelId)?.ring ?? null;
      // Asked by id (a validator ring's, say): another ring is not it.
      return ringId === undefined || ring?.ringId === ringId ? ring : null;
    },
    // A follower knows the validator rings its requesters were last sent.
    getValidatorRings: (modelId) =>
      deps.real()?.getValidatorRings(modelId) ?? mirror.getValidatorRings(modelId),
    // The cluster node's start/stop run the real one.
    start: () => undefined,
    stop: () => undefined,
  };
}
