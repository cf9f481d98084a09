/**
 * What the app's logic objects need from the network, as interfaces: the signaling channel (the
 * browser's WebSocket client, or an in-memory fake in tests) and the peer-to-peer transport (WebRTC
 * in browsers, in-memory in tests). Nothing here touches the DOM.
 */
import type { RingworkError } from '../errors.js';
import type { ClientMessage, ServerMessage, ServerMessageOf } from '../protocol/signaling.js';
import type { Transport } from '../transport/types.js';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A client → server message without its version (the client adds it). */
export type ClientMessageBody = DistributiveOmit<ClientMessage, 'v'>;

/** The signaling channel as the logic uses it: typed messages in, typed messages out. */
export interface SignalingPort {
  /** Sends a message; throws TRANSPORT_CLOSED when not connected. */
  send(message: ClientMessageBody): void;
  /** Subscribes to one server message type; returns the unsubscribe function. */
  on<T extends ServerMessage['type']>(type: T, h: (m: ServerMessageOf<T>) => void): () => void;
}

/** How a connection to the network ended (by the network's doing, not by {@link NetworkHandle.close}). */
export interface NetworkClosed {
  /** The WebSocket close code, when there was one (4001 replaced, 4003 evicted, 1001 shutdown…). */
  code?: number;
  /** The server's typed verdict sent just before it closed (evicted, replaced, bad version, banned). */
  error?: RingworkError;
}

/** A tab's (or a test peer's) connection to the network. */
export interface NetworkHandle {
  signaling: SignalingPort;
  transport: Transport;
  peerId: string;
  /**
   * True when this connection resumed an earlier session (same peer id; the server kept its
   * capability and re-sends its assignment). False or absent: a new session.
   */
  resumed?: boolean;
  /**
   * Subscribes to the end of this connection (socket dropped, server restarted, evicted, replaced);
   * returns the unsubscribe. Absent where the connection never ends by itself.
   */
  onClosed?(h: (info: NetworkClosed) => void): () => void;
  /** Ends the connection (a contributor leaving the network); absent when someone else owns it. */
  close?(): void;
}

/** Structured logger (pino-like); the default drops everything. */
export interface Logger {
  debug(o: object, msg?: string): void;
  info(o: object, msg?: string): void;
  warn(o: object, msg?: string): void;
  error(o: object, msg?: string): void;
}

/** A logger that drops everything. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Clock and timers, injected so tests can use fake ones. */
export interface AppClock {
  /** Monotonic milliseconds. */
  now(): number;
  /** Wall-clock milliseconds since the epoch (shown to people). */
  wallNow(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock (`performance.now`, `Date.now`, `setTimeout`). */
export const systemAppClock: AppClock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      function done() {
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        resolve();
      }
    }),
};
