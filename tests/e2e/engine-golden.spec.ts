import { readFileSync } from 'node:fs';
import type { Page } from '@playwright/test';
import { test, expect } from './server-fixture';
import { goldenHidden, loadGolden, repoPath } from '../helpers/golden';
import { TIMEOUTS } from '../helpers/timeouts';
import { DEFAULT_TOLERANCE } from '../../shared/validation/checks';
import { sketchDistance, sketchOf } from '../../shared/validation/sketch';

const golden = loadGolden();
const prompt = readFileSync(repoPath('tests/fixtures/golden/stories260K_p1.prompt.txt'), 'utf8').trim();

// Unit boundaries: 0 = embed, 1..5 = blocks, 6 = head. The whole model; one unit per stage (7
// stages), which checks the hidden state at every boundary in one generation (it used to take one
// 2-way split per boundary, six generations); and a 3-way split whose stages hold several units
// (embedding + block, two blocks, blocks + head).
const SPLITS: number[][] = [[], [1, 2, 3, 4, 5, 6], [2, 4]];

async function checkRun(
  page: Page,
  serverUrl: string,
  splits: number[],
  backend: 'wasm' | 'webgpu',
): Promise<number[][][]> {
  if (!page.url().endsWith('/harness.html')) {
    await page.goto(`${serverUrl}/harness.html`);
    await page.waitForFunction(() => 'ringworkHarness' in window);
  }
  const r = await page.evaluate((run) => window.ringworkHarness.runGolden(run), {
    modelUrl: '/models/stories260K/stories260K.bin',
    prompt,
    steps: 64,
    splits,
    backend,
  });
  expect(
    r.backends.every((b) => b === backend),
    `backends ${r.backends} (${r.reasons.join('; ')})`,
  ).toBe(true);
  expect(r.text, `split ${JSON.stringify(splits)}`).toBe(golden.text);
  expect(r.tokens).toEqual(golden.sequenceTokens);
  // Boundary b carries the residual stream after unit b-1 = golden hidden index b-1.
  splits.forEach((b, stage) => {
    let maxDiff = 0;
    for (let pos = 0; pos < 64; pos++) {
      const want = goldenHidden(golden, pos, b - 1);
      const got = r.boundaries[stage]![pos]!;
      for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i]! - want[i]!));
    }
    expect(maxDiff, `boundary ${b} max |diff|`).toBeLessThan(1e-4);
  });
  return r.boundaries;
}

test.describe('stories260K in Chromium workers on wasm', () => {
  test(`golden text and every boundary's hidden states, whole model and ${SPLITS.length - 1} splits`, async ({
    page,
    server,
  }) => {
    for (const splits of SPLITS) await checkRun(page, server.url, splits, 'wasm');
  });
});

test('a typed error crosses the worker boundary with its code and the URL it names', async ({
  page,
  server,
}) => {
  await page.goto(`${server.url}/harness.html`);
  await page.waitForFunction(() => 'ringworkHarness' in window);
  const missing = await page.evaluate(() => window.ringworkHarness.tryLoad('/models/nope/model.bin'));
  expect(missing).toMatchObject({ ok: false, code: 'FETCH_HTTP_STATUS', isRingworkError: true });
  expect(missing.ok === false && missing.message).toContain('/models/nope/model.bin');
  const notAModel = await page.evaluate(() =>
    window.ringworkHarness.tryLoad('/models/stories260K/tok512.bin'),
  );
  expect(notAModel).toMatchObject({ ok: false, code: 'MODEL_BAD_MAGIC' });
});

// SwiftShader runs WGSL on the CPU at well under 1 GFLOPS: ~25 s per stage for 64 steps. One test
// per split keeps each within its own timeout; this proves the WebGPU path's numbers, not its speed.
// WebGPU runs the same compiled shards as wasm, which checks every split above; here one 3-stage
// ring (embedding | blocks | head) runs every kind of unit, produces the golden text and covers each
// producer of a boundary tensor (the embedding, a block) and each consumer (a block, the head) once:
// one golden check of the WebGPU path keeps the CI budget (each run costs 25-45 s on 2 cores; each
// stage compiles its own WGSL pipelines; the whole model in one stage added nothing this ring lacks).
const WEBGPU_SPLITS: number[][] = [[1, 6]];
test.describe('stories260K in Chromium workers on WebGPU (SwiftShader fallback adapter)', () => {
  for (const splits of WEBGPU_SPLITS) {
    test(`golden text and boundary hidden states, split ${JSON.stringify(splits)}`, async ({
      page,
      server,
    }) => {
      test.setTimeout(TIMEOUTS.browserTest);
      const gpu = await checkRun(page, server.url, splits, 'webgpu');
      // Validation across backends (issue 10): a primary ring on WebGPU and a validator ring on
      // wasm must never be told apart by the production comparator. Each boundary's hidden state at
      // each position, sketched as a ring stage commits it, compared within the default tolerance.
      const cpu = await checkRun(page, server.url, splits, 'wasm');
      let comparisons = 0;
      let maxDistance = 0;
      gpu.forEach((stage, s) =>
        stage.forEach((row, pos) => {
          const d = sketchDistance(
            sketchOf(Float32Array.from(row), row.length),
            sketchOf(Float32Array.from(cpu[s]![pos]!), row.length),
          );
          comparisons++;
          maxDistance = Math.max(maxDistance, d);
        }),
      );
      console.log(`WebGPU vs wasm: ${comparisons} sketch comparisons, max distance ${maxDistance}`);
      expect(comparisons).toBe(splits.length * 64);
      expect(maxDistance).toBeLessThanOrEqual(DEFAULT_TOLERANCE.sketch);
    });
  }
});
