/**
 * The public shapes of a contributor (shared/app/contributor.ts): its phases and state, what a host
 * injects, the handle it returns, and the planner's view of a measured device.
 */
import type { StoreApi } from 'zustand/vanilla';
import type { DeviceProfile } from '../device/profile.js';
import type { ErrorCode } from '../errors.js';
import type { PeerCapability } from '../protocol/signaling.js';
import type { RingStageStats } from '../ring/ring-stage.js';
import type { ShardRunner } from '../runtime/shard-runner.js';
import type { PeerLink } from '../transport/types.js';
import type { StageTamper } from '../validation/test-tampers.js';
import type { AppClock, Logger, NetworkHandle } from './network-port.js';
import type { RejoinOptions } from './rejoin-policy.js';

/** Where a contributor is in its life: the status badge shows it. */
export type ContributePhase =
  | 'idle'
  | 'connecting'
  | 'profiling'
  | 'waiting'
  | 'loading'
  | 'serving'
  /** Holds a live stage's units loaded ahead (a standby replica), ready to be swapped in. */
  | 'standby'
  | 'unassigned'
  | 'draining'
  | 'paused'
  | 'error';

/** What a contributor shows: its phase, device, assignment, download and live counters. */
export interface ContributeState {
  phase: ContributePhase;
  peerId?: string;
  profile?: DeviceProfile;
  /** What this peer announces; its `memoryBytes` is the memory it lends. */
  capability?: PeerCapability;
  /** The memory the device could lend (measured or declared), bytes; `capability` may lend less. */
  usableMemoryBytes?: number;
  backend?: string;
  backendReason?: string;
  assignment?: {
    model: string;
    range: [number, number];
    units: number;
    prev: string | null;
    next: string | null;
    epoch: number;
    weightFormat: string;
    /** How the catalog serves the model: `lightweight` models are served whole by single peers. */
    serving?: 'lightweight' | 'sharded';
  };
  unassignedReason?: string;
  /** The stage this peer backs up while a standby replica (phase `standby`). */
  standby?: { model: string; range: [number, number]; epoch: number };
  download?: {
    bytesDone: number;
    bytesTotal: number;
    fetched: number;
    startedAt: number;
    finishedAt?: number;
  };
  stats: RingStageStats & { joinedAt?: number };
  /** Fraction of wall time the stage may compute (0 < d <= 1). */
  dutyCycle: number;
  autoPause: boolean;
  /** While leaving or pausing gracefully: what, since when, and the open sessions it waits for. */
  draining?: { mode: 'leave' | 'pause'; since: number; deadline: number };
  /**
   * The last drain (Leave or Pause) once it ended: the sessions the stage had open when it began
   * (finished before the tab went, not failed over) and how long it took, ms.
   */
  lastDrain?: { mode: 'leave' | 'pause'; openSessions: number; ms: number };
  error?: string;
  /** The typed code of `error` when it has one (e.g. PROTOCOL_BAD_VERSION: rejoining stopped). */
  errorCode?: ErrorCode;
  /**
   * Set while the connection is down and the contributor is coming back by itself: the attempt
   * (1-based), the delay before it, and why the connection ended. The stage keeps serving its open
   * links meanwhile.
   */
  rejoin?: { attempt: number; delayMs: number; reason?: string };
  /** How many times this contributor rejoined after its connection ended (resumed or new session). */
  rejoins: number;
}

/** A measured device: its profile and the capability derived from it. */
export interface MeasuredDevice {
  profile: DeviceProfile;
  capability: PeerCapability;
}

export interface ContributorOptions {
  /** Connects (lazily, once per connection) and returns the network handle. */
  network: () => Promise<NetworkHandle>;
  /** A fresh, unloaded shard runner (a Web Worker in browsers, in-process ORT in Node). */
  createRunner: () => ShardRunner;
  /**
   * Start one runner and warm its runtime when joining, before any assignment (default true): the
   * first shard load then only builds its graph. False: the runner starts with the first shard.
   */
  prewarm?: boolean;
  /** Profiles the device when `start` is given no capability (browsers: the profiler worker). */
  measure?: (signal: AbortSignal) => Promise<MeasuredDevice>;
  clock?: AppClock;
  logger?: Logger;
  /** Link connect timeout, ms (default 10 s). */
  connectTimeoutMs?: number;
  /**
   * Come back by itself when the connection ends (dropped, server restarted, evicted, replaced):
   * call `network()` again after a back-off with jitter (default: on, 0.5 s doubling to 30 s);
   * `false` leaves a dropped contributor where it is.
   */
  rejoin?: RejoinOptions | false;
  /** Jitter source of the rejoin back-off (default Math.random). */
  random?: () => number;
  /** Longest a leave or pause waits for open sessions to finish, ms (default 30 s). */
  drainMs?: number;
  /**
   * Least time between two deliveries of the stage's counters to the store, ms (default 0: after
   * every step). A page that renders them sets ~250: each delivery re-renders it and composites a
   * frame, CPU the stage's next step waits for on a small device. The latest counters are always
   * delivered; a session opening or ending, a refusal and an error are delivered at once.
   */
  statsEveryMs?: number;
  /** Between rounds of link probes to the ring neighbours, ms (default 30 s; 0: no probing). */
  probeIntervalMs?: number;
  /**
   * Test-only: makes this contributor's stages a dishonest peer (the validation e2e). Asked once,
   * before the first stage is built; it must reject (`TOOLING_ONLY`) anywhere but a test-mode
   * server, and then this contributor serves nothing. Honest contributors leave it unset.
   */
  testTamper?: () => Promise<StageTamper>;
}

/** Options of {@link Contributor.start}. */
export interface StartOptions {
  capability?: PeerCapability;
  /**
   * Memory to lend, bytes (at most what the device has): the coordinator plans with it, so a few
   * tabs that each lend a little hold one model between them. Default: all usable memory.
   */
  lendMemoryBytes?: number;
  signal?: AbortSignal;
}

export interface Contributor {
  readonly store: StoreApi<ContributeState>;
  /**
   * Joins the network. `capability` overrides the measured profile (operators' simulations and
   * tests); otherwise the device is measured first. Safe twice (the second call is a no-op).
   */
  start(opts?: StartOptions): Promise<void>;
  /** Stops at once: frees the shard, closes links and the signaling subscriptions. Safe twice. */
  stop(): Promise<void>;
  /**
   * Leaves gracefully: tells the coordinator first (`withdraw`), finishes the open sessions (at
   * most `drainMs`) while taking no new ones, then {@link Contributor.stop}s.
   */
  leave(): Promise<void>;
  /**
   * Pauses: tells the coordinator (`withdraw` with mode pause), drains like {@link leave}, then
   * stops serving; the coordinator plans the ring without this peer until {@link resume}.
   */
  pause(): Promise<void>;
  /** Tells the coordinator this peer is back (`resume`) and re-applies the latest assignment. */
  resume(): void;
  setDutyCycle(d: number): void;
  setAutoPause(on: boolean): void;
  /**
   * A link from this peer's own requester to its own stage, when a ring it asks includes itself (a
   * tab may contribute and chat at once): an in-memory pipe, no WebRTC to oneself. Undefined while
   * no stage serves.
   */
  localStageLink(): PeerLink | undefined;
  /**
   * The open link this peer keeps to `peerId` (a ring neighbour, or a requester), if any. This
   * peer's own requester reuses it: a second link between the same two peers would replace it.
   */
  openLink(peerId: string): PeerLink | undefined;
  /** Resolves when every assignment received so far has been applied (tests). */
  settled(): Promise<void>;
}

/**
 * The planner's view of a measured device. It claims no category: the profile's category comes from
 * the page's default thresholds, and the server only lets a claim lower its own, so claiming it
 * would override the operator's `--category-c-below-tflops` (a desktop CPU tab would stay C and take
 * no shard even on a server started with 0). The server categorises from the figures and `mobile`.
 */
export function capabilityFrom(p: DeviceProfile): PeerCapability {
  return {
    tflops: p.tflops,
    bandwidthGBps: p.bandwidthGBps,
    memoryBytes: Math.floor(p.memoryBytes),
    backend: p.backend,
    mobile: p.device.class === 'mobile',
    label:
      p.gpu && !p.gpu.isFallbackAdapter ? p.gpu.adapter.description || p.gpu.adapter.vendor : 'CPU (wasm)',
  };
}
