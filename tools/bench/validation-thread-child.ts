/**
 * Child process of the validation benchmark's thread-count calibration: onnxruntime-web reads
 * `env.wasm.numThreads` once per process, so each thread count runs in its own child. Given
 * prompts, it generates greedily through the split stages and answers each step's per-stage
 * sketches (and tokens) over IPC, then exits.
 */
import { readFileSync } from 'node:fs';
import { splitUnits } from '../../shared/graph/units.js';
import { openLlama2cModel } from '../../shared/model/llama2c.js';
import { createMemoryFileOpener } from '../../shared/model/memory-source.js';
import { createOrtShardRunner } from '../../shared/runtime/ort-shard-runner.js';
import { sketchOf, type Sketch } from '../../shared/validation/sketch.js';
import { argmax } from '../../shared/validation/stage.js';
import { nodeOrt } from '../../signaling-server/src/model/open-node-model.js';

/** What the parent asks. */
export interface ThreadChildRequest {
  modelPath: string;
  splits: number[];
  threads: number;
  prompts: number[][];
  steps: number;
}

/** Per prompt: the generated tokens and, per step, each stage's output sketch. */
export interface ThreadChildReply {
  ok: boolean;
  message?: string;
  runs?: { tokens: number[]; sketches: Sketch[][] }[];
}

async function run(req: ThreadChildRequest): Promise<ThreadChildReply> {
  const ort = nodeOrt(req.threads);
  const opener = createMemoryFileOpener({ 'model.bin': new Uint8Array(readFileSync(req.modelPath)) }, 'mem:');
  const make = () =>
    createOrtShardRunner({
      ort,
      openModel: () => openLlama2cModel(opener, 'model.bin'),
      probeWebGpu: async () => ({ ok: false, reason: 'node' }),
    });
  const probe = make();
  const config = (
    await probe.load({
      model: { url: 'mem:model.bin' },
      range: [0, 1],
      weightFormat: 'f32',
      contextLength: req.steps,
      logits: 'last',
      backend: 'wasm',
    })
  ).config;
  await probe.dispose();
  const ranges = splitUnits(config, req.splits);
  const runners = [];
  for (const range of ranges) {
    const r = make();
    await r.load({
      model: { url: 'mem:model.bin' },
      range,
      weightFormat: 'f32',
      contextLength: req.steps,
      logits: 'last',
      backend: 'wasm',
    });
    runners.push(r);
  }
  const runs = [];
  for (const prompt of req.prompts) {
    const ids = await Promise.all(runners.map((r) => r.openSession()));
    const tokens = [...prompt];
    const sketches: Sketch[][] = [];
    let feed = prompt;
    while (tokens.length < req.steps) {
      const position = tokens.length - feed.length;
      let hidden: Float32Array | undefined;
      const row: Sketch[] = [];
      let next = -1;
      for (let i = 0; i < runners.length; i++) {
        const out = await runners[i]!.step(
          ids[i]!,
          i === 0 ? { tokens: Int32Array.from(feed), position } : { hidden: hidden!, position },
        );
        hidden = out.data;
        const rowLen = out.kind === 'logits' ? config.vocabSize : config.hiddenSize;
        row.push(
          sketchOf(out.kind === 'logits' ? out.data.subarray(out.data.length - rowLen) : out.data, rowLen),
        );
        if (out.kind === 'logits') next = argmax(out.data.subarray(out.data.length - rowLen));
      }
      sketches.push(row);
      tokens.push(next);
      feed = [next];
    }
    await Promise.all(runners.map((r, i) => r.closeSession(ids[i]!)));
    runs.push({ tokens, sketches });
  }
  for (const r of runners) await r.dispose();
  return { ok: true, runs };
}

process.once('message', (req: ThreadChildRequest) => {
  run(req).then(
    (reply) => process.send?.(reply, () => process.exit(0)),
    (e: unknown) =>
      process.send?.({ ok: false, message: e instanceof Error ? e.message : String(e) }, () =>
        process.exit(1),
      ),
  );
});
process.on('disconnect', () => process.exit(0));
