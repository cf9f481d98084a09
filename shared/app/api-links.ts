/**
 * A contributor's side of the links the server's OpenAI API opens to it over its signaling socket
 * (`api-link` messages): each becomes a {@link PeerLink} whose remote id is the API requester's, and
 * is handed on like a requester's WebRTC link, so the ring stage serves it like any other (its
 * per-requester limits apply). Bounded: at most `maxLinks` at once; a link for an unknown id is
 * answered with `close`.
 */
import { apiRequesterIdSchema, type ServerMessageOf } from '../protocol/signaling.js';
import { createApiLinkChannel, type ApiLinkChannel } from '../transport/api-link-channel.js';
import { createPeerLink } from '../transport/peer-link.js';
import type { PeerLink } from '../transport/types.js';
import { silentLogger, type Logger, type SignalingPort } from './network-port.js';

/** Most API links one contributor holds at once (the server bounds its own side too). */
export const MAX_API_LINKS = 64;

export interface ApiLinksOptions {
  signaling: SignalingPort;
  /** Every link the server opened (already open). */
  onLink(link: PeerLink): void;
  maxLinks?: number;
  logger?: Logger;
}

export interface ApiLinks {
  /** Links open now. */
  readonly size: number;
  /** Closes every link without telling the server (its socket ended: the server closed its side). */
  drop(): void;
  /** Unsubscribes and closes every link; safe twice. */
  close(): void;
}

/** Accepts the server's API links on `signaling`. */
export function acceptApiLinks(o: ApiLinksOptions): ApiLinks {
  const log = o.logger ?? silentLogger;
  const max = o.maxLinks ?? MAX_API_LINKS;
  const channels = new Map<string, ApiLinkChannel>();
  let closed = false;

  const sendOn = (link: string) => (frame: ServerMessageOf<'api-link'>['frame']) =>
    o.signaling.send({ type: 'api-link', link, frame });

  const off = o.signaling.on('api-link', (m) => {
    if (closed) return;
    const existing = channels.get(m.link);
    if (existing) {
      existing.receive(m.frame);
      return;
    }
    const refuse = (reason: string) => {
      try {
        sendOn(m.link)({ kind: 'close', reason });
      } catch {
        /* socket gone */
      }
    };
    if (m.frame.kind === 'close') return;
    if (m.frame.kind !== 'open') return refuse('unknown link');
    const requester = apiRequesterIdSchema.safeParse(m.frame.requester);
    if (!requester.success) return refuse('no requester');
    if (channels.size >= max) {
      log.warn({ links: channels.size }, 'api link refused: too many');
      return refuse('too many API links');
    }
    const channel = createApiLinkChannel({ send: sendOn(m.link), open: true });
    channels.set(m.link, channel);
    channel.addEventListener('close', () => {
      if (channels.get(m.link) === channel) channels.delete(m.link);
    });
    try {
      sendOn(m.link)({ kind: 'open' });
    } catch {
      channel.drop();
      return;
    }
    o.onLink(createPeerLink(requester.data, channel));
  });

  const dropAll = () => {
    for (const c of [...channels.values()]) c.drop();
    channels.clear();
  };

  return {
    get size() {
      return channels.size;
    },
    drop: dropAll,
    close() {
      if (closed) return;
      closed = true;
      off();
      for (const c of [...channels.values()]) c.close();
      channels.clear();
    },
  };
}
