/**
 * The signaling relay: forwards SDP offers/answers and ICE candidates between peers the coordinator
 * introduced, and nothing else. It never queues: a message for an unknown, stranger or disconnected
 * peer is refused at once with a typed error, so no client can make the server hold memory for ids
 * that may never show up.
 */
import { RingworkError } from '../../shared/errors.js';
import {
  SIGNALING_VERSION,
  type ClientMessageOf,
  type ServerMessage,
} from '../../shared/protocol/signaling.js';
import type { IceFilter } from './ice-filter.js';

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
}

/** Relay counters. */
export interface RelayStats {
  forwarded: number;
  /** Dropped by the test-mode ICE filter. */
  filtered: number;
  /** Refused with an error (unknown, stranger, disconnected, self). */
  refused: number;
}

/** The relay. */
export interface Relay {
  /** Forwards `msg` from `from`; throws PROTOCOL_UNKNOWN_PEER or PROTOCOL_NOT_ALLOWED when it may not. */
  relay(from: string, msg: ClientMessageOf<'signal'>): 'forwarded' | 'filtered';
  stats(): RelayStats;
}

/** Creates a relay. */
export function createRelay(opts: RelayOptions): Relay {
  const stats: RelayStats = { forwarded: 0, filtered: 0, refused: 0 };
  const refuse = (e: RingworkError): never => {
    stats.refused++;
    throw e;
  };
  return {
    relay(from, msg) {
      const to = msg.to;
      if (to === from)
        refuse(
          new RingworkError('PROTOCOL_NOT_ALLOWED', 'A peer cannot signal itself.', { details: { to } }),
        );
      if (!opts.isKnown(to)) {
        refuse(
          new RingworkError('PROTOCOL_UNKNOWN_PEER', `No peer ${to}; nothing is queued for unknown ids.`, {
            details: { to },
          }),
        );
      }
      if (!opts.canSignal(from, to)) {
        refuse(
          new RingworkError(
            'PROTOCOL_NOT_ALLOWED',
            `You were not introduced to ${to}: only ring neighbours, and requesters with the stages of their ring, may signal each other.`,
            { details: { to } },
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
          new RingworkError(
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
