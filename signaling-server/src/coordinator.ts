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
 */
import { RingworkError } from '../../shared/errors.js';
import { categorize, type Objective, type PeerCategory, type Plan } from '../../shared/planner/index.js';
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
import { planRings, ringAssignments } from './ring-planning.js';

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
  capability: PeerCapability | null;
  category: PeerCategory | null;
  assignment: PeerAssignment | null;
  /** The key of the last assignment/unassigned message sent, to send only changes. */
  sentKey: string | null;
  status: AssignmentStatus | null;
  failedModels: Set<string>;
  /** model id -> key of the last ring/no-ring sent (null: answer owed). */
  subscriptions: Map<string, string | null>;
}

interface ModelState {
  model: CatalogModel;
  /** The last plan that produced a ring (kept through infeasible spells: replan's stability anchor). */
  lastPlan: Plan | null;
  ring: Ring | null;
  noRing: NoRing | null;
  plan: Plan | null;
}

const NOOP_LOGGER = { info() {}, warn() {}, error() {}, debug() {} };

/** Creates a coordinator over a loaded catalog. */
export function createCoordinator(opts: CoordinatorOptions): Coordinator {
  const clock = opts.clock ?? systemClock;
  const log = opts.logger ?? NOOP_LOGGER;
  const objective: Objective = opts.objective ?? 'throughput';
  const debounceMs = opts.debounceMs ?? 200;
  const maxWaitMs = Math.max(opts.maxWaitMs ?? 2000, debounceMs);
  const staleAfterMs = opts.staleAfterMs ?? 10_000;
  const reportWindowMs = opts.reportWindowMs ?? 30_000;
  const thresholds = opts.plannerOptions?.categoryThresholds;
  // Biggest first: large models have the fewest feasible rings; small ones fit in what is left.
  const models: ModelState[] = [...opts.catalog]
    .map((model, i) => ({ model, i }))
    .sort((a, b) => b.model.totalBytes - a.model.totalBytes || a.i - b.i)
    .map(({ model }) => ({ model, lastPlan: null, ring: null, noRing: null, plan: null }));
  const byModel = new Map(models.map((m) => [m.model.descriptor.id, m]));
  const catalogOrder = opts.catalog.map((m) => m.descriptor.id);
  const peers = new Map<string, PeerState>();
  const reports = new Map<string, Map<string, number>>();
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
    const contributors = [...peers.values()]
      .filter((p) => p.roles.has('contributor') && p.online)
      .flatMap((p) =>
        p.capability ? [{ id: p.id, capability: p.capability, failedModels: p.failedModels }] : [],
      )
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const result = planRings({
      models,
      contributors,
      epoch,
      objective,
      plannerOptions: opts.plannerOptions,
    });
    result.outcomes.forEach((o, i) => {
      const ms = models[i];
      if (!ms) return;
      if (o.error !== undefined) log.error({ err: o.error, model: ms.model.descriptor.id }, 'planner failed');
      ms.plan = o.plan;
      ms.noRing = o.noRing;
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
      if (ms.ring.stages.some((s) => s.peer === stage)) return true;
    }
    return false;
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
        category: null,
        assignment: null,
        sentKey: null,
        status: null,
        failedModels: new Set(),
        subscriptions: new Map(),
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
      if (p.capability && JSON.stringify(p.capability) === JSON.stringify(capability)) return;
      p.capability = capability;
      p.category = categorize({ tflops: capability.tflops, category: capability.category }, thresholds);
      schedule(`profile of ${id}`);
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
      reports.delete(id);
      for (const r of reports.values()) r.delete(id);
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
      if (status.state === 'failed' && a.kind === 'assigned') {
        log.warn({ peer: id, model: a.model, message: status.message }, 'assignment failed');
        p.failedModels.add(a.model);
        schedule(`${id} failed to load ${a.model}`);
      }
    },
    reportUnreachable(reporter, target, reason) {
      peerOrThrow(reporter);
      if (!peers.has(target)) {
        throw new RingworkError('PROTOCOL_UNKNOWN_PEER', `Unknown peer ${target}.`, {
          details: { peer: target },
        });
      }
      if (!canSignal(reporter, target)) {
        throw new RingworkError(
          'PROTOCOL_NOT_ALLOWED',
          `You were not introduced to ${target}; only its ring neighbours and requesters may report it.`,
          {
            details: { peer: target },
          },
        );
      }
      const now = clock.now();
      const live = opts.liveness?.(target);
      const stale = !live || !live.connected || now - live.lastSeen > staleAfterMs;
      const byReporter = reports.get(target) ?? new Map<string, number>();
      for (const [r, t] of byReporter) if (now - t > reportWindowMs) byReporter.delete(r);
      byReporter.set(reporter, now);
      reports.set(target, byReporter);
      log.info({ reporter, target, reason, stale, reporters: byReporter.size }, 'peer-unreachable');
      if (stale || byReporter.size >= 2) {
        reports.delete(target);
        return 'evict';
      }
      return 'noted';
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
            predictedTokensPerSecond: ms.plan?.predicted.tokensPerSecond ?? null,
            algorithm: ms.plan?.algorithm ?? null,
          };
        }),
        rings: models.flatMap((m) => (m.ring ? [m.ring] : [])),
        peers: [...peers.values()].map((p) => ({
          id: p.id,
          online: p.online,
          roles: [...p.roles],
          capability: p.capability,
          category: p.category,
          assignment: p.assignment,
          status: p.status,
          requestedModels: [...p.subscriptions.keys()],
          failedModels: [...p.failedModels],
        })),
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
    },
  };
}
