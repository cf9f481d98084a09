/**
 * The referee: recomputes a disputed step from token ids alone (units `[0, end of the disputed
 * stage)`, one batched pass over every position so far), on runners the requester trusts — its own
 * tab when the units fit, or a third peer. Its answer breaks the tie between rings (majority) or
 * checks a single ring (spot checks).
 */
import type { ShardRunner } from '../runtime/shard-runner.js';

/** A referee's recomputation of one step. */
export interface RefereeResult {
  /** Per stage `0..upTo`: that stage's output at every position (the head: its last logits row). */
  outputs: Float32Array[];
  computeMs: number;
}

/** Recomputes stages from token ids. */
export interface Referee {
  /**
   * Runs `tokens` (every position from 0 through the step's last) through stages `0..upTo` in a
   * fresh KV session and returns each stage's output for every position.
   */
  recompute(tokens: readonly number[], upTo: number, opts?: { signal?: AbortSignal }): Promise<RefereeResult>;
}

/** A referee over loaded runners that cut the model at the same unit boundaries as the rings. */
export function createReferee(o: { runners: ShardRunner[]; rowLens: number[] }): Referee {
  return {
    async recompute(tokens, upTo, opts = {}) {
      const outputs: Float32Array[] = [];
      let computeMs = 0;
      let hidden: Float32Array | undefined;
      for (let i = 0; i <= upTo; i++) {
        const runner = o.runners[i]!;
        const id = await runner.openSession();
        try {
          const input =
            i === 0 ? { tokens: Int32Array.from(tokens), position: 0 } : { hidden: hidden!, position: 0 };
          const out = await runner.step(id, input, { signal: opts.signal });
          computeMs += out.ms;
          hidden = out.data;
          outputs.push(out.kind === 'logits' ? out.data.slice(out.data.length - o.rowLens[i]!) : out.data);
        } finally {
          await runner.closeSession(id);
        }
      }
      return { outputs, computeMs };
    },
  };
}
