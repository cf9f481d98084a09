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
 * The state's shape, a new peer and the snapshot are coordinator-state.ts; the report handlers
 * (unreachable, lap, stall, links) are coordinator-reports.ts; a peer's lifecycle (join, claims and
 * trust, offline, removal, withdrawal) is coordinator-peers.ts; what a requester is told of a model
 * and who is introduced to whom is coordinator-views.ts; who may serve what is
 * coordinator-membership.ts.
 */
import { RingworkError } from '../../shared/errors.js';
import type { Objective } from '../../shared/planner/index.js';
import type { ModelDescriptor, ServerMessage } from '../../shared/protocol/signaling.js';
import {
  assignmentMessage,
  diffAssignments,
  diffSubscriptions,
  ringKey,
  ringMessage,
} from './assignment-diff.js';
import { systemClock, type TimerHandle } from './clock.js';
import { createPeerLifecycle } from './coordinator-peers.js';
import { createMembership } from './coordinator-membership.js';
import { createReportHandlers } from './coordinator-reports.js';
import { snapshotOf, type ModelState, type PeerState } from './coordinator-state.js';
import type { Coordinator, CoordinatorOptions, PeerAssignment } from './coordinator-types.js';
import { createRingViews } from './coordinator-views.js';
import { createLinkMatrix } from './link-matrix.js';
import { DEFAULT_TRUST_POLICY } from './peer-trust.js';
import { servingRings } from './lightweight-replicas.js';
import { planRings, ringAssignments, stageNeed, type StandbyOf } from './ring-planning.js';
import { createValidationRegistry } from './validation-registry.js';
import { createValidatorRings } from './validator-rings.js';
import { noRingWithPauses, withdrawalView } from './withdrawal.js';

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

const NOOP_LOGGER = { info() {}, warn() {}, error() {}, debug() {} };

/** Creates a coordinator over a loaded catalog. */
export function createCoordinator(opts: CoordinatorOptions): Coordinator {
  const clock = opts.clock ?? systemClock;
  const log = opts.logger ?? NOOP_LOGGER;
  const validation = opts.validation ?? createValidationRegistry({ logger: log });
  // Security level k: validator rings next to each primary ring (validator-rings.ts).
  const securityPolicy = {
    defaultLevel: opts.security?.defaultLevel ?? 1,
    modelMinimum: opts.security?.modelMinimum ?? {},
    networkOf: opts.security?.networkOf,
  };
  const validators = createValidatorRings(securityPolicy);
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
    .map(({ model }) => ({
      model,
      lastPlan: null,
      ring: null,
      replicas: [],
      noRing: null,
      plan: null,
      laps: [],
    }));
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

  const schedule = (why: string, urgent = false): void => {
    if (stopped) return;
    const now = clock.now();
    if (timer === null) firstScheduledAt = now;
    else clock.clearTimeout(timer);
    // Debounce, but never past maxWait: a steady trickle of joins must not postpone planning forever.
    // A ring that lost a stage is not: its answers are stalled until the re-plan (a failover's
    // recovery waited the whole debounce for it).
    const delay = urgent ? 0 : Math.max(0, Math.min(debounceMs, firstScheduledAt + maxWaitMs - now));
    log.debug({ why, delay }, 're-plan scheduled');
    timer = clock.setTimeout(() => {
      timer = null;
      replanNow();
    }, delay);
  };

  /** Whether `id` is a stage of a model's planned ring or one of its replicas. */
  const inAnyRing = (id: string): boolean =>
    models.some((m) => [m.ring, ...m.replicas].some((r) => r?.stages.some((s) => s.peer === id)));

  const lifecycle = createPeerLifecycle({
    clock,
    log,
    peers,
    matrix,
    validators,
    policy,
    thresholds,
    verifyAfterMs,
    profileMinIntervalMs,
    reportBurst,
    reportRefillMs,
    schedule,
    inAnyRing,
    peerOrThrow: (id) => peerOrThrow(id),
    stopped: () => stopped,
  });
  const { refreshEffective } = lifecycle;

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

  const { refusalOf, barredModels, allRefused, lightweightFor } = createMembership({
    membership: opts.membership,
    catalogOrder,
    byModel,
  });

  const describe = (modelId: string): ModelDescriptor => {
    const ms = byModel.get(modelId);
    // Assignments only ever name catalog models; a miss is a bug, not bad input.
    if (!ms) throw new RingworkError('SERVER_INTERNAL', `Model ${modelId} is not in the catalog.`, {});
    return ms.model.descriptor;
  };

  const { viewOf, canSignal, introducedByRing } = createRingViews({
    opts,
    byModel,
    peers,
    validation,
    validators,
    securityPolicy,
    refusalOf,
  });

  const notifySubscribers = (): void => {
    // One requester at a time: each choice of a replica counts in the load the next one sees.
    for (const p of peers.values()) {
      for (const u of diffSubscriptions([p], (m, id) => viewOf(m, id), catalogOrder)) {
        p.subscriptions.set(u.model, u.key);
        send(u.peer, u.message);
      }
    }
  };

  /** The standby replicas peers hold now (what they were last told), for the planning step. */
  const currentStandbys = (): Map<string, StandbyOf> => {
    const out = new Map<string, StandbyOf>();
    for (const p of peers.values())
      if (p.assignment?.kind === 'standby')
        out.set(p.id, { model: p.assignment.model, range: p.assignment.range });
    return out;
  };

  /** Plans (ring-planning.ts), applies the result, and sends what changed (assignment-diff.ts). */
  function replanNow(): void {
    if (stopped) return;
    plans++;
    refreshEffective();
    const contributors = [...peers.values()]
      .filter(
        (p) =>
          p.roles.has('contributor') &&
          p.online &&
          p.withdrawal?.state !== 'out' &&
          !validation.isExcluded(p.id),
      )
      .flatMap((p) =>
        p.capability
          ? [
              {
                id: p.id,
                capability: p.capability,
                failedModels: barredModels(p),
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
      standbys: currentStandbys(),
      validatorRings: new Map(
        models.map((m) => [m.model.descriptor.id, validators.ringsOf(m.model.descriptor.id)]),
      ),
    });
    const paused = [...peers.values()].filter((p) => p.withdrawal?.state === 'out' && p.online).length;
    result.outcomes.forEach((o, i) => {
      const ms = models[i];
      if (!ms) return;
      if (o.error !== undefined) log.error({ err: o.error, model: ms.model.descriptor.id }, 'planner failed');
      ms.plan = o.plan;
      ms.noRing = noRingWithPauses(o.noRing, paused);
      ms.ring = o.ring;
      ms.replicas = o.replicas;
      ms.lastPlan = o.lastPlan;
    });
    // Validator rings take peers left out of every primary ring and replica, before standbys do.
    const primaryPeers = new Set(
      models.flatMap((m) => [m.ring, ...m.replicas].flatMap((r) => r?.stages.map((s) => s.peer) ?? [])),
    );
    const v = validators.plan({
      models: models.map((m) => ({
        id: m.model.descriptor.id,
        primary: m.ring,
        need: (r) => stageNeed(m, m.plan ?? m.lastPlan, r),
        totalBytes: m.model.totalBytes,
        ...(opts.membership
          ? {
              admits: (peer: string, level: number) => refusalOf(peer, m.model.descriptor.id, level) === null,
            }
          : {}),
      })),
      pool: contributors.filter((c) => !primaryPeers.has(c.id)),
      epoch: result.epoch,
      epochIsNew: result.epoch !== epoch,
    });
    for (const id of v.peers) result.standbys.delete(id);
    const changed = v.epoch !== epoch;
    epoch = v.epoch;
    const assigned = ringAssignments([
      ...models.flatMap((m) => [m.ring, ...m.replicas]),
      ...validators.all(),
    ]);
    const next = new Map<string, PeerAssignment>();
    for (const p of peers.values()) {
      if (!p.capability || !p.roles.has('contributor') || !p.online) {
        p.assignment = null;
        p.sentKey = null;
        continue;
      }
      // A leaving or pausing peer backs nothing up.
      const standby = p.withdrawal ? undefined : result.standbys.get(p.id);
      const ring = standby ? byModel.get(standby.model)?.ring : undefined;
      next.set(
        p.id,
        assigned.get(p.id) ??
          (standby && ring
            ? {
                kind: 'standby',
                epoch: ring.epoch,
                ringId: ring.ringId,
                model: standby.model,
                range: [standby.range[0], standby.range[1]],
              }
            : undefined) ?? {
            kind: 'unassigned',
            epoch,
            reason:
              withdrawalView(p.withdrawal)?.reason ??
              result.reasons.get(p.id) ??
              allRefused(p) ??
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
          rings: models.map((m) => ({
            model: m.model.descriptor.id,
            stages: m.ring?.stages.length ?? 0,
            replicas: m.replicas.length,
          })),
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

  const reports = createReportHandlers({
    opts,
    clock,
    log,
    peers,
    byModel,
    matrix,
    reportBurst,
    reportRefillMs,
    staleAfterMs,
    peerOrThrow,
    introducedByRing,
    canSignal,
    refreshEffective,
    schedule,
  });

  // A proven deviant leaves every ring at once (the planner skips excluded peers).
  validation.onDeviant((e) => {
    log.warn({ peer: e.peer, reporter: e.reporter, reason: e.evidence.reason }, 'proven deviant excluded');
    if (peers.get(e.peer)?.capability) schedule(`${e.peer} deviated`);
  });

  return {
    validation,
    membershipChanged(reason) {
      schedule(reason);
    },
    requestRing(id, modelId, security) {
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
      // A level above the validator rings planned: the re-plan plans them and answers.
      if (validators.request(id, modelId, security))
        schedule(`${id} asked for security level ${security?.k}`);
      // Mid-debounce the current ring is about to change: the re-plan answers with the new one.
      // Otherwise answer this peer alone (not a sweep over every subscriber: requests are cheap to send).
      if (timer === null) {
        const view = viewOf(modelId, id);
        p.subscriptions.set(modelId, ringKey(view));
        send(id, ringMessage(modelId, view, catalogOrder));
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
      if (status.state === 'failed' && a.kind === 'standby') {
        log.warn({ peer: id, model: a.model, message: status.message }, 'standby load failed');
        p.failedModels.add(a.model);
        schedule(`${id} failed to load a standby of ${a.model}`);
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
    ...reports,
    ...lifecycle.handlers,
    canSignal,
    resync(id) {
      const p = peers.get(id);
      if (!p) return;
      if (p.assignment) send(id, assignmentMessage(p.assignment, describe));
      for (const modelId of p.subscriptions.keys()) {
        const view = viewOf(modelId, id);
        p.subscriptions.set(modelId, ringKey(view));
        send(id, ringMessage(modelId, view, catalogOrder));
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
    snapshot: () =>
      snapshotOf({
        epoch,
        plans,
        catalogOrder,
        byModel,
        models,
        peers,
        matrix,
        standing: validation.standing,
      }),
    getAssignment: (id) => peers.get(id)?.assignment ?? null,
    getRing: (modelId, ringId) => {
      const ms = byModel.get(modelId);
      const rings = ms ? servingRings(ms) : [];
      return (ringId === undefined ? rings[0] : rings.find((r) => r.ringId === ringId)) ?? null;
    },
    getValidatorRings: (modelId) => validators.ringsOf(modelId),
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
