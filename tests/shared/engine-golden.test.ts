import { describe, expect, it } from 'vitest';
import { splitUnits } from '../../shared/graph/units';
import { generate } from '../../shared/runtime/generate';
import { createPipeline } from '../../shared/runtime/pipeline';
import { createSampler } from '../../shared/runtime/sampler';
import { goldenHidden, loadGolden } from '../helpers/golden';
import { stories260KRunner, stories260KTokenizer } from '../helpers/engine';

const golden = loadGolden();
const config = { numLayers: 5 };
const tokenizer = stories260KTokenizer();

async function runSplit(splits: number[], opts: { prefill?: boolean } = {}) {
  const ranges = splitUnits(config, splits);
  const runners = ranges.map(() => stories260KRunner());
  for (let i = 0; i < ranges.length; i++) {
    await runners[i]!.load({
      model: { url: 'stories260K.bin' },
      range: ranges[i]!,
      weightFormat: 'f32',
      contextLength: 64,
      logits: 'last',
      backend: 'wasm',
    });
  }
  const boundaries: Float32Array[][] = splits.map(() => []);
  const logits: Float32Array[] = [];
  const result = await generate({
    pipeline: createPipeline(runners),
    tokenizer,
    prompt: 'Once upon a time',
    steps: 64,
    sampler: createSampler({ temperature: 0 }),
    stopTokens: [],
    prefill: opts.prefill,
    onBoundary: (pos, stage, h) => {
      for (let r = 0; r < h.length / 64; r++) boundaries[stage]![pos + r] = h.slice(r * 64, (r + 1) * 64);
    },
    onLogits: (pos, l) => (logits[pos + (opts.prefill === false ? 0 : 0)] = l.slice()),
  });
  await Promise.all(runners.map((r) => r.dispose()));
  return { result, boundaries, logits };
}

describe('stories260K golden (llama2.c run.c, greedy, 64 steps) in Node wasm', () => {
  // Unit boundaries: 0 = embed, 1..5 = blocks, 6 = head.
  const cases: number[][] = [[], [1], [2], [3], [4], [5], [6], [2, 4]];
  for (const splits of cases) {
    it(`split ${JSON.stringify(splits)}: exact text, tokens, and boundary hidden states within 1e-4`, async () => {
      const { result, boundaries } = await runSplit(splits);
      expect(result.text).toBe(golden.text);
      expect(result.tokens).toEqual(golden.sequenceTokens);
      expect(result.stop).toBe('steps');
      splits.forEach((b, stage) => {
        let max = 0;
        for (let pos = 0; pos < 64; pos++) {
          const want = goldenHidden(golden, pos, b - 1);
          const got = boundaries[stage]![pos]!;
          for (let i = 0; i < 64; i++) max = Math.max(max, Math.abs(got[i]! - want[i]!));
        }
        expect(max).toBeLessThan(1e-4);
      });
    });
  }

  it('token-by-token prompt (no batched prefill) gives the same text and logits within 1e-4 of golden', async () => {
    const { result, logits } = await runSplit([3], { prefill: false });
    expect(result.text).toBe(golden.text);
    let max = 0;
    for (let pos = 0; pos < 64; pos++) {
      for (let v = 0; v < 512; v++)
        max = Math.max(max, Math.abs(logits[pos]![v]! - golden.logits[pos * 512 + v]!));
    }
    expect(max).toBeLessThan(1e-4);
  });

  it('every hidden state of every boundary matches golden when the whole sequence is prefilled at once', async () => {
    // Teacher-forced: all 64 golden positions in one prefill through a 7-way split (every boundary).
    const ranges = splitUnits(config, [1, 2, 3, 4, 5, 6]);
    const runners = ranges.map(() => stories260KRunner());
    for (let i = 0; i < ranges.length; i++) {
      await runners[i]!.load({
        model: { url: 'stories260K.bin' },
        range: ranges[i]!,
        weightFormat: 'f32',
        contextLength: 64,
        logits: 'all',
        backend: 'wasm',
      });
    }
    const s = await createPipeline(runners).open();
    let max = 0;
    const { logits } = await s.forward(Int32Array.from(golden.sequenceTokens.slice(0, 64)), 0, {
      onBoundary: (stage, h) => {
        for (let pos = 0; pos < 64; pos++) {
          const want = goldenHidden(golden, pos, stage);
          for (let i = 0; i < 64; i++) max = Math.max(max, Math.abs(h[pos * 64 + i]! - want[i]!));
        }
      },
    });
    expect(max).toBeLessThan(1e-4);
    let maxLogit = 0;
    expect(logits).toBeDefined();
    for (let i = 0; i < logits!.length; i++)
      maxLogit = Math.max(maxLogit, Math.abs(logits![i]! - golden.logits[i]!));
    expect(maxLogit).toBeLessThan(1e-4);
    await s.close();
    await Promise.all(runners.map((r) => r.dispose()));
  });
});
