import { RingworkError } from '../errors.js';
import type { FileOpener, ModelConfig, ModelSource, TensorInfo } from './types.js';

/** Magic of llama2.c's versioned export format ("ak42"). */
const MAGIC_AK42 = 0x616b3432;
const LEGACY_HEADER_BYTES = 7 * 4;
const V1_HEADER_BYTES = 256;

/** The seven hyper-parameters of a llama2.c checkpoint header. */
export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** Absolute vocabulary size. */
  vocabSize: number;
  seqLen: number;
  /** The classifier shares the token-embedding weights. */
  sharedClassifier: boolean;
  /** 0 = legacy headerless-magic format, 1 = "ak42" version 1 (fp32). */
  version: 0 | 1;
}

function bad(file: string, code: 'MODEL_BAD_MAGIC' | 'MODEL_BAD_HEADER', what: string, details = {}) {
  return new RingworkError(
    code,
    `${file}: ${what}. This is not a llama2.c checkpoint (export it with llama2.c's export.py, legacy or version 1 fp32).`,
    { details: { file, ...details } },
  );
}

/** Parses and sanity-checks the header bytes (at least 256 bytes, or the whole file if shorter). */
export function parseLlama2cHeader(bytes: Uint8Array, file: string): Llama2cHeader {
  if (bytes.byteLength < LEGACY_HEADER_BYTES) {
    throw new RingworkError(
      'MODEL_TRUNCATED',
      `${file}: only ${bytes.byteLength} bytes, shorter than a llama2.c header (28 bytes). The file is truncated; download it again.`,
      { details: { file, size: bytes.byteLength } },
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const first = view.getUint32(0, true);
  let version: 0 | 1 = 0;
  let base = 0;
  if (first === MAGIC_AK42) {
    const v = view.getInt32(4, true);
    if (v !== 1) {
      throw new RingworkError(
        'MODEL_UNSUPPORTED_ARCHITECTURE',
        `${file}: llama2.c export version ${v} is not supported (only legacy and version 1 fp32). Re-export with --version 1 or convert to safetensors.`,
        { details: { file, version: v } },
      );
    }
    version = 1;
    base = 8;
    if (bytes.byteLength < V1_HEADER_BYTES) {
      throw new RingworkError(
        'MODEL_TRUNCATED',
        `${file}: only ${bytes.byteLength} bytes, shorter than a llama2.c version 1 header (256 bytes). The file is truncated; download it again.`,
        { details: { file, size: bytes.byteLength } },
      );
    }
  }
  const ints = Array.from({ length: 7 }, (_, i) => view.getInt32(base + i * 4, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabRaw, seqLen] = ints as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const plausible =
    dim > 0 &&
    dim <= 65536 &&
    hiddenDim > 0 &&
    hiddenDim <= 1 << 20 &&
    nLayers > 0 &&
    nLayers <= 1024 &&
    nHeads > 0 &&
    nHeads <= dim &&
    nKvHeads > 0 &&
    nKvHeads <= nHeads &&
    vocabRaw !== 0 &&
    Math.abs(vocabRaw) <= 1 << 22 &&
    seqLen > 0 &&
    seqLen <= 1 << 22;
  if (!plausible) {
    throw bad(
      file,
      'MODEL_BAD_MAGIC',
      `header values ${JSON.stringify(ints)} are not a plausible model shape`,
      {
        header: ints,
      },
    );
  }
  if (dim % nHeads !== 0 || nHeads % nKvHeads !== 0) {
    throw bad(
      file,
      'MODEL_BAD_HEADER',
      `dim ${dim} must divide by n_heads ${nHeads}, which must divide by n_kv_heads ${nKvHeads}`,
    );
  }
  let sharedClassifier = vocabRaw > 0;
  if (version === 1) sharedClassifier = bytes.byteLength > base + 28 && bytes[base + 28] === 1;
  return {
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    vocabSize: Math.abs(vocabRaw),
    seqLen,
    sharedClassifier,
    version,
  };
}

/** The normalised config of a llama2.c checkpoint (RoPE pairs stay interleaved, as trained). */
export function llama2cConfig(h: Llama2cHeader): ModelConfig {
  const headDim = h.dim / h.nHeads;
  return {
    architecture: 'llama',
    hiddenSize: h.dim,
    intermediateSize: h.hiddenDim,
    numLayers: h.nLayers,
    numHeads: h.nHeads,
    numKvHeads: h.nKvHeads,
    headDim,
    vocabSize: h.vocabSize,
    maxPositions: h.seqLen,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeLayout: 'interleaved',
    tiedEmbeddings: h.sharedClassifier,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
  };
}

/** Byte layout of every tensor in a llama2.c checkpoint, under canonical Hugging Face names. */
export function llama2cTensorIndex(
  h: Llama2cHeader,
  file: string,
): { tensors: Map<string, TensorInfo>; end: number } {
  const c = llama2cConfig(h);
  const D = c.hiddenSize;
  const F = c.intermediateSize;
  const L = c.numLayers;
  const qD = c.numHeads * c.headDim;
  const kvD = c.numKvHeads * c.headDim;
  const V = c.vocabSize;
  const tensors = new Map<string, TensorInfo>();
  let offset = h.version === 1 ? V1_HEADER_BYTES : LEGACY_HEADER_BYTES;
  const add = (name: string, shape: number[]) => {
    const byteLength = shape.reduce((a, b) => a * b, 1) * 4;
    tensors.set(name, { name, dtype: 'F32', shape, file, offset, byteLength });
    offset += byteLength;
  };
  const perLayer = (suffix: string, shape: number[]) => {
    for (let l = 0; l < L; l++) add(`model.layers.${l}.${suffix}`, shape);
  };
  if (h.version === 0) {
    add('model.embed_tokens.weight', [V, D]);
    perLayer('input_layernorm.weight', [D]);
    perLayer('self_attn.q_proj.weight', [qD, D]);
    perLayer('self_attn.k_proj.weight', [kvD, D]);
    perLayer('self_attn.v_proj.weight', [kvD, D]);
    perLayer('self_attn.o_proj.weight', [D, qD]);
    perLayer('post_attention_layernorm.weight', [D]);
    perLayer('mlp.gate_proj.weight', [F, D]);
    perLayer('mlp.down_proj.weight', [D, F]);
    perLayer('mlp.up_proj.weight', [F, D]);
    add('model.norm.weight', [D]);
    // Unused precomputed RoPE tables (freq_cis_real, freq_cis_imag).
    offset += h.seqLen * (c.headDim / 2) * 4 * 2;
    if (!h.sharedClassifier) add('lm_head.weight', [V, D]);
  } else {
    // export.py version1_export order: norms first, then embeddings, then the projections.
    perLayer('input_layernorm.weight', [D]);
    perLayer('post_attention_layernorm.weight', [D]);
    add('model.norm.weight', [D]);
    add('model.embed_tokens.weight', [V, D]);
    perLayer('self_attn.q_proj.weight', [qD, D]);
    perLayer('self_attn.k_proj.weight', [kvD, D]);
    perLayer('self_attn.v_proj.weight', [kvD, D]);
    perLayer('self_attn.o_proj.weight', [D, qD]);
    perLayer('mlp.gate_proj.weight', [F, D]);
    perLayer('mlp.down_proj.weight', [D, F]);
    perLayer('mlp.up_proj.weight', [F, D]);
    if (!h.sharedClassifier) add('lm_head.weight', [V, D]);
  }
  return { tensors, end: offset };
}

/**
 * Opens a llama2.c checkpoint through a {@link FileOpener}, reading only the header; tensors are
 * read on demand by byte range. Tensors keep llama2.c's interleaved RoPE row order
 * (`config.ropeLayout === 'interleaved'`); the graph compiler handles either layout.
 */
export async function openLlama2cModel(
  opener: FileOpener,
  file: string,
  opts: { signal?: AbortSignal } = {},
): Promise<ModelSource> {
  const src = opener.open(file);
  const size = await src.size(opts.signal);
  const head = await src.read(0, Math.min(size, V1_HEADER_BYTES), opts.signal);
  const header = parseLlama2cHeader(head, src.name);
  const config = llama2cConfig(header);
  const { tensors, end } = llama2cTensorIndex(header, file);
  if (size < end) {
    throw new RingworkError(
      'MODEL_TRUNCATED',
      `${src.name}: the header describes ${end} bytes of weights but the file has ${size}. The file is truncated; download it again.`,
      { details: { file: src.name, expected: end, size } },
    );
  }
  return {
    format: 'llama2c',
    config,
    tensors,
    get bytesRead() {
      return opener.bytesRead;
    },
    async readTensor(name: string, signal?: AbortSignal): Promise<Float32Array> {
      const info = tensors.get(name);
      if (!info) {
        throw new RingworkError(
          'MODEL_MISSING_TENSOR',
          `${src.name}: no tensor "${name}" in this llama2.c checkpoint. Check the layer range against the model's ${config.numLayers} layers.`,
          { details: { file: src.name, tensor: name } },
        );
      }
      const bytes = await src.read(info.offset, info.byteLength, signal);
      // Copy into an aligned buffer: the byte offset in the file need not be 4-aligned in memory.
      const out = new Float32Array(info.byteLength / 4);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    },
  };
}
