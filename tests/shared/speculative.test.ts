/**
 * Speculative decoding on real in-process runners (stories260K, wasm): a q4 draft proposes, the
 * f32 target verifies k+1 positions per pass and rewinds past rejections; the text must be
 * llama2.c's greedy golden text exactly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RingworkError } from '../../shared/errors';
import type { WeightFormat } from '../../shared/graph/compile-shard';
import { splitUnits } from '../../shared/graph/units';
import { generate } from '../../shared/runtime/generate';
import { createPipeline, type Pipeline } from '../../shared/runtime/pipeline';
import { createSampler } from '../../shared/runtime/sampler';
import type { LoadRequest, ShardRunner } from '../../shared/runtime/shard-runner';
import { stories260KRunner, stories260KTokenizer } from '../helpers/engine';
import { loadGolden } from '../helpers/golden';

const golden = loadGolden();
const tokenizer = stories260KTokenizer();
const runners: ShardRunner[] = [];

async function pipeline(
  splits: number[],
  weightFormat: WeightFormat,
  logits: LoadRequest['logits'],
): Promise<Pipeline> {
  const stages: ShardRunner[] = [];
  for (const range of splitUnits({ numLayers: 5 }, splits)) {
    const r = stories260KRunner();
    runners.push(r);
    await r.load({
      model: { url: 'stories260K.bin' },
      range,
      weightFormat,
      contextLength: 64,
      logits,
      backend: 'wasm',
    });
    stages.push(r);
  }
  return createPipeline(stages);
}

const run = (target: Pipeline, draft: Pipeline, k: number, temperature = 0, adaptive = false) =>
  generate({
    pipeline: target,
    tokenizer,
    prompt: 'Once upon a time',
    steps: 64,
    sampler: createSampler({ temperature, seed: 1 }),
    stopTokens: [],
    draft: { pipeline: draft, k, adaptive },
  });

describe('speculative decoding (stories260K golden, greedy, 64 steps)', () => {
  let whole: Pipeline;
  let split: Pipeline;
  let q4: Pipeline;
  let exact: Pipeline;
  beforeAll(async () => {
    whole = await pipeline([], 'f32', 'rows');
    split = await pipeline([2, 4], 'f32', 'rows');
    q4 = await pipeline([], 'q4', 'last');
    exact = await pipeline([], 'f32', 'last');
  });
  afterAll(() => Promise.all(runners.map((r) => r.dispose())));

  it('a q4 draft, k = 4, 3-stage target: exactly the golden text, in fewer passes than tokens', async () => {
    const r = await run(split, q4, 4);
    expect(r.text).toBe(golden.text);
    expect(r.tokens).toEqual(golden.sequenceTokens);
    const s = r.speculative!;
    expect(r.timings.decodeTokens).toBe(golden.sequenceTokens.length - golden.promptTokens.length - 1);
    expect(s.laps).toBeLessThan(r.timings.decodeTokens);
    expect(s.accepted).toBeGreaterThan(0);
    expect(s.accepted).toBeLessThan(s.drafted);
    // Every lap yields its accepted drafts plus one token of the target's own.
    expect(s.laps + s.accepted).toBe(r.timings.decodeTokens);
  });

  it('k = 1, k = 7 and adaptive k give the same text; an exact (f32) draft is accepted everywhere', async () => {
    for (const k of [1, 7]) expect((await run(whole, q4, k)).text).toBe(golden.text);
    const adaptive = await run(whole, q4, 6, 0, true);
    expect(adaptive.text).toBe(golden.text);
    // k moved: fewer drafts than 6 per lap on average, and more than one.
    const perLap = adaptive.speculative!.drafted / adaptive.speculative!.laps;
    expect(perLap).toBeGreaterThan(1);
    expect(perLap).toBeLessThan(6);
    const r = await run(whole, exact, 4);
    expect(r.text).toBe(golden.text);
    const s = r.speculative!;
    // Only float-order differences between a 1-row and a k+1-row pass could reject a copy of the target.
    expect(s.acceptanceRate).toBeGreaterThan(0.95);
    expect(s.tokensPerLap).toBeGreaterThan(4);
  });

  it('refuses sampling, and a target head that returns one row, with SPECULATIVE_UNSUPPORTED', async () => {
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => 'resolved',
        (e: RingworkError) => e.code,
      );
    expect(await codeOf(run(whole, q4, 4, 0.8))).toBe('SPECULATIVE_UNSUPPORTED');
    expect(await codeOf(run(exact, q4, 4))).toBe('SPECULATIVE_UNSUPPORTED');
    expect(await codeOf(run(whole, q4, 0))).toBe('INVALID_ARGUMENT');
  });
});
