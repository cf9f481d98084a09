/**
 * The signaling server's state, as explicit objects instead of variables captured by one closure:
 * {@link ServerContext} is built once by `createSignalingServer` (config, registry, connection
 * tables, counters); {@link RunningContext} adds what exists only once started (catalog,
 * coordinator, relay), so code that needs a coordinator receives one and never asserts it exists.
 */
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { CatalogModel } from './catalog.js';
import type { ClientAddressResolver } from './client-address.js';
import type { Clock } from './clock.js';
import type { Limits, SignalingConfig } from './config.js';
import type { ClusterNode } from './cluster/cluster-node.js';
import type { Coordinator } from './coordinator.js';
import type { EventLoopMonitor } from './event-loop-delay.js';
import type { FrameGate } from './frame-gate.js';
import type { IceFilter } from './ice-filter.js';
import type { ServerCounters } from './network-snapshot.js';
import type { PeerRegistry } from './peer-registry.js';
import type { KeyedRateLimiter, TokenBucket } from './rate-limit.js';
import type { Relay } from './relay.js';
import type { SessionBindings } from './identity/session-binding.js';
import type { SiweAuth } from './identity/siwe-auth.js';

/** WebSocket close codes the server uses. */
export const CLOSE_CODES = {
  leave: 1000,
  shutdown: 1001,
  policy: 1008,
  sessionReplaced: 4001,
  heartbeatTimeout: 4002,
  evicted: 4003,
  helloTimeout: 4004,
  slowConsumer: 4005,
} as const;

/** One WebSocket connection. */
export interface Conn {
  readonly seq: number;
  readonly ws: WebSocket;
  /** The client's address (forwarded one from a trusted proxy). */
  readonly ip: string;
  /** The bucket per-client limits count against (IPv4 address, IPv6 /64). */
  readonly ipBucket: string;
  readonly openedAt: number;
  peerId: string | null;
  /** Error replies this connection may still provoke (refills 1/s). */
  readonly errorBudget: TokenBucket;
  /** Frames dropped by the frame gate, and times it found a budget short, since the last calm. */
  dropped: number;
  throttles: number;
  limitedNotified: boolean;
  /** Error replies are being counted, not sent (after a summary), until the error burst calms. */
  errorsMuted: boolean;
  closing: boolean;
}

/** State that exists from construction on. */
export interface ServerContext {
  readonly config: SignalingConfig;
  readonly limits: Limits;
  readonly clock: Clock;
  readonly log: Logger;
  readonly registry: PeerRegistry;
  readonly iceFilter: IceFilter | null;
  readonly counters: ServerCounters;
  readonly addresses: ClientAddressResolver;
  /** The connection of each peer id whose session is attached. */
  readonly conns: Map<string, Conn>;
  /** Every open WebSocket connection, with or without a session. */
  readonly allConns: Set<Conn>;
  /** Open WebSocket connections per client address bucket. */
  readonly ipCounts: Map<string, number>;
  /** New WebSocket connections per client address bucket. */
  readonly connectRate: KeyedRateLimiter;
  /** New sessions (hello without resume) per client address bucket. */
  readonly sessionRate: KeyedRateLimiter;
  /** Frame budgets per connection and per address bucket, enforced by pausing reads. */
  readonly frameGate: FrameGate;
  /** The server's event-loop delay, in windows. */
  readonly eventLoop: EventLoopMonitor;
  readonly startedAt: number;
  /** Set by stop(): new upgrades are refused. */
  stopping: boolean;
  /** Sign-in (SIWE) and the identities bound to sessions. */
  readonly identity: { readonly auth: SiweAuth; readonly bindings: SessionBindings };
  /** Called when a session gets an identity (the ledger records it); set once started. */
  onIdentity?: (peerId: string, address: string) => void;
  /** Called after every hello (new or resumed session), once the peer is known to the coordinator (stake checks). */
  onSession?: (peerId: string, roles: readonly string[]) => void;
  /** A requester reported an answer from a ring (`ring-lap`, `tokens` generated, bounded): its usage in the ledger. */
  onAnswer?: (peerId: string, tokens: number) => void;
}

/** State of a started server. */
export interface RunningContext extends ServerContext {
  readonly catalog: readonly CatalogModel[];
  readonly coordinator: Coordinator;
  readonly relay: Relay;
  /** Cluster mode (`--redis`): this instance's membership; absent in the embedded default. */
  readonly cluster?: ClusterNode | null;
}

/** Adds one to a counter in a by-reason record. */
export function bump(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

/** The default for a per-IP limit that scales with the per-IP connection cap. */
export function perIpBurst(limits: Limits, value: number | undefined): number {
  return value ?? Math.max(32, limits.maxConnectionsPerIp);
}
