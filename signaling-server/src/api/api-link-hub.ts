/**
 * The server's side of the links its OpenAI API opens to ring stages over their signaling sockets
 * (`api-link` messages, see shared/transport/api-link-channel.ts): the server drives a ring as a
 * requester — token ids to the first stage, tokens back from the head — while hidden states still
 * hop peer to peer. A {@link PeerLink} runs over each, exactly as over a WebRTC DataChannel.
 *
 * Bounds, per stage: at most `maxLinksPerPeer` links, and the stage's `api-link` frames have their
 * own budget ({@link ApiLinkHub.admitFrame}), used instead of the per-connection frame gate while the
 * server holds links to it — the API's traffic is the server's own and must not be throttled by the
 * limits meant for strangers' frames, but a stage cannot use it to flood either.
 *
 * Cluster mode: a stage may be held by another instance. Then the frames go over the cluster bus
 * ({@link ApiLinkRemote}): the holder's hub delivers them to the stage's socket, remembers which
 * instance opened the link, and posts the stage's frames back to it — the same per-stage bounds
 * (links, frame budget) count where the stage is, for every instance's links together.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { RingworkError } from '../../../shared/errors.js';
import {
  SIGNALING_VERSION,
  type ClientMessageOf,
  type ServerMessage,
  type ServerMessageOf,
} from '../../../shared/protocol/signaling.js';
import { createApiLinkChannel, type ApiLinkChannel } from '../../../shared/transport/api-link-channel.js';
import { createPeerLink } from '../../../shared/transport/peer-link.js';
import type { PeerLink, Transport } from '../../../shared/transport/types.js';
import { systemClock, type Clock } from '../clock.js';
import { createTokenBucket, type TokenBucket } from '../rate-limit.js';

/**
 * Cluster mode: how the hub reaches stages held by other instances (cluster/cluster-node.ts posts
 * these over the cluster bus, in order per stage).
 */
export interface ApiLinkRemote {
  /** Posts a frame to the instance holding `peerId`; `undelivered` runs when none holds it. */
  send(peerId: string, msg: ServerMessageOf<'api-link'>, undelivered: (e: unknown) => void): void;
  /** Posts a stage's frame back to the instance whose API opened the link. */
  reply(instance: string, peerId: string, msg: ClientMessageOf<'api-link'>): void;
}

/** Options of {@link createApiLinkHub}. */
export interface ApiLinkHubOptions {
  /** Sends to a peer's socket; false when it has none. */
  deliver(peerId: string, msg: ServerMessage): boolean;
  /** Cluster mode: the route to stages this instance does not hold (absent: one process). */
  remote?: ApiLinkRemote;
  /** Links the server may hold to one stage (default 64). */
  maxLinksPerPeer?: number;
  /** How long a stage has to acknowledge a new link, ms (default 10 s). */
  connectTimeoutMs?: number;
  /** `api-link` frames one stage may send per second while it holds links (default 2000, burst 4000). */
  framesPerSecondPerPeer?: number;
  clock?: Clock;
  logger?: Pick<Logger, 'debug' | 'warn'>;
}

/** The server's API links. */
export interface ApiLinkHub {
  /** Opens a link to stage `peerId` for requester `requesterId`; resolves once the stage acknowledged. */
  connect(
    peerId: string,
    requesterId: string,
    opts?: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<PeerLink>;
  /** A {@link Transport} for one requester id (what the shared requester dials with). */
  transportFor(requesterId: string): Transport;
  /** An `api-link` frame from a stage. */
  receive(peerId: string, msg: ClientMessageOf<'api-link'>): void;
  /**
   * Cluster mode: a frame another instance's API sends to stage `peerId`, held here. An `open`
   * counts against the stage's link bound (all instances' links together) and is refused with a
   * `close` back when it is full or the stage has no socket; other frames pass only on a link
   * `instance` opened.
   */
  fromInstance(instance: string, peerId: string, msg: ServerMessageOf<'api-link'>): void;
  /**
   * True when a frame of `bytes` from `peerId` is an `api-link` frame (`raw` starts like one) that
   * the stage's own API budget admits: it then skips the per-connection frame gate.
   */
  admitFrame(peerId: string, raw: Buffer | ArrayBuffer | Buffer[]): boolean;
  /** The stage's socket is gone: its links close. */
  peerGone(peerId: string): void;
  /** Links open now (all stages). */
  readonly size: number;
  /** Closes every link; safe twice. */
  close(): void;
}

const PREFIX = Buffer.from('{"type":"api-link"');

function startsWithPrefix(raw: Buffer | ArrayBuffer | Buffer[]): boolean {
  const b = Array.isArray(raw) ? raw[0] : Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
  return b !== undefined && b.length >= PREFIX.length && b.subarray(0, PREFIX.length).equals(PREFIX);
}

interface PeerLinks {
  channels: Map<string, ApiLinkChannel>;
  /** Cluster mode: links other instances opened to this stage (link id -> that instance). */
  remote: Map<string, string>;
  budget: TokenBucket;
}

/** Creates the hub. */
export function createApiLinkHub(o: ApiLinkHubOptions): ApiLinkHub {
  const clock = o.clock ?? systemClock;
  const maxLinks = o.maxLinksPerPeer ?? 64;
  const perSecond = o.framesPerSecondPerPeer ?? 2000;
  const byPeer = new Map<string, PeerLinks>();
  let size = 0;
  let closed = false;

  const send = (peerId: string, link: string) => (frame: ClientMessageOf<'api-link'>['frame']) => {
    const msg: ServerMessageOf<'api-link'> = { type: 'api-link', v: SIGNALING_VERSION, link, frame };
    if (o.deliver(peerId, msg)) return;
    if (o.remote) {
      // Held by another instance (or by none: then the link closes as refused).
      o.remote.send(peerId, msg, () =>
        byPeer.get(peerId)?.channels.get(link)?.receive({ kind: 'close', reason: 'stage unreachable' }),
      );
      return;
    }
    throw new RingworkError('TRANSPORT_CLOSED', `The stage ${peerId} has no signaling socket.`, {
      details: { peer: peerId },
    });
  };

  const linksOf = (p: PeerLinks): number => p.channels.size + p.remote.size;
  const entryOf = (peerId: string): PeerLinks => {
    let p = byPeer.get(peerId);
    if (!p) {
      p = {
        channels: new Map(),
        remote: new Map(),
        budget: createTokenBucket({ capacity: 2 * perSecond, refillPerSecond: perSecond, clock }),
      };
      byPeer.set(peerId, p);
    }
    return p;
  };
  const dropIfEmpty = (peerId: string, p: PeerLinks): void => {
    if (linksOf(p) === 0 && byPeer.get(peerId) === p) byPeer.delete(peerId);
  };

  const forget = (peerId: string, link: string, channel: ApiLinkChannel) => {
    const p = byPeer.get(peerId);
    if (p?.channels.get(link) !== channel) return;
    p.channels.delete(link);
    size--;
    dropIfEmpty(peerId, p);
  };

  const connect: ApiLinkHub['connect'] = (peerId, requesterId, opts = {}) =>
    new Promise<PeerLink>((resolve, reject) => {
      if (closed) return reject(new RingworkError('TRANSPORT_CLOSED', 'The server is stopping.'));
      if (opts.signal?.aborted) return reject(new RingworkError('ABORTED', 'Connecting was aborted.'));
      const existing = byPeer.get(peerId);
      if (existing && linksOf(existing) >= maxLinks)
        return reject(
          new RingworkError(
            'STAGE_SESSION_LIMIT',
            `The server already holds ${maxLinks} API links to stage ${peerId}.`,
            { details: { peer: peerId, maxLinks } },
          ),
        );
      const p = entryOf(peerId);
      const link = randomBytes(12).toString('base64url');
      const channel = createApiLinkChannel({ send: send(peerId, link), open: false });
      p.channels.set(link, channel);
      size++;
      const timeoutMs = opts.timeoutMs ?? o.connectTimeoutMs ?? 10_000;
      const done = (f: () => void) => {
        clock.clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        f();
      };
      const timer = clock.setTimeout(() => {
        channel.close('timeout');
        done(() =>
          reject(
            new RingworkError(
              'TRANSPORT_CONNECT_TIMEOUT',
              `Stage ${peerId} did not take the API link within ${timeoutMs} ms.`,
              { details: { peer: peerId, timeoutMs } },
            ),
          ),
        );
      }, timeoutMs);
      const onAbort = () => {
        channel.close('aborted');
        done(() => reject(new RingworkError('ABORTED', 'Connecting was aborted.')));
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      channel.addEventListener('close', () => {
        forget(peerId, link, channel);
        done(() =>
          reject(
            new RingworkError('TRANSPORT_PEER_UNREACHABLE', `Stage ${peerId} refused the API link.`, {
              details: { peer: peerId },
            }),
          ),
        );
      });
      // The PeerLink exists before the acknowledgement, so nothing the stage sends right after it is lost.
      const peerLink = createPeerLink(peerId, channel);
      channel.addEventListener('open', () => done(() => resolve(peerLink)));
      try {
        send(peerId, link)({ kind: 'open', requester: requesterId });
      } catch (e) {
        channel.drop();
        done(() =>
          reject(
            new RingworkError('TRANSPORT_PEER_UNREACHABLE', `Stage ${peerId} is not connected.`, {
              details: { peer: peerId },
              cause: e,
            }),
          ),
        );
      }
    });

  return {
    connect,
    transportFor: (requesterId) => ({
      localId: requesterId,
      connect: (peerId, opts) => connect(peerId, requesterId, opts),
      onIncoming: () => () => undefined, // stages never dial the server
      close: async () => undefined,
    }),
    receive(peerId, msg) {
      const p = byPeer.get(peerId);
      const channel = p?.channels.get(msg.link);
      if (channel) {
        channel.receive(msg.frame);
        return;
      }
      const origin = p?.remote.get(msg.link);
      if (p && origin !== undefined && o.remote) {
        o.remote.reply(origin, peerId, msg);
        if (msg.frame.kind === 'close') {
          p.remote.delete(msg.link);
          dropIfEmpty(peerId, p);
        }
        return;
      }
      // Not ours (closed meanwhile, or never opened): say so once, unless it is a close itself.
      if (msg.frame.kind !== 'close')
        try {
          send(peerId, msg.link)({ kind: 'close', reason: 'unknown link' });
        } catch {
          /* gone */
        }
    },
    fromInstance(instance, peerId, msg) {
      const refuse = (reason: string): void =>
        o.remote?.reply(instance, peerId, {
          type: 'api-link',
          v: SIGNALING_VERSION,
          link: msg.link,
          frame: { kind: 'close', reason },
        });
      if (closed) return refuse('server stopping');
      const known = byPeer.get(peerId)?.remote.get(msg.link);
      if (msg.frame.kind === 'open') {
        if (known !== undefined) return;
        const p = entryOf(peerId);
        if (linksOf(p) >= maxLinks) {
          dropIfEmpty(peerId, p);
          return refuse('too many API links');
        }
        p.remote.set(msg.link, instance);
      } else if (known !== instance) return;
      const p = byPeer.get(peerId);
      if (!o.deliver(peerId, msg)) {
        if (p) {
          p.remote.delete(msg.link);
          dropIfEmpty(peerId, p);
        }
        if (msg.frame.kind !== 'close') refuse('stage unreachable');
        return;
      }
      if (msg.frame.kind === 'close' && p) {
        p.remote.delete(msg.link);
        dropIfEmpty(peerId, p);
      }
    },
    admitFrame(peerId, raw) {
      const p = byPeer.get(peerId);
      return p !== undefined && startsWithPrefix(raw) && p.budget.take();
    },
    peerGone(peerId) {
      const p = byPeer.get(peerId);
      if (!p) return;
      for (const c of [...p.channels.values()]) c.drop();
      // Other instances' links to this stage: their ends close now, as a local one does.
      for (const [link, instance] of [...p.remote]) {
        p.remote.delete(link);
        o.remote?.reply(instance, peerId, {
          type: 'api-link',
          v: SIGNALING_VERSION,
          link,
          frame: { kind: 'close', reason: 'stage gone' },
        });
      }
      dropIfEmpty(peerId, p);
      o.logger?.debug({ peer: peerId }, 'api links dropped with the socket');
    },
    get size() {
      return size;
    },
    close() {
      if (closed) return;
      closed = true;
      for (const p of [...byPeer.values()])
        for (const c of [...p.channels.values()]) c.close('server stopping');
      byPeer.clear();
      size = 0;
    },
  };
}
