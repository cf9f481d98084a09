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
  /** Asks stage `stage` for its recorded input of this step (a dispute). */
  inputOf(stage: number): Uint8Array | undefined;
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
 * The referee's verdict on stage `stage` of one ring: was the stage's (recorded, hash-checked)
 * input the honest one — if not, its sender deviated — and is its committed output within the
 * tolerance of the recomputation? For the head, the committed token must also be the referee's
 * (a near-tie within the tolerance is no deviation). Undefined when the ring is honest there.
 */
export async function refereeVerdict(
  r: RingStep,
  stage: number,
  ref: RefereeResult,
  tol: Tolerance,
  rowLens: number[],
  sketchParams?: SketchParams,
): Promise<Located | undefined> {
  const c = r.commitments[stage]!;
  if (stage > 0) {
    const input = r.inputOf(stage);
    if (!input || !bytesEqual(await sha256(input), c.inHash)) {
      return { ring: r.ring, stage, reason: 'false-input', proof: [c] };
    }
    const inTensor = new Float32Array(input.slice().buffer);
    const dIn = tensorDistance(inTensor, ref.outputs[stage - 1]!);
    if (dIn > tol.tensor) {
      // The bytes the sender provably sent (its receipt, hash-checked above) are not the honest ones.
      const sender = r.commitments[stage - 1]!;
      const own = sketchOf(inTensor, rowLens[stage - 1]!, sketchParams);
      return {
        ring: r.ring,
        stage: stage - 1,
        reason: sketchesEqual(own, sender.sketch) ? 'output-mismatch' : 'false-sketch',
        proof: [sender, c],
        refereeDistance: dIn,
      };
    }
  }
  const refOut = ref.outputs[stage]!;
  const d = sketchDistance(c.sketch, sketchOf(refOut, rowLens[stage]!, sketchParams));
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
  return undefined;
}

/** Stage 0's input bytes for token ids (what the requester sends). */
export function tokenBytes(ids: readonly number[]): Uint8Array {
  return bytesOf(Int32Array.from(ids)).slice();
}
