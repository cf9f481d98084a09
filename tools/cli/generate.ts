/**
 * `npm run generate -- --model <dir|url|file.bin> [--tokenizer <tok.bin>] --prompt "..." --steps N
 * --temperature 0 [--topp 0.9] [--topk 0] [--seed N] [--split 2,4] [--format f32|q8|q4]
 * [--draft q4 [--draft-k 4] [--draft-adaptive]] [--json]`
 *
 * Prints exactly what llama2.c's `run` prints for the same settings (steps = total positions,
 * BOS and prompt included). `--split` chains separate shard runners at those unit boundaries
 * (0 = embedding, 1..L = blocks, L+1 = head); `--json` prints tokens, ranges and timings instead.
 * `--draft q4` decodes speculatively (greedy only, `--temperature 0`): a 4-bit copy of the same
 * model, quantised at load, drafts up to `--draft-k` tokens that the split target verifies in one
 * pass (`--draft-adaptive`: k moves within 1..k with the acceptance); the text is the same as
 * without it, and `--json` adds `accepted`, `laps`, `tokensPerLap`.
 */
import { parseArgs } from 'node:util';
import { RingworkError } from '../../shared/errors.js';
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
      draft: { type: 'string' },
      'draft-k': { type: 'string', default: '4' },
      'draft-adaptive': { type: 'boolean', default: false },
    },
  });
  if (values.draft !== undefined && !WEIGHT_FORMATS.includes(values.draft as WeightFormat))
    throw usage(`--draft takes the draft's weight format (q4; or q8, f32), got "${values.draft}".`);
  const draftK = intFlag('draft-k', values['draft-k'], 4, 1);
  const temperature = numFlag('temperature', values.temperature, 1);
  if (values.draft !== undefined && temperature !== 0) {
    throw new RingworkError(
      'SPECULATIVE_UNSUPPORTED',
      '--draft is greedy only: pass --temperature 0 (sampling with a draft would change the output distribution).',
      { details: { temperature } },
    );
  }
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
    // A drafted run verifies several positions per pass: its head answers the rows it is asked for.
    logits: values.draft !== undefined ? 'rows' : 'last',
  });
  // The draft: the same model again, quantised at load (group-wise, blocks of 32), in one runner.
  const draft =
    values.draft !== undefined
      ? await loadLocalPipeline({
          model: { url: values.model, tokenizerUrl: values.tokenizer },
          weightFormat: values.draft as WeightFormat,
          contextLength: steps,
        }).catch(async (e: unknown) => {
          await local.dispose();
          throw e;
        })
      : undefined;
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
        temperature,
        topP: numFlag('topp', values.topp, 0.9),
        topK: intFlag('topk', values.topk, 0),
        seed: values.seed !== undefined ? intFlag('seed', values.seed, 0) : Date.now(),
      }),
      // llama2.c checkpoints end a story with BOS only; chat models stop on their EOS tokens.
      stopTokens: isLlama2cLocation(values.model) ? [] : undefined,
      onToken: values.json ? undefined : (e) => process.stdout.write(e.piece),
      ...(draft
        ? { draft: { pipeline: draft.pipeline, k: draftK, adaptive: values['draft-adaptive'] } }
        : {}),
    });
    const spec = result.speculative;
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
            ...(spec
              ? {
                  draft: { format: values.draft, k: draftK, weightBytes: draft!.loads[0]!.weightBytes },
                  accepted: spec.accepted,
                  drafted: spec.drafted,
                  laps: spec.laps,
                  tokensPerLap: spec.tokensPerLap,
                  acceptanceRate: spec.acceptanceRate,
                  draftMs: spec.draftMs,
                }
              : {}),
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
      if (spec)
        process.stderr.write(
          `draft ${values.draft} k=${draftK}: ${spec.accepted}/${spec.drafted} drafted tokens accepted ` +
            `(${(100 * spec.acceptanceRate).toFixed(1)} %), ${spec.laps} passes, ${spec.tokensPerLap.toFixed(2)} tokens per pass\n`,
        );
    }
  } finally {
    await local.dispose();
    await draft?.dispose();
  }
});
