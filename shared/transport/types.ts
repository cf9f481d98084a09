/**
 * The transport contract: how a peer reaches another peer and exchanges tensors and small control
 * messages with it. Implementations: WebRTC DataChannels in browsers (web/src/network/), an
 * in-memory pair for unit tests ({@link createMemoryTransportHub}). The framing, chunking,
 * back-pressure and validation live once, in {@link createPeerLink}, over any {@link MessageChannelLike}.
 */
import type { TensorMessage } from './tensor-frame.js';

/** The subset of `RTCDataChannel` a link needs (also satisfied by werift and the in-memory pipe). */
export interface MessageChannelLike {
  readonly readyState: 'connecting' | 'open' | 'closing' | 'closed';
  readonly bufferedAmount: number;
  bufferedAmountLowThreshold: number;
  binaryType?: string;
  send(data: string | ArrayBuffer): void;
  close(): void;
  addEventListener(type: 'message', listener: (ev: { data: unknown }) => void): void;
  addEventListener(type: 'open' | 'close' | 'bufferedamountlow', listener: () => void): void;
  addEventListener(type: 'error', listener: (ev: unknown) => void): void;
}

/** Small JSON control messages between ring peers (versioned; validated on receipt). */
export interface ControlMessage {
  type: string;
  v: number;
  [key: string]: unknown;
}

/** Why a link closed. */
export interface LinkClose {
  reason: 'local' | 'remote' | 'error';
  error?: unknown;
}

/** A connection to one remote peer. */
export interface PeerLink {
  readonly remoteId: string;
  readonly isOpen: boolean;
  /**
   * Sends a tensor in chunks, waiting on `bufferedAmountLowThreshold` between bursts. Always
   * reports failure by rejecting: an invalid tensor (typed TENSOR_* code, link stays open),
   * TRANSPORT_CLOSED, or ABORTED. A send aborted after its first chunk closes the link, since
   * the receiver cannot resynchronise on a cut-off tensor.
   */
  sendTensor(message: TensorMessage, opts?: { signal?: AbortSignal }): Promise<void>;
  /** Sends a small JSON message; throws TRANSPORT_CLOSED on a closed link. */
  sendControl(message: ControlMessage): void;
  /**
   * Largest tensor (bytes) this link accepts from now on; a frame declaring more closes the link
   * with `TENSOR_TOO_LARGE` before anything is allocated. Set by the consumer that knows the shape
   * it expects (a ring stage: hidden size × chunk positions).
   */
  setTensorLimit(bytes: number): void;
  onTensor(handler: (m: TensorMessage) => void): () => void;
  onControl(handler: (m: ControlMessage) => void): () => void;
  /** Typed errors from the receive side (bad frame, checksum, NaN...). The link is closed after one. */
  onError(handler: (e: unknown) => void): () => void;
  onClose(handler: (c: LinkClose) => void): () => void;
  close(): void;
}

/** A peer's access to other peers. */
export interface Transport {
  readonly localId: string;
  /**
   * Opens a link to `remoteId` (this side offers). Fails fast with TRANSPORT_PEER_UNREACHABLE when no
   * peer holds that id, with TRANSPORT_CLOSED after {@link Transport.close}, with ABORTED when the
   * signal fires, and with TRANSPORT_CONNECT_TIMEOUT when a known peer does not answer in time.
   */
  connect(remoteId: string, opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<PeerLink>;
  /** Links other peers open to us. Returns an unsubscribe function. */
  onIncoming(handler: (link: PeerLink) => void): () => void;
  /** Closes every link; safe to call twice. */
  close(): Promise<void>;
}
