/**
 * The coordinator's per-peer and per-model state, how a new peer starts, and the snapshot built from
 * it. Kept apart from coordinator.ts (the event handlers) so the shape of the state reads in one place.
 */
import type { Plan, PeerCategory } from '../../shared/planner/index.js';
import type { PeerCapability } from '../../shared/protocol/signaling.js';
import type { CatalogModel } from './catalog.js';
import type { Clock, TimerHandle } from './clock.js';
import type {
  AssignmentStatus,
  CoordinatorSnapshot,
  NoRing,
  PeerAssignment,
  Ring,
} from './coordinator-types.js';
import type { LinkMatrix } from './link-matrix.js';
import type { PeerRole } from './peer-registry.js';
import { median, newEvidence, type PeerEvidence } from './peer-trust.js';
import { createTokenBucket, type TokenBucket } from './rate-limit.js';
import { withdrawalView, type Withdrawal } from './withdrawal.js';

/** What the coordinator knows of one peer. */
export interface PeerState {
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

/** What the coordinator knows of one catalog model. */
export interface ModelState {
  model: CatalogModel;
  /** The last plan that produced a ring (kept through infeasible spells: replan's stability anchor). */
  lastPlan: Plan | null;
  ring: Ring | null;
  /** Whole-model replicas on category C peers (lightweight models; see lightweight-replicas.ts). */
  replicas: Ring[];
  noRing: NoRing | null;
  plan: Plan | null;
  /** Per-token times the requesters of the current ring measured (newest last, at most 5). */
  laps: { ringId: string; msPerToken: number }[];
}

/** A newly seen peer: online, no claim yet, fresh evidence and report budgets. */
export function newPeerState(
  id: string,
  roles: Iterable<PeerRole>,
  o: { clock: Clock; reportBurst: number; reportRefillMs: number },
): PeerState {
  const clock = o.clock;
  const reportBurst = o.reportBurst;
  const reportRefillMs = o.reportRefillMs;
  return {
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
  };
}

/** 1 / the median per-token time requesters measured on the model's current ring, or null. */
export function observedTokensPerSecond(ms: ModelState): number | null {
  const shown = ms.ring ?? ms.replicas[0];
  const laps = ms.laps.filter((l) => l.ringId === shown?.ringId).map((l) => l.msPerToken);
  return laps.length > 0 ? 1000 / median(laps) : null;
}

/** The inputs of a snapshot: the coordinator's state at one moment. */
export interface SnapshotInputs {
  epoch: number;
  plans: number;
  catalogOrder: readonly string[];
  byModel: ReadonlyMap<string, ModelState>;
  models: readonly ModelState[];
  peers: ReadonlyMap<string, PeerState>;
  matrix: LinkMatrix;
  /** Each peer's validation standing (reputation, flag, validated steps). */
  standing?: (peer: string) => { reputation: number; flagged: boolean; validatedSteps: number };
}

/** A JSON-safe copy of the coordinator's state for /api/network and tests. */
export function snapshotOf({
  epoch,
  plans,
  catalogOrder,
  byModel,
  models,
  peers,
  matrix,
  standing,
}: SnapshotInputs): CoordinatorSnapshot {
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
        ring: ms.ring ?? ms.replicas[0] ?? null,
        serving: ms.model.descriptor.serving ?? 'sharded',
        replicas: ms.replicas,
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
    rings: models.flatMap((m) => [...(m.ring ? [m.ring] : []), ...m.replicas]),
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
      ...(standing ? pickStanding(standing(p.id)) : {}),
    })),
    links: matrix.edges(),
  };
}

function pickStanding(s: { reputation: number; flagged: boolean; validatedSteps: number }) {
  return { reputation: s.reputation, flagged: s.flagged, validatedSteps: s.validatedSteps };
}
