/**
 * The coordinator's public types: rings, assignments, the network-view snapshot, its options and its
 * interface. Kept apart from the logic so that the pure planning and diff modules and the server can
 * share them without importing the stateful coordinator.
 */
import type { ValidationRegistry } from './validation-registry.js';
import type { SecurityPolicy } from './validator-rings.js';
import type { Logger } from 'pino';
import type { Objective, PeerCategory, PlannerOptions } from '../../shared/planner/index.js';
import type {
  ModelDescriptor,
  PeerCapability,
  SecurityRequest,
  ServerMessage,
} from '../../shared/protocol/signaling.js';
import type { CatalogModel } from './catalog.js';
import type { Clock } from './clock.js';
import type { PeerRole } from './peer-registry.js';
import type { MatrixEdge } from './link-matrix.js';
import type { TrustPolicy } from './peer-trust.js';
import type { WithdrawalView } from './withdrawal.js';

/** A stage of a ring as peers see it: peer id and half-open unit range. */
export interface RingStage {
  peer: string;
  range: [number, number];
  /** The peer's registered validation key (base64), added when the ring is sent. */
  key?: string;
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
  | {
      /** A standby replica of a live stage: its units loaded ahead, swapped in when the stage is lost. */
      kind: 'standby';
      epoch: number;
      ringId: string;
      model: string;
      range: [number, number];
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
  /** What the planner uses: the claim capped by evidence (see peer-trust.ts). */
  capability: PeerCapability | null;
  /** What the peer claims of itself. */
  claimed?: PeerCapability | null;
  /** True once the peer served a ready assignment long enough. */
  verified?: boolean;
  category: PeerCategory | null;
  assignment: PeerAssignment | null;
  status: AssignmentStatus | null;
  requestedModels: string[];
  failedModels: string[];
  /** Leaving or paused (absent while contributing normally). */
  withdrawal?: WithdrawalView;
  /** Result validation: 0..1 (see validation-registry.ts). */
  reputation?: number;
  /** A proven deviant, excluded from rings. */
  flagged?: boolean;
  /** Steps of its work requesters validated. */
  validatedSteps?: number;
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
    /** A ring serving it: the planned ring, else its first replica. */
    ring: Ring | null;
    /** `lightweight` (served whole by replicas on single peers) or `sharded` (a ring of peers). */
    serving?: 'lightweight' | 'sharded';
    /** Whole-model replicas on category C peers (one-peer rings; lightweight models only). */
    replicas?: Ring[];
    noRing: NoRing | null;
    /** What one request should get: 1 / the planned per-token latency of the ring. */
    predictedTokensPerSecond: number | null;
    /** The ring's capacity with requests pipelined (1 / its slowest stage): many requests together. */
    pipelinedTokensPerSecond?: number | null;
    /**
     * What requests of the current ring measured: 1 / the median of the last (at most 5) per-token
     * times requesters reported (`ring-lap`); null until one was reported for this ring.
     */
    observedTokensPerSecond?: number | null;
    algorithm: string | null;
  }>;
  rings: Ring[];
  peers: CoordinatorPeerView[];
  /** Measured links (both ends' reports combined: the worse), as the planner uses them. */
  links?: MatrixEdge[];
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
  /**
   * Link measurements re-plan at most once per this many ms (default 120 s); changes in between are
   * kept and re-plan with the next report after it (probe jitter must not keep rings re-forming).
   */
  linkReplanMinIntervalMs?: number;
  /** A peer silent (no frame) for this long is logged as stale when reported (default 10 s). */
  staleAfterMs?: number;
  /** `peer-unreachable` reports per reporter: burst (default 4) and one more per `reportRefillMs` (10 s). */
  reportBurst?: number;
  reportRefillMs?: number;
  /** A capability change takes effect at most this often per peer (default 0: at once). */
  profileMinIntervalMs?: number;
  /** A ready assignment served this long verifies a peer (default 60 s). */
  verifyAfterMs?: number;
  /** The share of a model one unverified peer may hold while others can carry the rest (default 1). */
  maxUnverifiedShare?: number;
  /** What an unobserved peer is believed to be capable of (see peer-trust.ts). */
  trustPolicy?: Partial<TrustPolicy>;
  /** Links measured below this many Mbit/s are not planned on (default 0: none excluded). */
  minLinkMbps?: number;
  /** Bench/test hook: every pair of known peers counts as introduced. */
  allowAnyRelay?: boolean;
  clock?: Clock;
  logger?: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** Result validation state (keys, evidence, reputation); default: a fresh one. */
  validation?: ValidationRegistry;
  /**
   * Security levels (validator-rings.ts): the default level, per-model minimums and the network of
   * a peer (absent: validator rings need not be on networks distinct from the primary's).
   */
  security?: Partial<SecurityPolicy>;
  /**
   * Ring membership by model (stake/stake-gate.ts): why `peer` may not serve in rings of `model`
   * serving security `level` (absent: 1, what primary rings are planned under), or null when it may.
   * Validator rings are planned from peers admitted at the highest level asked for the model, and
   * a level-k answer whose ring peers fall short is refused (`STAKE_INSUFFICIENT`). Absent: everyone may. Planning treats a refused model like one the peer
   * failed to load; a peer refused every model is told why in its unassigned reason.
   */
  membership?: (peer: string, model: string, level?: number) => string | null;
}

/** A requester's word that a ring stopped answering (see the `ring-stalled` message). */
export interface RingStall {
  ringId: string;
  epoch: number;
  position: number;
  cause: 'link-close' | 'deadline' | 'stage-error';
  peer?: string;
}

/** The coordinator's interface. */
export interface Coordinator {
  /** Membership answers changed (a stake was read or slashed): re-plan soon. */
  membershipChanged(reason: string): void;
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
  /** A requester subscribes to a model's ring at a security level (absent: the server's default). */
  requestRing(id: string, modelId: string, security?: SecurityRequest): void;
  /** Records an `assignment-status`; a `failed` one takes the model off that peer. Stale epochs are ignored. */
  assignmentStatus(id: string, status: AssignmentStatus): void;
  /**
   * A `peer-unreachable` report from a ring neighbour of `target` or a requester it serves directly
   * (others: PROTOCOL_NOT_ALLOWED; too many: PROTOCOL_RATE_LIMITED). `evict` when the server's own
   * evidence agrees (the target has no socket); `probe` when it has one: the caller checks it itself
   * (a ping) and evicts only when that goes unanswered; `noted` when nothing is to be done.
   */
  reportUnreachable(reporter: string, target: string, reason: string): 'evict' | 'probe' | 'noted';
  /**
   * A requester's report of an answer on a ring, with its measured lap when it has one (ms per
   * generated token over `tokens` tokens): evidence of its stages' speed. Refused unless the
   * requester was sent that ring; rate-limited per requester (timed or not).
   */
  reportLap(reporter: string, lap: { ringId: string; msPerToken?: number; tokens?: number }): void;
  /**
   * A requester's `ring-stalled` report: returns the peers the server should check itself (the named
   * peer when it is a stage of that ring, else every stage), or none when the ring has already been
   * re-planned. Never evicts on the requester's word. Not sent that ring: PROTOCOL_NOT_ALLOWED;
   * too many reports: PROTOCOL_RATE_LIMITED.
   */
  reportStall(reporter: string, stall: RingStall): string[];
  /**
   * A `link-report`: the reporter's measurements of its links. Entries about peers it was not
   * introduced to are dropped; rate-limited per reporter (PROTOCOL_RATE_LIMITED). A material change
   * re-plans (debounced) with the new figures.
   */
  reportLinks(reporter: string, entries: ReadonlyArray<{ peer: string; rttMs: number; mbps: number }>): void;
  /**
   * A contributor leaves or pauses gracefully: its ring stays while it drains (at most `drainMs`),
   * then it is planned out. PROTOCOL_NOT_ALLOWED for a peer without the contributor role.
   */
  withdraw(id: string, mode: 'leave' | 'pause', drainMs: number): void;
  /** The withdrawing peer finished draining: plan without it now. */
  withdrawn(id: string): void;
  /** A paused (or still draining) peer comes back. */
  resume(id: string): void;
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
  /**
   * A ring serving the model: the one with `ringId` (the planned ring or a lightweight replica), or
   * without it the planned ring, else its first replica.
   */
  getRing(modelId: string, ringId?: string): Ring | null;
  /** The model's validator rings now (security level k >= 2; empty when none is asked for). */
  getValidatorRings(modelId: string): readonly Ring[];
  /**
   * Result validation: registered keys, checked evidence, reputation and flags, and the ledger's
   * hooks (`onValidatedWork`, `onDeviant`). A proven deviant is planned out at the next re-plan.
   */
  readonly validation: ValidationRegistry;
  start(): void;
  stop(): void;
}
