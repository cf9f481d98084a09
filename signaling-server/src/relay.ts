/**
 * The signaling relay: forwards SDP offers/answers and ICE candidates between peers the coordinator
 * introduced, and nothing else. It never queues: a message for an unknown, stranger or disconnected
 * peer is refused at once with a typed error, so no client can make the server hold memory for ids
 * that may never show up.
 *
 * Every resource is bounded per counterparty, and the sender pays for a flood, never the receiver:
 * - a token bucket per (sender, receiver) pair, and one over the bytes relayed to each receiver from
 *   everyone together;
 * - at most `relayConnIdsPerPair` connection ids live per pair (each one is an RTCPeerConnection on
 *   the receiving side), an id idle for `CONN_ID_IDLE_MS` is forgotten;
 * - SDP bodies above `maxSdpBytes` are refused (real data-channel offers are a few KiB);
 * - a receiver whose unsent output is high ("busy") is not sent more: the sender is refused, so the
 *   slow-consumer cut only ever hits a reader that falls behind on its own traffic.
 */
import type { RingworkError } from '../../shared/errors.js';
import { refusal } from './refusal.js';
import {
  SIGNALING_VERSION,
  type ClientMessageOf,
  type ServerMessage,
} from '../../shared/protocol/signaling.js';
import { systemClock, type Clock } from './clock.js';
import type { IceFilter } from './ice-filter.js';
import { createKeyedRateLimiter } from './rate-limit.js';

/** The relay quotas (see config.ts `limits`). */
export interface RelayLimits {
  relayPairBurst: number;
  relayPairPerSecond: number;
  relayConnIdsPerPair: number;
  maxSdpBytes: number;
  relayInboundBurstBytes: number;
  relayInboundBytesPerSecond: number;
}

/** Defaults of {@link RelayLimits} (the config's). */
export const DEFAULT_RELAY_LIMITS: Readonly<RelayLimits> = Object.freeze({
  relayPairBurst: 60,
  relayPairPerSecond: 10,
  relayConnIdsPerPair: 4,
  maxSdpBytes: 16 * 1024,
  relayInboundBurstBytes: 512 * 1024,
  relayInboundBytesPerSecond: 128 * 1024,
});

/** A connection id unused this long stops counting against its pair's cap. */
export const CONN_ID_IDLE_MS = 30_000;

/** Options of {@link createRelay}. */
export interface RelayOptions {
  /** True when the two peers were introduced (see the coordinator). */
  canSignal(a: string, b: string): boolean;
  /** True when a session with this id exists. */
  isKnown(peerId: string): boolean;
  /** Sends to a connected peer; false when it has no open connection. */
  deliver(peerId: string, msg: ServerMessage): boolean;
  /** Test mode: the loopback-only ICE filter (null in production). */
  iceFilter: IceFilter | null;
  /** True when the receiver's unsent output is high: the sender is refused instead (default: never). */
  busy?(peerId: string): boolean;
  limits?: Partial<RelayLimits>;
  clock?: Pick<Clock, 'now'>;
}

/** Relay counters. */
export interface RelayStats {
  forwarded: number;
  /** Dropped by the test-mode ICE filter. */
  filtered: number;
  /** Refused with an error (unknown, stranger, disconnected, self, over quota). */
  refused: number;
  /** Of `refused`: over a quota (pair rate, receiver bytes, connection ids, SDP size, busy receiver). */
  throttled?: number;
}

/** The relay. */
export interface Relay {
  /**
   * Forwards `msg` from `from`; throws PROTOCOL_UNKNOWN_PEER or PROTOCOL_NOT_ALLOWED when it may
   * not, PROTOCOL_RATE_LIMITED / PROTOCOL_FRAME_TOO_LARGE when over a quota.
   */
  relay(from: string, msg: ClientMessageOf<'signal'>): 'forwarded' | 'filtered';
  stats(): RelayStats;
}

/** Creates a relay. */
export function createRelay(opts: RelayOptions): Relay {
  const clock = opts.clock ?? systemClock;
  const limits: RelayLimits = { ...DEFAULT_RELAY_LIMITS, ...opts.limits };
  const stats = { forwarded: 0, filtered: 0, refused: 0, throttled: 0 };
  const pairRate = createKeyedRateLimiter({
    capacity: limits.relayPairBurst,
    refillPerSecond: limits.relayPairPerSecond,
    clock,
  });
  const inbound = createKeyedRateLimiter({
    capacity: limits.relayInboundBurstBytes,
    refillPerSecond: limits.relayInboundBytesPerSecond,
    clock,
  });
  /** pair key -> connection id -> last use (ms). Bounded: ids per pair capped, idle pairs pruned. */
  const connIds = new Map<string, Map<string, number>>();
  let lastPrune = clock.now();

  const refuse = (e: RingworkError): never => {
    stats.refused++;
    throw e;
  };
  const throttle = (e: RingworkError): never => {
    stats.throttled++;
    return refuse(e);
  };

  const prune = (now: number): void => {
    if (now - lastPrune < CONN_ID_IDLE_MS) return;
    lastPrune = now;
    for (const [k, ids] of connIds) {
      for (const [id, t] of ids) if (now - t > CONN_ID_IDLE_MS) ids.delete(id);
      if (ids.size === 0) connIds.delete(k);
    }
    pairRate.prune();
    inbound.prune();
  };

  /** Counts `conn` against the pair's cap of live connection ids; false when it would exceed it. */
  const admitConnId = (pair: string, conn: string, now: number): boolean => {
    let ids = connIds.get(pair);
    if (!ids) {
      ids = new Map();
      connIds.set(pair, ids);
    }
    if (!ids.has(conn)) {
      for (const [id, t] of ids) if (now - t > CONN_ID_IDLE_MS) ids.delete(id);
      if (ids.size >= limits.relayConnIdsPerPair) return false;
    }
    ids.set(conn, now);
    return true;
  };

  return {
    relay(from, msg) {
      const to = msg.to;
      if (to === from)
        refuse(refusal('PROTOCOL_NOT_ALLOWED', 'A peer cannot signal itself.', { details: { to } }));
      if (!opts.isKnown(to)) {
        refuse(
          refusal('PROTOCOL_UNKNOWN_PEER', `No peer ${to}; nothing is queued for unknown ids.`, {
            details: { to },
          }),
        );
      }
      if (!opts.canSignal(from, to)) {
        refuse(
          refusal(
            'PROTOCOL_NOT_ALLOWED',
            `You were not introduced to ${to}: only ring neighbours, and requesters with the first stage and head of their ring, may signal each other.`,
            { details: { to } },
          ),
        );
      }
      const now = clock.now();
      prune(now);
      const p = msg.payload;
      if (p.kind === 'sdp' && p.sdp.sdp.length > limits.maxSdpBytes) {
        throttle(
          refusal(
            'PROTOCOL_FRAME_TOO_LARGE',
            `SDP of ${p.sdp.sdp.length} bytes; at most ${limits.maxSdpBytes} are relayed.`,
            { details: { bytes: p.sdp.sdp.length, max: limits.maxSdpBytes } },
          ),
        );
      }
      const pair = `${from}\u0000${to}`;
      if (!pairRate.take(pair)) {
        throttle(
          refusal(
            'PROTOCOL_RATE_LIMITED',
            `Too many signals to ${to}: at most ${limits.relayPairPerSecond}/s (bursts of ${limits.relayPairBurst}).`,
            { details: { to, perSecond: limits.relayPairPerSecond, burst: limits.relayPairBurst } },
          ),
        );
      }
      if (msg.conn !== undefined && !admitConnId(pair, msg.conn, now)) {
        throttle(
          refusal(
            'PROTOCOL_RATE_LIMITED',
            `Too many connections to ${to} at once: at most ${limits.relayConnIdsPerPair}; reuse one or wait ${CONN_ID_IDLE_MS / 1000} s.`,
            { details: { to, max: limits.relayConnIdsPerPair } },
          ),
        );
      }
      if (opts.busy?.(to)) {
        throttle(
          refusal('PROTOCOL_RATE_LIMITED', `Peer ${to} is not keeping up right now; retry later.`, {
            details: { to, busy: true },
          }),
        );
      }
      const bytes = p.kind === 'sdp' ? p.sdp.sdp.length : p.candidate ? p.candidate.candidate.length : 0;
      if (!inbound.take(to, bytes + 64)) {
        throttle(
          refusal(
            'PROTOCOL_RATE_LIMITED',
            `Peer ${to} receives too much signaling right now (at most ${limits.relayInboundBytesPerSecond} bytes/s from everyone); retry later.`,
            { details: { to, bytesPerSecond: limits.relayInboundBytesPerSecond } },
          ),
        );
      }
      const payload = opts.iceFilter ? opts.iceFilter.filter(msg.payload) : msg.payload;
      if (payload === null) {
        stats.filtered++;
        return 'filtered';
      }
      const delivered = opts.deliver(to, {
        type: 'signal',
        v: SIGNALING_VERSION,
        from,
        ...(msg.conn ? { conn: msg.conn } : {}),
        payload,
      });
      if (!delivered) {
        refuse(
          refusal(
            'PROTOCOL_UNKNOWN_PEER',
            `Peer ${to} is not connected right now; nothing is queued. Retry after it resumes.`,
            {
              details: { to, connected: false },
            },
          ),
        );
      }
      stats.forwarded++;
      return 'forwarded';
    },
    stats: () => ({ ...stats }),
  };
}
