/**
 * Synthetic models: seeded random weights with the real shapes of known checkpoints, written as a
 * Hugging Face directory (config.json, safetensors, tokenizer.json). They let tests, benchmarks
 * and the planner exercise real-sized shards without downloading gigabytes, and every value is
 * reproducible from (preset, seed, tensor name).
 *
 * Files are streamed to disk in bounded chunks: even TinyLlama at fp32 (4.4 GB) is written with a
 * few MB of memory.
 */
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { RingworkError, throwIfAborted } from '../../shared/errors.js';
import { encodeFromFloat32, roundToDType } from '../../shared/model/dtype.js';
import { toHfConfig } from '../../shared/model/hf-config.js';
import { SAFETENSORS_INDEX_FILE } from '../../shared/model/safetensors.js';
import { expectedTensorShape, requiredTensorNames } from '../../shared/model/tensor-names.js';
import {
  buildSafetensorsHeader,
  planSafetensorsShards,
  tensorByteLength,
  type SafetensorsTensorSpec,
} from '../../shared/model/safetensors-writer.js';
import type { ByteProgress, ModelConfig, StoredDType } from '../../shared/model/types.js';
import { createSynthTokenizerJson } from '../../shared/tokenizer/synth-tokenizer.js';
import { mulberry32 } from '../../shared/util/prng.js';

/** Names of the built-in presets. */
export type SynthPresetName = 'stories15M' | 'smollm2-135m' | 'smollm2-360m' | 'tinyllama-1.1b' | 'test-tiny';

const base = {
  ropeLayout: 'half',
  attentionBias: false,
  rmsNormEps: 1e-5,
  bosTokenId: 1,
} as const;

/** Real shapes of the models Ringwork targets (weights are random). */
export const SYNTH_PRESETS: Readonly<Record<SynthPresetName, ModelConfig>> = {
  stories15M: {
    ...base,
    eosTokenIds: [2],
    architecture: 'llama',
    hiddenSize: 288,
    intermediateSize: 768,
    numLayers: 6,
    numHeads: 6,
    numKvHeads: 6,
    headDim: 48,
    vocabSize: 32000,
    maxPositions: 256,
    ropeTheta: 10000,
    tiedEmbeddings: true,
  },
  'smollm2-135m': {
    ...base,
    eosTokenIds: [2],
    architecture: 'smollm',
    hiddenSize: 576,
    intermediateSize: 1536,
    numLayers: 30,
    numHeads: 9,
    numKvHeads: 3,
    headDim: 64,
    vocabSize: 49152,
    maxPositions: 8192,
    ropeTheta: 100000,
    tiedEmbeddings: true,
  },
  'smollm2-360m': {
    ...base,
    eosTokenIds: [2],
    architecture: 'smollm',
    hiddenSize: 960,
    intermediateSize: 2560,
    numLayers: 32,
    numHeads: 15,
    numKvHeads: 5,
    headDim: 64,
    vocabSize: 49152,
    maxPositions: 8192,
    ropeTheta: 100000,
    tiedEmbeddings: true,
  },
  'tinyllama-1.1b': {
    ...base,
    eosTokenIds: [2],
    architecture: 'llama',
    hiddenSize: 2048,
    intermediateSize: 5632,
    numLayers: 22,
    numHeads: 32,
    numKvHeads: 4,
    headDim: 64,
    vocabSize: 32000,
    maxPositions: 2048,
    ropeTheta: 10000,
    tiedEmbeddings: false,
  },
  // Small enough for unit tests; untied so the lm_head path is exercised too.
  'test-tiny': {
    ...base,
    eosTokenIds: [2],
    architecture: 'llama',
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    vocabSize: 300,
    maxPositions: 256,
    ropeTheta: 10000,
    tiedEmbeddings: false,
  },
};

/** True when `name` is a built-in preset. */
export function isSynthPresetName(name: string): name is SynthPresetName {
  return Object.hasOwn(SYNTH_PRESETS, name);
}

/** Element type names as the CLI spells them. */
export type SynthDType = 'f32' | 'f16' | 'bf16';

const STORED: Record<SynthDType, StoredDType> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
const TORCH: Record<SynthDType, 'float32' | 'float16' | 'bfloat16'> = {
  f32: 'float32',
  f16: 'float16',
  bf16: 'bfloat16',
};

/** FNV-1a of the tensor name, so each tensor's stream is independent of write order and sharding. */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** How a tensor is initialised: constant 1 (norms) or zero-mean noise with this std. */
function initStd(config: ModelConfig, name: string): number | 'ones' {
  if (name.endsWith('layernorm.weight') || name === 'model.norm.weight') return 'ones';
  // GPT-2-style: projections that write into the residual stream are scaled by 1/sqrt(2L) so its
  // magnitude stays bounded however many blocks the model has.
  if (name.endsWith('o_proj.weight') || name.endsWith('down_proj.weight'))
    return 0.02 / Math.sqrt(2 * config.numLayers);
  return 0.02;
}

/**
 * A deterministic generator of one tensor's values, `count` at a time. Noise is triangular
 * (sum of two 16-bit uniforms): normal-ish, bounded, and one PRNG call per value.
 */
function tensorStream(config: ModelConfig, name: string, seed: number): (out: Float32Array) => void {
  const std = initStd(config, name);
  if (std === 'ones') return (out) => out.fill(1);
  const next = mulberry32((hashName(name) ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0);
  // (u1 + u2 - 1) with u ~ U(0,1) has variance 1/6.
  const scale = (std * Math.sqrt(6)) / 65536;
  return (out) => {
    for (let i = 0; i < out.length; i++) {
      const r = next();
      out[i] = ((r & 0xffff) + (r >>> 16) - 65535) * scale;
    }
  };
}

/** The tensors of a synthetic model, in unit order (embedding, blocks, head), as F32/F16/BF16. */
export function synthTensorSpecs(config: ModelConfig, dtype: StoredDType = 'F32'): SafetensorsTensorSpec[] {
  return requiredTensorNames(config).map((name) => ({
    name,
    dtype,
    shape: expectedTensorShape(config, name)!,
  }));
}

/**
 * The float32 values of one synthetic tensor (before rounding to the stored dtype), exactly as
 * {@link synthesizeModel} writes them. Meant for tests and small models.
 */
export function synthTensor(
  config: ModelConfig,
  name: string,
  seed = 1,
  dtype: StoredDType = 'F32',
): Float32Array {
  const shape = expectedTensorShape(config, name);
  if (!shape) {
    throw new RingworkError('INVALID_ARGUMENT', `Synthetic models have no tensor "${name}".`, {
      details: { tensor: name },
    });
  }
  const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
  tensorStream(config, name, seed)(out);
  return roundToDType(out, dtype);
}

/** Options of {@link synthesizeModel}. */
export interface SynthesizeOptions {
  /** A preset name, or a full config for custom shapes. */
  preset: SynthPresetName | ModelConfig;
  /** Directory to write into (created if needed). */
  outDir: string;
  /** PRNG seed (default 1). */
  seed?: number;
  /** Stored element type (default f32). */
  dtype?: SynthDType;
  /** Split weights into files of at most this many data bytes, with an index (default: one file). */
  maxShardBytes?: number;
  signal?: AbortSignal;
  /** Called after each chunk written to a weight file. */
  onProgress?: (p: ByteProgress & { file: string }) => void;
}

/** What {@link synthesizeModel} wrote. */
export interface SynthesizeResult {
  config: ModelConfig;
  outDir: string;
  /** All files written, relative to `outDir`. */
  files: string[];
  /** Weight files only. */
  weightFiles: string[];
  /** Bytes of all weight files. */
  weightBytes: number;
}

/** Values generated and written per step: bounds memory whatever the tensor size. */
const CHUNK_ELEMENTS = 1 << 20;

/**
 * Writes a synthetic model directory: `config.json`, `model.safetensors` (or shards plus
 * `model.safetensors.index.json`), `tokenizer.json` and `tokenizer_config.json`. Deterministic:
 * the same options give byte-identical files, and a tensor's values do not depend on sharding.
 */
export async function synthesizeModel(opts: SynthesizeOptions): Promise<SynthesizeResult> {
  const { outDir, signal } = opts;
  const seed = opts.seed ?? 1;
  const dtype = opts.dtype ?? 'f32';
  if (!(dtype in STORED)) {
    throw new RingworkError('INVALID_ARGUMENT', `Unknown dtype "${dtype}": use f32, f16 or bf16.`, {
      details: { dtype },
    });
  }
  if (!Number.isInteger(seed)) {
    throw new RingworkError('INVALID_ARGUMENT', `The seed must be an integer, got ${seed}.`, {
      details: { seed },
    });
  }
  let config: ModelConfig;
  if (typeof opts.preset === 'string') {
    if (!isSynthPresetName(opts.preset)) {
      throw new RingworkError(
        'INVALID_ARGUMENT',
        `Unknown preset "${opts.preset}". Presets: ${Object.keys(SYNTH_PRESETS).join(', ')}.`,
        { details: { preset: opts.preset } },
      );
    }
    config = SYNTH_PRESETS[opts.preset];
  } else {
    config = opts.preset;
  }
  const stored = STORED[dtype];
  const specs = synthTensorSpecs(config, stored);
  const plan =
    opts.maxShardBytes === undefined
      ? planSafetensorsShards(specs, Number.POSITIVE_INFINITY)
      : planSafetensorsShards(specs, opts.maxShardBytes);

  await mkdir(outDir, { recursive: true });
  const files: string[] = [];
  const writeJson = async (file: string, value: unknown) => {
    await writeFile(path.join(outDir, file), `${JSON.stringify(value, null, 2)}\n`);
    files.push(file);
  };
  await writeJson('config.json', toHfConfig(config, { torchDtype: TORCH[dtype] }));
  const { tokenizerJson, tokenizerConfig } = createSynthTokenizerJson(config.vocabSize);
  await writeJson('tokenizer.json', tokenizerJson);
  await writeJson('tokenizer_config.json', tokenizerConfig);
  // A stale index from an earlier sharded run would make loaders ignore a new single file.
  if (!plan.index) await rm(path.join(outDir, SAFETENSORS_INDEX_FILE), { force: true });

  const weightFiles: string[] = [];
  let weightBytes = 0;
  const metadata = { format: 'pt', ringwork_synth: `seed=${seed}` };
  for (const { file, tensors } of plan.files) {
    weightBytes += await writeWeightFile(
      path.join(outDir, file),
      file,
      tensors,
      config,
      seed,
      metadata,
      opts,
    );
    weightFiles.push(file);
    files.push(file);
  }
  if (plan.index) await writeJson(SAFETENSORS_INDEX_FILE, plan.index);
  throwIfAborted(signal, 'Synthesizing the model');
  return { config, outDir, files, weightFiles, weightBytes };
}

async function writeWeightFile(
  full: string,
  file: string,
  tensors: SafetensorsTensorSpec[],
  config: ModelConfig,
  seed: number,
  metadata: Record<string, string>,
  opts: SynthesizeOptions,
): Promise<number> {
  const { header, fileBytes } = buildSafetensorsHeader(tensors, metadata);
  // Written under a temporary name and renamed at the end: an interrupted run never leaves a
  // file that looks complete.
  const tmp = `${full}.partial`;
  const handle = await open(tmp, 'w');
  let ok = false;
  try {
    let written = 0;
    const put = async (bytes: Uint8Array) => {
      let done = 0;
      while (done < bytes.byteLength) {
        const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done);
        done += bytesWritten;
      }
      written += bytes.byteLength;
      opts.onProgress?.({ file, loadedBytes: written, totalBytes: fileBytes });
    };
    await put(header);
    const scratch = new Float32Array(CHUNK_ELEMENTS);
    for (const spec of tensors) {
      const fill = tensorStream(config, spec.name, seed);
      let left = tensorByteLength(spec) / (spec.dtype === 'F32' ? 4 : 2);
      while (left > 0) {
        throwIfAborted(opts.signal, 'Synthesizing the model');
        const chunk = left >= CHUNK_ELEMENTS ? scratch : scratch.subarray(0, left);
        fill(chunk);
        await put(encodeFromFloat32(chunk, spec.dtype));
        left -= chunk.length;
      }
    }
    ok = true;
  } finally {
    await handle.close();
    if (!ok) await rm(tmp, { force: true });
  }
  await rename(tmp, full);
  return fileBytes;
}
