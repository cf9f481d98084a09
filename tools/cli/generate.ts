/**
 * `npm run generate -- --model <dir|url|file.bin> [--tokenizer <tok.bin>] --prompt "..." --steps N
 * --temperature 0 [--topp 0.9] [--topk 0] [--seed N] [--split 2,4] [--format f32|q8|q4] [--json]`
 *
 * Prints exactly what llama2.c's `run` prints for the same settings (steps = total positions,
 * BOS and prompt included). `--split` chains separate shard runners at those unit boundaries
 * (0 = embedding, 1..L = blocks, L+1 = head); `--json` prints tokens, ranges and timings instead.
 */
import { parseArgs } from 'node:util';
import { WEIGHT_FORMATS, type WeightFormat } from '../../shared/graph/compile-shard.js';
import { isLlama2cLocation } from '../../shared/model/open-model.js';
import { generate } from '../../shared/runtime/generate.js';
import { createSampler } from '../../shared/runtime/sampler.js';
import { loadLocalPipeline } from '../model/local-pipeline.js';
import { nodeOrt } from '../../signaling-server/src/model/open-node-model.js';
import { intFlag, numFlag, runCli, usage } from './cli-util.js';

runCli(async () => {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'public/models/stories260K/stories260K.bin' },
      tokenizer: { type: 'string' },
      prompt: { type: 'string', default: '' },
      steps: { type: 'string', default: '256' },
      temperature: { type: 'string', default: '1.0' },
      topp: { type: 'string', default: '0.9' },
      topk: { type: 'string', default: '0' },
      seed: { type: 'string' },
      split: { type: 'string', default: '' },
      format: { type: 'string', default: 'f32' },
      threads: { type: 'string', default: '1' },
      chat: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  if (!WEIGHT_FORMATS.includes(values.format as WeightFormat))
    throw usage(`--format must be one of ${WEIGHT_FORMATS.join(', ')}.`);
  const splits = values.split
    ? values.split.split(',').map((s) => {
        const n = Number(s.trim());
        if (!Number.isInteger(n))
          throw usage(`--split takes comma-separated unit boundaries, got "${values.split}".`);
        return n;
      })
    : [];
  const steps = intFlag('steps', values.steps, 256, 1);
  nodeOrt(intFlag('threads', values.threads, 1, 1));
  const local = await loadLocalPipeline({
    model: { url: values.model, tokenizerUrl: values.tokenizer },
    splits,
    weightFormat: values.format as WeightFormat,
    contextLength: steps,
  });
  try {
    let prompt: string | number[] = values.prompt;
    if (values.chat && local.tokenizer.applyChatTemplate) {
      prompt = local.tokenizer.encode(
        local.tokenizer.applyChatTemplate([{ role: 'user', content: prompt }], { addGenerationPrompt: true }),
      );
    }
    const result = await generate({
      pipeline: local.pipeline,
      tokenizer: local.tokenizer,
      prompt,
      steps,
      sampler: createSampler({
        temperature: numFlag('temperature', values.temperature, 1),
        topP: numFlag('topp', values.topp, 0.9),
        topK: intFlag('topk', values.topk, 0),
        seed: values.seed !== undefined ? intFlag('seed', values.seed, 0) : Date.now(),
      }),
      // llama2.c checkpoints end a story with BOS only; chat models stop on their EOS tokens.
      stopTokens: isLlama2cLocation(values.model) ? [] : undefined,
      onToken: values.json ? undefined : (e) => process.stdout.write(e.piece),
    });
    if (values.json) {
      process.stdout.write(
        JSON.stringify(
          {
            text: result.text,
            tokens: result.tokens,
            promptTokens: result.promptTokens,
            stop: result.stop,
            stages: local.loads.map((l, i) => ({
              range: local.ranges[i],
              backend: l.backend,
              weightBytes: l.weightBytes,
              loadMs: Math.round(l.loadMs),
            })),
            timings: result.timings,
          },
          null,
          2,
        ) + '\n',
      );
    } else {
      process.stdout.write('\n');
      const t = result.timings;
      process.stderr.write(
        `achieved tok/s: decode ${t.decodeTokPerS.toFixed(1)}, prefill ${t.prefillTokPerS.toFixed(1)}\n`,
      );
    }
  } finally {
    await local.dispose();
  }
});
