/**
 * An in-memory stand-in for the signaling server, for unit tests of the app's logic objects: each
 * peer gets a {@link SignalingPort}; the test plays the coordinator — it sees what peers send and
 * pushes server messages to them (delivered asynchronously, in order, like frames on a WebSocket).
 */
import type {
  ClientMessageBody,
  NetworkClosed,
  NetworkHandle,
  SignalingPort,
} from '../../shared/app/network-port';
import { RingworkError } from '../../shared/errors';
import {
  SIGNALING_VERSION,
  serverMessageSchema,
  type ServerMessage,
  type ServerMessageOf,
} from '../../shared/protocol/signaling';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A server message without its version (the fake adds it). */
export type ServerMessageBody = DistributiveOmit<ServerMessage, 'v'>;

export interface FakeSignalingHub {
  /**
   * A peer's network handle: its signaling port and its in-memory transport. After {@link drop}, the
   * next call is a reconnect that resumes the session: a new handle (`resumed: true`) on the same port.
   */
  network(peerId: string): NetworkHandle;
  /**
   * Ends a peer's connection as the server would (socket dropped, evicted, replaced): its `onClosed`
   * listeners hear `info`, its sends throw SIGNALING_CLOSED and pushes to it are lost until it calls
   * {@link network} again.
   */
  drop(peerId: string, info?: NetworkClosed): void;
  /** Pushes a server message to a peer (validated with the real schema first). */
  push(peerId: string, m: ServerMessageBody): void;
  /** Resolves once every message pushed so far has been delivered. */
  delivered(): Promise<void>;
  /** Everything a peer sent so far, optionally of one type. */
  sent<T extends ClientMessageBody['type']>(
    peerId: string,
    type?: T,
  ): Extract<ClientMessageBody, { type: T }>[];
  /** Sees every message any peer sends (to script coordinator answers). */
  onSend(h: (from: string, m: ClientMessageBody) => void): void;
  /** Waits until a peer has sent a message matching `pred`. */
  waitForSent(peerId: string, pred: (m: ClientMessageBody) => boolean, timeoutMs?: number): Promise<void>;
}

export function createFakeSignalingHub(): FakeSignalingHub {
  const transports = createMemoryTransportHub();
  const handlers = new Map<string, Map<string, Set<(m: unknown) => void>>>();
  const sent = new Map<string, ClientMessageBody[]>();
  const sendHooks: ((from: string, m: ClientMessageBody) => void)[] = [];
  const waiters = new Set<() => void>();
  const handles = new Map<string, NetworkHandle>();
  const closedListeners = new Map<NetworkHandle, Set<(info: NetworkClosed) => void>>();
  const down = new Set<string>();
  let inFlight: Promise<void> = Promise.resolve();

  const handle = (peerId: string, port: SignalingPort, resumed: boolean): NetworkHandle => {
    const listeners = new Set<(info: NetworkClosed) => void>();
    const h: NetworkHandle = {
      signaling: port,
      transport: transports.transport(peerId),
      peerId,
      resumed,
      onClosed(l) {
        listeners.add(l);
        return () => listeners.delete(l);
      },
    };
    closedListeners.set(h, listeners);
    return h;
  };

  const port = (peerId: string): SignalingPort => ({
    send(m) {
      if (down.has(peerId))
        throw new RingworkError('SIGNALING_CLOSED', 'Not connected to the signaling server.');
      if (!sent.has(peerId)) sent.set(peerId, []);
      sent.get(peerId)!.push(m);
      for (const h of sendHooks) h(peerId, m);
      for (const w of [...waiters]) w();
    },
    on(type, h) {
      if (!handlers.has(peerId)) handlers.set(peerId, new Map());
      const byType = handlers.get(peerId)!;
      if (!byType.has(type)) byType.set(type, new Set());
      const set = byType.get(type)!;
      const f = h as (m: unknown) => void;
      set.add(f);
      return () => set.delete(f);
    },
  });

  return {
    network(peerId) {
      let h = handles.get(peerId);
      if (!h) {
        h = handle(peerId, port(peerId), false);
        handles.set(peerId, h);
      } else if (down.has(peerId)) {
        down.delete(peerId);
        h = handle(peerId, h.signaling, true);
        handles.set(peerId, h);
      }
      return h;
    },
    drop(peerId, info = {}) {
      const h = handles.get(peerId);
      if (!h || down.has(peerId)) return;
      down.add(peerId);
      setTimeout(() => {
        for (const l of [...(closedListeners.get(h) ?? [])]) l(info);
      }, 0);
    },
    push(peerId, m) {
      const msg = serverMessageSchema.parse({ ...m, v: SIGNALING_VERSION }) as ServerMessageOf<
        ServerMessage['type']
      >;
      const done = new Promise<void>((resolve) =>
        setTimeout(() => {
          // A peer whose connection is down never sees it (like a frame to a closed socket).
          if (!down.has(peerId)) for (const h of handlers.get(peerId)?.get(msg.type) ?? []) h(msg);
          resolve();
        }, 0),
      );
      const before = inFlight;
      inFlight = Promise.all([before, done]).then(() => undefined);
    },
    delivered: () => inFlight,
    sent(peerId, type) {
      const all = sent.get(peerId) ?? [];
      return (type ? all.filter((m) => m.type === type) : all) as never;
    },
    onSend(h) {
      sendHooks.push(h);
    },
    waitForSent(peerId, pred, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if ((sent.get(peerId) ?? []).some(pred)) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${peerId} did not send the expected message within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}
