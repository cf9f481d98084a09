/**
 * Named test-only misbehaviours a real ring stage can be told to play (the validation e2e's
 * dishonest tab, `#/contribute?join=1&tamper=<name>` on a test-mode server only). Each one is a
 * {@link TamperFn} plus whether the stage commits to the honest output while sending the tampered
 * one. Honest stages never use these; they exist so a browser test can prove that a deviant is
 * caught, located, flagged and planned out.
 */
import { RingworkError } from '../errors.js';
import type { TamperFn } from './stage.js';

/** What a ring stage is told to do wrong (the subset of its validation options a test may set). */
export interface StageTamper {
  tamper: TamperFn;
  /** Commit to the honest output but send the tampered one (equivocation). */
  honestCommit: boolean;
}

/**
 * Makes the largest entry the smallest: on the head's logits row that changes the greedy token
 * (the runner-up wins), on hidden states it moves one dimension far (every step changes).
 */
const demoteLargest: TamperFn = (ctx) => {
  const out = ctx.data.slice();
  let best = 0;
  let low = Infinity;
  for (let i = 0; i < out.length; i++) {
    if (out[i]! > out[best]!) best = i;
    low = Math.min(low, out[i]!);
  }
  out[best] = low - 1 - Math.abs(low);
  return out;
};

/** The named tampers. */
export const TEST_TAMPERS = {
  /**
   * Commits honestly, sends something else (every step): the signed records alone prove it
   * (the stage's output hash against its own receipt for other bytes), so the coordinator flags it.
   */
  equivocate: { tamper: demoteLargest, honestCommit: true },
  /** Sends and commits to the same wrong output: only a comparison with another ring shows it. */
  consistent: { tamper: demoteLargest, honestCommit: false },
} as const satisfies Record<string, StageTamper>;

export type TestTamperName = keyof typeof TEST_TAMPERS;

/** The tamper named `name`; `INVALID_ARGUMENT` for an unknown name. */
export function testTamper(name: string): StageTamper {
  if (!Object.hasOwn(TEST_TAMPERS, name)) {
    throw new RingworkError('INVALID_ARGUMENT', `Unknown test tamper "${name}".`, {
      details: { name, known: Object.keys(TEST_TAMPERS) },
    });
  }
  return TEST_TAMPERS[name as TestTamperName];
}
