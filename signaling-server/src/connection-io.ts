/**
 * Sending to and closing WebSocket connections. Separate from the protocol handlers because the
 * coordinator needs `deliver` before it exists (it is built with it), and the handlers need the
 * coordinator: this layer depends on the base {@link ServerContext} only.
 */
import { WebSocket } from 'ws';
import type { RingworkError } from '../../shared/errors.js';
import { signalingErrorMessage, type ServerMessage } from '../../shared/protocol/signaling.js';
import { unrefTimer } from './clock.js';
import { bump, CLOSE_CODES, type Conn, type ServerContext } from './server-context.js';

/** Sending and closing, bound to one server's state. */
export interface ConnectionIo {
  /** Sends a message; false when the connection is closing or was cut off as a slow consumer. */
  sendTo(conn: Conn, msg: ServerMessage): boolean;
  /** Sends to the connection of a peer id; false when the peer has none. */
  deliver(peerId: string, msg: ServerMessage): boolean;
  /** Closes once (later calls do nothing); `hard` terminates without the close handshake. */
  closeConn(conn: Conn, code: number, reason: string, hard?: boolean): void;
  /**
   * Closes a connection for flooding (1008): it is never read again (whatever it queued is discarded
   * unread) and its address bucket is held back from reconnecting for a while (frame-gate.ts).
   */
  cutConn(conn: Conn, reason: string): void;
  /** Sends a typed `error` frame. */
  sendError(conn: Conn, err: RingworkError): void;
  /**
   * The server's own check of a peer: a WebSocket ping; true when the pong comes within
   * `timeoutMs`. Concurrent probes of one connection share one ping.
   */
  probe(conn: Conn, timeoutMs: number): Promise<boolean>;
  /** True when a relayed message to this peer should wait: its unsent output is above `busyBytes`. */
  busy(peerId: string, busyBytes: number): boolean;
}

/** Creates the send/close layer over `ctx`'s connection tables. */
export function createConnectionIo(ctx: ServerContext): ConnectionIo {
  const { clock, log, counters, limits } = ctx;

  const closeConn = (conn: Conn, code: number, reason: string, hard = false): void => {
    if (conn.closing) return;
    conn.closing = true;
    try {
      if (hard) conn.ws.terminate();
      else {
        conn.ws.close(code, reason.slice(0, 120));
        // A half-open peer never answers the close handshake: do not wait ws's 30 s for it.
        unrefTimer(clock.setTimeout(() => conn.ws.terminate(), 2000));
      }
    } catch (e) {
      log.debug({ err: e }, 'close failed');
      conn.ws.terminate();
    }
  };

  const sendTo = (conn: Conn, msg: ServerMessage): boolean => {
    if (conn.closing || conn.ws.readyState !== WebSocket.OPEN) return false;
    if (conn.ws.bufferedAmount > limits.maxBufferedBytes) {
      // A reader that does not keep up would make us buffer without bound: cut it off.
      bump(counters.disconnects, 'slow-consumer');
      closeConn(conn, CLOSE_CODES.slowConsumer, 'slow consumer', true);
      return false;
    }
    conn.ws.send(JSON.stringify(msg));
    return true;
  };

  const probes = new WeakMap<Conn, Promise<boolean>>();
  const probe = (conn: Conn, timeoutMs: number): Promise<boolean> => {
    const inFlight = probes.get(conn);
    if (inFlight) return inFlight;
    const p = new Promise<boolean>((resolve) => {
      if (conn.closing || conn.ws.readyState !== WebSocket.OPEN) {
        resolve(false);
        return;
      }
      const done = (ok: boolean): void => {
        clock.clearTimeout(timer);
        conn.ws.off('pong', onPong);
        conn.ws.off('close', onClose);
        probes.delete(conn);
        resolve(ok);
      };
      const onPong = (): void => done(true);
      const onClose = (): void => done(false);
      const timer = clock.setTimeout(() => done(false), timeoutMs);
      conn.ws.on('pong', onPong);
      conn.ws.on('close', onClose);
      try {
        conn.ws.ping();
      } catch {
        done(false);
      }
    });
    probes.set(conn, p);
    return p;
  };

  return {
    sendTo,
    closeConn,
    cutConn(conn, reason) {
      if (conn.closing) return;
      ctx.frameGate.cut(conn);
      closeConn(conn, CLOSE_CODES.policy, reason);
    },
    probe,
    busy(peerId, busyBytes) {
      const conn = ctx.conns.get(peerId);
      return conn !== undefined && conn.ws.bufferedAmount > busyBytes;
    },
    deliver(peerId, msg) {
      const conn = ctx.conns.get(peerId);
      return conn ? sendTo(conn, msg) : false;
    },
    sendError(conn, err) {
      counters.errorsSent++;
      // toJSON bounds message and details; the code is the contract.
      sendTo(conn, signalingErrorMessage(err));
    },
  };
}
