import { RingworkError, throwIfAborted } from '../errors.js';
import { createListeners } from './emitter.js';
import {
  MAX_TENSOR_BYTES,
  createTensorReassembler,
  encodeTensorFrames,
  type TensorMessage,
} from './tensor-frame.js';
import type { ControlMessage, LinkClose, MessageChannelLike, PeerLink } from './types.js';

/** Pause sending while more than this is queued in the channel; resume at the low-water mark. */
export const HIGH_WATER_BYTES = 1024 * 1024;
export const LOW_WATER_BYTES = 256 * 1024;
const MAX_CONTROL_CHARS = 16 * 1024;
/** A tensor whose last chunk has not arrived this long after its first is dropped with the link. */
export const PARTIAL_TENSOR_TIMEOUT_MS = 30_000;

/** Options of {@link createPeerLink}. */
export interface PeerLinkOptions {
  /** Largest tensor accepted until {@link PeerLink.setTensorLimit} says otherwise (default 256 MiB). */
  maxTensorBytes?: number;
  /** How long a partly received tensor may wait for its remaining chunks (default 30 s). */
  partialTimeoutMs?: number;
  /** Timer (injectable for tests); returns a cancel function. */
  setTimer?: (fn: () => void, ms: number) => () => void;
}

const defaultTimer = (fn: () => void, ms: number) => {
  const t = setTimeout(fn, ms);
  return () => clearTimeout(t);
};

function isTensorFrame(b: Uint8Array): boolean {
  return b.length >= 4 && b[0] === 0x52 && b[1] === 0x57 && b[2] === 0x54 && b[3] === 0x46; // "RWTF"
}

function decodeText(b: Uint8Array): string {
  if (b.length > MAX_CONTROL_CHARS * 4) {
    throw new RingworkError('PROTOCOL_FRAME_TOO_LARGE', `Control message of ${b.length} bytes is too large.`);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    throw new RingworkError('TENSOR_BAD_FRAME', 'Binary message is neither a tensor frame nor UTF-8 text.');
  }
}

function parseControl(text: string): ControlMessage {
  if (text.length > MAX_CONTROL_CHARS) {
    throw new RingworkError(
      'PROTOCOL_FRAME_TOO_LARGE',
      `Control message of ${text.length} characters exceeds ${MAX_CONTROL_CHARS}.`,
    );
  }
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    throw new RingworkError('PROTOCOL_BAD_FRAME', 'Control message is not JSON.');
  }
  if (
    typeof m !== 'object' ||
    m === null ||
    typeof (m as ControlMessage).type !== 'string' ||
    typeof (m as ControlMessage).v !== 'number'
  ) {
    throw new RingworkError('PROTOCOL_BAD_FRAME', 'Control message needs string "type" and number "v".');
  }
  return m as ControlMessage;
}

/**
 * A {@link PeerLink} over one ordered message channel: binary frames are tensor chunks, text
 * frames are JSON control messages. Sends are serialised (one tensor's chunks never interleave
 * with another's) and paced with `bufferedAmountLowThreshold`. Any malformed input closes the link
 * with a typed error — a peer that sends garbage is not worth keeping.
 *
 * The remote is a stranger, so what it can make us hold is bounded: a tensor larger than the
 * limit (set by whoever consumes the link: a stage knows its hidden size and chunk length) is
 * refused from its first chunk's header, memory grows only with chunks actually received, and a
 * tensor left unfinished for {@link PeerLinkOptions.partialTimeoutMs} closes the link.
 */
export function createPeerLink(
  remoteId: string,
  channel: MessageChannelLike,
  opts: PeerLinkOptions = {},
): PeerLink {
  const tensors = createListeners<TensorMessage>();
  const controls = createListeners<ControlMessage>();
  const errors = createListeners<unknown>();
  const closes = createListeners<LinkClose>();
  let maxTensorBytes = opts.maxTensorBytes ?? MAX_TENSOR_BYTES;
  const reassembler = createTensorReassembler({ maxBytes: () => maxTensorBytes });
  const setTimer = opts.setTimer ?? defaultTimer;
  const partialTimeoutMs = opts.partialTimeoutMs ?? PARTIAL_TENSOR_TIMEOUT_MS;
  let cancelPartial: (() => void) | undefined;
  let seq = 0;
  let closed = false;
  let sending: Promise<unknown> = Promise.resolve();
  channel.binaryType = 'arraybuffer';
  channel.bufferedAmountLowThreshold = LOW_WATER_BYTES;
  const drained = createListeners<void>();
  channel.addEventListener('bufferedamountlow', () => drained.emit());

  const finish = (c: LinkClose) => {
    if (closed) return;
    closed = true;
    cancelPartial?.();
    cancelPartial = undefined;
    reassembler.reset();
    drained.emit();
    closes.emit(c);
  };
  const fail = (e: unknown) => {
    errors.emit(e);
    // Finish first: closing the channel fires 'close', which must not be reported as remote.
    finish({ reason: 'error', error: e });
    try {
      channel.close();
    } catch {
      /* already closed */
    }
  };

  const abandon = (e: unknown) => {
    finish({ reason: 'error', error: e });
    try {
      channel.close();
    } catch {
      /* already closed */
    }
  };

  channel.addEventListener('message', (ev) => {
    if (closed) return;
    const d = ev.data;
    try {
      // Some channel wrappers (simple-peer's stream) deliver text as bytes: anything that is not a
      // tensor frame (magic "RWTF") is read as a UTF-8 JSON control message.
      const bytes =
        d instanceof ArrayBuffer
          ? new Uint8Array(d)
          : ArrayBuffer.isView(d)
            ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
            : undefined;
      if (typeof d !== 'string' && !bytes) {
        throw new RingworkError('TENSOR_BAD_FRAME', 'Unsupported message payload type.');
      }
      if (bytes && isTensorFrame(bytes)) {
        const wasPartial = reassembler.partial;
        const t = reassembler.push(bytes);
        if (!wasPartial && reassembler.partial) {
          cancelPartial = setTimer(() => {
            cancelPartial = undefined;
            if (!closed && reassembler.partial) {
              fail(
                new RingworkError(
                  'TENSOR_PARTIAL_TIMEOUT',
                  `A tensor from ${remoteId} stayed incomplete for ${partialTimeoutMs} ms (${reassembler.heldBytes} bytes received); closing the link.`,
                  { details: { remoteId, heldBytes: reassembler.heldBytes, partialTimeoutMs } },
                ),
              );
            }
          }, partialTimeoutMs);
        } else if (wasPartial && !reassembler.partial) {
          cancelPartial?.();
          cancelPartial = undefined;
        }
        if (t) tensors.emit(t);
        return;
      }
      controls.emit(parseControl(typeof d === 'string' ? d : decodeText(bytes!)));
    } catch (e) {
      cancelPartial?.();
      cancelPartial = undefined;
      fail(e);
    }
  });
  channel.addEventListener('close', () => finish({ reason: 'remote' }));
  channel.addEventListener('error', (e) =>
    fail(new RingworkError('TRANSPORT_CLOSED', `Channel to ${remoteId} failed.`, { cause: e })),
  );

  const waitDrain = (signal?: AbortSignal) =>
    new Promise<void>((resolve, reject) => {
      if (channel.bufferedAmount <= LOW_WATER_BYTES || closed) return resolve();
      const off = drained.add(() => {
        off();
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
      const onAbort = () => {
        off();
        reject(new RingworkError('ABORTED', 'Sending the tensor was aborted.', { cause: signal?.reason }));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });

  const link: PeerLink = {
    remoteId,
    get isOpen() {
      return !closed && channel.readyState === 'open';
    },
    setTensorLimit(bytes) {
      maxTensorBytes = Math.max(0, Math.min(MAX_TENSOR_BYTES, Math.floor(bytes)));
    },
    sendTensor(message, opts = {}) {
      let frames: ArrayBuffer[];
      try {
        frames = encodeTensorFrames(message, seq++);
      } catch (e) {
        return Promise.reject(e); // the contract: failures reject, they never throw
      }
      const run = async () => {
        for (const [i, f] of frames.entries()) {
          try {
            throwIfAborted(opts.signal, 'Sending the tensor');
            if (closed || channel.readyState !== 'open') {
              throw new RingworkError('TRANSPORT_CLOSED', `The link to ${remoteId} is closed.`, {
                details: { remoteId },
              });
            }
            if (channel.bufferedAmount > HIGH_WATER_BYTES) await waitDrain(opts.signal);
          } catch (e) {
            // Cut off mid-tensor, the receiver would reject the next tensor's first chunk: the
            // stream is unusable, so close the link rather than lose later sends silently.
            if (i > 0 && !closed) abandon(e);
            throw e;
          }
          channel.send(f);
        }
      };
      const p = sending.then(run, run);
      sending = p.catch(() => undefined);
      return p;
    },
    sendControl(message) {
      if (closed || channel.readyState !== 'open') {
        throw new RingworkError('TRANSPORT_CLOSED', `The link to ${remoteId} is closed.`, {
          details: { remoteId },
        });
      }
      channel.send(JSON.stringify(message));
    },
    onTensor: (h) => tensors.add(h),
    onControl: (h) => controls.add(h),
    onError: (h) => errors.add(h),
    onClose: (h) => closes.add(h),
    close() {
      if (closed) return;
      finish({ reason: 'local' });
      try {
        channel.close();
      } catch {
        /* already closed */
      }
    },
  };
  return link;
}
