/**
 * Per-step commitments and send receipts, their canonical binary encoding and their signatures.
 *
 * A **commitment** is a stage's signed statement about one step: the hash of the exact bytes it
 * received, the hash of the exact bytes it sends, a {@link Sketch} of its output (for the head: of
 * the logits row before sampling) and, for the head, the sampled token. A **receipt** travels with
 * every frame: the sender's signature over the hash of exactly the bytes in that frame. A receiver
 * refuses a frame whose receipt does not verify, and copies the receipt's signature into its own
 * commitment (`inReceipt`), so the requester can tell who lied when the sender's `outHash` and the
 * receiver's `inHash` differ: a valid receipt over the receiver's `inHash` means the sender signed
 * two different hashes for one step (it sent something other than what it committed to).
 */
import { RingworkError } from '../errors.js';
import {
  HASH_BYTES,
  SIGNATURE_BYTES,
  signBytes,
  verifyBytes,
  type CryptoKeyLike,
  type SessionKey,
} from './crypto.js';
import type { RowSketch, Sketch } from './sketch.js';

/** Wire version of commitments and receipts. */
export const COMMITMENT_VERSION = 1;
/** Bytes of a session id inside commitments (a random nonce per generation). */
export const SESSION_ID_BYTES = 16;

/** Where a step happened: which session, ring, stage, step and positions. */
export interface StepCoordinates {
  /** Random 16-byte nonce of the generation session. */
  session: Uint8Array;
  /** Ring index (0 = primary, 1.. = validator rings). */
  ring: number;
  /** Stage index in the ring (0 = takes token ids). */
  stage: number;
  /** Step number (0 = the prefill). */
  step: number;
  /** Absolute position of the step's first row. */
  position: number;
}

/** A stage's signed statement about one step. */
export interface Commitment extends StepCoordinates {
  v: number;
  kind: 'hidden' | 'logits';
  /** SHA-256 of the exact bytes received (token ids for stage 0). */
  inHash: Uint8Array;
  /** SHA-256 of the exact bytes sent (the token id for the head). */
  outHash: Uint8Array;
  /** The upstream sender's receipt signature over `inHash` (zeros for stage 0: the requester sent it). */
  inReceipt: Uint8Array;
  /** The sampled token (head only; -1 otherwise). */
  token: number;
  sketch: Sketch;
  /** The stage's signature over every field above. */
  signature: Uint8Array;
}

/** The fields a stage fills before signing. */
export type UnsignedCommitment = Omit<Commitment, 'signature' | 'v'>;

const MAGIC_COMMIT = 0x52574331; // "RWC1"
const MAGIC_RECEIPT = 0x52575231; // "RWR1"

function bad(message: string, details: Record<string, unknown> = {}): RingworkError {
  return new RingworkError('VALIDATION_BAD_COMMITMENT', message, { details });
}

function coordsOk(c: StepCoordinates): void {
  if (c.session.length !== SESSION_ID_BYTES) throw bad('A session id must be 16 bytes.');
  for (const [k, v, max] of [
    ['ring', c.ring, 255],
    ['stage', c.stage, 255],
    ['step', c.step, 0xffffffff],
    ['position', c.position, 0xffffffff],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > max)
      throw bad(`Commitment field ${k} is out of range.`, { [k]: v });
  }
}

/** Bytes of a sketch: k, m, rowLen, rows, then per row norm, idx (u16), val, proj (f32, little-endian). */
function sketchBytes(s: Sketch): number {
  const k = s.rows[0]?.idx.length ?? 0;
  const m = s.rows[0]?.proj.length ?? 0;
  return 1 + 1 + 4 + 2 + s.rows.length * (4 + k * 2 + k * 4 + m * 4);
}

const HEADER = 4 + 1 + 1 + 1 + 1 + 4 + 4 + SESSION_ID_BYTES + HASH_BYTES * 2 + SIGNATURE_BYTES + 4;

/** The canonical bytes a commitment's signature covers. */
export function encodeUnsigned(c: UnsignedCommitment): Uint8Array {
  coordsOk(c);
  if (c.inHash.length !== HASH_BYTES || c.outHash.length !== HASH_BYTES)
    throw bad('Hashes must be 32 bytes.');
  if (c.inReceipt.length !== SIGNATURE_BYTES) throw bad('An input receipt must be 64 bytes.');
  const k = c.sketch.rows[0]?.idx.length ?? 0;
  const m = c.sketch.rows[0]?.proj.length ?? 0;
  if (c.sketch.rows.some((r) => r.idx.length !== k || r.val.length !== k || r.proj.length !== m)) {
    throw bad('Every sketch row must have the same k and m.');
  }
  if (k > 255 || m > 255 || c.sketch.rows.length > 0xffff || c.sketch.rowLen > 0xffff)
    throw bad('Sketch too large.');
  const out = new Uint8Array(HEADER + sketchBytes(c.sketch));
  const dv = new DataView(out.buffer);
  let o = 0;
  dv.setUint32(o, MAGIC_COMMIT);
  o += 4;
  dv.setUint8(o++, COMMITMENT_VERSION);
  dv.setUint8(o++, c.kind === 'logits' ? 1 : 0);
  dv.setUint8(o++, c.ring);
  dv.setUint8(o++, c.stage);
  dv.setUint32(o, c.step, true);
  dv.setUint32(o + 4, c.position, true);
  o += 8;
  for (const part of [c.session, c.inHash, c.outHash, c.inReceipt]) {
    out.set(part, o);
    o += part.length;
  }
  dv.setInt32(o, c.token, true);
  o += 4;
  dv.setUint8(o++, k);
  dv.setUint8(o++, m);
  dv.setUint32(o, c.sketch.rowLen, true);
  dv.setUint16(o + 4, c.sketch.rows.length, true);
  o += 6;
  for (const r of c.sketch.rows) {
    dv.setFloat32(o, r.norm, true);
    o += 4;
    for (const i of r.idx) {
      dv.setUint16(o, i, true);
      o += 2;
    }
    for (const v of [...r.val, ...r.proj]) {
      dv.setFloat32(o, v, true);
      o += 4;
    }
  }
  return out;
}

/** Signs a commitment with the stage's session key. */
export async function signCommitment(key: SessionKey, c: UnsignedCommitment): Promise<Commitment> {
  const signature = await signBytes(key, encodeUnsigned(c));
  return { ...c, v: COMMITMENT_VERSION, signature };
}

/** The wire form: the canonical bytes followed by the 64-byte signature. */
export function encodeCommitment(c: Commitment): Uint8Array {
  const body = encodeUnsigned(c);
  const out = new Uint8Array(body.length + SIGNATURE_BYTES);
  out.set(body);
  out.set(c.signature, body.length);
  return out;
}

/** Parses a commitment's wire form; throws `VALIDATION_BAD_COMMITMENT` on any malformed field. */
export function decodeCommitment(bytes: Uint8Array): Commitment {
  if (bytes.length < HEADER + 8 + SIGNATURE_BYTES)
    throw bad('A commitment is too short.', { length: bytes.length });
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  if (dv.getUint32(0) !== MAGIC_COMMIT) throw bad('Not a commitment (bad magic).');
  o += 4;
  const v = dv.getUint8(o++);
  if (v !== COMMITMENT_VERSION) throw bad(`Unsupported commitment version ${v}.`, { version: v });
  const kindByte = dv.getUint8(o++);
  if (kindByte > 1) throw bad('Unknown commitment kind.', { kind: kindByte });
  const ring = dv.getUint8(o++);
  const stage = dv.getUint8(o++);
  const step = dv.getUint32(o, true);
  const position = dv.getUint32(o + 4, true);
  o += 8;
  const take = (n: number) => {
    const s = bytes.slice(o, o + n);
    o += n;
    return s;
  };
  const session = take(SESSION_ID_BYTES);
  const inHash = take(HASH_BYTES);
  const outHash = take(HASH_BYTES);
  const inReceipt = take(SIGNATURE_BYTES);
  const token = dv.getInt32(o, true);
  o += 4;
  const k = dv.getUint8(o++);
  const m = dv.getUint8(o++);
  const rowLen = dv.getUint32(o, true);
  const nRows = dv.getUint16(o + 4, true);
  o += 6;
  const expected = o + nRows * (4 + k * 6 + m * 4) + SIGNATURE_BYTES;
  if (bytes.length !== expected)
    throw bad('A commitment has the wrong length for its sketch.', { expected, got: bytes.length });
  const rows: RowSketch[] = [];
  for (let r = 0; r < nRows; r++) {
    const norm = dv.getFloat32(o, true);
    o += 4;
    const idx: number[] = [];
    for (let j = 0; j < k; j++, o += 2) {
      const i = dv.getUint16(o, true);
      if (i >= rowLen) throw bad('A sketch index is past the row.', { index: i, rowLen });
      idx.push(i);
    }
    const val: number[] = [];
    for (let j = 0; j < k; j++, o += 4) val.push(dv.getFloat32(o, true));
    const proj: number[] = [];
    for (let j = 0; j < m; j++, o += 4) proj.push(dv.getFloat32(o, true));
    rows.push({ norm, idx, val, proj });
  }
  const signature = take(SIGNATURE_BYTES);
  return {
    v,
    kind: kindByte === 1 ? 'logits' : 'hidden',
    session,
    ring,
    stage,
    step,
    position,
    inHash,
    outHash,
    inReceipt,
    token,
    sketch: { rowLen, rows },
    signature,
  };
}

/** True when `c` carries `key`'s valid signature over its fields. */
export async function verifyCommitment(key: CryptoKeyLike, c: Commitment): Promise<boolean> {
  if (c.v !== COMMITMENT_VERSION) return false;
  let body: Uint8Array;
  try {
    body = encodeUnsigned(c);
  } catch {
    return false;
  }
  return verifyBytes(key, c.signature, body);
}

/** The bytes a send receipt signs: the frame's coordinates (the sender's) and the hash of its payload. */
export function receiptBytes(from: StepCoordinates, hash: Uint8Array): Uint8Array {
  coordsOk(from);
  if (hash.length !== HASH_BYTES) throw bad('A receipt hash must be 32 bytes.');
  const out = new Uint8Array(4 + 2 + 8 + SESSION_ID_BYTES + HASH_BYTES);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC_RECEIPT);
  dv.setUint8(4, from.ring);
  dv.setUint8(5, from.stage);
  dv.setUint32(6, from.step, true);
  dv.setUint32(10, from.position, true);
  out.set(from.session, 14);
  out.set(hash, 14 + SESSION_ID_BYTES);
  return out;
}

/** Signs a send receipt: "I, stage `from`, sent bytes with this hash at this step". */
export function signReceipt(key: SessionKey, from: StepCoordinates, hash: Uint8Array): Promise<Uint8Array> {
  return signBytes(key, receiptBytes(from, hash));
}

/** True when `signature` is the sender's receipt for `hash` at `from`. */
export function verifyReceipt(
  key: CryptoKeyLike,
  from: StepCoordinates,
  hash: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  return verifyBytes(key, signature, receiptBytes(from, hash));
}
