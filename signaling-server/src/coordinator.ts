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
 */
import type { Logger } from 'pino';
import { isRingworkError, RingworkError } from '../../shared/errors.js';
import {
  categorize,
  planRingwork,
  replan,
  type Objective,
  type PeerCategory,
  type PeerProfileInput,
  type Plan,
  type PlannerOptions,
} from '../../shared/planner/index.js';
import {
  type ModelDescriptor,
  SIGNALING_VERSION,
  type PeerCapability,
  type ServerMessage,
} from '../../shared/protocol/signaling.js';
import type { CatalogModel } from './catalog.js';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import type { PeerRole } from './peer-registry.js';

/** A stage of a ring as peers see it: peer id and half-open unit range. */
export interface RingStage {
  peer: string;
  range: [number, number];
}

/** A formed ring. */
export interface Ring {
  ringId: string;
  model: string;
  epoch: number;
  stages: RingStage[];
}

/** Where a contributor stands after the last plan. */
export type PeerAssignment =
  | {
      kind: 'assigned';
      epoch: number;
      ringId: string;
      model: string;
      range: [number, number];
      prev: string | null;
      next: string | null;
    }
  | { kind: 'unassigned'; epoch: number; reason: string; lightweightModels: string[] };

/** Why a model has no ring, for `no-ring`. */
export interface NoRing {
  reason: string;
  missingBytes?: number;
}

/** A peer's `assignment-status` report. */
export interface AssignmentStatus {
  epoch: number;
  state: 'loading' | 'ready' | 'failed';
  message?: string;
}

/** What the coordinator knows about one peer (for the network view). */
export interface CoordinatorPeerView {
  id: string;
  online: boolean;
  roles: PeerRole[];
  capability: PeerCapability | null;
  category: PeerCategory | null;
  assignment: PeerAssignment | null;
  status: AssignmentStatus | null;
  requestedModels: string[];
  failedModels: string[];
}

/** The coordinator's state for `/api/network`. */
export interface CoordinatorSnapshot {
  epoch: number;
  plans: number;
  models: Array<{
    id: string;
    /** Where peers (and a tab running the whole model alone) load it from. */
    descriptor: ModelDescriptor;
    units: number;
    contextLength: number;
    totalBytes: number;
    ring: Ring | null;
    noRing: NoRing | null;
    predictedTokensPerSecond: number | null;
    algorithm: string | null;
  }>;
  rings: Ring[];
  peers: CoordinatorPeerView[];
}

/** What the coordinator needs to know about a peer's liveness (from the session registry). */
export type Liveness = (peerId: string) => { connected: boolean; lastSeen: number } | undefined;

/** Options of {@link createCoordinator}. */
export interface CoordinatorOptions {
  catalog: readonly CatalogModel[];
  /** Delivers a message to a peer (dropped silently if the peer is not connected). */
  send: (peerId: string, msg: ServerMessage) => void;
  objective?: Objective;
  plannerOptions?: PlannerOptions;
  debounceMs?: number;
  maxWaitMs?: number;
  liveness?: Liveness;
  /** A heartbeat older than this makes a `peer-unreachable` report conclusive (default 10 s). */
  staleAfterMs?: number;
  /** Two reports within this window evict (default 30 s). */
  reportWindowMs?: number;
  /** Bench/test hook: every pair of known peers counts as introduced. */
  allowAnyRelay?: boolean;
  clock?: Clock;
  logger?: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
}

/** The coordinator's interface. */
export interface Coordinator {
  /** Registers a peer after hello (or updates its roles on resume). */
  addPeer(id: string, roles: readonly PeerRole[]): void;
  /** Records a contributor's capability; re-plans (debounced) when it changed. */
  setCapability(id: string, capability: PeerCapability): void;
  /**
   * Marks a peer offline (its socket closed; the session may still resume) or back online. Offline
   * peers are left out of planning, so their ring is re-planned without waiting for the resume grace.
   */
  setOnline(id: string, online: boolean): void;
  /** Forgets a peer (leave, timeout, eviction); re-plans if it was a contributor. */
  removePeer(id: string, reason: string): void;
  /** Answers a `ring-request` now, or right after a pending re-plan; later changes are pushed. */
  requestRing(id: string, modelId: string): void;
  /** Records an `assignment-status`; a `failed` one takes the model off that peer. Stale epochs are ignored. */
  assignmentStatus(id: string, status: AssignmentStatus): void;
  /** A `peer-unreachable` report: `evict` when confirmed (the caller removes the peer). */
  reportUnreachable(reporter: string, target: string, reason: string): 'evict' | 'noted';
  /** True when `a` and `b` were introduced (may relay signaling to each other). */
  canSignal(a: string, b: string): boolean;
  /** Re-sends a peer's current assignment and subscribed rings (after a resume). */
  resync(id: string): void;
  /** Runs a pending re-plan now (tests, shutdown-free flush). */
  flush(): void;
  /** True while a debounced re-plan is waiting. */
  readonly pending: boolean;
  readonly epoch: number;
  snapshot(): CoordinatorSnapshot;
  getAssignment(id: string): PeerAssignment | null;
  getRing(modelId: string): Ring | null;
  start(): void;
  stop(): void;
}

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

const sameStages = (a: readonly RingStage[], b: readonly RingStage[]): boolean =>
  a.length === b.length &&
  a.every((s, i) => s.peer === b[i]!.peer && s.range[0] === b[i]!.range[0] && s.range[1] === b[i]!.range[1]);

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

  const plannerPeer = (p: PeerState): PeerProfileInput => ({
    id: p.id,
    tflops: p.capability!.tflops,
    bandwidthGBps: p.capability!.bandwidthGBps,
    memoryBytes: p.capability!.memoryBytes,
    ...(p.capability!.category ? { category: p.capability!.category } : {}),
  });

  const runPlanner = (ms: ModelState, pool: readonly PeerProfileInput[]): Plan => {
    const { profile, descriptor } = ms.model;
    if (ms.lastPlan) {
      return replan(ms.lastPlan, profile, pool, objective, descriptor.contextLength, opts.plannerOptions)
        .plan;
    }
    return planRingwork({
      profile,
      peers: pool,
      objective,
      contextTokens: descriptor.contextLength,
      options: opts.plannerOptions,
    });
  };

  /** Plans one model over `pool` (the planner applies the category policy). */
  const planModel = (ms: ModelState, pool: readonly PeerState[]): Plan =>
    runPlanner(ms, pool.map(plannerPeer));

  const lightweightFor = (p: PeerState): string[] =>
    p.category !== 'C' || !p.capability
      ? []
      : catalogOrder.filter((id) => {
          const ms = byModel.get(id)!;
          return !p.failedModels.has(id) && ms.model.totalBytes <= p.capability!.memoryBytes;
        });

  const assignmentKey = (a: PeerAssignment): string =>
    a.kind === 'assigned'
      ? `a|${a.ringId}|${a.range.join('-')}|${a.prev}|${a.next}`
      : `u|${a.reason}|${a.lightweightModels.join(',')}`;

  const assignmentMessage = (a: PeerAssignment): ServerMessage =>
    a.kind === 'assigned'
      ? {
          type: 'assignment',
          v: SIGNALING_VERSION,
          epoch: a.epoch,
          ringId: a.ringId,
          model: byModel.get(a.model)!.model.descriptor,
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

  const ringKey = (modelId: string): string => {
    const ms = byModel.get(modelId);
    if (!ms) return 'unknown';
    return ms.ring ? `ring|${ms.ring.ringId}` : `none|${ms.noRing?.reason}|${ms.noRing?.missingBytes}`;
  };

  const ringMessage = (modelId: string): ServerMessage => {
    const ms = byModel.get(modelId);
    if (!ms) {
      return {
        type: 'no-ring',
        v: SIGNALING_VERSION,
        model: modelId.slice(0, 200),
        reason: `unknown model; the catalog has: ${catalogOrder.join(', ')}`.slice(0, 500),
      };
    }
    if (ms.ring) {
      return {
        type: 'ring',
        v: SIGNALING_VERSION,
        epoch: ms.ring.epoch,
        ringId: ms.ring.ringId,
        model: ms.model.descriptor,
        stages: ms.ring.stages.map((s) => ({ peer: s.peer, range: s.range })),
      };
    }
    const nr = ms.noRing ?? { reason: 'not planned yet', missingBytes: ms.model.totalBytes };
    return {
      type: 'no-ring',
      v: SIGNALING_VERSION,
      model: modelId,
      reason: nr.reason.slice(0, 500),
      ...(nr.missingBytes !== undefined ? { missingBytes: nr.missingBytes } : {}),
    };
  };

  const notifySubscribers = (): void => {
    for (const p of peers.values()) {
      for (const [modelId, sent] of p.subscriptions) {
        const key = ringKey(modelId);
        if (key === sent) continue;
        p.subscriptions.set(modelId, key);
        send(p.id, ringMessage(modelId));
      }
    }
  };

  function replanNow(): void {
    if (stopped) return;
    plans++;
    const contributors = [...peers.values()]
      .filter((p) => p.capability !== null && p.roles.has('contributor') && p.online)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const used = new Set<string>();
    /** The first reason a peer was left out of a model it was offered to. */
    const reasons = new Map<string, string>();
    const changedRings: ModelState[] = [];
    for (const ms of models) {
      const id = ms.model.descriptor.id;
      const pool = contributors.filter((p) => !used.has(p.id) && !p.failedModels.has(id));
      let plan: Plan | null = null;
      let noRing: NoRing | null = null;
      if (pool.length === 0) {
        noRing = {
          reason:
            contributors.length === 0
              ? 'no contributor has joined yet'
              : 'every contributor is serving another model or cannot load this one',
          missingBytes: ms.model.totalBytes,
        };
      } else {
        try {
          plan = planModel(ms, pool);
        } catch (e) {
          if (isRingworkError(e, 'PLAN_INFEASIBLE')) {
            const missing = Number(e.details.missingBytes);
            noRing = {
              reason: e.message,
              ...(Number.isFinite(missing) && missing >= 0 ? { missingBytes: missing } : {}),
            };
          } else {
            log.error({ err: e, model: id }, 'planner failed');
            noRing = { reason: `the planner failed: ${e instanceof Error ? e.message : String(e)}` };
          }
        }
      }
      ms.plan = plan;
      ms.noRing = noRing;
      if (plan) {
        ms.lastPlan = plan;
        const stages: RingStage[] = plan.ring.map((s) => ({
          peer: s.peer,
          range: [s.layers[0], s.layers[1]],
        }));
        for (const s of stages) used.add(s.peer);
        for (const ex of plan.excluded)
          if (!reasons.has(ex.peer)) reasons.set(ex.peer, `${id}: ${ex.reason}`);
        if (!ms.ring || !sameStages(ms.ring.stages, stages)) {
          ms.ring = { ringId: '', model: id, epoch: 0, stages };
          changedRings.push(ms);
        }
      } else {
        if (ms.ring) changedRings.push(ms);
        ms.ring = null;
        for (const p of pool)
          if (!reasons.has(p.id)) reasons.set(p.id, `${id}: waiting for more peers (${noRing!.reason})`);
      }
    }
    if (changedRings.length > 0) epoch++;
    for (const ms of changedRings) {
      if (ms.ring) {
        ms.ring.epoch = epoch;
        ms.ring.ringId = `${ms.model.descriptor.id}:${epoch}`;
      }
    }
    // Assignments from the rings.
    const assigned = new Map<string, PeerAssignment>();
    for (const ms of models) {
      const ring = ms.ring;
      if (!ring) continue;
      const k = ring.stages.length;
      ring.stages.forEach((s, i) => {
        // The ring closes (the last stage hands back to the first), so with k >= 2 every stage has both.
        assigned.set(s.peer, {
          kind: 'assigned',
          epoch: ring.epoch,
          ringId: ring.ringId,
          model: ring.model,
          range: s.range,
          prev: k > 1 ? ring.stages[(i - 1 + k) % k]!.peer : null,
          next: k > 1 ? ring.stages[(i + 1) % k]!.peer : null,
        });
      });
    }
    for (const p of peers.values()) {
      if (!p.capability || !p.roles.has('contributor') || !p.online) {
        p.assignment = null;
        p.sentKey = null;
        continue;
      }
      const a: PeerAssignment = assigned.get(p.id) ?? {
        kind: 'unassigned',
        epoch,
        reason:
          reasons.get(p.id) ??
          (p.failedModels.size === models.length
            ? 'this peer reported failures loading every catalog model'
            : 'not needed: every catalog model already has a ring'),
        lightweightModels: lightweightFor(p),
      };
      const key = assignmentKey(a);
      // Unchanged: keep the assignment (and epoch) the peer already has, and send nothing.
      if (key === p.sentKey && p.assignment) continue;
      p.assignment = a;
      p.sentKey = key;
      p.status = null;
      send(p.id, assignmentMessage(a));
    }
    if (changedRings.length > 0) {
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
        send(id, ringMessage(modelId));
        return;
      }
      p.subscriptions.set(modelId, null);
      // Mid-debounce the current ring is about to change: the re-plan answers with the new one.
      // Otherwise answer this peer alone (not a sweep over every subscriber: requests are cheap to send).
      if (timer === null) {
        p.subscriptions.set(modelId, ringKey(modelId));
        send(id, ringMessage(modelId));
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
      if (p.assignment) send(id, assignmentMessage(p.assignment));
      for (const modelId of p.subscriptions.keys()) {
        p.subscriptions.set(modelId, ringKey(modelId));
        send(id, ringMessage(modelId));
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
        models: catalogOrder.map((id) => {
          const ms = byModel.get(id)!;
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
