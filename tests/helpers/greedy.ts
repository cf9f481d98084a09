import { generate } from '../../shared/runtime/generate';
import { createSampler } from '../../shared/runtime/sampler';
import { loadLocalPipeline } from '../../tools/model/local-pipeline';

/** Greedy generation through a local chain of in-process runners split at `splits`, with every logits row. */
export async function greedy(model: string, splits: number[], steps: number, prompt: string) {
  const local = await loadLocalPipeline({
    model: { url: model },
    splits,
    contextLength: steps,
    logits: 'last',
  });
  const logits: Float32Array[] = [];
  try {
    const r = await generate({
      pipeline: local.pipeline,
      tokenizer: local.tokenizer,
      prompt,
      steps,
      sampler: createSampler({ temperature: 0 }),
      stopTokens: [],
      onLogits: (_pos, l) => logits.push(l.slice()),
    });
    return { ...r, logits };
  } finally {
    await local.dispose();
  }
}
