/**
 * The requester's side of "validated work is not the requester's word": every step on which all
 * rings agreed is kept as the rings' signed commitments, and sent to the coordinator as
 * `validated-work` messages carrying that proof (at most {@link MAX_PROOF_STEPS} steps and
 * {@link MAX_PROOF_CHARS} characters of commitments each, under the signaling frame limit). The
 * coordinator verifies and compares them itself (signaling-server/src/validation-work.ts) before it
 * credits any peer.
 */
import { toBase64 } from '../ring/stage-commitments.js';
import type { ClientMessageOf, WorkProofStep } from '../protocol/signaling.js';
import { encodeCommitment, type Commitment } from './commitment.js';

/** Most steps one `validated-work` message proves. */
export const MAX_PROOF_STEPS = 16;
/** Most base64 characters of commitments one message carries (the frame limit is 64 KiB). */
export const MAX_PROOF_CHARS = 40_000;

type WorkMessage = Omit<ClientMessageOf<'validated-work'>, 'v'>;

/** Collects agreed steps and cuts them into `validated-work` messages. */
export interface WorkProofBuilder {
  /** One agreed step: each ring's commitments in ring order (0 = the primary). */
  add(rings: readonly (readonly Commitment[])[]): void;
  /** The messages for every step added so far (then forgets them). */
  drain(): WorkMessage[];
  /** Steps added and not drained yet. */
  readonly pending: number;
}

/** Creates a builder for one answer over `ringIds` (primary first) of `model`. */
export function createWorkProofBuilder(o: { model: string; ringIds: readonly string[] }): WorkProofBuilder {
  let steps: { step: WorkProofStep; chars: number }[] = [];
  return {
    add(rings) {
      if (rings.length !== o.ringIds.length) return;
      const step = { rings: rings.map((cs) => cs.map((c) => toBase64(encodeCommitment(c)))) };
      const chars = step.rings.flat().reduce((n, s) => n + s.length, 0);
      // A step too large for one frame (a long prefill's sketches) is not provable this way.
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
