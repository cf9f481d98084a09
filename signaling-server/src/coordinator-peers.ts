/**
 * A peer's life in the coordinator: joining (`addPeer`), its claimed capability and what the
 * server believes of it (capped against the fleet and by evidence: peer-trust.ts, with hysteresis
 * on changes), going offline and back, removal, and leaving or pausing a ring (drain, then planned
 * out). Each change that matters to planning schedules a re-plan.
 */
import { RingworkError } from '../../shared/errors.js';
import type { PeerCapability } from '../../shared/protocol/signaling.js';
import type { Clock } from './clock.js';
import { newPeerState, type PeerState } from './coordinator-state.js';
import type { Coordinator, CoordinatorOptions } from './coordinator-types.js';
import type { LinkMatrix } from './link-matrix.js';
import { createFleet, effectiveCapability, trustedCategory, type TrustPolicy } from './peer-trust.js';
import type { ValidatorRings } from './validator-rings.js';

/** The coordinator state and helpers a peer's lifecycle reads and calls. */
export interface PeerLifecycleContext {
  clock: Clock;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void };
  peers: Map<string, PeerState>;
  matrix: LinkMatrix;
  validators: ValidatorRings;
  policy: TrustPolicy;
  thresholds: NonNullable<CoordinatorOptions['plannerOptions']>['categoryThresholds'];
  verifyAfterMs: number;
  profileMinIntervalMs: number;
  reportBurst: number;
  reportRefillMs: number;
  schedule(why: string, urgent?: boolean): void;
  inAnyRing(id: string): boolean;
  peerOrThrow(id: string): PeerState;
  stopped(): boolean;
}

/** The lifecycle entry points of a {@link Coordinator}. */
export type PeerLifecycleHandlers = Pick<
  Coordinator,
  'addPeer' | 'setCapability' | 'setOnline' | 'removePeer' | 'withdraw' | 'withdrawn' | 'resume'
>;

/** Builds a peer's lifecycle over the coordinator's state. */
export function createPeerLifecycle(ctx: PeerLifecycleContext): {
  handlers: PeerLifecycleHandlers;
  /** Recomputes every peer's effective capability and category; true when any changed. */
  refreshEffective(): boolean;
  /** What the server believes of `p` claiming `claimed` (capped against the fleet, its category trusted). */
  effectiveOf(p: PeerState, claimed: PeerCapability): PeerCapability;
} {
  const { clock, log, peers, matrix, validators, policy, thresholds } = ctx;
  const { verifyAfterMs, profileMinIntervalMs, reportBurst, reportRefillMs } = ctx;
  const { schedule, inAnyRing, peerOrThrow } = ctx;
  /** Whether a peer's claim is part of the fleet others are compared with. */
  const inFleet = (q: PeerState): boolean => q.online && q.claimed !== null && q.roles.has('contributor');
  const fleetOf = () => createFleet([...peers.values()].filter(inFleet).map((q) => q.claimed!));

  const effectiveOf = (
    p: PeerState,
    claimed: PeerCapability,
    fleet: ReturnType<typeof createFleet> = fleetOf(),
  ): PeerCapability => {
    const eff = effectiveCapability(
      claimed,
      p.evidence,
      fleet.without(inFleet(p) ? p.claimed : null),
      policy,
    );
    return { ...eff, category: trustedCategory(eff, claimed.category, thresholds) };
  };

  /**
   * The fleet as of the last full refresh. A newcomer's first claim is capped against it, O(1),
   * instead of re-capping every peer on every join (O(peers) per profile, O(peers²) over a connect
   * storm: it was most of the server's CPU at a few thousand peers); the re-plan a first claim
   * always schedules refreshes every peer against the current fleet before planning.
   */
  let lastFleet: ReturnType<typeof createFleet> | null = null;

  /** Recomputes every peer's effective capability and category; true when any changed. */
  const refreshEffective = (): boolean => {
    const now = clock.now();
    let changed = false;
    const fleet = fleetOf();
    lastFleet = fleet;
    for (const p of peers.values()) {
      const ev = p.evidence;
      if (!ev.verified && ev.readySince !== null && now - ev.readySince >= verifyAfterMs) ev.verified = true;
      if (!p.claimed) continue;
      const eff = effectiveOf(p, p.claimed, fleet);
      if (!p.capability || JSON.stringify(eff) !== JSON.stringify(p.capability)) changed = true;
      p.capability = eff;
      p.category = eff.category ?? null;
    }
    return changed;
  };

  const applyClaim = (p: PeerState, claimed: PeerCapability): void => {
    const first = p.capability === null;
    p.claimed = claimed;
    p.pendingClaim = null;
    p.claimAppliedAt = clock.now();
    if (first && lastFleet) {
      // A first claim always changes the plan's input (a new contributor): schedule the re-plan, which
      // re-caps the whole fleet with this claim in it; until then the others keep their caps.
      const eff = effectiveCapability(claimed, p.evidence, lastFleet.without(null), policy);
      p.capability = { ...eff, category: trustedCategory(eff, claimed.category, thresholds) };
      p.category = p.capability.category ?? null;
      schedule(`profile of ${p.id}`);
      return;
    }
    if (refreshEffective()) schedule(`profile of ${p.id}`);
  };

  /** A withdrawing peer is done draining (or out of time): plan without it. */
  const markOut = (id: string): void => {
    const p = peers.get(id);
    if (!p?.withdrawal || p.withdrawal.state === 'out') return;
    if (p.withdrawal.timer) clock.clearTimeout(p.withdrawal.timer);
    p.withdrawal = { mode: p.withdrawal.mode, state: 'out', timer: null };
    if (p.capability) schedule(`${id} ${p.withdrawal.mode === 'pause' ? 'paused' : 'left'}`);
  };

  const handlers: PeerLifecycleHandlers = {
    addPeer(id, roles) {
      const existing = peers.get(id);
      if (existing) {
        const before = existing.roles.has('contributor');
        if (!existing.online) {
          existing.online = true;
          if (existing.capability) schedule(`${id} is back`);
        }
        existing.roles = new Set(roles);
        if (before && !existing.roles.has('contributor') && existing.capability) {
          existing.capability = null;
          existing.claimed = null;
          existing.pendingClaim = null;
          existing.category = null;
          schedule('contributor role dropped');
        }
        if (!existing.roles.has('requester')) existing.subscriptions.clear();
        return;
      }
      peers.set(id, newPeerState(id, roles, { clock, reportBurst, reportRefillMs }));
    },
    setCapability(id, capability) {
      const p = peerOrThrow(id);
      if (!p.roles.has('contributor')) {
        throw new RingworkError(
          'PROTOCOL_NOT_ALLOWED',
          'Only a peer that said hello with the "contributor" role may send a profile.',
          {},
        );
      }
      if (!p.claimed) {
        applyClaim(p, capability);
        return;
      }
      // Hysteresis: a claim that changes nothing the planner would use (an increase past what is
      // observed, a repeat) waits for no one; a real change applies at most every profileMinIntervalMs.
      const same = JSON.stringify(effectiveOf(p, capability)) === JSON.stringify(p.capability);
      if (same) {
        if (p.claimTimer === null) p.claimed = capability;
        else p.pendingClaim = capability;
        return;
      }
      const wait = p.claimAppliedAt + profileMinIntervalMs - clock.now();
      if (wait <= 0 && p.claimTimer === null) {
        applyClaim(p, capability);
        return;
      }
      p.pendingClaim = capability;
      if (p.claimTimer === null) {
        p.claimTimer = clock.setTimeout(
          () => {
            p.claimTimer = null;
            if (p.pendingClaim && peers.get(p.id) === p && !ctx.stopped()) applyClaim(p, p.pendingClaim);
          },
          Math.max(0, wait),
        );
      }
    },
    setOnline(id, online) {
      const p = peers.get(id);
      if (!p || p.online === online) return;
      p.online = online;
      if (!online) {
        // It can no longer receive anything; it is not anyone's neighbour until re-planned back in.
        p.assignment = null;
        p.sentKey = null;
        p.status = null;
      }
      if (p.capability)
        schedule(`${id} ${online ? 'back online' : 'went offline'}`, !online && inAnyRing(id));
    },
    removePeer(id, reason) {
      const p = peers.get(id);
      if (!p) return;
      peers.delete(id);
      // A requester that asked for validator rings no longer needs them.
      if (validators.forget(id)) schedule(`${id} needs no validator rings`);
      if (p.claimTimer !== null) clock.clearTimeout(p.claimTimer);
      if (p.withdrawal?.timer) clock.clearTimeout(p.withdrawal.timer);
      matrix.forget(id);
      for (const q of peers.values()) q.laps.delete(id);
      const inRing = inAnyRing(id);
      log.info({ peer: id, reason, inRing }, 'peer removed');
      // An offline peer was already planned out.
      if (p.capability && p.online) schedule(`${id} removed: ${reason}`, inRing);
    },
    withdraw(id, mode, drainMs) {
      const p = peerOrThrow(id);
      if (!p.roles.has('contributor')) {
        throw new RingworkError('PROTOCOL_NOT_ALLOWED', 'Only a contributor can leave or pause a ring.', {});
      }
      if (p.withdrawal?.timer) clock.clearTimeout(p.withdrawal.timer);
      // Draining: the ring stays as it is so open sessions finish; the stage itself takes no new one.
      // When the drain time is up the peer is planned out whether or not it said `withdrawn`.
      p.withdrawal = {
        mode,
        state: 'draining',
        timer: clock.setTimeout(() => markOut(id), drainMs),
      };
      log.info({ peer: id, mode, drainMs }, 'withdrawing');
    },
    withdrawn: markOut,
    resume(id) {
      const p = peerOrThrow(id);
      if (!p.withdrawal) return;
      if (p.withdrawal.timer) clock.clearTimeout(p.withdrawal.timer);
      const wasOut = p.withdrawal.state === 'out';
      p.withdrawal = null;
      if (wasOut && p.capability) schedule(`${id} resumed`);
    },
  };
  return { handlers, refreshEffective, effectiveOf };
}
