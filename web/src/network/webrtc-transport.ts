/**
 * WebRTC DataChannel transport over simple-peer, signaled through the Ringwork signaling server.
 *
 * Why simple-peer (not peerjs): peerjs speaks its own PeerServer protocol with client-chosen ids;
 * Ringwork's server assigns ids, validates every frame with zod and relays only between peers it
 * introduced. simple-peer is signaling-agnostic — it hands us offer/answer/candidate objects and we
 * carry them in our own `signal` messages. Its standalone browser bundle avoids Node polyfills.
 */
import SimplePeer from 'simple-peer/simplepeer.min.js';
import { isRingworkError, RingworkError, throwIfAborted } from '../../../shared/errors';
import type { SignalPayload } from '../../../shared/protocol/signaling';
import { createListeners } from '../../../shared/transport/emitter';
import { createPeerLink } from '../../../shared/transport/peer-link';
import type { MessageChannelLike, PeerLink, Transport } from '../../../shared/transport/types';
import type { SignalingClient } from './signaling-client';

type Peer = SimplePeer.Instance & {
  bufferSize: number;
  writableLength?: number;
  connected: boolean;
  destroyed: boolean;
};

/** Adapts simple-peer's duplex stream to the channel surface {@link createPeerLink} needs. */
function simplePeerChannel(peer: Peer): MessageChannelLike {
  const on = (type: string, l: (ev?: unknown) => void) => {
    if (type === 'message') peer.on('data', (data: Uint8Array) => l({ data }));
    else if (type === 'close') peer.on('close', () => l());
    else if (type === 'error') peer.on('error', (e: unknown) => l(e));
    // The stream emits 'drain' once its queue (and the channel's buffer) has emptied.
    else if (type === 'bufferedamountlow') peer.on('drain', () => l());
    else if (type === 'open') peer.on('connect', () => l());
  };
  return {
    get readyState() {
      return peer.destroyed ? 'closed' : peer.connected ? 'open' : 'connecting';
    },
    get bufferedAmount() {
      return peer.bufferSize + (peer.writableLength ?? 0);
    },
    bufferedAmountLowThreshold: 0,
    send(data) {
      peer.write(typeof data === 'string' ? data : new Uint8Array(data));
    },
    close() {
      peer.destroy();
    },
    addEventListener: on as MessageChannelLike['addEventListener'],
  };
}

function toPayload(data: SimplePeer.SignalData): SignalPayload | undefined {
  if ((data.type === 'offer' || data.type === 'answer') && data.sdp)
    return { kind: 'sdp', sdp: { type: data.type, sdp: data.sdp } };
  if (data.type === 'candidate' && data.candidate) {
    const c = data.candidate as RTCIceCandidateInit;
    return {
      kind: 'candidate',
      candidate: {
        candidate: c.candidate ?? '',
        sdpMid: c.sdpMid ?? null,
        sdpMLineIndex: c.sdpMLineIndex ?? null,
      },
    };
  }
  return undefined; // renegotiation requests are not used: one data channel per link
}

function fromPayload(p: SignalPayload): SimplePeer.SignalData {
  return p.kind === 'sdp'
    ? { type: p.sdp.type, sdp: p.sdp.sdp }
    : { type: 'candidate', candidate: p.candidate as RTCIceCandidate };
}

export interface WebRtcTransportOptions {
  signaling: SignalingClient;
  iceServers?: RTCIceServer[];
  connectTimeoutMs?: number;
  /** Extra attempts after a timed-out connect. */
  retries?: number;
}

/** A {@link Transport} whose links are WebRTC DataChannels (ordered, reliable). */
export function createWebRtcTransport(opts: WebRtcTransportOptions): Transport {
  const { signaling } = opts;
  const incoming = createListeners<PeerLink>();
  // Keyed by `${remoteId} ${conn}`: two peers may hold several links (a ring link and a requester
  // link), each its own RTCPeerConnection.
  const peers = new Map<string, Peer>();
  const key = (remoteId: string, conn: string) => `${remoteId} ${conn}`;
  const links = new Set<PeerLink>();
  let closed = false;

  const makePeer = (remoteId: string, conn: string, initiator: boolean): Peer => {
    const peer = new SimplePeer({
      initiator,
      trickle: true,
      config: { iceServers: opts.iceServers ?? [] },
      channelConfig: { ordered: true },
    }) as Peer;
    peer.on('signal', (data: SimplePeer.SignalData) => {
      const payload = toPayload(data);
      if (payload && !peer.destroyed) {
        try {
          signaling.send({ type: 'signal', to: remoteId, conn, payload });
        } catch {
          peer.destroy();
        }
      }
    });
    const k = key(remoteId, conn);
    peer.on('close', () => peers.get(k) === peer && peers.delete(k));
    peer.on('error', () => peers.get(k) === peer && peers.delete(k));
    peers.set(k, peer);
    return peer;
  };

  const track = (remoteId: string, peer: Peer): PeerLink => {
    const link = createPeerLink(remoteId, simplePeerChannel(peer));
    links.add(link);
    link.onClose(() => links.delete(link));
    return link;
  };

  const offSignal = signaling.on('signal', (m) => {
    if (closed) return;
    const conn = m.conn ?? 'default';
    let peer = peers.get(key(m.from, conn));
    if (!peer) {
      if (m.payload.kind !== 'sdp' || m.payload.sdp.type !== 'offer') return; // stray candidate of a dead peer
      peer = makePeer(m.from, conn, false);
      const p = peer;
      p.on('connect', () => incoming.emit(track(m.from, p)));
    }
    peer.signal(fromPayload(m.payload));
  });

  const attempt = (remoteId: string, timeoutMs: number, signal?: AbortSignal) =>
    new Promise<PeerLink>((resolve, reject) => {
      const peer = makePeer(remoteId, crypto.randomUUID().replace(/-/g, '').slice(0, 16), true);
      let settled = false;
      const settle = (link: PeerLink | undefined, e?: RingworkError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        offRefused();
        if (link) return resolve(link);
        peer.destroy();
        reject(e);
      };
      const timer = setTimeout(
        () =>
          settle(
            undefined,
            new RingworkError(
              'TRANSPORT_CONNECT_TIMEOUT',
              `No DataChannel to ${remoteId} within ${timeoutMs} ms.`,
              {
                details: { remoteId, timeoutMs },
              },
            ),
          ),
        timeoutMs,
      );
      const onAbort = () =>
        settle(
          undefined,
          new RingworkError('ABORTED', `Connecting to ${remoteId} was aborted.`, { cause: signal?.reason }),
        );
      signal?.addEventListener('abort', onAbort, { once: true });
      // The server refuses at once to relay our offer to an id it does not know (or may not
      // introduce us to): fail now instead of waiting out the timeout.
      const offRefused = signaling.on('error', (m) => {
        if (m.details?.to !== remoteId) return;
        if (m.code === 'PROTOCOL_UNKNOWN_PEER') {
          settle(
            undefined,
            new RingworkError(
              'TRANSPORT_PEER_UNREACHABLE',
              `Peer ${remoteId} is not known to the signaling server.`,
              {
                details: { remoteId },
              },
            ),
          );
        } else if (m.code === 'PROTOCOL_NOT_ALLOWED') {
          settle(
            undefined,
            new RingworkError(
              'PROTOCOL_NOT_ALLOWED',
              `The signaling server refused to relay to ${remoteId}.`,
              {
                details: { remoteId },
              },
            ),
          );
        }
      });
      peer.on('connect', () => settle(track(remoteId, peer)));
      peer.on('error', (e: unknown) =>
        settle(
          undefined,
          new RingworkError('TRANSPORT_CLOSED', `WebRTC connection to ${remoteId} failed: ${String(e)}`, {
            cause: e,
          }),
        ),
      );
      // Destroyed before it connected (the transport was closed meanwhile).
      peer.on('close', () =>
        settle(
          undefined,
          new RingworkError('TRANSPORT_CLOSED', `The connection to ${remoteId} closed before it opened.`, {
            details: { remoteId },
          }),
        ),
      );
    });

  return {
    get localId() {
      return signaling.peerId ?? '';
    },
    async connect(remoteId, o = {}) {
      throwIfAborted(o.signal, `Connecting to ${remoteId}`);
      const timeoutMs = o.timeoutMs ?? opts.connectTimeoutMs ?? 10_000;
      let last: unknown;
      for (let i = 0; i <= (opts.retries ?? 1); i++) {
        if (closed) break;
        try {
          return await attempt(remoteId, timeoutMs, o.signal);
        } catch (e) {
          last = e;
          // Only a timeout or a failed ICE/DTLS handshake is worth another attempt.
          if (!isRingworkError(e, 'TRANSPORT_CONNECT_TIMEOUT') && !isRingworkError(e, 'TRANSPORT_CLOSED'))
            throw e;
        }
      }
      if (closed) throw new RingworkError('TRANSPORT_CLOSED', 'The transport is closed.');
      throw last;
    },
    onIncoming: (h) => incoming.add(h),
    async close() {
      if (closed) return;
      closed = true;
      offSignal();
      for (const l of [...links]) l.close();
      for (const p of peers.values()) p.destroy();
      peers.clear();
    },
  };
}
