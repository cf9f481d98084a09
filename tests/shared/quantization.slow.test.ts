import { describe, expect, it } from 'vitest';
import type { WeightFormat } from '../../shared/graph/compile-shard';
import { generate } from '../../shared/runtime/generate';
import { createPipeline } from '../../shared/runtime/pipeline';
import { argmax, createSampler } from '../../shared/runtime/sampler';
import { stories260KRunner, stories260KTokenizer } from '../helpers/engine';

const POSITIONS = 256;

async function allLogits(
  format: WeightFormat,
  tokens: number[],
): Promise<{ logits: Float32Array; weightBytes: number }> {
  const r = stories260KRunner();
  const load = await r.load({
    model: { url: 'stories260K.bin' },
    range: [0, 7],
    weightFormat: format,
    contextLength: POSITIONS,
    logits: 'all',
    backend: 'wasm',
  });
  const s = await r.openSession();
  const out = await r.step(s, { tokens: Int32Array.from(tokens), position: 0 });
  await r.dispose();
  return { logits: out.data, weightBytes: load.weightBytes };
}

describe('quantised weights (MatMulNBits) vs fp32 on stories260K', () => {
  it(`q8 and q4 top-1 agreement with fp32 over ${POSITIONS} positions`, async () => {
    // The fp32 model's own greedy continuation, so every position is on-distribution.
    const r = stories260KRunner();
    await r.load({
      model: { url: 'stories260K.bin' },
      range: [0, 7],
      weightFormat: 'f32',
      contextLength: POSITIONS,
      logits: 'last',
      backend: 'wasm',
    });
    const gen = await generate({
      pipeline: createPipeline([r]),
      tokenizer: stories260KTokenizer(),
      prompt: 'Once upon a time',
      steps: POSITIONS,
      sampler: createSampler({ temperature: 0 }),
      stopTokens: [],
    });
    await r.dispose();
    // BOS may end the greedy story early: pad with a second story to reach 256 positions.
    const tokens = gen.tokens.slice(0, POSITIONS);
    while (tokens.length < POSITIONS) tokens.push(...gen.tokens.slice(0, POSITIONS - tokens.length));
    const ref = await allLogits('f32', tokens);
    const agreement: Record<string, number> = {};
    const bytes: Record<string, number> = { f32: ref.weightBytes };
    for (const format of ['q8', 'q4'] as const) {
      const q = await allLogits(format, tokens);
      bytes[format] = q.weightBytes;
      let same = 0;
      for (let p = 0; p < POSITIONS; p++) {
        const a = argmax(ref.logits.subarray(p * 512, (p + 1) * 512));
        const b = argmax(q.logits.subarray(p * 512, (p + 1) * 512));
        if (a === b) same++;
      }
      agreement[format] = same / POSITIONS;
    }
    console.log(
      `top-1 agreement over ${POSITIONS} positions: q8 ${agreement.q8}, q4 ${agreement.q4}; weight bytes`,
      bytes,
    );
    // stories260K has 64-wide rows: block-32 quantisation is as coarse as it gets; bigger models agree more.
    expect(agreement.q8).toBeGreaterThanOrEqual(0.97);
    expect(agreement.q4).toBeGreaterThanOrEqual(0.7);
    expect(bytes.q8!).toBeLessThan(bytes.f32!);
    expect(bytes.q4!).toBeLessThan(bytes.q8!);
  });
});
