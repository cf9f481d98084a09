/**
 * The measurement primitives of the engine benchmark: one timed prefill + greedy decode through a
 * {@link Pipeline}, the bytes a decode step must read, and small statistics helpers.
 */
import { RingworkError } from '../../shared/errors.js';
import { splitUnits, unitCount, type UnitRange } from '../../shared/graph/units.js';
import type { ModelConfig } from '../../shared/model/types.js';
import type { Pipeline } from '../../shared/runtime/pipeline.js';
import { argmax } from '../../shared/runtime/sampler.js';

/** Timings of one prefill + decode run. */
export interface GenerationMeasurement {
  prefillTokens: number;
  prefillMs: number;
  prefillTokPerS: number;
  decodeTokens: number;
  /** Wall time of all decode steps, greedy argmax included (the same for every variant). */
  decodeMs: number;
  /** Of which inside ORT `session.run` (summed over stages). */
  decodeOrtMs: number;
  decodeTokPerS: number;
  /** The greedy continuation: prefill's token, then one per decode step (to cross-check variants). */
  tokens: number[];
}

/** Timing of a block of decode steps. */
export interface DecodeTiming {
  steps: number;
  /** Wall time, ms. */
  ms: number;
  /** Time inside ORT `session.run`, summed over stages, ms. */
  ortMs: number;
  /**
   * CPU time of this process over the block (user + system, every thread: wasm and native ORT
   * threads included), ms. Unlike wall time it barely moves when neighbours take the CPU, so it
   * compares variants on a loaded machine; it counts spinning pool threads as work.
   */
  cpuMs: number;
}

/**
 * One generation in progress, driven phase by phase so a benchmark can interleave the phases of
 * several variants (a noisy machine then disturbs them alike).
 */
export interface GenerationRun {
  /** Runs the whole prompt as one batched pass; returns its wall time in ms. Call once, first. */
  prefill(): Promise<number>;
  /** Runs `steps` single-token greedy steps after the previous ones. */
  decode(steps: number): Promise<DecodeTiming>;
  /** The greedy tokens so far: prefill's, then one per decode step. */
  readonly tokens: readonly number[];
  close(): Promise<void>;
}

/** Settings of a generation run. */
export interface GenerationSettings {
  prompt: readonly number[];
  vocabSize: number;
  now?: () => number;
}

/**
 * A fixed, reproducible prompt: BOS then ids spread over the vocabulary. The cost of a forward pass
 * does not depend on which ids are fed, so no tokenizer is needed and every model gets the same
 * kind of prompt.
 */
export function fixedPrompt(config: Pick<ModelConfig, 'vocabSize' | 'bosTokenId'>, length: number): number[] {
  if (!Number.isInteger(length) || length < 1) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `The prompt length must be a positive integer, got ${length}.`,
    );
  }
  const ids = [config.bosTokenId];
  // Skip the first ids (BOS/EOS/pad in Llama vocabularies); a prime stride walks the rest evenly.
  const span = Math.max(1, config.vocabSize - 3);
  for (let i = 1; i < length; i++) ids.push(3 + ((i * 7919) % span));
  return ids;
}

/**
 * Opens a generation session on `pipeline`. Times are wall time around `forward` (so JS hand-offs
 * between stages count, which is what the split-overhead figure is about), greedy argmax included.
 */
export async function startGeneration(
  pipeline: Pipeline,
  settings: GenerationSettings,
): Promise<GenerationRun> {
  const now = settings.now ?? (() => performance.now());
  const { prompt, vocabSize } = settings;
  if (prompt.length === 0) throw new RingworkError('INVALID_ARGUMENT', 'The benchmark prompt is empty.');
  const session = await pipeline.open();
  // `logits: 'last'` shards return one row; `all` returns one per prompt token.
  const lastRow = (logits: Float32Array) => logits.subarray(Math.max(0, logits.length - vocabSize));
  const tokens: number[] = [];
  let position = 0;
  return {
    tokens,
    async prefill() {
      if (position !== 0)
        throw new RingworkError('INVALID_ARGUMENT', 'prefill() runs once, before any decode().');
      const t0 = now();
      const r = await session.forward(Int32Array.from(prompt), 0);
      tokens.push(argmax(lastRow(r.logits!)));
      const ms = now() - t0;
      position = prompt.length;
      return ms;
    },
    async decode(steps) {
      if (position === 0) throw new RingworkError('INVALID_ARGUMENT', 'decode() needs prefill() first.');
      if (!Number.isInteger(steps) || steps < 1) {
        throw new RingworkError('INVALID_ARGUMENT', `Decode steps must be a positive integer, got ${steps}.`);
      }
      let ortMs = 0;
      const c0 = process.cpuUsage();
      const t0 = now();
      for (let i = 0; i < steps; i++) {
        const r = await session.forward(Int32Array.of(tokens[tokens.length - 1]!), position++);
        for (const ms of r.timing.stageMs) ortMs += ms;
        tokens.push(argmax(lastRow(r.logits!)));
      }
      const ms = now() - t0;
      const cpu = process.cpuUsage(c0);
      return { steps, ms, ortMs, cpuMs: (cpu.user + cpu.system) / 1000 };
    },
    close: () => session.close(),
  };
}

/** One prefill then `decodeSteps` greedy steps, back to back (see {@link startGeneration}). */
export async function measureGeneration(
  pipeline: Pipeline,
  opts: GenerationSettings & { decodeSteps: number },
): Promise<GenerationMeasurement> {
  const run = await startGeneration(pipeline, opts);
  try {
    const prefillMs = await run.prefill();
    const d = await run.decode(opts.decodeSteps);
    return {
      prefillTokens: opts.prompt.length,
      prefillMs,
      prefillTokPerS: rate(opts.prompt.length, prefillMs),
      decodeTokens: d.steps,
      decodeMs: d.ms,
      decodeOrtMs: d.ortMs,
      decodeTokPerS: rate(d.steps, d.ms),
      tokens: [...run.tokens],
    };
  } finally {
    await run.close();
  }
}

/** Tokens per second of `tokens` in `ms` (0 when no time passed). */
export function rate(tokens: number, ms: number): number {
  return ms > 0 ? (tokens * 1000) / ms : 0;
}
/**
 * Bytes one decode step must bring in from memory for an f32 whole-model compile with
 * `weightBytes` of initializers: every weight except the embedding table (a Gather reads one
 * row of it), plus the KV cache read by attention at `contextPositions` cached positions.
 */
export function decodeBytesPerToken(
  config: Pick<ModelConfig, 'vocabSize' | 'hiddenSize' | 'numLayers' | 'numKvHeads' | 'headDim'>,
  weightBytes: number,
  contextPositions: number,
): number {
  const embedding = config.vocabSize * config.hiddenSize * 4;
  const kv = 2 * config.numLayers * config.numKvHeads * config.headDim * 4 * contextPositions;
  return Math.max(0, weightBytes - embedding) + config.hiddenSize * 4 + kv;
}

/**
 * Splits a model into `parts` contiguous unit ranges of (as nearly as possible) equal unit
 * counts, e.g. 8 units in 3 parts: `[0,3) [3,5) [5,8)`.
 */
export function splitEvenly(config: Pick<ModelConfig, 'numLayers'>, parts: number): UnitRange[] {
  const n = unitCount(config);
  if (!Number.isInteger(parts) || parts < 1 || parts > n) {
    throw new RingworkError('INVALID_ARGUMENT', `Cannot split ${n} units into ${parts} parts: use 1..${n}.`, {
      details: { parts, units: n },
    });
  }
  const cuts: number[] = [];
  for (let i = 1; i < parts; i++) cuts.push(Math.round((n * i) / parts));
  return splitUnits(config, cuts);
}

/** Median, minimum and maximum of a non-empty sample. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** {@link Spread} of `xs`; NaN everywhere for an empty sample. */
export function spread(xs: readonly number[]): Spread {
  if (xs.length === 0) return { median: NaN, min: NaN, max: NaN };
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]! };
}
