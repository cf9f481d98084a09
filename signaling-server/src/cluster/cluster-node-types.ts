/**
 * The cluster node's contract (cluster-node.ts): its options, what it offers the server, and what
 * `/healthz` and `/api/network` say about the cluster.
 */
import type { Logger } from 'pino';
import type { ServerMessage } from '../../../shared/protocol/signaling.js';
import type { ApiLinkHub, ApiLinkRemote } from '../api/api-link-hub.js';
import type { Clock } from '../clock.js';
import type { ConnectionIo } from '../connection-io.js';
import type { Coordinator, CoordinatorSnapshot, Liveness } from '../coordinator-types.js';
import type { SharedAuthState } from '../identity/siwe-auth.js';
import type { PeerRegistry, PeerRole } from '../peer-registry.js';
import type { Relay } from '../relay.js';
import type { Conn } from '../server-context.js';
import type { BusStats } from './cluster-bus.js';
import type { SharedApiLimits } from './shared-api-limits.js';

/** What `/healthz` and `/api/network` say about the cluster. */
export interface ClusterInfo {
  instance: string;
  /** True on the instance whose coordinator is active. */
  coordinator: boolean;
  /** The lease holder as last seen (null: none right now). */
  leader: string | null;
  redis: 'up' | 'down';
  /** Coordinator takeovers this instance made. */
  takeovers: number;
  /** Messages between instances, this instance's side (cluster-bus.ts). */
  bus?: BusStats;
  /** Connections admitted while the cluster-wide address count was unreachable (fail-open). */
  addressFailOpen?: number;
  /** `/api/network` only: the instances holding peers (as the leader knows them) and the coordinator's. */
  instances?: Array<{ id: string; peers: number; coordinator: boolean }>;
}

/** The cluster-wide view behind a follower's `/api/network`: the leader's snapshot and who holds whom. */
export interface ClusterView {
  snapshot: CoordinatorSnapshot;
  /** peer id -> the instance holding its socket. */
  holders: Record<string, string>;
}

/** Options of {@link createClusterNode}. */
export interface ClusterNodeOptions {
  url: string;
  instanceId?: string;
  leaseMs: number;
  /** Sessions survive this long unattached (the server's resume grace); the shared record outlives it. */
  resumeGraceMs: number;
  registry: PeerRegistry;
  conns: Map<string, Conn>;
  /** Open connections per client address bucket on this instance (the server's own count). */
  ipCounts?: ReadonlyMap<string, number>;
  io: ConnectionIo;
  /** Builds a fresh coordinator when this instance takes the lease. */
  makeCoordinator(send: (peerId: string, msg: ServerMessage) => void, liveness: Liveness): Coordinator;
  clock: Clock;
  log: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** The bench hook `--allow-any-relay` (test mode): followers let any two peers signal, as the leader does. */
  allowAnyRelay?: boolean;
  /**
   * Delivers the coordinator's message to a peer of this instance that has no socket (the server's
   * own API requester); false when `peer` is not one.
   */
  deliverInternal?(peer: string, msg: ServerMessage): boolean;
  /** The address this instance verified for a peer it holds (its sign-in binding), if any. */
  addressOf?(peer: string): string | undefined;
  /**
   * Leader: a peer held by another instance joined (`addPeer`) or its verified address changed —
   * the stake gate reads its stake (as `onSession` does for a local peer).
   */
  onRemotePeer?(peer: string, roles: readonly string[]): void;
}

/** One instance's membership of the cluster. */
export interface ClusterNode {
  readonly instanceId: string;
  /** The coordinator the protocol talks to: the real one while leading, a forwarder otherwise. */
  readonly coordinator: Coordinator;
  /**
   * Before a WebSocket upgrade: counts the connection against the cluster-wide cap of its address
   * bucket (IPv4 address, IPv6 /64); false when the bucket is at `cap` over all instances. Redis
   * unreachable: true (fail-open to the per-instance cap the server checks first, so an outage
   * allows at most instances × cap).
   */
  admitConnection(bucket: string, cap: number): Promise<boolean>;
  /** After a connection from `bucket` closed (or an admitted upgrade failed): writes this instance's count. */
  connectionClosed(bucket: string): void;
  /** The relay for peers held here; {@link ClusterNode.relay} routes the others through their instance. */
  setLocalRelay(local: Relay): void;
  /** The server's probe of a peer held here (a ping; an unanswered one evicts it). */
  setProbe(probe: (peer: string) => void): void;
  /**
   * A peer another instance holds is accused (a stall, an unreachable report the coordinator wants
   * checked): its holder probes it. Never an eviction on the word of another instance's peer.
   */
  probeRemote(peer: string): void;
  /** The server's API link hub: frames other instances send to stages held here, and back. */
  setApiLinkHub(hub: Pick<ApiLinkHub, 'receive' | 'fromInstance'>): void;
  /** The API link hub's route to stages held by other instances. */
  readonly apiLinks: ApiLinkRemote;
  /** Leader: the address the holding instance verified for a peer held elsewhere (undefined: none). */
  addressOf(peer: string): string | undefined;
  /** Leader: true while another instance holds `peer` (as the forwarded calls say). */
  holdsRemote(peer: string): boolean;
  /** Sends a server message to a peer wherever it is held (here, or through its instance). */
  deliver(peer: string, msg: ServerMessage): void;
  /** Before a `hello` resumes a session this instance does not hold: adopts it from Redis if the token matches. */
  adoptSession(peerId: string, token: string, roles: readonly PeerRole[], client?: string): Promise<void>;
  /** After `welcome`: records the session (new token) and claims the peer in the directory. */
  sessionOpened(peerId: string, token: string, roles: readonly PeerRole[], client?: string): void;
  readonly relay: Relay;
  info(): ClusterInfo;
  /** The leader's view of every peer and which instance holds each (a follower's copy may be a tick old). */
  view(): ClusterView;
  /**
   * Follower: when its copy of the leader's view is older than two ticks (nobody read it lately),
   * asks for a fresh one and waits for it (bounded by ~2 ticks); the leader and a fresh copy return at once.
   */
  refreshView(): Promise<void>;
  /** Connects to Redis (CLUSTER_UNAVAILABLE when it cannot) and joins the election. */
  start(): Promise<void>;
  /** After `start()`: the sign-in state every instance shares (nonces, token key). */
  sharedAuth(): Promise<SharedAuthState>;
  /** The API keys' limits counted over every instance (rate, token budget, streams per key). */
  sharedApiLimits(): SharedApiLimits;
  /** Releases the lease (so another instance takes over at once) and disconnects. Safe twice. */
  stop(): Promise<void>;
}
