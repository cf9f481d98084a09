/**
 * The browser's side of the signaling channel: one WebSocket to the server, every inbound frame
 * parsed with the shared zod schema, typed events out, heartbeats, and resume-with-token on
 * reconnect. Works in Node too (inject `ws` as the WebSocket constructor) for integration tests.
 *
 * A dropped connection (network blip, server restart, eviction) comes back by itself: reconnects
 * back off exponentially with jitter, resume the session with its token, and when the session is gone
 * (evicted, grace over) start a new one and replay the last `profile` and the `ring-request`s. A
 * session taken over by another connection (close 4001) is not fought over: the token is dropped and
 * the next connection is a new session. A "do not come back" verdict (PROTOCOL_BAD_VERSION,
 * PEER_BANNED) ends the loop. The app's contributor runs its own rejoin loop instead
 * (`shared/app/contributor.ts`) and calls {@link SignalingClient.start} again, which resumes the same
 * way; `closed` tells it the code and the server's verdict.
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
import { isFinalError, rejoinDelay, type RejoinOptions } from '../../../shared/app/rejoin-policy';
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
  | Distribute<ServerMessage['type']>
  | { type: 'closed'; message: { code?: number; error?: RingworkError } }
  | { type: 'reconnecting'; message: { attempt: number; delayMs: number } };

/** Back-off of automatic reconnects (the shared rejoin policy's). */
export type ReconnectOptions = RejoinOptions;

/** The delay before reconnect attempt `attempt` (0-based): exponential, capped, with 50-100% jitter. */
export const reconnectDelay = rejoinDelay;

/** Error frames the server sends right before it closes: the `closed` event carries them as the verdict. */
const VERDICT_CODES: ReadonlySet<string> = new Set([
  'PEER_EVICTED',
  'PEER_BANNED',
  'PROTOCOL_SESSION_REPLACED',
  'PROTOCOL_BAD_VERSION',
  'PROTOCOL_TIMEOUT',
]);
/** The close code of a session taken over by another connection holding its token. */
const REPLACED_CODE = 4001;

export interface SignalingClientOptions {
  /** ws:// or wss:// URL of the server's `/ws` endpoint. */
  url: string;
  roles: ('contributor' | 'requester')[];
  WebSocket?: new (url: string) => WebSocketLike;
  /** Called for frames the client could not parse (protocol drift); defaults to console.warn. */
  onProtocolError?: (e: RingworkError) => void;
  now?: () => number;
  /**
   * Reconnect automatically after a drop, with this back-off (absent or false: a drop ends the
   * client). After a new session (not a resume) `peerId` changes: listen to `welcome`.
   */
  reconnect?: ReconnectOptions | false;
  random?: () => number;
  /**
   * A signed-in identity (SIWE) for `hello`: the current token, and a fresh sign-in when the server
   * refuses it (expired, or bound to this tab's previous session). Absent: anonymous.
   */
  identity?: { token(): string | undefined; refresh(): Promise<string | undefined> };
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
  // The DOM's WebSocket is a WebSocketLike; the cast keeps one socket type for both implementations.
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- needed under web's tsconfig
  const WS = opts.WebSocket ?? (globalThis.WebSocket as unknown as new (url: string) => WebSocketLike);
  const listeners = new Map<string, Listeners<unknown>>();
  const emit = (type: string, m: unknown) => listeners.get(type)?.emit(m);
  let ws: WebSocketLike | undefined;
  let peerId: string | undefined;
  let token: string | undefined;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  let stopped = false;
  let attempt = 0;
  let retry: ReturnType<typeof setTimeout> | undefined;
  // Replayed on a new session: what the server must know of this peer to plan and serve it again.
  let lastProfile: DistributiveOmit<ClientMessage, 'v'> | undefined;
  const ringRequests = new Map<string, DistributiveOmit<ClientMessage, 'v'>>();

  const helloFrame = (resume: boolean, anonymous = false): string => {
    const identity = anonymous ? undefined : opts.identity?.token();
    return JSON.stringify({
      type: 'hello',
      v: SIGNALING_VERSION,
      roles: opts.roles,
      ...(resume && peerId && token ? { resume: { peerId, token } } : {}),
      client: 'ringwork-web',
      ...(identity ? { identity } : {}),
    });
  };

  const scheduleReconnect = (): void => {
    if (stopped || !opts.reconnect || retry) return;
    const delayMs = reconnectDelay(attempt, opts.reconnect, opts.random);
    emit('reconnecting', { attempt: attempt + 1, delayMs });
    attempt++;
    retry = setTimeout(() => {
      retry = undefined;
      if (!stopped)
        open(
          undefined,
          () => undefined,
          () => undefined,
        );
    }, delayMs);
  };

  /** Opens a socket and says hello; `resolve` on welcome, `reject` if it closes before one. */
  const open = (
    signal: AbortSignal | undefined,
    resolve: (w: ServerMessageOf<'welcome'>) => void,
    reject: (e: unknown) => void,
  ): void => {
    const socket = new WS(opts.url);
    ws = socket;
    let welcomed = false;
    let resumeSent = false;
    let identityRetried = false;
    /** The server's last word on this socket before it closed. */
    let verdict: RingworkError | undefined;
    const fail = (e: unknown) => reject(e);
    signal?.addEventListener('abort', () => {
      socket.close();
      fail(new RingworkError('ABORTED', 'Connecting to the signaling server was aborted.'));
    });
    socket.addEventListener('open', () => {
      resumeSent = peerId !== undefined && token !== undefined;
      socket.send(helloFrame(true));
    });
    socket.addEventListener('error', () =>
      fail(
        new RingworkError('SIGNALING_UNREACHABLE', `Could not reach the signaling server at ${opts.url}.`, {
          details: { url: opts.url },
        }),
      ),
    );
    socket.addEventListener('close', (ev?: unknown) => {
      if (ws !== socket) return;
      if (heartbeat) clearInterval(heartbeat);
      const code = (ev as { code?: number } | undefined)?.code;
      // Someone else holds the token now: never resume it again (that would fight them).
      if (code === REPLACED_CODE || verdict?.code === 'PROTOCOL_SESSION_REPLACED') {
        peerId = undefined;
        token = undefined;
      }
      emit('closed', { ...(code !== undefined ? { code } : {}), ...(verdict ? { error: verdict } : {}) });
      fail(
        new RingworkError('SIGNALING_CLOSED', `The signaling server at ${opts.url} closed the connection.`, {
          details: { url: opts.url },
        }),
      );
      // The first connection's failure is the caller's to handle; after a welcome, drops heal here.
      if ((welcomed || attempt > 0) && !(verdict && isFinalError(verdict))) scheduleReconnect();
    });
    socket.addEventListener('message', (ev) => {
      let m: ServerMessage;
      try {
        m = parseServerFrame(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch (e) {
        if (isRingworkError(e)) (opts.onProtocolError ?? ((x) => console.warn('signaling:', x.message)))(e);
        return;
      }
      if (m.type === 'error' && m.code === 'PROTOCOL_BAD_TOKEN' && !welcomed && resumeSent) {
        // The session is gone (evicted, or its grace ran out): start a new one on this socket.
        resumeSent = false;
        peerId = undefined;
        token = undefined;
        socket.send(helloFrame(false));
        return;
      }
      if (
        m.type === 'error' &&
        (m.code === 'AUTH_TOKEN_OTHER_SESSION' || m.code === 'AUTH_BAD_TOKEN') &&
        !welcomed &&
        !identityRetried &&
        opts.identity
      ) {
        // The token is spent or stale: sign in again once, else go on anonymously.
        identityRetried = true;
        const again = resumeSent;
        opts.identity.refresh().then(
          (t) => socket.send(helloFrame(again, t === undefined)),
          () => socket.send(helloFrame(again, true)),
        );
        return;
      }
      if (m.type === 'error' && VERDICT_CODES.has(m.code)) verdict = signalingErrorFromMessage(m);
      if (m.type === 'welcome') {
        const fresh = !m.resumed && peerId !== undefined;
        const rejoined = !m.resumed && (attempt > 0 || fresh);
        welcomed = true;
        attempt = 0;
        peerId = m.peerId;
        token = m.token;
        if (heartbeat) clearInterval(heartbeat);
        heartbeat = setInterval(() => {
          if (!stopped) client.send({ type: 'heartbeat', sentAt: (opts.now ?? Date.now)() });
        }, m.heartbeatMs);
        resolve(m);
        emit(m.type, m);
        if (rejoined) {
          if (lastProfile) client.send(lastProfile);
          for (const r of ringRequests.values()) client.send(r);
        }
        return;
      }
      // Refused before welcome (bad version, bad resume token, rate limit): start() fails with the
      // server's own code instead of the close that follows. After welcome this is a no-op.
      if (m.type === 'error' && !welcomed) fail(signalingErrorFromMessage(m));
      emit(m.type, m);
    });
  };

  const client: SignalingClient = {
    get peerId() {
      return peerId;
    },
    start(signal) {
      stopped = false;
      return new Promise((resolve, reject) => open(signal, resolve, reject));
    },
    send(message) {
      if (!ws || ws.readyState !== 1) {
        throw new RingworkError('SIGNALING_CLOSED', 'Not connected to the signaling server.');
      }
      ws.send(JSON.stringify({ ...message, v: SIGNALING_VERSION }));
      if (message.type === 'profile') lastProfile = message;
      else if (message.type === 'ring-request') ringRequests.set(message.model, message);
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
      if (retry) clearTimeout(retry);
      retry = undefined;
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
