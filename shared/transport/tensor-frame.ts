/**
 * Binary tensor frames for DataChannels. A tensor is split into chunks of at most
 * {@link MAX_CHUNK_BYTES} payload bytes (one SCTP message over 256 KiB is refused by Chromium);
 * every chunk carries the full header, so a receiver can validate each chunk on its own and
 * reassemble with {@link createTensorReassembler}, which checks sizes, order, the CRC-32 of the
 * whole payload and (for floats) that no value is NaN or infinite.
 *
 * Layout (little endian):
 * ```
 *  0 magic "RWTF"      4 version u8   5 dtype u8   6 kind u8   7 ndim u8
 *  8 seq u32          12 step u32    16 position u32
 * 20 chunkIndex u16   22 chunkCount u16   24 totalBytes u32   28 crc32 u32
 * 32 sessionLen u8    33 traceLen u8   34 session (utf-8, <= 64 bytes)
 *    then shape u32 x ndim   then trace f32 x traceLen   then payload
 * ```
 * `trace` carries per-stage compute times (ms) appended by each stage a tensor passes, so the
 * requester can split a token's time into compute and hops without extra messages.
 */
import { RingworkError } from '../errors.js';
import { crc32 } from './crc32.js';

export const TENSOR_FRAME_VERSION = 1;
/** Payload bytes per chunk: 64 KiB stays far below every browser's SCTP message limit. */
export const MAX_CHUNK_BYTES = 64 * 1024;
/** Largest tensor a peer accepts (bounds memory a remote can make us hold). */
export const MAX_TENSOR_BYTES = 256 * 1024 * 1024;
const MAGIC = 0x46545752; // "RWTF" little-endian
const FIXED_HEADER = 34;
const MAX_TRACE = 64;
const MAX_SESSION_BYTES = 64;
const MAX_DIMS = 4;

export type TensorDType = 'float32' | 'int32' | 'uint8';
/**
 * What the tensor is in the generation flow. `hidden-part` is a bounded chunk of a step's hidden
 * states with more of the same step to follow (stages split long prefills); `hidden` is a whole step
 * or its final chunk, the one the head samples from.
 */
export type TensorKind = 'raw' | 'tokens' | 'hidden' | 'logits' | 'hidden-part';
const DTYPES: TensorDType[] = ['float32', 'int32', 'uint8'];
// Wire indices: append only.
const KINDS: TensorKind[] = ['raw', 'tokens', 'hidden', 'logits', 'hidden-part'];
const DTYPE_BYTES: Record<TensorDType, number> = { float32: 4, int32: 4, uint8: 1 };

/** A tensor with the metadata that routes it through a ring. */
export interface TensorMessage {
  session: string;
  step: number;
  position: number;
  kind: TensorKind;
  dtype: TensorDType;
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array;
  /** Compute ms of each stage this tensor has passed (at most 64 entries). */
  trace?: number[];
}

const bad = (
  code: 'TENSOR_BAD_FRAME' | 'TENSOR_SIZE_MISMATCH' | 'TENSOR_TOO_LARGE',
  message: string,
  details: Record<string, unknown> = {},
) => new RingworkError(code, message, { details });

function checkMessage(m: TensorMessage): Uint8Array {
  if (!DTYPES.includes(m.dtype)) throw bad('TENSOR_BAD_FRAME', `Unknown dtype "${m.dtype}".`);
  if (!KINDS.includes(m.kind)) throw bad('TENSOR_BAD_FRAME', `Unknown tensor kind "${m.kind}".`);
  if (m.shape.length > MAX_DIMS || m.shape.some((d) => !Number.isInteger(d) || d < 0 || d > 0xffffffff)) {
    throw bad(
      'TENSOR_BAD_FRAME',
      `Shape ${JSON.stringify(m.shape)} is invalid: up to ${MAX_DIMS} non-negative integer dims.`,
    );
  }
  for (const [k, val] of [
    ['step', m.step],
    ['position', m.position],
  ] as const) {
    if (!Number.isInteger(val) || val < 0 || val > 0xffffffff)
      throw bad('TENSOR_BAD_FRAME', `${k} must be a u32, got ${val}.`);
  }
  const count = m.shape.reduce((a, b) => a * b, 1);
  const bytes = new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  if (count * DTYPE_BYTES[m.dtype] !== bytes.byteLength) {
    throw bad(
      'TENSOR_SIZE_MISMATCH',
      `Shape ${JSON.stringify(m.shape)} of ${m.dtype} needs ${count * DTYPE_BYTES[m.dtype]} bytes, data has ${bytes.byteLength}.`,
      {
        shape: m.shape,
        bytes: bytes.byteLength,
      },
    );
  }
  if (bytes.byteLength > MAX_TENSOR_BYTES) {
    throw bad(
      'TENSOR_SIZE_MISMATCH',
      `Tensor of ${bytes.byteLength} bytes exceeds the ${MAX_TENSOR_BYTES}-byte limit.`,
    );
  }
  return bytes;
}

/** Encodes a tensor as one or more chunk frames (each an ArrayBuffer ready for `send`). */
export function encodeTensorFrames(m: TensorMessage, seq: number): ArrayBuffer[] {
  const payload = checkMessage(m);
  const session = new TextEncoder().encode(m.session);
  if (session.byteLength > MAX_SESSION_BYTES)
    throw bad('TENSOR_BAD_FRAME', `Session id longer than ${MAX_SESSION_BYTES} bytes.`);
  const chunkCount = Math.max(1, Math.ceil(payload.byteLength / MAX_CHUNK_BYTES));
  if (chunkCount > 0xffff) throw bad('TENSOR_SIZE_MISMATCH', 'Tensor needs more than 65535 chunks.');
  const crc = crc32(payload);
  const trace = m.trace ?? [];
  if (trace.length > MAX_TRACE || trace.some((t) => !Number.isFinite(t))) {
    throw bad('TENSOR_BAD_FRAME', `A trace holds at most ${MAX_TRACE} finite numbers.`);
  }
  const headerBytes = FIXED_HEADER + session.byteLength + 4 * m.shape.length + 4 * trace.length;
  const frames: ArrayBuffer[] = [];
  for (let i = 0; i < chunkCount; i++) {
    const start = i * MAX_CHUNK_BYTES;
    const chunk = payload.subarray(start, Math.min(payload.byteLength, start + MAX_CHUNK_BYTES));
    const buf = new ArrayBuffer(headerBytes + chunk.byteLength);
    const dv = new DataView(buf);
    dv.setUint32(0, MAGIC, true);
    dv.setUint8(4, TENSOR_FRAME_VERSION);
    dv.setUint8(5, DTYPES.indexOf(m.dtype));
    dv.setUint8(6, KINDS.indexOf(m.kind));
    dv.setUint8(7, m.shape.length);
    dv.setUint32(8, seq >>> 0, true);
    dv.setUint32(12, m.step, true);
    dv.setUint32(16, m.position, true);
    dv.setUint16(20, i, true);
    dv.setUint16(22, chunkCount, true);
    dv.setUint32(24, payload.byteLength, true);
    dv.setUint32(28, crc, true);
    dv.setUint8(32, session.byteLength);
    dv.setUint8(33, trace.length);
    const u8 = new Uint8Array(buf);
    u8.set(session, FIXED_HEADER);
    let off = FIXED_HEADER + session.byteLength;
    for (const d of m.shape) {
      dv.setUint32(off, d, true);
      off += 4;
    }
    for (const t of trace) {
      dv.setFloat32(off, t, true);
      off += 4;
    }
    u8.set(chunk, off);
    frames.push(buf);
  }
  return frames;
}

/** The parsed header of one chunk frame. */
export interface ChunkHeader {
  seq: number;
  step: number;
  position: number;
  dtype: TensorDType;
  kind: TensorKind;
  shape: number[];
  session: string;
  chunkIndex: number;
  chunkCount: number;
  totalBytes: number;
  crc: number;
  trace: number[];
  payload: Uint8Array;
}

/** Parses one chunk frame. Throws TENSOR_BAD_FRAME for anything malformed; never anything else. */
export function decodeChunk(frame: ArrayBuffer | Uint8Array): ChunkHeader {
  const u8 = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
  if (u8.byteLength < FIXED_HEADER)
    throw bad('TENSOR_BAD_FRAME', `Frame of ${u8.byteLength} bytes is shorter than a tensor header.`);
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  if (dv.getUint32(0, true) !== MAGIC)
    throw bad('TENSOR_BAD_FRAME', 'Not a Ringwork tensor frame (bad magic).');
  const version = dv.getUint8(4);
  if (version !== TENSOR_FRAME_VERSION) {
    throw bad(
      'TENSOR_BAD_FRAME',
      `Tensor frame version ${version} is not supported (this peer speaks ${TENSOR_FRAME_VERSION}).`,
    );
  }
  const dtype = DTYPES[dv.getUint8(5)];
  const kind = KINDS[dv.getUint8(6)];
  const ndim = dv.getUint8(7);
  if (!dtype || !kind || ndim > MAX_DIMS)
    throw bad('TENSOR_BAD_FRAME', 'Unknown dtype, kind or rank in tensor frame.');
  const sessionLen = dv.getUint8(32);
  const traceLen = dv.getUint8(33);
  const headerBytes = FIXED_HEADER + sessionLen + 4 * ndim + 4 * traceLen;
  if (sessionLen > MAX_SESSION_BYTES || traceLen > MAX_TRACE || u8.byteLength < headerBytes)
    throw bad('TENSOR_BAD_FRAME', 'Truncated tensor frame header.');
  let session: string;
  try {
    session = new TextDecoder('utf-8', { fatal: true }).decode(
      u8.subarray(FIXED_HEADER, FIXED_HEADER + sessionLen),
    );
  } catch {
    throw bad('TENSOR_BAD_FRAME', 'Session id is not UTF-8.');
  }
  const shape: number[] = [];
  for (let i = 0; i < ndim; i++) shape.push(dv.getUint32(FIXED_HEADER + sessionLen + 4 * i, true));
  const trace: number[] = [];
  for (let i = 0; i < traceLen; i++)
    trace.push(dv.getFloat32(FIXED_HEADER + sessionLen + 4 * ndim + 4 * i, true));
  if (trace.some((t) => !Number.isFinite(t))) throw bad('TENSOR_BAD_FRAME', 'Trace values must be finite.');
  const chunkIndex = dv.getUint16(20, true);
  const chunkCount = dv.getUint16(22, true);
  const totalBytes = dv.getUint32(24, true);
  if (chunkCount === 0 || chunkIndex >= chunkCount)
    throw bad('TENSOR_BAD_FRAME', `Chunk ${chunkIndex} of ${chunkCount} is out of range.`);
  if (totalBytes > MAX_TENSOR_BYTES)
    throw bad(
      'TENSOR_BAD_FRAME',
      `Tensor of ${totalBytes} bytes exceeds the ${MAX_TENSOR_BYTES}-byte limit.`,
    );
  const count = shape.reduce((a, b) => a * b, 1);
  if (count * DTYPE_BYTES[dtype] !== totalBytes) {
    throw new RingworkError(
      'TENSOR_SIZE_MISMATCH',
      `Shape ${JSON.stringify(shape)} of ${dtype} does not match ${totalBytes} payload bytes.`,
      {
        details: { shape, totalBytes },
      },
    );
  }
  if (chunkCount !== Math.max(1, Math.ceil(totalBytes / MAX_CHUNK_BYTES))) {
    throw bad(
      'TENSOR_BAD_FRAME',
      `${chunkCount} chunks cannot carry ${totalBytes} bytes in ${MAX_CHUNK_BYTES}-byte chunks.`,
    );
  }
  const payload = u8.subarray(headerBytes);
  const expected =
    chunkIndex === chunkCount - 1 ? totalBytes - chunkIndex * MAX_CHUNK_BYTES : MAX_CHUNK_BYTES;
  if (payload.byteLength !== expected) {
    throw new RingworkError(
      'TENSOR_SIZE_MISMATCH',
      `Chunk ${chunkIndex} carries ${payload.byteLength} bytes, expected ${expected}.`,
      {
        details: { chunkIndex, got: payload.byteLength, expected },
      },
    );
  }
  return {
    seq: dv.getUint32(8, true),
    step: dv.getUint32(12, true),
    position: dv.getUint32(16, true),
    dtype,
    kind,
    shape,
    session,
    chunkIndex,
    chunkCount,
    totalBytes,
    crc: dv.getUint32(28, true),
    trace,
    payload,
  };
}

/** Options of {@link createTensorReassembler}. */
export interface TensorReassemblerOptions {
  /**
   * Largest tensor accepted, bytes (default {@link MAX_TENSOR_BYTES}). Checked against the header's
   * declared `totalBytes` on the first chunk, before anything is kept, so a peer cannot make us
   * reserve memory by declaring a size it never sends. Read on every tensor, so it can change.
   */
  maxBytes?: () => number;
}

/**
 * Reassembles chunk frames of an ordered channel into tensors. Frames of one tensor must arrive
 * in order and uninterleaved (ordered DataChannel, one sender); anything else is an error.
 * Memory grows with the chunks actually received (each is kept as the view of its frame), never
 * with the size a header declares; the whole tensor is copied together only after its last chunk.
 */
export interface TensorReassembler {
  /** Feeds one frame; returns the completed tensor when this was its last chunk. */
  push(frame: ArrayBuffer | Uint8Array): TensorMessage | undefined;
  /** True while a tensor has started but its last chunk has not arrived. */
  readonly partial: boolean;
  /** Bytes held for the partial tensor. */
  readonly heldBytes: number;
  /** Drops a partial tensor (after an error the channel should be closed anyway). */
  reset(): void;
}

export function createTensorReassembler(opts: TensorReassemblerOptions = {}): TensorReassembler {
  const limit = opts.maxBytes ?? (() => MAX_TENSOR_BYTES);
  let cur: { head: ChunkHeader; parts: Uint8Array[]; held: number } | undefined;
  return {
    get partial() {
      return cur !== undefined;
    },
    get heldBytes() {
      return cur?.held ?? 0;
    },
    reset() {
      cur = undefined;
    },
    push(frame) {
      const c = decodeChunk(frame);
      if (c.chunkIndex === 0) {
        if (cur)
          throw bad(
            'TENSOR_BAD_FRAME',
            `Tensor ${cur.head.seq} was interrupted by tensor ${c.seq} before its last chunk.`,
          );
        const max = Math.min(MAX_TENSOR_BYTES, limit());
        if (c.totalBytes > max) {
          throw bad(
            'TENSOR_TOO_LARGE',
            `Tensor ${c.seq} declares ${c.totalBytes} bytes; this link accepts at most ${max} (the largest tensor its stage can take).`,
            { totalBytes: c.totalBytes, maxBytes: max, kind: c.kind, shape: c.shape },
          );
        }
        cur = { head: c, parts: [], held: 0 };
      } else if (
        !cur ||
        cur.head.seq !== c.seq ||
        cur.parts.length !== c.chunkIndex ||
        cur.head.chunkCount !== c.chunkCount ||
        cur.head.totalBytes !== c.totalBytes ||
        cur.head.crc !== c.crc
      ) {
        cur = undefined;
        throw bad('TENSOR_BAD_FRAME', `Chunk ${c.chunkIndex} of tensor ${c.seq} arrived out of order.`);
      }
      cur.parts.push(c.payload);
      cur.held += c.payload.byteLength;
      if (cur.parts.length < c.chunkCount) return undefined;
      const { head, parts } = cur;
      cur = undefined;
      const buf = new Uint8Array(head.totalBytes);
      parts.forEach((p, i) => buf.set(p, i * MAX_CHUNK_BYTES));
      const got = crc32(buf);
      if (got !== head.crc) {
        throw new RingworkError(
          'TENSOR_CHECKSUM',
          `Tensor ${head.seq} failed its CRC-32 check (got ${got}, expected ${head.crc}): the data was corrupted.`,
          {
            details: { seq: head.seq, got, expected: head.crc },
          },
        );
      }
      const data =
        head.dtype === 'float32'
          ? new Float32Array(buf.buffer, 0, buf.byteLength / 4)
          : head.dtype === 'int32'
            ? new Int32Array(buf.buffer, 0, buf.byteLength / 4)
            : buf;
      if (data instanceof Float32Array) {
        for (let i = 0; i < data.length; i++) {
          if (!Number.isFinite(data[i]!)) {
            throw new RingworkError(
              'TENSOR_NOT_FINITE',
              `Tensor ${head.seq} (${head.kind}) holds ${data[i]} at element ${i}: the sending stage produced NaN/Inf.`,
              {
                details: { seq: head.seq, index: i, session: head.session, step: head.step },
              },
            );
          }
        }
      }
      return {
        session: head.session,
        step: head.step,
        position: head.position,
        kind: head.kind,
        dtype: head.dtype,
        shape: head.shape,
        data,
        trace: head.trace,
      };
    },
  };
}
