/**
 * Result validation on a real ring stage (issue 10): per session that asked for it (`open.validation`),
 * the stage records the exact bytes it received and sends for each step, and at the step's end signs
 * a {@link Commitment} (input hash, output hash, sketch; the head: its logits' sketch and token) and a
 * send receipt, with the per-session key its tab registered with the coordinator. Commitments travel
 * towards the requester as `commit` control messages, each stage forwarding the ones it received
 * from upstream before adding its own, so nobody on the way can rewrite an earlier stage's signed
 * record; only commitments (a few hundred bytes a decode step), never tensors, reach the requester.
 *
 * A step's input and output may cross the link in chunks (`hidden-part`): the hashes cover the
 * concatenation of a step's chunks, which is byte-for-byte what the sender sent and the receiver got.
 * The sketch covers the step's last {@link RING_SKETCH_ROWS} rows (a prefill's earlier rows are still
 * bound exactly by the hash), so a commitment fits a control frame at any prompt length.
 */
import { RingworkError } from '../errors.js';
import { SESSION_ID_BYTES, encodeCommitment, signCommitment, signReceipt } from '../validation/commitment.js';
import { SIGNATURE_BYTES, bytesOf, sha256, type SessionKey } from '../validation/crypto.js';
import { DEFAULT_SKETCH, sketchOf, type SketchParams } from '../validation/sketch.js';
import type { TamperFn } from '../validation/stage.js';
import {
  MAX_RING_COMMIT_STAGE,
  RING_PROTOCOL_VERSION,
  type RingControlOf,
  type RingValidation,
} from './ring-protocol.js';

/** Rows of a step's output a ring commitment sketches (its last ones). */
export const RING_SKETCH_ROWS = 16;

/** A stage's validation identity and (test-only) misbehaviour. */
export interface StageValidationOptions {
  /** The per-session signing key whose public half the tab registered with the coordinator. */
  key: SessionKey;
  sketch?: SketchParams;
  /**
   * Test-only tampering (the validation tests' dishonest peer): replaces what the stage sends
   * (hidden chunks; on the head the logits row before sampling). Honest stages leave it unset.
   */
  tamper?: TamperFn;
  /** Test-only: with a tamper, commit to the honest output while sending the tampered one. */
  honestCommit?: boolean;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = new Map([...B64].map((c, i) => [c, i]));

/** Standard base64 (with padding) of bytes; own code, since `btoa` is not in every type library. */
export function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    s += B64[(n >> 18) & 63]! + B64[(n >> 12) & 63]!;
    s += i + 1 < b.length ? B64[(n >> 6) & 63]! : '=';
    s += i + 2 < b.length ? B64[n & 63]! : '=';
  }
  return s;
}

/** Bytes of a standard base64 string; throws `VALIDATION_BAD_COMMITMENT` on anything else. */
export function fromBase64(s: string): Uint8Array {
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) {
    throw new RingworkError('VALIDATION_BAD_COMMITMENT', 'Not base64.', { details: { length: s.length } });
  }
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < s.length; i += 4) {
    const n =
      (B64_INDEX.get(s[i]!)! << 18) |
      (B64_INDEX.get(s[i + 1]!)! << 12) |
      ((B64_INDEX.get(s[i + 2]!) ?? 0) << 6) |
      (B64_INDEX.get(s[i + 3]!) ?? 0);
    for (const sh of [16, 8, 0]) if (o < out.length) out[o++] = (n >> sh) & 255;
  }
  return out;
}

/** Bytes of a hex nonce (validated by the protocol schema). */
export function nonceBytes(hex: string): Uint8Array {
  const out = new Uint8Array(SESSION_ID_BYTES);
  for (let i = 0; i < SESSION_ID_BYTES; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

type TamperCtx = Omit<Parameters<TamperFn>[0], 'data'>;

interface StepRecord {
  step: number;
  position: number;
  /** Exact bytes received for the step, chunk by chunk. */
  inParts: Uint8Array[];
  /** Exact bytes sent / committed to, chunk by chunk (they differ only under a test-only tamper). */
  sentParts: Uint8Array[];
  committedParts: Uint8Array[];
  /** Upstream commitments, in the order received (stage 0 first), and the sender's receipt. */
  upstream: RingControlOf<'commit'>[];
  inReceipt?: Uint8Array;
}

interface SessionRecord {
  nonce: Uint8Array;
  ring: number;
  /** Steps in progress by step number (a failover replay and the next step may overlap). */
  steps: Map<number, StepRecord>;
}

/** Most steps one session may have in progress at once (a replay plus the next step). */
const MAX_OPEN_STEPS = 4;

/** What a stage's chunk loop asks of its committer. */
export interface StageCommitter {
  /** Starts committing for a session whose `open` asked for validation. */
  open(session: string, v: RingValidation): void;
  /** True when the session commits. */
  has(session: string): boolean;
  /** Records a tensor received for a step (the whole tensor message, before chunked compute). */
  received(session: string, step: number, position: number, bytes: Uint8Array): void;
  /** Takes an upstream `commit` (the caller checked it came on the session's own link). */
  upstream(session: string, m: RingControlOf<'commit'>): void;
  /** A hidden chunk about to be sent: returns what to send (the data itself unless a test tamper). */
  output(
    session: string,
    chunk: Float32Array,
    ctx: { step: number; position: number; rowLen: number; range: [number, number]; input?: Float32Array },
  ): Float32Array;
  /**
   * The step's last chunk is recorded: returns the `commit` messages to send on before it (the
   * upstream ones, then this stage's own with its receipt).
   */
  finishHidden(session: string, step: number, rowLen: number): Promise<RingControlOf<'commit'>[]>;
  /** Head: the logits row to sample from (a test tamper may replace it). */
  headLogits(
    session: string,
    logits: Float32Array,
    ctx: { step: number; position: number; range: [number, number] },
  ): Float32Array;
  /** Head: signs the step's commitment over the logits and the token sent; returns every `commit` for the requester. */
  finishHead(
    session: string,
    step: number,
    logits: Float32Array,
    token: number,
    honest?: { logits: Float32Array; token: number },
  ): Promise<RingControlOf<'commit'>[]>;
  /** Drops a step that is not answered (a failover replay on the head). */
  skip(session: string, step: number): void;
  close(session: string): void;
}

/** Creates the committer of one ring stage. */
export function createStageCommitter(o: StageValidationOptions): StageCommitter {
  const sessions = new Map<string, SessionRecord>();
  const params = o.sketch ?? DEFAULT_SKETCH;
  /** The record of `step` (created on first sight: a step's upstream commits may come first). */
  const recordOf = (session: string, step: number, position?: number): StepRecord | undefined => {
    const s = sessions.get(session);
    if (!s) return undefined;
    let r = s.steps.get(step);
    if (!r) {
      if (s.steps.size >= MAX_OPEN_STEPS) return undefined;
      r = { step, position: position ?? 0, inParts: [], sentParts: [], committedParts: [], upstream: [] };
      s.steps.set(step, r);
    }
    if (position !== undefined && r.inParts.length === 0) r.position = position;
    return r;
  };
  const needRecord = (session: string, step: number): StepRecord => {
    const r = sessions.get(session)?.steps.get(step);
    if (!r) {
      throw new RingworkError('INVALID_ARGUMENT', `No step ${step} in progress for session ${session}.`, {
        details: { session, step },
      });
    }
    return r;
  };
  const sign = async (
    session: string,
    r: StepRecord,
    kind: 'hidden' | 'logits',
    committedOut: Uint8Array,
    sentOut: Uint8Array,
    sketchRows: Float32Array,
    rowLen: number,
    token: number,
  ): Promise<RingControlOf<'commit'>[]> => {
    const s = sessions.get(session)!;
    s.steps.delete(r.step);
    // Every earlier stage's commit reached us first (one ordered link), so ours is the next index.
    const stage = r.upstream.length;
    const coords = { session: s.nonce, ring: s.ring, stage, step: r.step, position: r.position };
    const sentHash = await sha256(sentOut);
    const outHash = committedOut === sentOut ? sentHash : await sha256(committedOut);
    const commitment = await signCommitment(o.key, {
      ...coords,
      kind,
      inHash: await sha256(concat(r.inParts)),
      outHash,
      inReceipt: r.inReceipt ?? new Uint8Array(SIGNATURE_BYTES),
      token,
      sketch: sketchOf(sketchRows, rowLen, params),
    });
    const receipt = await signReceipt(o.key, coords, sentHash);
    const own: RingControlOf<'commit'> = {
      type: 'commit',
      v: RING_PROTOCOL_VERSION,
      session,
      step: r.step,
      stage,
      commitment: toBase64(encodeCommitment(commitment)),
      receipt: toBase64(receipt),
    };
    // Upstream commits travel on without their receipts (the next stage needs only ours).
    const forwarded = r.upstream.map(({ receipt: _r, ...m }) => m);
    return [...forwarded, own];
  };
  const lastRows = (data: Float32Array, rowLen: number) =>
    data.subarray(Math.max(0, data.length - RING_SKETCH_ROWS * rowLen));
  const tamper = (data: Float32Array, ctx: TamperCtx) => {
    const replaced = o.tamper?.({ ...ctx, data: data.slice() });
    if (replaced && replaced.length !== data.length) {
      throw new RingworkError('INVALID_ARGUMENT', 'A tamper function must return the shape it was given.');
    }
    return replaced ?? data;
  };

  return {
    open(session, v) {
      sessions.set(session, { nonce: nonceBytes(v.nonce), ring: v.ring, steps: new Map() });
    },
    has: (session) => sessions.has(session),
    received(session, step, position, bytes) {
      recordOf(session, step, position)?.inParts.push(bytes.slice());
    },
    upstream(session, m) {
      const r = recordOf(session, m.step);
      if (!r || r.upstream.length > MAX_RING_COMMIT_STAGE) return;
      // Only the previous stage's own commit carries a receipt: the one over what it sent us.
      if (m.receipt !== undefined) r.inReceipt = fromBase64(m.receipt);
      r.upstream.push(m);
    },
    output(session, chunk, ctx) {
      const r = needRecord(session, ctx.step);
      const sent = o.tamper
        ? tamper(chunk, {
            shape: [chunk.length / ctx.rowLen, ctx.rowLen],
            range: ctx.range,
            step: ctx.step,
            position: ctx.position,
            input: ctx.input,
          })
        : chunk;
      const sentBytes = bytesOf(sent).slice();
      r.sentParts.push(sentBytes);
      r.committedParts.push(o.honestCommit && sent !== chunk ? bytesOf(chunk).slice() : sentBytes);
      return sent;
    },
    async finishHidden(session, step, rowLen) {
      const r = needRecord(session, step);
      const sent = concat(r.sentParts);
      const committed = o.honestCommit ? concat(r.committedParts) : sent;
      const rows = new Float32Array(committed.slice().buffer);
      return sign(session, r, 'hidden', committed, sent, lastRows(rows, rowLen), rowLen, -1);
    },
    headLogits(session, logits, ctx) {
      if (!o.tamper) return logits;
      return tamper(logits, { shape: [1, logits.length], ...ctx });
    },
    async finishHead(session, step, logits, token, honest) {
      const r = needRecord(session, step);
      const sent = bytesOf(Int32Array.of(token)).slice();
      const useHonest = o.honestCommit === true && honest !== undefined;
      const committedToken = useHonest ? honest.token : token;
      const committed = useHonest ? bytesOf(Int32Array.of(committedToken)).slice() : sent;
      const row = useHonest ? honest.logits : logits;
      return sign(session, r, 'logits', committed, sent, row, row.length, committedToken);
    },
    skip(session, step) {
      sessions.get(session)?.steps.delete(step);
    },
    close(session) {
      sessions.delete(session);
    },
  };
}
