/**
 * The requester's checks of one step: per ring, signatures and exact boundary hashes (who sent
 * what); across rings, sketches stage by stage within the calibrated tolerance; and, on a
 * disagreement, the referee's verdict stage by stage.
 */
import { bytesEqual, bytesOf, sha256 } from './crypto.js';
import { verifyCommitment, verifyReceipt, type Commitment } from './commitment.js';
import type { DeviationReason } from './evidence.js';
import type { KeyRegistry } from './key-registry.js';
import type { RefereeResult } from './referee.js';
import { sketchDistance, sketchesEqual, sketchOf, tensorDistance, type SketchParams } from './sketch.js';

/** Relative tolerances an honest backend never exceeds (see the README's calibration). */
export interface Tolerance {
  /** For {@link sketchDistance} between rings, and between a ring and the referee. */
  sketch: number;
  /** For {@link tensorDistance} of a recorded input against the referee's. */
  tensor: number;
}

/** Calibrated on stories260K: honest distances stay below 1e-5 (threads, batched vs step-by-step); noise of 1e-3 moves sketches by more than 1e-3. */
export const DEFAULT_TOLERANCE: Tolerance = { sketch: 1e-4, tensor: 1e-4 };

/** A located stage and why. */
export interface Located {
  ring: number;
  stage: number;
  reason: DeviationReason;
  /** Commitments that prove it (the deviant's first). */
  proof: Commitment[];
  refereeDistance?: number;
  refereeToken?: number;
  /**
   * The deviant's own signed receipt for bytes other than those it committed to, when no later
   * stage's commitment carries it (the head's, over the token the requester received).
   */
  receipt?: { hash: Uint8Array; signature: Uint8Array };
}

/** One ring's view of one step, as the requester holds it. */
export interface RingStep {
  ring: number;
  peers: readonly string[];
  commitments: Commitment[];
  /** Exactly what the requester sent to stage 0 (token id bytes). */
  sentTokens: Uint8Array;
  /** Exactly what the head sent back. */
  receivedToken: Uint8Array;
  /** The head's receipt for what it sent. */
  headReceipt: Uint8Array;
  /** Asks stage `stage` for its recorded input of step `step` (a dispute). */
  inputOf(stage: number, step: number): Uint8Array | undefined;
  /** This ring's verified commitments of every step so far, this one last (`history[step][stage]`). */
  history: Commitment[][];
}

/**
 * Signatures, coordinates and boundary hashes of one ring's step. Returns the located deviant
 * (the first found, in stage order) or undefined when every check holds.
 */
export async function checkRing(
  r: RingStep,
  registry: KeyRegistry,
  expect: { session: Uint8Array; step: number; position: number },
): Promise<Located | undefined> {
  const cs = r.commitments;
  for (let i = 0; i < cs.length; i++) {
    const c = cs[i]!;
    const coordsOk =
      c.ring === r.ring &&
      c.stage === i &&
      c.step === expect.step &&
      c.position === expect.position &&
      bytesEqual(c.session, expect.session);
    if (!coordsOk || !(await verifyCommitment(registry.keyOf(r.peers[i]!), c))) {
      return { ring: r.ring, stage: i, reason: 'bad-signature', proof: [c] };
    }
  }
  if (!bytesEqual(cs[0]!.inHash, await sha256(r.sentTokens))) {
    return { ring: r.ring, stage: 0, reason: 'false-input', proof: [cs[0]!] };
  }
  for (let i = 0; i + 1 < cs.length; i++) {
    const sender = cs[i]!;
    const receiver = cs[i + 1]!;
    // The receiver only computes on bytes its sender signed a receipt for; check that receipt.
    const receiptOk = await verifyReceipt(
      registry.keyOf(r.peers[i]!),
      sender,
      receiver.inHash,
      receiver.inReceipt,
    );
    if (!receiptOk) return { ring: r.ring, stage: i + 1, reason: 'false-input', proof: [receiver, sender] };
    if (!bytesEqual(sender.outHash, receiver.inHash)) {
      // Two signed hashes for one step from the sender: it committed to one thing and sent another.
      return { ring: r.ring, stage: i, reason: 'equivocation', proof: [sender, receiver] };
    }
  }
  const head = cs[cs.length - 1]!;
  const got = await sha256(r.receivedToken);
  if (!bytesEqual(head.outHash, got) || head.token !== new Int32Array(r.receivedToken.slice().buffer)[0]) {
    const signed = await verifyReceipt(registry.keyOf(r.peers[cs.length - 1]!), head, got, r.headReceipt);
    return {
      ring: r.ring,
      stage: cs.length - 1,
      reason: signed ? 'equivocation' : 'wrong-token',
      proof: [head],
      ...(signed ? { receipt: { hash: got, signature: r.headReceipt } } : {}),
    };
  }
  return undefined;
}

/** The first stage where two rings' commitments disagree beyond the tolerance, and every distance. */
export function compareRings(
  a: Commitment[],
  b: Commitment[],
  tol: Tolerance,
): { firstDivergent?: number; distances: number[] } {
  const distances: number[] = [];
  let firstDivergent: number | undefined;
  for (let i = 0; i < a.length; i++) {
    const d = sketchDistance(a[i]!.sketch, b[i]!.sketch);
    distances.push(d);
    const tokenDiffers = a[i]!.kind === 'logits' && a[i]!.token !== b[i]!.token;
    if (firstDivergent === undefined && (d > tol.sketch || tokenDiffers)) firstDivergent = i;
  }
  return { firstDivergent, distances };
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/**
 * The referee's verdict on stage `stage` of one ring at the current step. A stage's output depends
 * on every input it was given this session (its KV cache), so first each of its recorded inputs,
 * step by step, is checked against its commitment's hash and against the referee's recomputation:
 * the first input that is off (beyond the tolerance) was provably sent that way by the previous
 * stage (its receipt covers that hash) — the sender deviated then, even if nobody checked that step.
 * Only with an honest input history is the stage's own output compared (and, for the head, its
 * token; a near-tie within the tolerance is no deviation). Undefined when the ring is honest there.
 */
export async function refereeVerdict(
  r: RingStep,
  stage: number,
  ref: RefereeResult,
  tol: Tolerance,
  rowLens: number[],
  sketchParams?: SketchParams,
): Promise<(Located & { distance?: undefined }) | { distance: number; ring?: undefined }> {
  const c = r.commitments[stage]!;
  if (stage > 0) {
    const rowLen = rowLens[stage - 1]!;
    for (let step = 0; step < r.history.length; step++) {
      const cs = r.history[step]!;
      const at = cs[stage]!;
      const input = r.inputOf(stage, step);
      if (!input || !bytesEqual(await sha256(input), at.inHash)) {
        return { ring: r.ring, stage, reason: 'false-input', proof: [at] };
      }
      const inTensor = new Float32Array(input.slice().buffer);
      const honest = ref.outputs[stage - 1]!.subarray(
        at.position * rowLen,
        at.position * rowLen + inTensor.length,
      );
      const dIn = tensorDistance(inTensor, honest);
      if (dIn > tol.tensor) {
        // The bytes the sender provably sent (its receipt, hash-checked above) are not the honest ones.
        const sender = cs[stage - 1]!;
        const own = sketchOf(inTensor, rowLen, sketchParams);
        return {
          ring: r.ring,
          stage: stage - 1,
          reason: sketchesEqual(own, sender.sketch) ? 'output-mismatch' : 'false-sketch',
          proof: [sender, at],
          refereeDistance: dIn,
        };
      }
    }
  }
  const rowLen = rowLens[stage]!;
  const all = ref.outputs[stage]!;
  const refOut =
    c.kind === 'logits'
      ? all
      : all.subarray(c.position * rowLen, c.position * rowLen + c.sketch.rows.length * rowLen);
  const d = sketchDistance(c.sketch, sketchOf(refOut, rowLen, sketchParams));
  if (d > tol.sketch)
    return { ring: r.ring, stage, reason: 'output-mismatch', proof: [c], refereeDistance: d };
  if (c.kind === 'logits') {
    const refToken = argmax(refOut);
    const peak = Math.max(...Array.from(refOut, Math.abs), 1e-12);
    const nearTie =
      c.token >= 0 && c.token < refOut.length && refOut[refToken]! - refOut[c.token]! <= tol.sketch * peak;
    if (c.token !== refToken && !nearTie) {
      return {
        ring: r.ring,
        stage,
        reason: 'wrong-token',
        proof: [c],
        refereeDistance: d,
        refereeToken: refToken,
      };
    }
  }
  return { distance: d };
}

/** Stage 0's input bytes for token ids (what the requester sends). */
export function tokenBytes(ids: readonly number[]): Uint8Array {
  return bytesOf(Int32Array.from(ids)).slice();
}
