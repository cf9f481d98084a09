/**
 * Browser test harness for the engine: runs a model split into Web Worker shards (the same
 * workers contributors use) and reports text, tokens, boundary hidden states and backends.
 */
import { RingworkError } from '../../../shared/errors';
import { splitUnits } from '../../../shared/graph/units';
import { createHttpFileOpener } from '../../../shared/model/http-source';
import { openModelLocation } from '../../../shared/model/open-model';
import { generate } from '../../../shared/runtime/generate';
import { createPipeline } from '../../../shared/runtime/pipeline';
import { createSampler } from '../../../shared/runtime/sampler';
import type { Backend } from '../../../shared/runtime/shard-runner';
import { createWorkerShardRunner } from '../engine/worker-shard-runner';

export interface HarnessRun {
  modelUrl: string;
  prompt: string;
  steps: number;
  /** Unit boundaries to split at ([] = whole model in one worker). */
  splits: number[];
  backend: 'auto' | Backend;
}

export interface HarnessResult {
  text: string;
  tokens: number[];
  backends: Backend[];
  reasons: string[];
  /** Hidden states handed across each boundary: [stage][position] -> dim floats. */
  boundaries: number[][][];
  decodeTokPerS: number;
}

async function runGolden(run: HarnessRun): Promise<HarnessResult> {
  const model = await openModelLocation({ url: run.modelUrl }, (root) =>
    createHttpFileOpener(new URL(root, location.href).href),
  );
  const tokenizer = await model.loadTokenizer();
  const ranges = splitUnits(model.source.config, run.splits);
  const runners = ranges.map(() => createWorkerShardRunner());
  try {
    const loads = await Promise.all(
      runners.map((r, i) =>
        r.load({
          model: { url: run.modelUrl },
          range: ranges[i]!,
          weightFormat: 'f32',
          contextLength: run.steps,
          logits: 'last',
          backend: run.backend,
        }),
      ),
    );
    const boundaries: number[][][] = ranges.slice(1).map(() => []);
    const D = model.source.config.hiddenSize;
    const result = await generate({
      pipeline: createPipeline(runners),
      tokenizer,
      prompt: run.prompt,
      steps: run.steps,
      sampler: createSampler({ temperature: 0 }),
      stopTokens: [],
      onBoundary: (position, stage, hidden) => {
        for (let r = 0; r < hidden.length / D; r++) {
          boundaries[stage]![position + r] = Array.from(hidden.subarray(r * D, (r + 1) * D));
        }
      },
    });
    document.getElementById('out')!.textContent = result.text;
    return {
      text: result.text,
      tokens: result.tokens,
      backends: loads.map((l) => l.backend),
      reasons: loads.map((l) => l.backendReason),
      boundaries,
      decodeTokPerS: result.timings.decodeTokPerS,
    };
  } finally {
    await Promise.all(runners.map((r) => r.dispose()));
  }
}

/** Loads a shard from `modelUrl` in a worker and reports the typed error, if any, that crossed back. */
async function tryLoad(
  modelUrl: string,
): Promise<{ ok: true } | { ok: false; code: string; message: string; isRingworkError: boolean }> {
  const r = createWorkerShardRunner();
  try {
    await r.load({
      model: { url: modelUrl },
      range: [0, 1],
      weightFormat: 'f32',
      contextLength: 16,
      logits: 'last',
      backend: 'wasm',
    });
    return { ok: true };
  } catch (e) {
    return {
      ok: false,
      code: (e as RingworkError).code,
      message: (e as Error).message,
      isRingworkError: e instanceof RingworkError,
    };
  } finally {
    await r.dispose();
  }
}

declare global {
  interface Window {
    ringworkHarness: { runGolden: typeof runGolden; tryLoad: typeof tryLoad };
  }
}
window.ringworkHarness = { runGolden, tryLoad };
