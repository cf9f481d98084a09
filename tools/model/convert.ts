import { mkdir, writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { toHfConfig } from '../../shared/model/hf-config.js';
import { buildSafetensorsHeader, encodeTensor } from '../../shared/model/safetensors-writer.js';
import type { ModelConfig, ModelSource } from '../../shared/model/types.js';
import { llama2cTokenizerToHf } from '../../shared/tokenizer/convert-llama2c.js';
import type { Llama2cTokenizerData } from '../../shared/tokenizer/llama2c-tokenizer.js';

/**
 * Permutes the rows of a q/k projection from llama2.c's interleaved RoPE layout (pairs 2i, 2i+1)
 * to Hugging Face's rotate-half layout (pairs i, i + headDim/2), head by head — the inverse of the
 * `permute` in transformers' convert_llama_weights_to_hf.py.
 */
export function interleavedToHalf(
  w: Float32Array,
  heads: number,
  headDim: number,
  cols: number,
): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      const base = h * headDim;
      out.set(w.subarray((base + 2 * i) * cols, (base + 2 * i + 1) * cols), (base + i) * cols);
      out.set(w.subarray((base + 2 * i + 1) * cols, (base + 2 * i + 2) * cols), (base + half + i) * cols);
    }
  }
  return out;
}

/**
 * Converts a llama2.c model (any {@link ModelSource} with interleaved RoPE) to a Hugging Face
 * directory: config.json, model.safetensors (f32, q/k permuted to rotate-half), tokenizer.json and
 * tokenizer_config.json. Tensors are streamed to disk one at a time.
 */
export async function convertToHf(
  source: ModelSource,
  tokenizer: Llama2cTokenizerData | undefined,
  outDir: string,
): Promise<{ files: string[]; config: ModelConfig }> {
  await mkdir(outDir, { recursive: true });
  const c = source.config;
  const config: ModelConfig = { ...c, ropeLayout: 'half' };
  const names = [...source.tensors.keys()];
  const specs = names.map((name) => ({
    name,
    dtype: 'F32' as const,
    shape: source.tensors.get(name)!.shape,
  }));
  const { header } = buildSafetensorsHeader(specs, { format: 'pt', converted_from: 'llama2.c' });
  const fh = await open(join(outDir, 'model.safetensors'), 'w');
  try {
    await fh.write(header);
    for (const spec of specs) {
      let data = await source.readTensor(spec.name);
      if (c.ropeLayout === 'interleaved') {
        if (spec.name.endsWith('q_proj.weight'))
          data = interleavedToHalf(data, c.numHeads, c.headDim, c.hiddenSize);
        if (spec.name.endsWith('k_proj.weight'))
          data = interleavedToHalf(data, c.numKvHeads, c.headDim, c.hiddenSize);
      }
      await fh.write(encodeTensor({ ...spec, data }));
    }
  } finally {
    await fh.close();
  }
  await writeFile(join(outDir, 'config.json'), JSON.stringify(toHfConfig(config), null, 2) + '\n');
  const files = ['config.json', 'model.safetensors'];
  if (tokenizer) {
    const hf = llama2cTokenizerToHf(tokenizer);
    await writeFile(join(outDir, 'tokenizer.json'), JSON.stringify(hf.tokenizerJson));
    await writeFile(
      join(outDir, 'tokenizer_config.json'),
      JSON.stringify(hf.tokenizerConfig, null, 2) + '\n',
    );
    files.push('tokenizer.json', 'tokenizer_config.json');
  }
  return { files, config };
}
