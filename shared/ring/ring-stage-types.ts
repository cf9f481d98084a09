/**
 * The public shapes of a ring stage (options, limits, stats, the stage handle) and how a loaded
 * shard describes itself to it. The stage's message handling is ring-stage.ts.
 */
import type { LoadResult, ShardRunner } from '../runtime/shard-runner.js';
import type { PeerLink } from '../transport/types.js';
import type { ComputeQueue } from './stage-scheduler.js';
import type { StageValidationOptions } from './stage-commitments.js';

/** Live counters a contributor shows ("steps served, ms per step"). */
export interface RingStageStats {
  stepsServed: number;
  tokensServed: number;
  computeMs: number;
  openSessions: number;
  /** Opens refused (limits, wrong link, stale epoch). */
  refusedOpens?: number;
  /** KV-cache bytes reserved by open sessions (worst case: full context each). */
  reservedKvBytes?: number;
  lastError?: string;
}

/** What the stage needs to know about its shard to bound its inputs and its KV cache. */
export interface StageShard {
  /** Width of the hidden states this stage receives (unless it is the first stage). */
  hiddenSize: number;
  /** Longest context one session may reach on this shard (positions). */
  contextLength: number;
  /** KV-cache bytes one position costs on this shard (all its layers, keys and values). */
  kvBytesPerPosition: number;
  /**
   * Logits rows per step this shard's head can answer: `rows` heads answer any number (verify
   * steps of speculative decoding), `last` heads one. Default 1.
   */
  verifyRows?: boolean;
  /** Vocabulary size (a head checks the logits rows it gets back). */
  vocabSize?: number;
}

/** Per-counterparty bounds of a stage. */
export interface RingStageLimits {
  /** Sessions one requester may hold on this stage. */
  maxSessionsPerRequester: number;
  /** KV-cache bytes all sessions together may reserve (each reserves its full context). */
  kvBudgetBytes: number;
  /**
   * Most positions computed per runner call (and per hidden tensor sent on). While other
   * requesters hold sessions here, chunks shrink further so that one takes about as long as a
   * decode step (prefill cost grows faster than linearly with chunk length on some backends).
   */
  maxChunkPositions: number;
  /** A session with no message and no queued work for this long is freed. */
  idleMs: number;
  /** How long handing one chunk to the next stage may take before the session fails. */
  sendDeadlineMs: number;
  /** How long an open or a chunk waits for a link to the next stage that is still connecting. */
  nextLinkWaitMs: number;
}

export const DEFAULT_STAGE_LIMITS: RingStageLimits = {
  maxSessionsPerRequester: 4,
  kvBudgetBytes: 512 * 1024 * 1024,
  maxChunkPositions: 64,
  // Longer than a requester waits for one step (60 s, a cold WebGPU compile downstream): a stage
  // sees no message for a session while later stages work on its step.
  idleMs: 75_000,
  sendDeadlineMs: 10_000,
  nextLinkWaitMs: 5_000,
};

/** The {@link StageShard} of a loaded runner (`contextLength`: what the load asked for). */
export function stageShardOf(load: Pick<LoadResult, 'io' | 'config'>, contextLength: number): StageShard {
  const { io } = load;
  return {
    verifyRows: io.outputKind !== 'logits' || io.logitsRows !== undefined,
    vocabSize: io.vocabSize,
    hiddenSize: io.hiddenSize,
    contextLength: Math.min(contextLength, load.config.maxPositions),
    // float32 keys and values for every layer of the shard.
    kvBytesPerPosition: io.kv.length * 2 * io.kvHeads * io.headDim * 4,
  };
}

export interface RingStageOptions {
  peerId: string;
  runner: ShardRunner;
  shard: StageShard;
  epoch: number;
  isFirst: boolean;
  isHead: boolean;
  /** The link to the next stage (unused on the head). */
  next: () => PeerLink | undefined;
  /**
   * Waits (at most `timeoutMs`) for the link to the next stage when it is not open yet: a new
   * ring's first `open` — a failover's, right after the re-plan — can arrive while that link is
   * still connecting. Without it such an open fails at once with `RING_PEER_LOST`, and the
   * requester tries again after a back-off.
   */
  whenNext?: (timeoutMs: number) => Promise<PeerLink | undefined>;
  /**
   * The next stage's peer id. When its link closes, every session here fails at once with
   * `RING_PEER_LOST` (sent back towards the requester), so a lost middle stage is known in
   * milliseconds rather than at the requester's step deadline.
   */
  nextPeer?: string | null;
  /**
   * The link from the previous stage. When given, a non-first stage takes opens only from it (a
   * stranger cannot open sessions in the middle of a ring under someone else's name).
   */
  prev?: () => PeerLink | undefined;
  /** The link to a requester, by its peer id (the head answers tokens on it). */
  linkTo: (peerId: string) => PeerLink | undefined;
  limits?: Partial<RingStageLimits>;
  /**
   * The device's compute queue when several stages share one device (see stage-scheduler.ts):
   * their turns are then fair between requesters across all of them. Default: the stage's own.
   */
  computeQueue?: ComputeQueue;
  now?: () => number;
  /** Timer (injectable for tests); returns a cancel function. */
  setTimer?: (fn: () => void, ms: number) => () => void;
  /** Repeating timer for the idle sweep (injectable for tests); returns a cancel function. */
  setInterval?: (fn: () => void, ms: number) => () => void;
  onStats?: (s: RingStageStats) => void;
  /**
   * Fraction of wall time this stage may compute (0 < d <= 1). After a step of t ms the stage
   * rests t·(1/d − 1) ms before the next, so a contributor can cap how hard its device works.
   */
  dutyCycle?: () => number;
  /**
   * Result validation: the tab's registered session key. With it, sessions whose `open` asks for
   * validation get signed per-step commitments (see stage-commitments.ts); without it, none.
   */
  validation?: StageValidationOptions;
  /** The stage's unit range `[start, end)` (what a test-only validation tamper is told). */
  range?: [number, number];
}

export interface RingStage {
  /** Handles control and tensors arriving on a link (from the previous stage or a requester). */
  attach(link: PeerLink): () => void;
  readonly stats: RingStageStats;
  /**
   * Stops taking new sessions (opens are refused with RING_STAGE_DRAINING, a code requesters retry)
   * and resolves once every open session has ended; the caller bounds the wait. Safe twice.
   */
  drain(): Promise<void>;
  /** Releases every session; safe twice. */
  stop(): Promise<void>;
}
