/**
 * The browser's side of the signaling channel: one WebSocket to the server, every inbound frame
 * parsed with the shared zod schema, typed events out, heartbeats, and resume-with-token on
 * reconnect. Works in Node too (inject `ws` as the WebSocket constructor) for integration tests.
 */
import { isRingworkError, RingworkError } from '../../../shared/errors';
import {
  SIGNALING_VERSION,
  parseServerFrame,
  signalingErrorFromMessage,
  type ClientMessage,
  type ServerMessage,
  type ServerMessageOf,
} from '../../../shared/protocol/signaling';
import type { SignalingPort } from '../../../shared/app/network-port';
import { createListeners, type Listeners } from '../../../shared/transport/emitter';

/** The WebSocket surface used (the browser's WebSocket and `ws` both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open' | 'close', l: () => void): void;
  addEventListener(type: 'message', l: (ev: { data: unknown }) => void): void;
  addEventListener(type: 'error', l: (ev: unknown) => void): void;
}

type Distribute<T> = T extends ServerMessage['type'] ? { type: T; message: ServerMessageOf<T> } : never;
/** Events of the signaling client. */
export type SignalingEvent =
  Distribute<ServerMessage['type']> | { type: 'closed'; message: { code?: number } };

export interface SignalingClientOptions {
  /** ws:// or wss:// URL of the server's `/ws` endpoint. */
  url: string;
  roles: ('contributor' | 'requester')[];
  WebSocket?: new (url: string) => WebSocketLike;
  /** Called for frames the client could not parse (protocol drift); defaults to console.warn. */
  onProtocolError?: (e: RingworkError) => void;
  now?: () => number;
}

/** A connected signaling session. */
export interface SignalingClient {
  readonly peerId: string | undefined;
  /** Connects and resolves on `welcome`. Reconnects resume the same peer id with the token. */
  start(signal?: AbortSignal): Promise<ServerMessageOf<'welcome'>>;
  send(message: DistributiveOmit<ClientMessage, 'v'>): void;
  on<T extends SignalingEvent['type']>(
    type: T,
    h: (m: Extract<SignalingEvent, { type: T }>['message']) => void,
  ): () => void;
  /** Waits for the next message of a type (with a timeout). */
  next<T extends ServerMessage['type']>(type: T, timeoutMs?: number): Promise<ServerMessageOf<T>>;
  stop(): void;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export function createSignalingClient(opts: SignalingClientOptions): SignalingClient {
  const WS = opts.WebSocket ?? (globalThis.WebSocket as unknown as new (url: string) => WebSocketLike);
  const listeners = new Map<string, Listeners<unknown>>();
  const emit = (type: string, m: unknown) => listeners.get(type)?.emit(m);
  let ws: WebSocketLike | undefined;
  let peerId: string | undefined;
  let token: string | undefined;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  let stopped = false;

  const client: SignalingClient = {
    get peerId() {
      return peerId;
    },
    start(signal) {
      stopped = false;
      return new Promise((resolve, reject) => {
        const socket = new WS(opts.url);
        ws = socket;
        const fail = (e: unknown) => reject(e);
        signal?.addEventListener('abort', () => {
          socket.close();
          fail(new RingworkError('ABORTED', 'Connecting to the signaling server was aborted.'));
        });
        socket.addEventListener('open', () => {
          socket.send(
            JSON.stringify({
              type: 'hello',
              v: SIGNALING_VERSION,
              roles: opts.roles,
              ...(peerId && token ? { resume: { peerId, token } } : {}),
              client: 'ringwork-web',
            }),
          );
        });
        socket.addEventListener('error', () =>
          fail(
            new RingworkError(
              'SIGNALING_UNREACHABLE',
              `Could not reach the signaling server at ${opts.url}.`,
              {
                details: { url: opts.url },
              },
            ),
          ),
        );
        socket.addEventListener('close', () => {
          if (heartbeat) clearInterval(heartbeat);
          emit('closed', {});
          fail(
            new RingworkError(
              'SIGNALING_CLOSED',
              `The signaling server at ${opts.url} closed the connection.`,
              {
                details: { url: opts.url },
              },
            ),
          );
        });
        socket.addEventListener('message', (ev) => {
          let m: ServerMessage;
          try {
            m = parseServerFrame(typeof ev.data === 'string' ? ev.data : String(ev.data));
          } catch (e) {
            if (isRingworkError(e))
              (opts.onProtocolError ?? ((x) => console.warn('signaling:', x.message)))(e);
            return;
          }
          if (m.type === 'welcome') {
            peerId = m.peerId;
            token = m.token;
            if (heartbeat) clearInterval(heartbeat);
            heartbeat = setInterval(() => {
              if (!stopped) client.send({ type: 'heartbeat', sentAt: (opts.now ?? Date.now)() });
            }, m.heartbeatMs);
            resolve(m);
          } else if (m.type === 'error') {
            // Refused before welcome (bad version, bad resume token, rate limit): start() fails with
            // the server's own code instead of the close that follows. After welcome this is a no-op.
            fail(signalingErrorFromMessage(m));
          }
          emit(m.type, m);
        });
      });
    },
    send(message) {
      if (!ws || ws.readyState !== 1) {
        throw new RingworkError('SIGNALING_CLOSED', 'Not connected to the signaling server.');
      }
      ws.send(JSON.stringify({ ...message, v: SIGNALING_VERSION }));
    },
    on(type, h) {
      if (!listeners.has(type)) listeners.set(type, createListeners());
      return listeners.get(type)!.add(h as (m: unknown) => void);
    },
    next(type, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          off();
          reject(
            new RingworkError(
              'SIGNALING_REPLY_TIMEOUT',
              `No "${type}" message from the server within ${timeoutMs} ms.`,
              { details: { type, timeoutMs } },
            ),
          );
        }, timeoutMs);
        const off = client.on(type, (m) => {
          clearTimeout(timer);
          off();
          resolve(m as ServerMessageOf<typeof type>);
        });
      });
    },
    stop() {
      if (stopped) return;
      stopped = true;
      if (heartbeat) clearInterval(heartbeat);
      try {
        if (ws?.readyState === 1) client.send({ type: 'leave' });
      } catch {
        /* closing anyway */
      }
      ws?.close();
    },
  };
  return client;
}

/** The client as the shared logic objects see it ({@link SignalingPort}: server messages only). */
export function signalingPort(client: SignalingClient): SignalingPort {
  return {
    send: (m) => client.send(m),
    on: (type, h) => client.on(type, h as (m: unknown) => void),
  };
}
