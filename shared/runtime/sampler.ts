import { RingworkError } from '../errors.js';

/** Sampling settings. `temperature: 0` is greedy. */
export interface SamplerOptions {
  temperature: number;
  /** Nucleus threshold in (0, 1]; 1 disables top-p. */
  topP?: number;
  /** Keep only the k most likely tokens; 0 disables top-k. */
  topK?: number;
  /**
   * Seed of llama2.c's xorshift RNG, so seeded runs reproduce llama2.c's `run` exactly. An integer;
   * 0 or absent seeds from the clock, as llama2.c does (a zero xorshift state would stay zero).
   */
  seed?: number;
  /**
   * Random numbers already drawn from this seed by an earlier holder of the sampler: the generator
   * is fast-forwarded past them, so a replacement (a new head stage) continues the same sequence.
   */
  draws?: number;
}

/** Picks the next token from a row of logits. */
export interface Sampler {
  sample(logits: Float32Array): number;
  /** Random numbers drawn so far (greedy steps draw none), counting `draws` it was created with. */
  readonly draws: number;
  /** True when it always picks the argmax (temperature 0): what speculative decoding requires. */
  readonly greedy?: boolean;
}

const MASK64 = (1n << 64n) - 1n;

/**
 * A sampler that follows llama2.c's `sample()` step for step: argmax when temperature is 0,
 * otherwise temperature-scaled softmax, then top-p (nucleus, llama2.c's cutoff pre-filter) or plain
 * multinomial sampling with llama2.c's xorshift* generator. Top-k, which llama2.c lacks, is applied
 * before top-p.
 */
export function createSampler(opts: SamplerOptions): Sampler {
  const temperature = opts.temperature;
  const topP = opts.topP ?? 1;
  const topK = opts.topK ?? 0;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `temperature must be a finite number >= 0, got ${temperature}.`,
    );
  }
  if (!(topP > 0 && topP <= 1))
    throw new RingworkError('INVALID_ARGUMENT', `topP must be in (0, 1], got ${topP}.`);
  if (!Number.isInteger(topK) || topK < 0)
    throw new RingworkError('INVALID_ARGUMENT', `topK must be an integer >= 0, got ${topK}.`);
  if (opts.seed !== undefined && !Number.isSafeInteger(opts.seed)) {
    throw new RingworkError('INVALID_ARGUMENT', `seed must be an integer, got ${opts.seed}.`);
  }
  const skip = opts.draws ?? 0;
  if (!Number.isSafeInteger(skip) || skip < 0)
    throw new RingworkError('INVALID_ARGUMENT', `draws must be an integer >= 0, got ${opts.draws}.`);
  let state = BigInt.asUintN(64, BigInt(opts.seed || Date.now()));
  let draws = 0;
  const randomF32 = (): number => {
    draws++;
    state ^= state >> 12n;
    state = (state ^ (state << 25n)) & MASK64;
    state ^= state >> 27n;
    const u32 = Number((((state * 0x2545f4914f6cdd1dn) & MASK64) >> 32n) & 0xffffffffn);
    return Math.fround((u32 >>> 8) / 16777216.0);
  };
  for (let i = 0; i < skip; i++) randomF32();
  return {
    get draws() {
      return draws;
    },
    greedy: temperature === 0,
    sample(logits: Float32Array): number {
      if (temperature === 0) return argmax(logits);
      const probs = new Float32Array(logits.length);
      for (let i = 0; i < logits.length; i++) probs[i] = logits[i]! / temperature;
      softmaxInPlace(probs);
      if (topK > 0 && topK < probs.length) keepTopK(probs, topK);
      const coin = randomF32();
      return topP < 1 ? sampleTopP(probs, topP, coin) : sampleMult(probs, coin);
    },
  };
}

/** Index of the largest value (first one on ties, as llama2.c). */
export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

function softmaxInPlace(x: Float32Array): void {
  let max = -Infinity;
  for (const v of x) max = Math.max(max, v);
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.exp(x[i]! - max);
    sum += x[i]!;
  }
  for (let i = 0; i < x.length; i++) x[i] = x[i]! / sum;
}

function keepTopK(p: Float32Array, k: number): void {
  const sorted = Float32Array.from(p).sort().reverse();
  const cut = sorted[k - 1]!;
  // Everything above the k-th value stays; ties at the k-th value fill the remaining slots in index order.
  let ties = k - sorted.filter((v) => v > cut).length;
  let sum = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i]! > cut || (p[i] === cut && ties-- > 0)) sum += p[i]!;
    else p[i] = 0;
  }
  for (let i = 0; i < p.length; i++) p[i] = p[i]! / sum;
}

function sampleMult(p: Float32Array, coin: number): number {
  let cdf = 0;
  for (let i = 0; i < p.length; i++) {
    cdf += p[i]!;
    if (coin < cdf) return i;
  }
  // Rounding left the coin above the total: take the last token that can be sampled at all (top-k
  // zeroes the tail, so llama2.c's plain `n - 1` could be a token outside the top k).
  for (let i = p.length - 1; i > 0; i--) if (p[i]! > 0) return i;
  return 0;
}

function sampleTopP(p: Float32Array, topP: number, coin: number): number {
  const cutoff = (1 - topP) / (p.length - 1);
  const cand: { i: number; p: number }[] = [];
  for (let i = 0; i < p.length; i++) if (p[i]! >= cutoff) cand.push({ i, p: p[i]! });
  // llama2.c's pre-filter can drop every token (near-uniform probabilities and a small topP; or a
  // single token, where the cutoff is infinite); the nucleus then has to be found among them all.
  if (cand.length === 0) for (let i = 0; i < p.length; i++) cand.push({ i, p: p[i]! });
  cand.sort((a, b) => b.p - a.p);
  let cum = 0;
  let last = cand.length - 1;
  for (let j = 0; j < cand.length; j++) {
    cum += cand[j]!.p;
    if (cum > topP) {
      last = j;
      break;
    }
  }
  const r = coin * cum;
  let cdf = 0;
  for (let j = 0; j <= last; j++) {
    cdf += cand[j]!.p;
    if (r < cdf) return cand[j]!.i;
  }
  return cand[last]!.i;
}
