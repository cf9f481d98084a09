/**
 * Speculative decoding (greedy): a cheap local draft proposes up to k tokens, the target (a local
 * chain of runners or a whole ring) checks them all in one pass — one ring lap for up to k+1
 * tokens instead of one lap per token. The target's own greedy pick after every position decides:
 * the longest drafted prefix that matches is kept, the first mismatch is replaced by the target's
 * pick, and the next pass rewinds every stage's KV cache past the rejected positions (carried by
 * that pass itself, see {@link StepInput.rewind}, so dropping them costs no extra lap).
 *
 * The output is the target's greedy output: every kept token is one the target itself picked. The
 * only difference from step-by-step decoding is float order — a k+1-row pass sums in another order
 * than k+1 one-row passes, so where a position's top-2 logits are closer than that rounding the
 * pick can flip (`npm run bench:speculative` reports the smallest gap it saw and the agreement).
 *
 * Sampling (temperature > 0) is refused with `SPECULATIVE_UNSUPPORTED`: keeping the sampled
 * distribution needs the accept/reject rule on the draft's and the target's probabilities, which
 * a ring that answers only token ids cannot do yet.
 */
import { RingworkError, throwIfAborted } from '../errors.js';
import { timingsOf, type GenerateOptions, type GenerateResult } from './generate.js';
import type { ForwardResult, Pipeline } from './pipeline.js';
import { argmax } from './sampler.js';

/** The draft side of {@link GenerateOptions.draft}. */
export interface DraftOptions {
  /** The draft model, local (e.g. a q4 copy of the target); its head may be `last` or `rows`. */
  pipeline: Pipeline;
  /** Most tokens drafted per lap (≥ 1). */
  k: number;
  /**
   * Adapt the draft length to the acceptance: +2 after a lap that accepted every draft, −1 after
   * one that rejected some (within 1..k), so a draft that is often wrong costs fewer draft steps.
   */
  adaptive?: boolean;
}

/** What speculative decoding did, next to the usual result. */
export interface SpeculativeStats {
  /** Drafted tokens the target confirmed. */
  accepted: number;
  /** Tokens the draft proposed. */
  drafted: number;
  /** Verify passes (ring laps) after the prefill. */
  laps: number;
  /** Tokens produced per lap (accepted drafts + the target's own token each lap). */
  tokensPerLap: number;
  /** accepted ÷ drafted. */
  acceptanceRate: number;
  /** Time spent running the draft model, ms. */
  draftMs: number;
}

/** The greedy picks after the last `rows` positions of a verify pass (ring picks, or local logits). */
export function picksOf(r: ForwardResult, rows: number, vocab: number): number[] {
  if (r.picks) {
    if (r.picks.length !== rows) {
      throw new RingworkError(
        'PROTOCOL_BAD_FRAME',
        `The ring answered ${r.picks.length} picks to a ${rows}-position verify pass.`,
        { details: { rows, got: r.picks.length } },
      );
    }
    return r.picks;
  }
  if (rows === 1 && r.token !== undefined) return [r.token];
  const l = r.logits;
  if (!l || l.length < rows * vocab) {
    throw new RingworkError(
      'SPECULATIVE_UNSUPPORTED',
      `The target returned ${l ? l.length / vocab : 0} logits rows for a ${rows}-position verify pass: load its head with logits: 'rows'.`,
      { details: { rows, got: l ? l.length / vocab : 0 } },
    );
  }
  const off = l.length - rows * vocab;
  return Array.from({ length: rows }, (_, i) => argmax(l.subarray(off + i * vocab, off + (i + 1) * vocab)));
}

/**
 * {@link generate} with a draft (called by it when `draft` is set): the same text, tokens and stop
 * as greedy step-by-step decoding, in fewer target passes. `o.prompt.length < o.steps` (else the
 * caller decodes without drafting: there is nothing to draft).
 */
export async function generateSpeculative(
  o: GenerateOptions & { draft: DraftOptions },
  prompt: number[],
): Promise<GenerateResult & { speculative: SpeculativeStats }> {
  const now = o.now ?? (() => performance.now());
  const kMax = o.draft.k;
  if (!Number.isInteger(kMax) || kMax < 1 || kMax > 64) {
    throw new RingworkError('INVALID_ARGUMENT', `draft k must be an integer from 1 to 64, got ${kMax}.`, {
      details: { k: kMax },
    });
  }
  if (o.sampler && !o.sampler.greedy) {
    throw new RingworkError(
      'SPECULATIVE_UNSUPPORTED',
      'Speculative decoding is greedy only: use temperature 0, or decode without a draft.',
    );
  }
  const steps = o.steps;
  const vocab = o.tokenizer.vocabSize;
  const bos = o.tokenizer.bosId;
  const eos = new Set((o.stopTokens ?? o.tokenizer.eosIds).filter((id) => id !== bos));
  const n = prompt.length;
  const tokens = [...prompt];
  let text = '';
  let stop: GenerateResult['stop'] = 'steps';
  const emit = (prev: number, next: number, position: number) => {
    const piece = o.tokenizer.decodePiece(prev, next);
    text += piece;
    o.onToken?.({ token: next, piece, position });
  };
  const stats = { accepted: 0, drafted: 0, laps: 0, draftMs: 0 };
  // `pos` is the index of the newest token (fed to neither model yet); the target's cache holds
  // positions [0, pos) exactly (anything beyond is dropped by the next pass's rewind).
  let pos = n - 1;
  let token = prompt[n - 1]!;
  /** Takes the next token as llama2.c would; false when generation ends with it. */
  const take = (next: number): boolean => {
    pos++;
    if (next === bos) {
      stop = 'bos';
      return false;
    }
    const prev = token;
    tokens.push(next);
    token = next;
    emit(prev, next, pos);
    if (eos.has(next)) {
      stop = 'eos';
      return false;
    }
    return pos < steps;
  };
  const target = await o.pipeline.open();
  let draft: Awaited<ReturnType<Pipeline['open']>> | undefined;
  let prefillMs: number;
  let decodeMs = 0;
  let decodeTokens = 0;
  try {
    draft = await o.draft.pipeline.open();
    const t0 = now();
    throwIfAborted(o.signal, 'Generation');
    // One after the other: in-process onnxruntime-web sessions must not run concurrently (a local
    // target and the draft share one wasm instance).
    const first = await target.forward(Int32Array.from(prompt), 0, { signal: o.signal });
    const d0 = now();
    await draft.forward(Int32Array.from(prompt), 0, { signal: o.signal });
    stats.draftMs += now() - d0;
    o.onStep?.({ position: 0, tokens: n, timing: first.timing });
    prefillMs = now() - t0;
    for (let p = 1; p < n; p++) emit(prompt[p - 1]!, prompt[p]!, p);
    // The draft's cache holds positions [0, draftLen) of `tokens` (plus drafted ones past it).
    let draftLen = n;
    let kNow = o.draft.adaptive ? Math.ceil(kMax / 2) : kMax;
    let going = take(picksOf(first, 1, vocab)[0]!);
    while (going) {
      throwIfAborted(o.signal, 'Generation');
      const t1 = now();
      // A verify pass feeds positions pos..pos+k, and no position may reach `steps`.
      const k = Math.min(kNow, steps - 1 - pos);
      const drafts: number[] = [];
      if (k > 0) {
        const d0 = now();
        let feed = tokens.slice(draftLen, pos + 1);
        let at = draftLen;
        for (let i = 0; i < k; i++) {
          const r = await draft.forward(Int32Array.from(feed), at, { signal: o.signal, rewind: true });
          const d = argmax(r.logits!.subarray(r.logits!.length - vocab));
          drafts.push(d);
          at += feed.length;
          feed = [d];
          if (d === bos || eos.has(d)) break; // nothing is generated past a stop token
        }
        draftLen = at;
        stats.draftMs += now() - d0;
      }
      const rows = drafts.length + 1;
      const r = await target.forward(Int32Array.from([token, ...drafts]), pos, {
        signal: o.signal,
        rewind: true,
        logitsRows: rows,
      });
      o.onStep?.({ position: pos, tokens: rows, timing: r.timing });
      const picks = picksOf(r, rows, vocab);
      let j = 0;
      while (j < drafts.length && drafts[j] === picks[j]) j++;
      stats.laps++;
      stats.drafted += drafts.length;
      stats.accepted += j;
      if (o.draft.adaptive && drafts.length > 0)
        kNow = j === drafts.length ? Math.min(kMax, kNow + 2) : Math.max(1, kNow - 1);
      const before = pos;
      for (let i = 0; i < j && going; i++) going = take(drafts[i]!);
      if (going) going = take(picks[j]!);
      decodeTokens += pos - before;
      // Drafted positions past the first rejection are stale in the draft's cache too.
      draftLen = Math.min(draftLen, pos);
      decodeMs += now() - t1;
    }
  } finally {
    await Promise.all([target.close(), draft?.close()]);
  }
  const prefillTokens = n;
  return {
    text: text + '\n',
    tokens,
    promptTokens: n,
    stop,
    timings: timingsOf(prefillMs, decodeMs, prefillTokens, decodeTokens),
    speculative: {
      ...stats,
      tokensPerLap: stats.laps > 0 ? decodeTokens / stats.laps : 0,
      acceptanceRate: stats.drafted > 0 ? stats.accepted / stats.drafted : 0,
    },
  };
}
