/**
 * The requester's side of "validated work is not the requester's word": every step on which all
 * rings agreed is kept as the rings' signed commitments, and sent to the coordinator as
 * `validated-work` messages carrying that proof (at most {@link MAX_PROOF_STEPS} steps and
 * {@link MAX_PROOF_CHARS} characters of commitments each, under the signaling frame limit). The
 * coordinator verifies and compares them itself (signaling-server/src/validation-work.ts) before it
 * credits any peer. In spot-check mode a sampled step proves work too: the two rings' commitments
 * plus the validator's catch-up chunk of token ids, which the coordinator hashes itself.
 */
import { toBase64 } from '../ring/stage-commitments.js';
import { MAX_SPOT_CHUNK_TOKENS, type ClientMessageOf, type WorkProofStep } from '../protocol/signaling.js';
import { encodeCommitment, type Commitment } from './commitment.js';

/** Most steps one `validated-work` message proves. */
export const MAX_PROOF_STEPS = 16;
/** Most base64 characters of commitments one message carries (the frame limit is 64 KiB). */
export const MAX_PROOF_CHARS = 40_000;

/** What a spot-checked proof step adds: the validator's chunk and the primary's rows of it. */
export interface SpotProof {
  tokens: readonly number[];
  rows: number;
}

type WorkMessage = Omit<ClientMessageOf<'validated-work'>, 'v'>;

/** Collects agreed steps and cuts them into `validated-work` messages. */
export interface WorkProofBuilder {
  /**
   * One agreed step: each ring's commitments in ring order (0 = the primary). A spot-checked step
   * (two rings, the validator caught up) carries `spot`: the validator's chunk of token ids and the
   * rows the primary ran at this step (the chunk's last ones).
   */
  add(rings: readonly (readonly Commitment[])[], spot?: SpotProof): void;
  /** The messages for every step added so far (then forgets them). */
  drain(): WorkMessage[];
  /** Steps added and not drained yet. */
  readonly pending: number;
}

/** Creates a builder for one answer over `ringIds` (primary first) of `model`. */
export function createWorkProofBuilder(o: { model: string; ringIds: readonly string[] }): WorkProofBuilder {
  let steps: { step: WorkProofStep; chars: number }[] = [];
  return {
    add(rings, spot) {
      if (rings.length !== o.ringIds.length) return;
      if (spot && (rings.length !== 2 || spot.tokens.length > MAX_SPOT_CHUNK_TOKENS)) return;
      const step: WorkProofStep = {
        rings: rings.map((cs) => cs.map((c) => toBase64(encodeCommitment(c)))),
        ...(spot ? { spot: { tokens: [...spot.tokens], rows: spot.rows } } : {}),
      };
      const chars =
        step.rings.flat().reduce((n, s) => n + s.length, 0) +
        (step.spot ? JSON.stringify(step.spot.tokens).length : 0);
      // A step too large for one frame (a long prefill's sketches, a long catch-up) is not provable this way.
      if (chars <= MAX_PROOF_CHARS) steps.push({ step, chars });
    },
    drain() {
      const out: WorkMessage[] = [];
      let batch: WorkProofStep[] = [];
      let chars = 0;
      const flush = () => {
        if (batch.length === 0) return;
        out.push({
          type: 'validated-work',
          model: o.model,
          ringId: o.ringIds[0]!,
          steps: batch.length,
          proof: batch,
          proofRings: [...o.ringIds],
        });
        batch = [];
        chars = 0;
      };
      for (const s of steps) {
        if (batch.length >= MAX_PROOF_STEPS || chars + s.chars > MAX_PROOF_CHARS) flush();
        batch.push(s.step);
        chars += s.chars;
      }
      flush();
      steps = [];
      return out;
    },
    get pending() {
      return steps.length;
    },
  };
}
