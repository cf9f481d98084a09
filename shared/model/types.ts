/**
 * The model contract shared by every loader, the graph compiler, the profiler and the planner.
 * A model is described by a normalised {@link ModelConfig} and a set of named tensors that a
 * {@link ModelSource} can read one at a time (so a shard fetches only what it needs).
 */

/** Architectures the graph compiler knows. All are Llama-family decoder-only transformers. */
export type Architecture = 'llama' | 'mistral' | 'qwen2' | 'smollm';

/** How RoPE pairs dimensions inside a head. */
export type RopeLayout =
  /** llama2.c / Meta original: pairs (2i, 2i+1). */
  | 'interleaved'
  /** Hugging Face Llama: pairs (i, i + headDim/2) ("rotate half"). */
  | 'half';

/** Llama-3-style RoPE frequency scaling (`rope_scaling.rope_type == "llama3"`). */
export interface RopeScaling {
  type: 'llama3' | 'linear';
  factor: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

/** A normalised model configuration, independent of the file format it came from. */
export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeLayout: RopeLayout;
  ropeScaling?: RopeScaling;
  /** The output projection reuses the token embedding matrix. */
  tiedEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2). */
  attentionBias: boolean;
  bosTokenId: number;
  eosTokenIds: number[];
}

/** Element types a tensor may be stored in on disk. */
export type StoredDType = 'F32' | 'F16' | 'BF16';

/** Where a tensor's bytes live inside a model's files. */
export interface TensorInfo {
  /** Canonical (Hugging Face) name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
  name: string;
  dtype: StoredDType;
  shape: number[];
  /** File (relative to the model root) that holds it. */
  file: string;
  /** Absolute byte offset of the tensor data in that file. */
  offset: number;
  byteLength: number;
}

/** Progress of a byte transfer. */
export interface ByteProgress {
  loadedBytes: number;
  totalBytes: number;
}

/**
 * Random access to the bytes of one file (a URL served with HTTP Range, a local file, memory).
 * Implementations must return exactly `length` bytes or throw a typed error.
 */
export interface ByteSource {
  /** Human-readable name used in error messages (URL or path). */
  readonly name: string;
  /** Total size in bytes, when known. */
  size(signal?: AbortSignal): Promise<number>;
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** Bytes actually transferred so far (for the "fetch only what you use" guarantee). */
  readonly bytesRead: number;
}

/** Opens files relative to a model root (a directory, a base URL, an in-memory map). */
export interface FileOpener {
  /** Human-readable root (directory or URL) for error messages. */
  readonly root: string;
  open(file: string): ByteSource;
  /** Bytes transferred by every source this opener has handed out. */
  readonly bytesRead: number;
}

/** One model, ready to hand out config, tensors and tokenizer data. */
export interface ModelSource {
  readonly format: 'llama2c' | 'safetensors';
  readonly config: ModelConfig;
  /** Tensor index by canonical name. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /**
   * Reads one tensor as float32 in canonical (Hugging Face) layout: `[out, in]` for projections,
   * rotate-half RoPE row order for q/k when `config.ropeLayout` is `'half'`.
   */
  readTensor(name: string, signal?: AbortSignal): Promise<Float32Array>;
  /** Bytes transferred so far across all files. */
  readonly bytesRead: number;
}
