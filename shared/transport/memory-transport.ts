import { RingworkError, throwIfAborted } from '../errors.js';
import { createListeners } from './emitter.js';
import { shapeChannel, type LinkShape } from './link-shaping.js';
import { createPeerLink } from './peer-link.js';
import type { MessageChannelLike, PeerLink, Transport } from './types.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- one store for the overloads' listener types
type Listener = (ev: any) => void;

/**
 * One end of an in-memory ordered channel. Delivery is asynchronous (a macrotask per message) and
 * `bufferedAmount` counts bytes not yet delivered, so back-pressure code paths run as on WebRTC.
 */
class MemoryChannel implements MessageChannelLike {
  readyState: MessageChannelLike['readyState'] = 'open';
  bufferedAmount = 0;
  bufferedAmountLowThreshold = 0;
  binaryType = 'arraybuffer';
  peer!: MemoryChannel;
  private readonly listeners = new Map<string, Set<Listener>>();

  addEventListener(type: string, l: Listener): void {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type)!.add(l);
  }
  emit(type: string, ev?: unknown): void {
    for (const l of this.listeners.get(type) ?? []) l(ev);
  }
  send(data: string | ArrayBuffer): void {
    if (this.readyState !== 'open')
      throw new RingworkError('TRANSPORT_CLOSED', 'In-memory channel is closed.');
    const size = typeof data === 'string' ? data.length : data.byteLength;
    // Copy like a real channel: the sender may reuse its buffer.
    const copy = typeof data === 'string' ? data : data.slice(0);
    this.bufferedAmount += size;
    setTimeout(() => {
      this.bufferedAmount -= size;
      if (this.peer.readyState === 'open') this.peer.emit('message', { data: copy });
      if (this.bufferedAmount <= this.bufferedAmountLowThreshold) this.emit('bufferedamountlow');
    }, 0);
  }
  close(): void {
    if (this.readyState === 'closed') return;
    this.readyState = 'closed';
    this.emit('close');
    setTimeout(() => {
      if (this.peer.readyState !== 'closed') {
        this.peer.readyState = 'closed';
        this.peer.emit('close');
      }
    }, 0);
  }
}

/** Two connected in-memory channel ends (for tests that need to put raw bytes on the wire). */
export function createMemoryChannelPair(): [MessageChannelLike, MessageChannelLike] {
  const a = new MemoryChannel();
  const b = new MemoryChannel();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** A set of in-memory transports that can reach each other by id (unit tests, Node simulations). */
export interface MemoryTransportHub {
  transport(localId: string): Transport;
}

/** Options of {@link createMemoryTransportHub}. */
export interface MemoryTransportHubOptions {
  /**
   * Test/bench only: the one-way shape of messages `from` → `to` (undefined: unshaped). Every
   * in-memory peer is equally close; shaping is how a test makes some pairs "far".
   */
  shape?: (from: string, to: string) => LinkShape | undefined;
}

export function createMemoryTransportHub(opts: MemoryTransportHubOptions = {}): MemoryTransportHub {
  const shaped = (channel: MessageChannelLike, from: string, to: string): MessageChannelLike => {
    const s = opts.shape?.(from, to);
    return s ? shapeChannel(channel, s) : channel;
  };
  const incoming = new Map<string, ReturnType<typeof createListeners<PeerLink>>>();
  return {
    transport(localId) {
      const listeners = createListeners<PeerLink>();
      incoming.set(localId, listeners);
      const links = new Set<PeerLink>();
      let closed = false;
      const track = (l: PeerLink) => {
        links.add(l);
        l.onClose(() => links.delete(l));
        return l;
      };
      return {
        localId,
        async connect(remoteId, opts = {}) {
          throwIfAborted(opts.signal, `Connecting to ${remoteId}`);
          if (closed) throw new RingworkError('TRANSPORT_CLOSED', 'The transport is closed.');
          const remote = incoming.get(remoteId);
          if (!remote || remote.size === 0) {
            // Nobody listens under that id: say so at once, as the WebRTC transport does when the
            // signaling server refuses to relay to an unknown peer.
            throw new RingworkError('TRANSPORT_PEER_UNREACHABLE', `Peer ${remoteId} is not reachable.`, {
              details: { remoteId },
            });
          }
          const [a, b] = createMemoryChannelPair();
          const mine = track(createPeerLink(remoteId, shaped(a, localId, remoteId)));
          remote.emit(createPeerLink(localId, shaped(b, remoteId, localId)));
          return mine;
        },
        onIncoming(h) {
          return listeners.add((l) => h(track(l)));
        },
        async close() {
          if (closed) return;
          closed = true;
          incoming.delete(localId);
          for (const l of [...links]) l.close();
        },
      };
    },
  };
}
