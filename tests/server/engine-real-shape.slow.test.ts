/**
 * Real-shape coverage (slow tier: `npm test` runs it, `npm run test:quick` does not): a synthetic
 * model with SmolLM2-135M's exact shapes, split 3 ways, gives the unsplit tokens and logits.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesizeModel } from '../../tools/model/synth';
import { greedy } from '../helpers/greedy';
import { scaled } from '../helpers/timeouts';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ringwork-real-shape-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('synthetic SmolLM2-135M-shaped model', () => {
  it(
    'split 3 ways gives the same tokens and logits as unsplit',
    async () => {
      const out = join(dir, 'smollm2-135m');
      await synthesizeModel({ preset: 'smollm2-135m', outDir: out, seed: 7 });
      // 32 units (embed, 30 blocks, head): three contiguous ranges.
      const whole = await greedy(out, [], 12, 'hello world');
      const split = await greedy(out, [11, 22], 12, 'hello world');
      expect(split.tokens).toEqual(whole.tokens);
      expect(whole.tokens.length).toBeGreaterThan(8);
      let max = 0;
      let scale = 0;
      whole.logits.forEach((l, i) => {
        for (let v = 0; v < l.length; v++) {
          max = Math.max(max, Math.abs(l[v]! - split.logits[i]![v]!));
          scale = Math.max(scale, Math.abs(l[v]!));
        }
      });
      expect(max).toBeLessThanOrEqual(1e-5 * Math.max(1, scale));
    },
    scaled(240_000),
  );
});
