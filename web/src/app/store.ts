/**
 * The network view's state (zustand): the coordinator's `/api/network` snapshot, polled for the
 * Network page and the chat's ring status. The contributor's and the requester's state live in their
 * own vanilla stores (`./tab`).
 */
import { create } from 'zustand';
import type { PeerCapability } from '../../../shared/protocol/signaling';

export interface NetworkViewState {
  snapshot?: NetworkSnapshot;
  error?: string;
  updatedAt?: number;
}

/** The subset of `/api/network` the Network page and the chat's ring status draw (display only). */
export interface NetworkSnapshot {
  peers: {
    id: string;
    roles: string[];
    connected: boolean;
    category?: string;
    assignment?: { kind: string; range?: [number, number]; model?: string; reason?: string };
    /** Leaving or paused (absent while contributing normally). */
    withdrawal?: { mode: 'leave' | 'pause'; state: 'draining' | 'out'; reason: string };
    /** Result validation: reputation 0..1, a proven deviant (excluded from rings), validated steps. */
    reputation?: number;
    flagged?: boolean;
    validatedSteps?: number;
    /** Cluster mode: the server instance holding the peer's connection. */
    instance?: string;
  }[];
  /** Cluster mode: which instance answered, and every instance with its peers and the coordinator's. */
  cluster?: {
    instance: string;
    coordinator: boolean;
    leader: string | null;
    redis: 'up' | 'down';
    instances?: { id: string; peers: number; coordinator: boolean }[];
  };
  /** Measured links (RTT ms, Mbit/s; both ends combined, the worse), as the planner uses them. */
  links?: { a: string; b: string; rttMs: number; mbps: number; reports: number }[];
  profiles: Record<string, PeerCapability>;
  models: {
    id: string;
    units: number;
    contextLength?: number;
    totalBytes: number;
    ring: { stages: { peer: string; range: [number, number] }[]; epoch: number } | null;
    /** `lightweight`: served whole by single peers (replicas); `sharded`: a ring of peers. */
    serving?: 'lightweight' | 'sharded';
    /** Whole-model replicas (one peer each) of a lightweight model. */
    replicas?: { ringId: string; stages: { peer: string; range: [number, number] }[] }[];
    noRing: { reason: string; missingBytes?: number } | null;
    predictedTokensPerSecond: number | null;
    pipelinedTokensPerSecond?: number | null;
    observedTokensPerSecond?: number | null;
  }[];
  rings: {
    ringId: string;
    model: string;
    epoch: number;
    stages: { peer: string; range: [number, number] }[];
  }[];
}

/** The polled network snapshot. */
export const useNetworkView = create<NetworkViewState>(() => ({}));
