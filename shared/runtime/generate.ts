import { RingworkError, throwIfAborted } from '../errors.js';
import type { Tokenizer } from '../tokenizer/types.js';
import type { ForwardResult, ForwardTiming, Pipeline } from './pipeline.js';
import type { Sampler } from './sampler.js';
import { perfSample } from '../util/perf-trace.js';
import { generateSpeculative, type DraftOptions, type SpeculativeStats } from './speculative.js';

/** Options of {@link generate}. */
export interface GenerateOptions {
  pipeline: Pipeline;
  tokenizer: Tokenizer;
  /** Prompt text, or already-encoded ids (BOS included when wanted). */
  prompt: string | number[];
  /** Total positions, BOS and prompt included (llama2.c's `-n`). */
  steps: number;
  /**
   * Picks tokens from logits; needed with a local pipeline. A remote ring samples on its head (the
   * one sampler of a session, so it can be handed on) and needs none here.
   */
  sampler?: Sampler;
  /** Run the prompt as one batched prefill (default) or token by token like llama2.c. */
  prefill?: boolean;
  signal?: AbortSignal;
  /** Streams each printed piece as soon as its token is known. */
  onToken?: (e: { token: number; piece: string; position: number }) => void;
  /** Sees every hidden state crossing a stage boundary: (position of first row, stage, data). */
  onBoundary?: (position: number, stage: number, hidden: Float32Array) => void;
  /** Sees the logits of every forward pass: (position of first row, logits). */
  onLogits?: (position: number, logits: Float32Array) => void;
  /** Sees every forward pass's timing (per-stage compute, total wall time). */
  onStep?: (e: { position: number; tokens: number; timing: ForwardTiming }) => void;
  /** Tokens that end generation; default: the tokenizer's EOS ids. llama2.c stops on BOS only: pass []. */
  stopTokens?: number[];
  /**
   * Speculative decoding (greedy only; see speculative.ts): a local draft proposes up to `k` tokens
   * and the pipeline verifies them in one pass. Same text as without it. `prefill: false` and
   * `onBoundary` / `onLogits` do not apply to drafted generation.
   */
  draft?: DraftOptions;
  now?: () => number;
}

/** What {@link generate} returns. */
export interface GenerateResult {
  /** Exactly what llama2.c's `run` prints: the prompt and the continuation, then a newline. */
  text: string;
  /** Prompt ids followed by every generated id. */
  tokens: number[];
  promptTokens: number;
  /** Why generation ended. */
  stop: 'steps' | 'bos' | 'eos';
  /** With {@link GenerateOptions.draft}: drafted, accepted, laps, tokens per lap. */
  speculative?: SpeculativeStats;
  timings: {
    prefillMs: number;
    decodeMs: number;
    prefillTokens: number;
    decodeTokens: number;
    prefillTokPerS: number;
    decodeTokPerS: number;
  };
}

/**
 * The generation loop, with llama2.c's semantics: BOS + prompt, `steps` positions in total,
 * stop when BOS is sampled (llama2.c's end marker) or an EOS of a chat model; the printed text is
 * the prompt followed by the streamed pieces and a final newline.
 */
export async function generate(o: GenerateOptions): Promise<GenerateResult> {
  const now = o.now ?? (() => performance.now());
  const prompt = typeof o.prompt === 'string' ? o.tokenizer.encode(o.prompt, { bos: true }) : [...o.prompt];
  if (prompt.length === 0)
    throw new RingworkError('INVALID_ARGUMENT', 'The prompt encodes to no tokens: pass a non-empty prompt.');
  if (!Number.isInteger(o.steps) || o.steps < 1) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `steps must be a positive integer (total positions incl. prompt), got ${o.steps}.`,
    );
  }
  const steps = Math.max(o.steps, 1);
  // A prompt that fills the steps leaves nothing to draft: decode it as usual.
  if (o.draft && prompt.length < steps) return generateSpeculative({ ...o, draft: o.draft }, prompt);
  const session = await o.pipeline.open();
  const tokens = [...prompt];
  let text = '';
  let stop: GenerateResult['stop'] = 'steps';
  const emit = (prev: number, next: number, position: number) => {
    const piece = o.tokenizer.decodePiece(prev, next);
    text += piece;
    o.onToken?.({ token: next, piece, position });
  };
  const eos = new Set((o.stopTokens ?? o.tokenizer.eosIds).filter((id) => id !== o.tokenizer.bosId));
  let prefillMs: number;
  let decodeMs = 0;
  let decodeTokens = 0;
  try {
    // Prefill: positions 0..n-1 in one pass (or one by one), printing the prompt as llama2.c does.
    const n = Math.min(prompt.length, steps);
    const t0 = now();
    let last: ForwardResult;
    const run = async (ids: number[], pos: number): Promise<ForwardResult> => {
      throwIfAborted(o.signal, 'Generation');
      const r = await session.forward(Int32Array.from(ids), pos, {
        signal: o.signal,
        onBoundary: o.onBoundary ? (stage, h) => o.onBoundary!(pos, stage, h) : undefined,
      });
      if (r.logits) o.onLogits?.(pos, r.logits);
      o.onStep?.({ position: pos, tokens: ids.length, timing: r.timing });
      return r;
    };
    if (o.prefill === false) {
      last = await run([prompt[0]!], 0);
      for (let p = 1; p < n; p++) last = await run([prompt[p]!], p);
    } else {
      last = await run(prompt.slice(0, n), 0);
    }
    prefillMs = now() - t0;
    for (let p = 1; p < n; p++) emit(prompt[p - 1]!, prompt[p]!, p);
    const vocab = o.tokenizer.vocabSize;
    let pos = n - 1;
    let token = prompt[n - 1]!;
    // `last` holds the result for position `pos`; llama2.c samples from it and prints.
    while (pos < steps) {
      // A prompt longer than `steps` is still forced, as llama2.c does (without drawing from the RNG).
      let next: number;
      if (pos < prompt.length - 1) next = prompt[pos + 1]!;
      else if (last.token !== undefined) next = last.token;
      else {
        const logits = last.logits!;
        if (!o.sampler)
          throw new RingworkError(
            'INVALID_ARGUMENT',
            'The pipeline returned logits but generate() was given no sampler.',
          );
        next = o.sampler.sample(logits.length > vocab ? logits.subarray(logits.length - vocab) : logits);
      }
      pos++;
      if (next === o.tokenizer.bosId) {
        stop = 'bos';
        break;
      }
      const prev = token;
      tokens.push(next);
      token = next;
      if (eos.has(next) || pos >= steps) {
        emit(prev, next, pos);
        if (eos.has(next)) stop = 'eos';
        break;
      }
      // The next step goes out before the token is shown: a ring computes it while the caller
      // streams the piece (a chat re-renders), instead of that render delaying every token's lap.
      const t1 = now();
      const pending = run([token], pos);
      pending.catch(() => undefined); // awaited below; only an `emit` that throws leaves it unread
      const e0 = now();
      emit(prev, next, pos);
      perfSample('requester.emitMs', now() - e0);
      last = await pending;
      decodeMs += now() - t1;
      decodeTokens++;
    }
  } finally {
    await session.close();
  }
  const prefillTokens = Math.min(prompt.length, steps);
  return {
    text: text + '\n',
    tokens,
    promptTokens: prompt.length,
    stop,
    timings: timingsOf(prefillMs, decodeMs, prefillTokens, decodeTokens),
  };
}

/** A generation's timings with its tokens per second (0 where a phase took no time). */
export function timingsOf(prefillMs: number, decodeMs: number, prefillTokens: number, decodeTokens: number) {
  return {
    prefillMs,
    decodeMs,
    prefillTokens,
    decodeTokens,
    prefillTokPerS: prefillMs > 0 ? (prefillTokens * 1000) / prefillMs : 0,
    decodeTokPerS: decodeMs > 0 ? (decodeTokens * 1000) / decodeMs : 0,
  };
}
