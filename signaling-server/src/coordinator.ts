/**
 * The coordinator: holds the model catalog and the contributors' capabilities, runs the planner,
 * forms one ring per catalog model, tells every contributor its `assignment` (or why it is
 * `unassigned`), answers `ring-request`s, and decides which peers are introduced to each other (and
 * so may exchange WebRTC signaling through the relay).
 *
 * Policies (each one is a "why" the tests pin down):
 * - Re-plans are debounced (`debounceMs`, at most `maxWaitMs` late) so that a burst of joins costs one
 *   planner run and one round of assignments; they run on join (a profile arrives or changes), leave,
 *   removal (timeout, eviction) and a failed assignment.
 * - Re-planning goes through the planner's `replan(previousPlan, ...)`, which keeps a ring within 5% of
 *   the fresh optimum if that moves fewer units: moving units means re-downloading weights.
 * - Models are planned biggest first (they have the fewest feasible rings); each ring's peers are taken
 *   out of the pool for the next model. One ring per model.
 * - Category C follows the planner's policy: a C peer never takes a shard of a model it cannot hold
 *   whole; a model it can hold whole is lightweight for it and it is an ordinary candidate for that
 *   model's ring. Unassigned C peers are told the catalog models they could run alone
 *   (`lightweightModels`: weights + KV cache at the model's context fit their memory).
 * - A peer whose socket closed goes offline at once: it leaves planning (debounced re-plan) so its
 *   ring does not stall, while its session waits for a resume; a resume brings it back (re-plan).
 * - Epochs number ring configurations: a ring that changes gets the next epoch, and its id, its
 *   `ring` message and every member's `assignment` carry it.
 * - Introductions follow the last messages sent: ring neighbours (prev/next, the ring closes) are
 *   introduced once their assignments are out; a requester is introduced to every stage of the ring
 *   it was last sent for a model, in both directions. When the ring changes the requester is sent the
 *   new `ring` and the introductions move with it.
 * - `peer-unreachable` evicts the named peer only when confirmed: its heartbeat is stale (or its socket
 *   is gone), or a second distinct introduced peer reports it within `reportWindowMs`. One report alone
 *   cannot evict a healthy peer, and only introduced peers may report.
 *
 * Layout: the pure planning step is ring-planning.ts (contributors and previous rings → rings and
 * assignments), what to tell whom is assignment-diff.ts (old vs new → messages), the public types are
 * coordinator-types.ts; this file holds the state, the debounce, the protocol entry points and the
 * sending.
 *
 * Size (~660 lines, over the ~500 guideline): what is left here is the event handlers that share one
 * mutable state (peers, rings, introductions, debounce); planning (`ring-planning.ts`), the
 * assignment diff (`assignment-diff.ts`) and trust (`peer-trust.ts`) are already pure modules.
 */
import { RingworkError } from '../../shared/errors.js';
import type { Objective, PeerCategory, Plan } from '../../shared/planner/index.js';
import type { ModelDescriptor, PeerCapability, ServerMessage } from '../../shared/protocol/signaling.js';
import {
  assignmentMessage,
  diffAssignments,
  diffSubscriptions,
  ringKey,
  ringMessage,
  type RingView,
} from './assignment-diff.js';
import type { CatalogModel } from './catalog.js';
import { systemClock, type TimerHandle } from './clock.js';
import type {
  AssignmentStatus,
  Coordinator,
  CoordinatorOptions,
  NoRing,
  PeerAssignment,
  Ring,
} from './coordinator-types.js';
import type { PeerRole } from './peer-registry.js';
import {
  DEFAULT_TRUST_POLICY,
  effectiveCapability,
  median,
  newEvidence,
  trustedCategory,
  type PeerEvidence,
} from './peer-trust.js';
import { createLinkMatrix } from './link-matrix.js';
import { createTokenBucket, type TokenBucket } from './rate-limit.js';
import { planRings, ringAssignments } from './ring-planning.js';
import { noRingWithPauses, withdrawalView, type Withdrawal } from './withdrawal.js';

export type {
  AssignmentStatus,
  Coordinator,
  CoordinatorOptions,
  CoordinatorPeerView,
  CoordinatorSnapshot,
  Liveness,
  NoRing,
  PeerAssignment,
  Ring,
  RingStage,
} from './coordinator-types.js';

interface PeerState {
  id: string;
  roles: Set<PeerRole>;
  /** False while its socket is closed (in resume grace): not planned, not sent anything. */
  online: boolean;
  /** The effective capability (claim capped by evidence): what the planner uses. */
  capability: PeerCapability | null;
  /** The claim in effect (changes apply at most every `profileMinIntervalMs`). */
  claimed: PeerCapability | null;
  /** A later claim waiting for the hysteresis interval to pass. */
  pendingClaim: PeerCapability | null;
  claimAppliedAt: number;
  claimTimer: TimerHandle | null;
  evidence: PeerEvidence;
  /** Lap-derived TFLOPS by reporting requester (latest each), combined only from two or more. */
  laps: Map<string, number>;
  reportBucket: TokenBucket;
  lapBucket: TokenBucket;
  category: PeerCategory | null;
  assignment: PeerAssignment | null;
  /** The key of the last assignment/unassigned message sent, to send only changes. */
  sentKey: string | null;
  status: AssignmentStatus | null;
  failedModels: Set<string>;
  /** model id -> key of the last ring/no-ring sent (null: answer owed). */
  subscriptions: Map<string, string | null>;
  /** Leaving or pausing (see withdrawal.ts); null while contributing normally. */
  withdrawal: Withdrawal | null;
  linkBucket: TokenBucket;
}

interface ModelState {
  model: CatalogModel;
  /** The last plan that produced a ring (kept through infeasible spells: replan's stability anchor). */
  lastPlan: Plan | null;
  ring: Ring | null;
  noRing: NoRing | null;
  plan: Plan | null;
  /** Per-token times the requesters of the current ring measured (newest last, at most 5). */
  laps: { ringId: string; msPerToken: number }[];
}

const NOOP_LOGGER = { info() {}, warn() {}, error() {}, debug() {} };

/** 1 / the median per-token time requesters measured on the model's current ring, or null. */
function observedTokensPerSecond(ms: ModelState): number | null {
  const laps = ms.laps.filter((l) => l.ringId === ms.ring?.ringId).map((l) => l.msPerToken);
  return laps.length > 0 ? 1000 / median(laps) : null;
}

/** Creates a coordinator over a loaded catalog. */
export function createCoordinator(opts: CoordinatorOptions): Coordinator {
  const clock = opts.clock ?? systemClock;
  const log = opts.logger ?? NOOP_LOGGER;
  const objective: Objective = opts.objective ?? 'throughput';
  const debounceMs = opts.debounceMs ?? 200;
  const maxWaitMs = Math.max(opts.maxWaitMs ?? 2000, debounceMs);
  const staleAfterMs = opts.staleAfterMs ?? 10_000;
  const reportBurst = opts.reportBurst ?? 4;
  const reportRefillMs = opts.reportRefillMs ?? 10_000;
  const profileMinIntervalMs = opts.profileMinIntervalMs ?? 0;
  const verifyAfterMs = opts.verifyAfterMs ?? 60_000;
  const maxUnverifiedShare = opts.maxUnverifiedShare ?? 1;
  const policy = { ...DEFAULT_TRUST_POLICY, ...opts.trustPolicy };
  const thresholds = opts.plannerOptions?.categoryThresholds;
  // Biggest first: large models have the fewest feasible rings; small ones fit in what is left.
  const models: ModelState[] = [...opts.catalog]
    .map((model, i) => ({ model, i }))
    .sort((a, b) => b.model.totalBytes - a.model.totalBytes || a.i - b.i)
    .map(({ model }) => ({ model, lastPlan: null, ring: null, noRing: null, plan: null, laps: [] }));
  const byModel = new Map(models.map((m) => [m.model.descriptor.id, m]));
  const catalogOrder = opts.catalog.map((m) => m.descriptor.id);
  const peers = new Map<string, PeerState>();
  const matrix = createLinkMatrix({ now: () => clock.now() });
  let epoch = 0;
  let plans = 0;
  let timer: TimerHandle | null = null;
  let firstScheduledAt = 0;
  let stopped = false;

  const send = (id: string, msg: ServerMessage): void => {
    try {
      opts.send(id, msg);
    } catch (e) {
      log.error({ err: e, peer: id }, 'send failed');
    }
  };

  const schedule = (why: string): void => {
    if (stopped) return;
    const now = clock.now();
    if (timer === null) firstScheduledAt = now;
    else clock.clearTimeout(timer);
    // Debounce, but never past maxWait: a steady trickle of joins must not postpone planning forever.
    const delay = Math.max(0, Math.min(debounceMs, firstScheduledAt + maxWaitMs - now));
    log.debug({ why, delay }, 're-plan scheduled');
    timer = clock.setTimeout(() => {
      timer = null;
      replanNow();
    }, delay);
  };

  /** Claims of the other online contributors: the fleet a peer's claim is compared with. */
  const othersClaims = (self: PeerState): PeerCapability[] => {
    const out: PeerCapability[] = [];
    for (const q of peers.values())
      if (q !== self && q.online && q.claimed && q.roles.has('contributor')) out.push(q.claimed);
    return out;
  };

  const effectiveOf = (p: PeerState, claimed: PeerCapability): PeerCapability => {
    const eff = effectiveCapability(claimed, p.evidence, othersClaims(p), policy);
    return { ...eff, category: trustedCategory(eff, claimed.category, thresholds) };
  };

  /** Recomputes every peer's effective capability and category; true when any changed. */
  const refreshEffective = (): boolean => {
    const now = clock.now();
    let changed = false;
    for (const p of peers.values()) {
      const ev = p.evidence;
      if (!ev.verified && ev.readySince !== null && now - ev.readySince >= verifyAfterMs) ev.verified = true;
      if (!p.claimed) continue;
      const eff = effectiveOf(p, p.claimed);
      if (!p.capability || JSON.stringify(eff) !== JSON.stringify(p.capability)) changed = true;
      p.capability = eff;
      p.category = eff.category ?? null;
    }
    return changed;
  };

  /** Bytes of the stage a peer holds (the plan's figure, or its share of the model). */
  const stageBytes = (a: PeerAssignment): number => {
    if (a.kind !== 'assigned') return 0;
    const ms = byModel.get(a.model);
    if (!ms) return 0;
    const st = ms.plan?.ring.find((s) => s.layers[0] === a.range[0] && s.layers[1] === a.range[1]);
    if (st?.memoryBytes !== undefined) return st.memoryBytes;
    const units = Math.max(1, ms.model.descriptor.units);
    return (ms.model.totalBytes * (a.range[1] - a.range[0])) / units;
  };

  const applyClaim = (p: PeerState, claimed: PeerCapability): void => {
    p.claimed = claimed;
    p.pendingClaim = null;
    p.claimAppliedAt = clock.now();
    if (refreshEffective()) schedule(`profile of ${p.id}`);
  };

  const lightweightFor = (p: PeerState): string[] => {
    const memory = p.capability?.memoryBytes;
    if (p.category !== 'C' || memory === undefined) return [];
    return catalogOrder.filter((id) => {
      const ms = byModel.get(id);
      return ms !== undefined && !p.failedModels.has(id) && ms.model.totalBytes <= memory;
    });
  };

  const describe = (modelId: string): ModelDescriptor => {
    const ms = byModel.get(modelId);
    // Assignments only ever name catalog models; a miss is a bug, not bad input.
    if (!ms) throw new RingworkError('SERVER_INTERNAL', `Model ${modelId} is not in the catalog.`, {});
    return ms.model.descriptor;
  };

  const viewOf = (modelId: string): RingView | undefined => {
    const ms = byModel.get(modelId);
    return ms
      ? { descriptor: ms.model.descriptor, totalBytes: ms.model.totalBytes, ring: ms.ring, noRing: ms.noRing }
      : undefined;
  };

  const notifySubscribers = (): void => {
    for (const u of diffSubscriptions(peers.values(), viewOf, catalogOrder)) {
      peers.get(u.peer)?.subscriptions.set(u.model, u.key);
      send(u.peer, u.message);
    }
  };

  /** Plans (ring-planning.ts), applies the result, and sends what changed (assignment-diff.ts). */
  function replanNow(): void {
    if (stopped) return;
    plans++;
    refreshEffective();
    const contributors = [...peers.values()]
      .filter((p) => p.roles.has('contributor') && p.online && p.withdrawal?.state !== 'out')
      .flatMap((p) =>
        p.capability
          ? [
              {
                id: p.id,
                capability: p.capability,
                failedModels: p.failedModels,
                unverified: !p.evidence.verified,
              },
            ]
          : [],
      )
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const result = planRings({
      models,
      contributors,
      epoch,
      objective,
      plannerOptions: opts.plannerOptions,
      maxUnverifiedShare,
      links: matrix.links(contributors.map((c) => c.id)),
      minLinkMbps: opts.minLinkMbps,
    });
    const paused = [...peers.values()].filter((p) => p.withdrawal?.state === 'out' && p.online).length;
    result.outcomes.forEach((o, i) => {
      const ms = models[i];
      if (!ms) return;
      if (o.error !== undefined) log.error({ err: o.error, model: ms.model.descriptor.id }, 'planner failed');
      ms.plan = o.plan;
      ms.noRing = noRingWithPauses(o.noRing, paused);
      ms.ring = o.ring;
      ms.lastPlan = o.lastPlan;
    });
    const changed = result.epoch !== epoch;
    epoch = result.epoch;
    const assigned = ringAssignments(models.map((m) => m.ring));
    const next = new Map<string, PeerAssignment>();
    for (const p of peers.values()) {
      if (!p.capability || !p.roles.has('contributor') || !p.online) {
        p.assignment = null;
        p.sentKey = null;
        continue;
      }
      next.set(
        p.id,
        assigned.get(p.id) ?? {
          kind: 'unassigned',
          epoch,
          reason:
            withdrawalView(p.withdrawal)?.reason ??
            result.reasons.get(p.id) ??
            (p.failedModels.size === models.length
              ? 'this peer reported failures loading every catalog model'
              : 'not needed: every catalog model already has a ring'),
          lightweightModels: lightweightFor(p),
        },
      );
    }
    for (const c of diffAssignments(peers.values(), next, describe)) {
      const p = peers.get(c.peer);
      if (!p) continue;
      p.assignment = c.assignment;
      p.sentKey = c.key;
      p.status = null;
      // A new assignment has to be loaded and served again before it counts as evidence.
      p.evidence.readySince = null;
      send(c.peer, c.message);
    }
    if (changed) {
      log.info(
        {
          epoch,
          rings: models.map((m) => ({ model: m.model.descriptor.id, stages: m.ring?.stages.length ?? 0 })),
          contributors: contributors.length,
        },
        're-planned',
      );
    }
    notifySubscribers();
  }

  const peerOrThrow = (id: string): PeerState => {
    const p = peers.get(id);
    if (!p)
      throw new RingworkError('PROTOCOL_UNKNOWN_PEER', `Unknown peer ${id}.`, { details: { peer: id } });
    return p;
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
      if (!ms?.ring || sent !== `ring|${ms.ring.ringId}`) continue;
      // A requester talks to the first stage (token ids in) and the head (tokens out) only.
      const st = ms.ring.stages;
      if (st[0]?.peer === stage || st[st.length - 1]?.peer === stage) return true;
    }
    return false;
  };

  /** A withdrawing peer is done draining (or out of time): plan without it. */
  const markOut = (id: string): void => {
    const p = peers.get(id);
    if (!p?.withdrawal || p.withdrawal.state === 'out') return;
    if (p.withdrawal.timer) clock.clearTimeout(p.withdrawal.timer);
    p.withdrawal = { mode: p.withdrawal.mode, state: 'out', timer: null };
    if (p.capability) schedule(`${id} ${p.withdrawal.mode === 'pause' ? 'paused' : 'left'}`);
  };

  return {
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
      peers.set(id, {
        id,
        online: true,
        roles: new Set(roles),
        capability: null,
        claimed: null,
        pendingClaim: null,
        claimAppliedAt: 0,
        claimTimer: null,
        evidence: newEvidence(),
        laps: new Map(),
        reportBucket: createTokenBucket({
          capacity: reportBurst,
          refillPerSecond: 1000 / reportRefillMs,
          clock,
        }),
        lapBucket: createTokenBucket({ capacity: 4, refillPerSecond: 0.2, clock }),
        category: null,
        assignment: null,
        sentKey: null,
        status: null,
        failedModels: new Set(),
        subscriptions: new Map(),
        withdrawal: null,
        linkBucket: createTokenBucket({ capacity: 4, refillPerSecond: 0.2, clock }),
      });
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
            if (p.pendingClaim && peers.get(p.id) === p && !stopped) applyClaim(p, p.pendingClaim);
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
      if (p.capability) schedule(`${id} ${online ? 'back online' : 'went offline'}`);
    },
    removePeer(id, reason) {
      const p = peers.get(id);
      if (!p) return;
      peers.delete(id);
      if (p.claimTimer !== null) clock.clearTimeout(p.claimTimer);
      if (p.withdrawal?.timer) clock.clearTimeout(p.withdrawal.timer);
      matrix.forget(id);
      for (const q of peers.values()) q.laps.delete(id);
      const inRing = models.some((m) => m.ring?.stages.some((s) => s.peer === id));
      log.info({ peer: id, reason, inRing }, 'peer removed');
      // An offline peer was already planned out.
      if (p.capability && p.online) schedule(`${id} removed: ${reason}`);
    },
    requestRing(id, modelId) {
      const p = peerOrThrow(id);
      if (!p.roles.has('requester')) {
        throw new RingworkError(
          'PROTOCOL_NOT_ALLOWED',
          'Only a peer that said hello with the "requester" role may request a ring.',
          {},
        );
      }
      if (!byModel.has(modelId)) {
        // Unknown models are answered but not remembered: a client cannot grow server state with junk names.
        send(id, ringMessage(modelId, viewOf(modelId), catalogOrder));
        return;
      }
      p.subscriptions.set(modelId, null);
      // Mid-debounce the current ring is about to change: the re-plan answers with the new one.
      // Otherwise answer this peer alone (not a sweep over every subscriber: requests are cheap to send).
      if (timer === null) {
        p.subscriptions.set(modelId, ringKey(viewOf(modelId)));
        send(id, ringMessage(modelId, viewOf(modelId), catalogOrder));
      }
    },
    assignmentStatus(id, status) {
      const p = peerOrThrow(id);
      const a = p.assignment;
      if (!a || a.epoch !== status.epoch) {
        log.debug({ peer: id, epoch: status.epoch, current: a?.epoch }, 'stale assignment-status ignored');
        return;
      }
      p.status = status;
      if (status.state === 'ready' && a.kind === 'assigned') {
        p.evidence.readySince ??= clock.now();
        p.evidence.provenBytes = Math.max(p.evidence.provenBytes, stageBytes(a));
      }
      if (status.state === 'failed' && a.kind === 'assigned') {
        // Memory is trusted by use: a range it could not load is more than it will be offered again.
        p.evidence.readySince = null;
        p.evidence.memoryCeiling = Math.min(p.evidence.memoryCeiling, Math.max(1, stageBytes(a) / 2));
        log.warn({ peer: id, model: a.model, message: status.message }, 'assignment failed');
        p.failedModels.add(a.model);
        schedule(`${id} failed to load ${a.model}`);
      }
    },
    reportUnreachable(reporter, target, reason) {
      const r = peerOrThrow(reporter);
      const t = peers.get(target);
      if (!t) {
        throw new RingworkError('PROTOCOL_UNKNOWN_PEER', `Unknown peer ${target}.`, {
          details: { peer: target },
        });
      }
      // Only parties with a direct connection to the target know anything: its ring neighbours and a
      // requester it serves (first stage or head of a ring it was sent).
      const ta = t.assignment;
      const ra = r.assignment;
      const neighbour =
        (ta?.kind === 'assigned' && (ta.prev === reporter || ta.next === reporter)) ||
        (ra?.kind === 'assigned' && (ra.prev === target || ra.next === target));
      if (reporter === target || !(neighbour || introducedByRing(r, target) || opts.allowAnyRelay)) {
        throw new RingworkError(
          'PROTOCOL_NOT_ALLOWED',
          `You have no connection to ${target}; only its ring neighbours and the requesters it serves may report it.`,
          { details: { peer: target } },
        );
      }
      if (!r.reportBucket.take()) {
        throw new RingworkError(
          'PROTOCOL_RATE_LIMITED',
          `Too many unreachable reports: ${reportBurst} at once, then one per ${reportRefillMs} ms.`,
          { details: { burst: reportBurst, refillMs: reportRefillMs } },
        );
      }
      const now = clock.now();
      const live = opts.liveness?.(target);
      const gone = !live || !live.connected;
      const stale = gone || now - live.lastSeen > staleAfterMs;
      log.info({ reporter, target, reason, stale }, 'peer-unreachable');
      // Never act on one party's word against another's: a peer without a socket is gone, but one
      // with a socket is checked by the server itself (a probe) before anything happens, and a
      // fresh heartbeat or an answered probe outweighs any number of reports.
      return gone ? 'evict' : 'probe';
    },
    reportLap(reporter, lap) {
      const r = peerOrThrow(reporter);
      const modelId = lap.ringId.slice(0, lap.ringId.lastIndexOf(':'));
      const ms = byModel.get(modelId);
      if (
        !ms?.ring ||
        ms.ring.ringId !== lap.ringId ||
        r.subscriptions.get(modelId) !== `ring|${lap.ringId}`
      ) {
        throw new RingworkError(
          'PROTOCOL_NOT_ALLOWED',
          `You were not sent ring ${lap.ringId}; no lap to report.`,
          {
            details: { ringId: lap.ringId },
          },
        );
      }
      if (!r.lapBucket.take()) {
        throw new RingworkError('PROTOCOL_RATE_LIMITED', 'Too many lap reports: one per 5 s.', {});
      }
      const predictedMs = (ms.plan?.predicted.latencyS ?? 0) * 1000;
      // A few tokens are dominated by the first step's warm-up; they say nothing about speed.
      if (lap.tokens < 8) return;
      // Shown as what one request gets (display only: planning takes laps as evidence below).
      ms.laps = [
        ...ms.laps.filter((l) => l.ringId === lap.ringId),
        { ringId: lap.ringId, msPerToken: lap.msPerToken },
      ].slice(-5);
      if (predictedMs <= 0) return;
      const speedup = predictedMs / lap.msPerToken;
      let changed = false;
      for (const st of ms.ring.stages) {
        const p = peers.get(st.peer);
        if (!p?.capability || st.peer === reporter) continue;
        p.laps.set(reporter, p.capability.tflops * speedup);
        // One requester's word is not evidence: it counts from two distinct requesters on.
        if (p.laps.size >= 2) {
          p.evidence.observedTflops = median([...p.laps.values()]);
          changed = true;
        }
      }
      if (changed && refreshEffective()) schedule(`laps of ${lap.ringId}`);
    },
    reportStall(reporter, stall) {
      const r = peerOrThrow(reporter);
      const modelId = stall.ringId.slice(0, stall.ringId.lastIndexOf(':'));
      const ms = byModel.get(modelId);
      // Already re-planned (the loss was seen here first, e.g. the peer's socket closed): nothing to check.
      if (!ms?.ring || ms.ring.ringId !== stall.ringId) return [];
      if (r.subscriptions.get(modelId) !== `ring|${stall.ringId}`) {
        throw new RingworkError('PROTOCOL_NOT_ALLOWED', `You were not sent ring ${stall.ringId}.`, {
          details: { ringId: stall.ringId },
        });
      }
      if (!r.reportBucket.take()) {
        throw new RingworkError(
          'PROTOCOL_RATE_LIMITED',
          `Too many stall reports: ${reportBurst} at once, then one per ${reportRefillMs} ms.`,
          { details: { burst: reportBurst, refillMs: reportRefillMs } },
        );
      }
      log.info({ reporter, ...stall }, 'ring-stalled');
      const stages = ms.ring.stages.map((s) => s.peer).filter((p) => p !== reporter);
      return stall.peer && stages.includes(stall.peer) ? [stall.peer] : stages;
    },
    reportLinks(reporter, entries) {
      const r = peerOrThrow(reporter);
      if (!r.linkBucket.take()) {
        throw new RingworkError('PROTOCOL_RATE_LIMITED', 'Too many link reports: one per 5 s.', {});
      }
      // Only a link the reporter is part of, to a peer it was introduced to, counts.
      const { accepted, changed } = matrix.report(reporter, entries, (peer) => canSignal(reporter, peer));
      log.debug({ reporter, accepted, of: entries.length, changed }, 'link-report');
      if (changed) schedule(`links measured by ${reporter}`);
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
    canSignal,
    resync(id) {
      const p = peers.get(id);
      if (!p) return;
      if (p.assignment) send(id, assignmentMessage(p.assignment, describe));
      for (const modelId of p.subscriptions.keys()) {
        p.subscriptions.set(modelId, ringKey(viewOf(modelId)));
        send(id, ringMessage(modelId, viewOf(modelId), catalogOrder));
      }
    },
    flush() {
      if (timer === null) return;
      clock.clearTimeout(timer);
      timer = null;
      replanNow();
    },
    get pending() {
      return timer !== null;
    },
    get epoch() {
      return epoch;
    },
    snapshot() {
      return {
        epoch,
        plans,
        models: catalogOrder.flatMap((id) => {
          const ms = byModel.get(id);
          if (!ms) return [];
          return {
            id,
            descriptor: ms.model.descriptor,
            units: ms.model.descriptor.units,
            contextLength: ms.model.descriptor.contextLength,
            totalBytes: ms.model.totalBytes,
            ring: ms.ring,
            noRing: ms.noRing,
            // One request waits for every stage and hop in turn: its speed is 1 / latency. The
            // planner's tokens/s is pipelined capacity, shown apart so nobody reads it as theirs.
            predictedTokensPerSecond:
              ms.plan && ms.plan.predicted.latencyS > 0 ? 1 / ms.plan.predicted.latencyS : null,
            pipelinedTokensPerSecond: ms.plan?.predicted.tokensPerSecond ?? null,
            observedTokensPerSecond: observedTokensPerSecond(ms),
            algorithm: ms.plan?.algorithm ?? null,
          };
        }),
        rings: models.flatMap((m) => (m.ring ? [m.ring] : [])),
        peers: [...peers.values()].map((p) => ({
          id: p.id,
          online: p.online,
          roles: [...p.roles],
          capability: p.capability,
          claimed: p.claimed,
          verified: p.evidence.verified,
          category: p.category,
          assignment: p.assignment,
          status: p.status,
          requestedModels: [...p.subscriptions.keys()],
          failedModels: [...p.failedModels],
          ...(p.withdrawal ? { withdrawal: withdrawalView(p.withdrawal)! } : {}),
        })),
        links: matrix.edges(),
      };
    },
    getAssignment: (id) => peers.get(id)?.assignment ?? null,
    getRing: (modelId) => byModel.get(modelId)?.ring ?? null,
    start() {
      stopped = false;
    },
    stop() {
      stopped = true;
      if (timer !== null) clock.clearTimeout(timer);
      timer = null;
      for (const p of peers.values()) {
        if (p.claimTimer !== null) clock.clearTimeout(p.claimTimer);
        p.claimTimer = null;
        if (p.withdrawal?.timer) clock.clearTimeout(p.withdrawal.timer);
      }
    },
  };
}
