/**
 * The one wiring between the signaling channel and a peer's ring links, shared by the contributor,
 * the browser ring harness and the tests: follows the coordinator's `assignment` / `standby` /
 * `unassigned` messages strictly in arrival order (one handler at a time, each told whether a newer message has
 * superseded it), keeps the {@link NeighbourLinks}, and reports a neighbour whose link died to the
 * coordinator (`peer-unreachable`). Links the server's OpenAI API opens over the signaling socket
 * (`api-link`, see api-links.ts) arrive like any requester's incoming link.
 */
import type { ServerMessageOf } from '../protocol/signaling.js';
import { createNeighbourLinks, type NeighbourLinks } from '../ring/neighbour-links.js';
import { createListeners } from '../transport/emitter.js';
import type { PeerLink, Transport } from '../transport/types.js';
import { acceptApiLinks } from './api-links.js';
import { silentLogger, type Logger, type NetworkHandle } from './network-port.js';

/** What a handler is told about the message it handles. */
export interface MembershipContext {
  /** False once a newer assignment or unassignment arrived: stop at the next await. */
  isCurrent(): boolean;
}

export interface RingMembershipOptions {
  network: NetworkHandle;
  /** Accept links from peers other than neighbours (requesters). Default: accept. */
  accept?: (peerId: string) => boolean;
  connectTimeoutMs?: number;
  /**
   * Applies an assignment. Handlers run one at a time in arrival order; a slow one (loading a shard)
   * cannot be overtaken by — and so cannot overwrite — a newer one.
   */
  onAssignment(a: ServerMessageOf<'assignment'>, ctx: MembershipContext): void | Promise<void>;
  onUnassigned?(u: ServerMessageOf<'unassigned'>, ctx: MembershipContext): void | Promise<void>;
  /** Applies a standby replica (in the same order as assignments; a ring peer no more). */
  onStandby?(s: ServerMessageOf<'standby'>, ctx: MembershipContext): void | Promise<void>;
  /** Every link that becomes usable (neighbours and requesters). */
  onLink?(link: PeerLink): void;
  /** A needed neighbour's link closed or could not be opened (already reported to the coordinator). */
  onLinkLost?(peerId: string, why: string): void;
  logger?: Logger;
}

export interface RingMembership {
  readonly links: NeighbourLinks;
  /** The newest assignment (undefined after an `unassigned` or a `standby`). */
  latest(): ServerMessageOf<'assignment'> | undefined;
  /** Queues the newest assignment again (after a pause: the stage was stopped, the plan was not). */
  reapply(): void;
  /** Resolves when every queued handler has run. */
  settled(): Promise<void>;
  /** Unsubscribes and closes every link; safe twice. */
  stop(): void;
}

/** Starts following assignments on `network`. */
export function createRingMembership(o: RingMembershipOptions): RingMembership {
  const log = o.logger ?? silentLogger;
  const { signaling, transport, peerId } = o.network;
  // The server's API links join the transport's incoming links: a stage serves both alike.
  const apiIncoming = createListeners<PeerLink>();
  const apiLinks = acceptApiLinks({ signaling, onLink: (l) => apiIncoming.emit(l), logger: log });
  const offClosed = o.network.onClosed?.(() => apiLinks.drop());
  const withApiLinks: Transport = {
    localId: transport.localId,
    connect: (id, opts) => transport.connect(id, opts),
    onIncoming(h) {
      const a = transport.onIncoming(h);
      const b = apiIncoming.add(h);
      return () => (a(), b());
    },
    close: () => transport.close(),
  };
  const links = createNeighbourLinks({
    transport: withApiLinks,
    selfId: peerId,
    connectTimeoutMs: o.connectTimeoutMs,
    ...(o.accept ? { accept: o.accept } : {}),
  });
  let latest: ServerMessageOf<'assignment'> | undefined;
  /** Bumped by every assignment/unassignment: a handler is current while its generation is. */
  let generation = 0;
  let queue: Promise<void> = Promise.resolve();
  let stopped = false;

  const enqueue = (run: (ctx: MembershipContext) => void | Promise<void>) => {
    const mine = ++generation;
    const ctx = { isCurrent: () => !stopped && generation === mine };
    queue = queue.then(async () => {
      if (!ctx.isCurrent()) return; // superseded before it started
      try {
        await run(ctx);
      } catch (e) {
        log.error({ err: e }, 'assignment handler failed');
      }
    });
  };

  const offLink = o.onLink ? links.onLink(o.onLink) : () => undefined;
  const offLost = links.onLost((peer, why) => {
    log.warn({ peer, why }, 'neighbour lost');
    o.onLinkLost?.(peer, why);
    try {
      signaling.send({ type: 'peer-unreachable', peer, reason: why });
    } catch {
      /* signaling down: the server notices on its own */
    }
  });
  const offs = [
    signaling.on('assignment', (a) => {
      latest = a;
      enqueue((ctx) => o.onAssignment(a, ctx));
    }),
    signaling.on('unassigned', (u) => {
      latest = undefined;
      enqueue((ctx) => o.onUnassigned?.(u, ctx));
    }),
    signaling.on('standby', (m) => {
      latest = undefined;
      enqueue((ctx) => o.onStandby?.(m, ctx));
    }),
  ];

  return {
    links,
    latest: () => latest,
    reapply() {
      const a = latest;
      if (a && !stopped) enqueue((ctx) => o.onAssignment(a, ctx));
    },
    settled: () => queue,
    stop() {
      if (stopped) return;
      stopped = true;
      offs.forEach((f) => f());
      offLink();
      offLost();
      offClosed?.();
      apiLinks.close();
      links.close();
    },
  };
}
