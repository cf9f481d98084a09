/**
 * `GET /api/network`: a JSON view of the network for the web app's network page, tests and the bench.
 * It carries ids, capabilities, rings and counters, never session tokens.
 */
import type { ClusterInfo } from './cluster/cluster-node.js';
import type { CoordinatorSnapshot } from './coordinator.js';
import type { EventLoopWindow } from './event-loop-delay.js';
import type { FrameGateStats } from './frame-gate.js';
import type { IceDropCounts } from './ice-filter.js';
import type { PeerSession } from './peer-registry.js';
import type { RelayStats } from './relay.js';

/** Server-level counters. */
export interface ServerCounters {
  connectionsOpen: number;
  connectionsTotal: number;
  /** Upgrades refused, by reason (origin, per-ip cap, path...). */
  rejectedUpgrades: Record<string, number>;
  /** HTTP requests and sockets refused, by reason (host, per-ip-sockets). */
  rejectedRequests: Record<string, number>;
  framesIn: number;
  framesRateLimited: number;
  errorsSent: number;
  /** Error replies counted but not sent (a connection past its first replies in a burst). */
  errorsSuppressed?: number;
  /** Connections closed by the server, by reason. */
  disconnects: Record<string, number>;
  /** Probes (pings) the server sent to check a peer reported unreachable. */
  probes?: number;
  /** Probes decided (answered, or timed out and acted on): tests wait for this, not for a sleep. */
  probesSettled?: number;
  /** Frames dropped unparsed because their sender (or its address) was over its byte budget. */
  framesOverByteBudget?: number;
  /** The frame gate: frames refused by budget, and senders paused (see frame-gate.ts). */
  frameGate?: FrameGateStats;
  /** The server's event-loop delay over the last one-second windows (see event-loop-delay.ts). */
  eventLoop?: EventLoopWindow[];
}

/** The `/api/network` document. */
export interface NetworkSnapshot {
  v: 1;
  now: number;
  uptimeS: number;
  testMode: boolean;
  epoch: number;
  plans: number;
  /** Non-loopback ICE candidates dropped in test mode (trickled + SDP lines). */
  iceDropped: number;
  iceDroppedBy: IceDropCounts;
  /**
   * Sessions whose socket closed and that may still resume. Counted, not listed: they are not part
   * of the network, and listing them let a reconnect loop inflate every GET by megabytes.
   */
  sessionsInGrace: number;
  /** Connected peers. */
  peers: Array<{
    id: string;
    roles: string[];
    connected: boolean;
    lastSeenMsAgo: number;
    client: string | null;
    category: string | null;
    assignment: CoordinatorSnapshot['peers'][number]['assignment'];
    status: CoordinatorSnapshot['peers'][number]['status'];
    /** Leaving or paused (absent while contributing normally). */
    withdrawal?: CoordinatorSnapshot['peers'][number]['withdrawal'];
    /** Result validation: reputation 0..1, proven-deviant flag, validated steps. */
    reputation?: number;
    flagged?: boolean;
    validatedSteps?: number;
    /** Cluster mode: the instance holding the peer's socket. */
    instance?: string;
  }>;
  /** Measured links between peers (RTT, Mbit/s; both ends' reports combined), as planned. */
  links: NonNullable<CoordinatorSnapshot['links']>;
  /** Capability profiles by peer id. */
  profiles: Record<string, CoordinatorSnapshot['peers'][number]['capability']>;
  models: CoordinatorSnapshot['models'];
  rings: CoordinatorSnapshot['rings'];
  /** Assignments by peer id. */
  assignments: Record<string, NonNullable<CoordinatorSnapshot['peers'][number]['assignment']>>;
  relay: RelayStats;
  counters: ServerCounters;
  memory: { rssBytes: number; heapUsedBytes: number; heapTotalBytes: number; externalBytes: number };
  /** Cluster mode: which instance answered and whether its coordinator is the active one. */
  cluster?: ClusterInfo;
}

/** Inputs of {@link buildNetworkSnapshot}. */
export interface SnapshotSources {
  now: number;
  startedAt: number;
  testMode: boolean;
  sessions: Iterable<PeerSession>;
  coordinator: CoordinatorSnapshot;
  ice: IceDropCounts;
  relay: RelayStats;
  counters: ServerCounters;
  memory: NodeJS.MemoryUsage;
  /**
   * Cluster mode: this instance's name and which instance holds each peer (the leader's view).
   * Peers held elsewhere are listed too, from the coordinator's snapshot.
   */
  cluster?: { me: string; holders: Readonly<Record<string, string>> };
}

/** Assembles the snapshot (pure: every input is passed in). */
export function buildNetworkSnapshot(s: SnapshotSources): NetworkSnapshot {
  const byId = new Map(s.coordinator.peers.map((p) => [p.id, p]));
  const profiles: NetworkSnapshot['profiles'] = {};
  const assignments: NetworkSnapshot['assignments'] = {};
  const peers: NetworkSnapshot['peers'] = [];
  let sessionsInGrace = 0;
  for (const session of s.sessions) {
    if (!session.connected) {
      sessionsInGrace++;
      continue;
    }
    const c = byId.get(session.id);
    peers.push({
      id: session.id,
      roles: [...session.roles],
      connected: session.connected,
      lastSeenMsAgo: Math.max(0, s.now - session.lastSeen),
      client: session.client ?? null,
      category: c?.category ?? null,
      assignment: c?.assignment ?? null,
      status: c?.status ?? null,
      ...(c?.withdrawal ? { withdrawal: c.withdrawal } : {}),
      ...(c?.reputation !== undefined
        ? { reputation: c.reputation, flagged: c.flagged === true, validatedSteps: c.validatedSteps ?? 0 }
        : {}),
    });
    if (s.cluster) peers[peers.length - 1]!.instance = s.cluster.me;
    if (c?.capability) profiles[session.id] = c.capability;
    if (c?.assignment) assignments[session.id] = c.assignment;
  }
  if (s.cluster) {
    // Peers held by other instances: what the coordinator knows of them (their sessions are there).
    const listed = new Set(peers.map((p) => p.id));
    for (const c of s.coordinator.peers) {
      const instance = s.cluster.holders[c.id];
      if (listed.has(c.id) || instance === undefined || instance === s.cluster.me || !c.online) continue;
      peers.push({
        id: c.id,
        roles: [...c.roles],
        connected: true,
        lastSeenMsAgo: 0,
        client: null,
        category: c.category ?? null,
        assignment: c.assignment ?? null,
        status: c.status ?? null,
        ...(c.withdrawal ? { withdrawal: c.withdrawal } : {}),
        ...(c.reputation !== undefined
          ? { reputation: c.reputation, flagged: c.flagged === true, validatedSteps: c.validatedSteps ?? 0 }
          : {}),
        instance,
      });
      if (c.capability) profiles[c.id] = c.capability;
      if (c.assignment) assignments[c.id] = c.assignment;
    }
  }
  return {
    v: 1,
    now: s.now,
    uptimeS: Math.max(0, (s.now - s.startedAt) / 1000),
    testMode: s.testMode,
    epoch: s.coordinator.epoch,
    plans: s.coordinator.plans,
    iceDropped: s.ice.candidates + s.ice.sdpLines,
    iceDroppedBy: { candidates: s.ice.candidates, sdpLines: s.ice.sdpLines },
    sessionsInGrace,
    peers,
    profiles,
    models: s.coordinator.models,
    rings: s.coordinator.rings,
    links: (s.coordinator.links ?? []).filter((l) => byId.has(l.a) && byId.has(l.b)),
    assignments,
    relay: s.relay,
    counters: s.counters,
    memory: {
      rssBytes: s.memory.rss,
      heapUsedBytes: s.memory.heapUsed,
      heapTotalBytes: s.memory.heapTotal,
      externalBytes: s.memory.external,
    },
  };
}
