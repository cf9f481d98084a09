/**
 * A {@link MessageChannelLike} carried by `api-link` frames on a signaling WebSocket: the link the
 * server's OpenAI API opens to a ring stage (token ids in, tokens out; hidden states still hop peer to
 * peer). Text messages travel as they are; binary ones (tensor frames) as base64, split into pieces
 * of at most {@link MAX_API_LINK_BASE64} characters. {@link createPeerLink} runs over it unchanged,
 * so framing, validation and tensor limits are the same as on a WebRTC DataChannel.
 */
import { RingworkError } from '../errors.js';
import { MAX_API_LINK_BASE64, MAX_API_LINK_TEXT, type ApiLinkFrame } from '../protocol/signaling.js';
import { createListeners } from './emitter.js';
import { MAX_CHUNK_BYTES } from './tensor-frame.js';
import type { MessageChannelLike } from './types.js';

/** A channel whose incoming frames are fed by whoever reads the signaling socket. */
export interface ApiLinkChannel extends MessageChannelLike {
  /** Closes the channel and tells the other side (optionally why). */
  close(reason?: string): void;
  /** Delivers one frame from the other side. A malformed sequence closes the channel with an error. */
  receive(frame: ApiLinkFrame): void;
  /** Marks the channel closed without telling the other side (its socket is gone). */
  drop(): void;
}

export interface ApiLinkChannelOptions {
  /** Sends a frame to the other side; throws when the signaling socket is down. */
  send(frame: ApiLinkFrame): void;
  /** Open from the start (the side that accepted) or connecting until an `open` frame arrives. */
  open: boolean;
  /** Largest binary message reassembled from pieces, bytes (default: one tensor chunk and its header). */
  maxMessageBytes?: number;
}

/** Base64 without Buffer (shared code runs in browsers too). */
function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000)
    s += String.fromCharCode(...bytes.subarray(i, Math.min(bytes.length, i + 0x8000)));
  return btoa(s);
}

function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Creates one end of an api-link channel. */
export function createApiLinkChannel(o: ApiLinkChannelOptions): ApiLinkChannel {
  const maxBytes = o.maxMessageBytes ?? MAX_CHUNK_BYTES + 1024;
  let state: MessageChannelLike['readyState'] = o.open ? 'open' : 'connecting';
  const messages = createListeners<{ data: unknown }>();
  const opens = createListeners<void>();
  const closes = createListeners<void>();
  const errors = createListeners<unknown>();
  /** Pieces of a binary message still arriving. */
  let pieces: Uint8Array[] = [];
  let pieceBytes = 0;

  const finish = (): void => {
    if (state === 'closed') return;
    state = 'closed';
    pieces = [];
    closes.emit();
  };
  const fail = (e: RingworkError): void => {
    if (state === 'closed') return;
    errors.emit(e); // the PeerLink over this channel closes it; if none does, close here
    channel.close(e.code);
  };
  const sendFrame = (f: ApiLinkFrame): void => {
    try {
      o.send(f);
    } catch (e) {
      finish();
      throw new RingworkError('TRANSPORT_CLOSED', 'The signaling socket carrying the link is closed.', {
        cause: e,
      });
    }
  };

  const channel: ApiLinkChannel = {
    get readyState() {
      return state;
    },
    // Frames go straight onto the WebSocket, whose own buffer the server bounds (slow consumers
    // are cut off), so there is nothing queued here.
    bufferedAmount: 0,
    bufferedAmountLowThreshold: 0,
    send(data) {
      if (state !== 'open')
        throw new RingworkError('TRANSPORT_CLOSED', 'The API link is not open.', { details: { state } });
      if (typeof data === 'string') {
        if (data.length > MAX_API_LINK_TEXT)
          throw new RingworkError(
            'PROTOCOL_FRAME_TOO_LARGE',
            `A control message of ${data.length} characters exceeds the API link's ${MAX_API_LINK_TEXT}.`,
          );
        sendFrame({ kind: 'text', text: data });
        return;
      }
      const b64 = toBase64(new Uint8Array(data));
      // Pieces of a multiple of 4 characters each decode on their own.
      const step = MAX_API_LINK_BASE64 - (MAX_API_LINK_BASE64 % 4);
      for (let i = 0; i < b64.length || i === 0; i += step) {
        const part = b64.slice(i, i + step);
        sendFrame({ kind: 'binary', data: part, ...(i + step < b64.length ? { more: true } : {}) });
      }
    },
    close(reason?: string) {
      if (state === 'closed') return;
      try {
        o.send({ kind: 'close', ...(reason ? { reason } : {}) });
      } catch {
        /* socket gone: the other side notices on its own */
      }
      finish();
    },
    addEventListener(type: string, l: (ev: never) => void) {
      const h = l as (ev?: unknown) => void;
      if (type === 'message') messages.add(h);
      else if (type === 'open') opens.add(() => h());
      else if (type === 'close') closes.add(() => h());
      else if (type === 'error') errors.add(h);
      // 'bufferedamountlow' never fires: bufferedAmount is always 0.
    },
    receive(f) {
      if (state === 'closed') return;
      switch (f.kind) {
        case 'open':
          if (state === 'connecting') {
            state = 'open';
            opens.emit();
          }
          return;
        case 'close':
          finish();
          return;
        case 'text':
          if (state !== 'open') return fail(new RingworkError('PROTOCOL_BAD_FRAME', 'Data before open.'));
          messages.emit({ data: f.text });
          return;
        case 'binary': {
          if (state !== 'open') return fail(new RingworkError('PROTOCOL_BAD_FRAME', 'Data before open.'));
          let bytes: Uint8Array;
          try {
            bytes = fromBase64(f.data);
          } catch {
            return fail(new RingworkError('PROTOCOL_BAD_FRAME', 'A binary piece is not base64.'));
          }
          pieceBytes += bytes.length;
          if (pieceBytes > maxBytes)
            return fail(
              new RingworkError(
                'PROTOCOL_FRAME_TOO_LARGE',
                `A binary message over ${maxBytes} bytes on an API link.`,
                { details: { limit: maxBytes } },
              ),
            );
          pieces.push(bytes);
          if (f.more) return;
          const whole = new Uint8Array(pieceBytes);
          let at = 0;
          for (const p of pieces) {
            whole.set(p, at);
            at += p.length;
          }
          pieces = [];
          pieceBytes = 0;
          messages.emit({ data: whole.buffer });
          return;
        }
      }
    },
    drop: finish,
  };
  return channel;
}
