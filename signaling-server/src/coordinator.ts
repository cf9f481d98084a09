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
 * (unreachable, lap, stall, links) are coordinator-reports.ts.
 */
import { RingworkError } from '../../shared/errors.js';
import type { Objective } from '../../shared/planner/index.js';
import type { ModelDescriptor, PeerCapability, ServerMessage } from '../../shared/protocol/signaling.js';
import {
  assignmentMessage,
  diffAssignments,
  diffSubscriptions,
  ringIdsOfKey,
  ringKey,
  ringMessage,
  type RingView,
} from './assignment-diff.js';
import { systemClock, type TimerHandle } from './clock.js';
import { createReportHandlers } from './coordinator-reports.js';
import { newPeerState, snapshotOf, type ModelState, type PeerState } from './coordinator-state.js';
import type { Coordinator, CoordinatorOptions, PeerAssignment, Ring } from './coordinator-types.js';
import { createLinkMatrix } from './link-matrix.js';
import { createFleet, DEFAULT_TRUST_POLICY, effectiveCapability, trustedCategory } from './peer-trust.js';
import { pickRing, replicaValidators, servingOf, servingRings } from './lightweight-replicas.js';
import { planRings, ringAssignments, stageNeed, type StandbyOf } from './ring-planning.js';
import { createValidationRegistry } from './validation-registry.js';
import { ringSpotRate } from './validation-spot.js';
import { createValidatorRings, floorLevel, type SecurityView } from './validator-rings.js';
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

  const refusalOf = (peer: string, model: string, level = 1): string | null =>
    opts.membership?.(peer, model, level) ?? null;
  /** Models `p` may not serve: those it failed to load and those membership refuses it. */
  const barredModels = (p: PeerState): ReadonlySet<string> => {
    if (!opts.membership) return p.failedModels;
    const out = new Set(p.failedModels);
    for (const id of catalogOrder) if (refusalOf(p.id, id) !== null) out.add(id);
    return out;
  };
  /** The reason when membership refuses `p` every catalog model (its unassigned reason). */
  const allRefused = (p: PeerState): string | undefined => {
    if (!opts.membership || catalogOrder.length === 0) return undefined;
    const reasons = catalogOrder.map((id) => refusalOf(p.id, id));
    return reasons.every((r) => r !== null) ? (reasons[0] ?? undefined) : undefined;
  };

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

  const describe = (modelId: string): ModelDescriptor => {
    const ms = byModel.get(modelId);
    // Assignments only ever name catalog models; a miss is a bug, not bad input.
    if (!ms) throw new RingworkError('SERVER_INTERNAL', `Model ${modelId} is not in the catalog.`, {});
    return ms.model.descriptor;
  };

  /** Requesters the coordinator sent a ring (the sessions it knows of on that ring). */
  const loadOf = (modelId: string, ringId: string): number => {
    let n = 0;
    for (const q of peers.values()) if (ringIdsOfKey(q.subscriptions.get(modelId))[0] === ringId) n++;
    return n;
  };

  // Each stage's registered validation key goes with the ring: requesters verify commitments with it.
  const withKeys = <R extends { stages: { peer: string }[] }>(r: R): R => ({
    ...r,
    stages: r.stages.map((s) => {
      const key = validation.keyOf(s.peer);
      return key !== undefined ? { ...s, key } : s;
    }),
  });

  /**
   * What `peer` (a requester; absent: the plain view) is told of a model: the ring it was last sent
   * while that still serves, else the least loaded of the rings serving it (the planned ring and its
   * lightweight replicas); with validator rings when it asked for a security level above 1.
   */
  const viewOf = (modelId: string, peer?: string): RingView | undefined => {
    const view = securityViewOf(modelId, peer);
    return view && peer !== undefined ? withLevelStake(modelId, view) : view;
  };

  /**
   * A level-k answer only when every peer of its rings (primary and validators) meets level k's
   * minimum stake (membership at that level); otherwise a no-ring whose security names the level
   * and who falls short by how much (`STAKE_INSUFFICIENT`). Primary rings are planned under level
   * 1's minimum so one requester's level cannot take the ring from everyone else's requests.
   */
  const withLevelStake = (modelId: string, view: RingView): RingView => {
    const k = view.security?.k ?? 1;
    if (!opts.membership || !view.ring || k <= 1) return view;
    const short = [view.ring, ...(view.validators ?? [])]
      .flatMap((r) => r.stages)
      .flatMap((s) => {
        const why = refusalOf(s.peer, modelId, k);
        return why === null ? [] : [`${s.peer}: ${why}`];
      });
    if (short.length === 0) return view;
    const reason =
      `security level ${k} needs its minimum stake from every ring peer; ${short.length} short (${short.join('; ')})`.slice(
        0,
        500,
      );
    const { validators: _dropped, ...rest } = view;
    return {
      ...rest,
      ring: null,
      noRing: { reason },
      security: { requested: view.security!.requested, k: 0, missing: reason, code: 'STAKE_INSUFFICIENT' },
    };
  };

  const securityViewOf = (modelId: string, peer?: string): RingView | undefined => {
    const ms = byModel.get(modelId);
    if (!ms) return undefined;
    const requester = peer === undefined ? undefined : peers.get(peer);
    const chosen = pickRing(servingRings(ms), requester?.subscriptions.get(modelId), (r) =>
      loadOf(modelId, r),
    );
    const base: RingView = {
      descriptor: ms.model.descriptor,
      totalBytes: ms.model.totalBytes,
      ring: chosen && withKeys(chosen),
      noRing: ms.noRing,
    };
    if (peer === undefined) return base;
    const sec = validators.viewFor(peer, modelId);
    const byReplicas = replicaSecurityView(ms, modelId, peer, chosen, sec, base);
    if (byReplicas) return byReplicas;
    if (!ms.ring) return base;
    if (sec.refusal) {
      // A ring exists, but not the level asked for: a no-ring that says what is missing.
      return { ...base, ring: null, noRing: { reason: sec.refusal.message }, security: sec.security! };
    }
    if (sec.validators.length === 0) return { ...base, ...(sec.security ? { security: sec.security } : {}) };
    // Validator rings mirror the planned ring's unit boundaries: a validated request uses that ring.
    // Spot-check mode: the rate is the primary ring's least trusted peer's (validation-spot.ts).
    const security = sec.security?.spot
      ? {
          ...sec.security,
          spot: {
            f: ringSpotRate(
              ms.ring.stages.map((s) => s.peer),
              (p) => validation.standing(p),
              sec.security.spot.f,
            ),
          },
        }
      : sec.security;
    return {
      ...base,
      ring: withKeys(ms.ring),
      validators: sec.validators.map(withKeys),
      ...(security ? { security } : {}),
    };
  };

  /**
   * Security level k on a lightweight model: whole-model replicas validate each other (every one
   * has the primary's unit boundaries), so phones serving a model whole can check one another. Used
   * when no planned ring serves the model, or when its validator rings fall short of the level and
   * enough replicas serve. Undefined: the planned ring's answer stands.
   */
  const replicaSecurityView = (
    ms: ModelState,
    modelId: string,
    peer: string,
    chosen: Ring | null,
    sec: SecurityView,
    base: RingView,
  ): RingView | undefined => {
    const requested = sec.security?.requested ?? 1;
    if (requested <= 1 || ms.replicas.length === 0) return undefined;
    if (ms.ring && !sec.refusal && (sec.security?.k ?? 1) >= requested) return undefined;
    const sent = peers.get(peer)?.subscriptions.get(modelId);
    const primary =
      chosen && ms.replicas.includes(chosen)
        ? chosen
        : pickRing(ms.replicas, sent, (r) => loadOf(modelId, r))!;
    const rv = replicaValidators(
      ms.replicas,
      primary,
      requested,
      (r) => loadOf(modelId, r),
      ringIdsOfKey(sent).slice(1),
      securityPolicy.networkOf,
    );
    const served = {
      ...base,
      ring: withKeys(primary),
      validators: rv.validators.map(withKeys),
    };
    if (!rv.short) return { ...served, security: { requested, k: requested } };
    // Too few replicas: a planned ring (if any) answers as it would have; else refuse or degrade.
    if (ms.ring) return undefined;
    const k = 1 + rv.validators.length;
    const missing = `security level ${requested} needs ${requested} replicas of ${modelId} on distinct peers${
      securityPolicy.networkOf ? ' and networks' : ''
    }; ${k} can serve it now`;
    if (validators.requestOf(peer, modelId)?.degrade === true && k >= floorLevel(securityPolicy, modelId))
      return { ...served, security: { requested, k, missing } };
    return { ...base, ring: null, noRing: { reason: missing }, security: { requested, k: 0, missing } };
  };

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
      // A requester talks to the first stage (token ids in) and the head (tokens out) only, of the
      // ring it was sent (planned or a replica) and of the validator rings it was sent.
      const ids = ringIdsOfKey(sent);
      const ring = ms && servingRings(ms).find((r) => r.ringId === ids[0]);
      if (!ring) continue;
      // Validator rings: planned ones, or (lightweight models) other replicas.
      const checking = [...validators.ringsOf(modelId), ...servingRings(ms)].filter(
        (x) => x !== ring && ids.slice(1).includes(x.ringId),
      );
      for (const r of [ring, ...checking]) {
        const st = r.stages;
        if (st[0]?.peer === stage || st[st.length - 1]?.peer === stage) return true;
      }
    }
    return false;
  };

  /** A withdrawing peer is done draining (or out of time): plan without it. */
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

  const markOut = (id: string): void => {
    const p = peers.get(id);
    if (!p?.withdrawal || p.withdrawal.state === 'out') return;
    if (p.withdrawal.timer) clock.clearTimeout(p.withdrawal.timer);
    p.withdrawal = { mode: p.withdrawal.mode, state: 'out', timer: null };
    if (p.capability) schedule(`${id} ${p.withdrawal.mode === 'pause' ? 'paused' : 'left'}`);
  };

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
