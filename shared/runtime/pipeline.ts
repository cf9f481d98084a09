import { RingworkError } from '../errors.js';
import type { ShardRunner, StepOutput } from './shard-runner.js';

/** Timing of one forward pass through every stage. */
export interface ForwardTiming {
  /** ORT run time per stage, ms. */
  stageMs: number[];
  /** Wall time of the whole pass, ms. */
  totalMs: number;
}

/**
 * The outcome of one forward pass: the last position's logits (local pipelines), or the token the
 * head already sampled with the session's settings (remote rings, where only a token id travels).
 */
export interface ForwardResult {
  logits?: Float32Array;
  token?: number;
  /**
   * A remote ring's answer to a verify pass (`logitsRows` > 1): the head's greedy pick after each
   * of the last `logitsRows` positions, in order (only token ids travel back).
   */
  picks?: number[];
  timing: ForwardTiming;
}

/** Options of {@link PipelineSession.forward}. */
export interface ForwardOptions {
  signal?: AbortSignal;
  onBoundary?: (stage: number, hidden: Float32Array) => void;
  /**
   * Every stage drops its cached positions `>= position` first (rejected drafted tokens), in the
   * same pass: see {@link StepInput.rewind}.
   */
  rewind?: boolean;
  /**
   * Logits (or, from a remote ring, greedy picks) for the last `logitsRows` positions, not just the
   * last one: a verify pass. The head must be loaded with `logits: 'rows'`.
   */
  logitsRows?: number;
}

/** A chain of shard runners that together cover the whole model, in order. */
export interface Pipeline {
  /** Opens one generation session on every stage. */
  open(): Promise<PipelineSession>;
}

/** A generation session across every stage (one KV cache per stage). */
export interface PipelineSession {
  /**
   * Runs tokens at `position` through every stage and returns the last stage's logits
   * (`[rows * vocab]`). `onBoundary` sees each hidden state handed from stage i to i+1.
   */
  forward(tokens: Int32Array, position: number, opts?: ForwardOptions): Promise<ForwardResult>;
  close(): Promise<void>;
}

/** Chains runners: stage 0 takes tokens, every later stage takes the previous stage's hidden states. */
export function createPipeline(stages: ShardRunner[], now: () => number = () => performance.now()): Pipeline {
  if (stages.length === 0)
    throw new RingworkError('INVALID_ARGUMENT', 'A pipeline needs at least one stage.');
  return {
    async open() {
      const ids = await Promise.all(stages.map((s) => s.openSession()));
      return {
        async forward(tokens, position, opts = {}) {
          const t0 = now();
          const stageMs: number[] = [];
          let out: StepOutput | undefined;
          for (let i = 0; i < stages.length; i++) {
            const input = {
              ...(i === 0 ? { tokens } : { hidden: out!.data }),
              position,
              ...(opts.rewind ? { rewind: true } : {}),
              ...(opts.logitsRows !== undefined && i === stages.length - 1
                ? { logitsRows: opts.logitsRows }
                : {}),
            };
            out = await stages[i]!.step(ids[i]!, input, { signal: opts.signal });
            stageMs.push(out.ms);
            if (out.kind === 'hidden') opts.onBoundary?.(i, out.data);
          }
          if (out!.kind !== 'logits') {
            throw new RingworkError(
              'INVALID_ARGUMENT',
              'The last pipeline stage does not end with the head: its ranges do not cover the model.',
            );
          }
          return { logits: out!.data, timing: { stageMs, totalMs: now() - t0 } };
        },
        async close() {
          await Promise.all(stages.map((s, i) => s.closeSession(ids[i]!)));
        },
      };
    },
  };
}
