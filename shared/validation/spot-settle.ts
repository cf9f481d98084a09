/**
 * Spot-check mode on real rings (issue 10): the pieces the validated pipeline needs when a
 * validator ring is fed only on sampled steps.
 *
 * A validator ring that skipped steps catches up lazily: on a sampled step it runs every token
 * since its last check as one chunk, and its commitments of that chunk sketch the chunk's last
 * rows. The rings are compared at the sampled position only (the last row of each stage's sketch).
 *
 * A disagreement there is not necessarily the first divergent stage's fault: a stage's output at
 * position p depends on its KV cache over 0..p−1, so a stage upstream that cheated on an unchecked
 * step q < p left a poisoned cache in the honest stage after it, which disagrees at p although it
 * computed honestly. So the referee (one batched pass over every position) is compared with the
 * ring's whole recorded history — the signed commitments of every step it answered, in step order
 * and stage order within a step — and the first deviation found is the deviant: the stage that
 * cheated first, at the step it cheated, whether or not that step was sampled.
 */
import type { Tolerance } from './checks.js';
import type { Commitment } from './commitment.js';
import type { RefereeResult } from './referee.js';
import { sketchDistance, sketchOf, type Sketch } from './sketch.js';
import { argmax } from './stage.js';

/** One step a ring answered, as recorded for the referee's history check. */
export interface RecordedStep {
  /** Absolute position of the step's first row. */
  position: number;
  /** Rows (tokens) the step ran. */
  rows: number;
  /** The ring's verified commitments of the step, one per stage. */
  commitments: Commitment[];
}

/** A deviation found in a ring's recorded history. */
export interface HistoryDeviation {
  /** Index into the ring's recorded steps. */
  stepIndex: number;
  stage: number;
  /** Sketch distance from the referee's recomputation. */
  distance: number;
  /** The head's token is not the referee's argmax (greedy answers only). */
  wrongToken: boolean;
  /** The referee's token (head only). */
  refereeToken?: number;
}

/** The last row of a sketch: what the rings are compared on at a sampled position. */
export function lastRow(s: Sketch): Sketch {
  return { rowLen: s.rowLen, rows: s.rows.slice(-1) };
}

/**
 * The commitments of a sampled step as the rings are compared: each stage's sketch of the last row
 * (the sampled position; a catching-up ring's chunk sketched more rows), and, unless the answer is
 * greedy, no head token (the validator's head draws only on sampled steps, so its sampler is at
 * another draw than the primary's; its logits sketch still compares).
 */
export function sampledView(commitments: readonly Commitment[], greedy: boolean): Commitment[] {
  return commitments.map((c) => ({
    ...c,
    sketch: lastRow(c.sketch),
    ...(c.kind === 'logits' && !greedy ? { token: 0 } : {}),
  }));
}

/**
 * The first (step, stage) of a ring's recorded history, for stages `0..upTo`, where its committed
 * sketch is beyond the tolerance from the referee's recomputation `ref` (stages `0..upTo` over every
 * position, as {@link Referee.recompute} returns). Hidden stages are checked at every recorded step
 * (the rows each commitment sketched); the head only at the last recorded step (the referee's pass
 * gives its last logits row only; a head's cheating leaves no state behind). Undefined: honest.
 */
export function firstHistoryDeviation(o: {
  steps: readonly RecordedStep[];
  ref: RefereeResult;
  upTo: number;
  tolerance: Tolerance;
  /** Check the head's token against the referee's argmax (greedy answers). */
  checkToken: boolean;
}): HistoryDeviation | undefined {
  const last = o.steps.length - 1;
  for (let i = 0; i <= last; i++) {
    const st = o.steps[i]!;
    for (let s = 0; s <= o.upTo && s < st.commitments.length; s++) {
      const c = st.commitments[s]!;
      const out = o.ref.outputs[s];
      if (!out) continue;
      const rowLen = c.sketch.rowLen;
      if (c.kind === 'logits') {
        if (i !== last) continue;
        const d = sketchDistance(lastRow(c.sketch), sketchOf(out.subarray(out.length - rowLen), rowLen));
        const refereeToken = argmax(out.subarray(out.length - rowLen));
        const wrongToken = o.checkToken && c.token !== refereeToken;
        if (d > o.tolerance.sketch || wrongToken)
          return { stepIndex: i, stage: s, distance: d, wrongToken, refereeToken };
        continue;
      }
      const end = st.position + st.rows;
      const start = end - c.sketch.rows.length;
      // A commitment for rows the referee did not recompute cannot be judged here (never in order).
      if (start < 0 || end * rowLen > out.length) continue;
      const d = sketchDistance(c.sketch, sketchOf(out.subarray(start * rowLen, end * rowLen), rowLen));
      if (d > o.tolerance.sketch) return { stepIndex: i, stage: s, distance: d, wrongToken: false };
    }
  }
  return undefined;
}
