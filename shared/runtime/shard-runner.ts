import type {
  AttentionMode,
  CompileProgress,
  KvCacheMode,
  ShardIo,
  WeightFormat,
} from '../graph/compile-shard.js';
import type { UnitRange } from '../graph/units.js';
import type { ModelLocation } from '../model/open-model.js';
import type { ModelConfig } from '../model/types.js';

/** Execution backends of onnxruntime-web. */
export type Backend = 'webgpu' | 'wasm';

/** Where a model lives: a llama2.c `.bin` (file path or URL) or a Hugging Face directory/URL. */
export type ModelRef = ModelLocation;

/** What a runner should load: which units of which model, in which weight format. */
export interface LoadRequest {
  model: ModelRef;
  range: UnitRange;
  weightFormat: WeightFormat;
  /** Longest context (positions) this shard will serve; sizes RoPE tables and bounds KV growth. */
  contextLength: number;
  /**
   * Which logits rows a head returns: `last` (one row per step), `all` (one per position), or
   * `rows` (the last {@link StepInput.logitsRows} positions of each step, 1 by default: decode,
   * and chunked verification of drafted tokens in one pass).
   */
  logits: 'last' | 'all' | 'rows';
  /** `auto` (default) tries WebGPU on a real GPU adapter, else wasm. */
  backend?: 'auto' | Backend;
  /**
   * The attention graph (see `CompileOptions.attention`; default `ops`). Benchmarks set it to
   * measure one against the other.
   */
  attention?: AttentionMode;
  /**
   * The KV-cache contract on wasm (see `KvCacheMode`; default `rows`). WebGPU always uses
   * `concat`. Benchmarks set it to measure one against the other.
   */
  kvCache?: KvCacheMode;
}

/** Outcome of {@link ShardRunner.load}. */
export interface LoadResult {
  backend: Backend;
  /** Why this backend was chosen (or why WebGPU was not). */
  backendReason: string;
  config: ModelConfig;
  io: ShardIo;
  /** Bytes of weights in the compiled shard. */
  weightBytes: number;
  /** Bytes transferred from the model's files to build it. */
  bytesFetched: number;
  loadMs: number;
  /**
   * Where `loadMs` went (ms): opening the model (its config and file index), building the shard's
   * graph (fetching its weights included), probing for WebGPU, and creating the ORT session (the
   * first one in a realm also instantiates ONNX Runtime's wasm). Absent from runners that have none.
   */
  phasesMs?: { open: number; compile: number; probe: number; session: number; warmUp?: number };
}

/** Typed progress events while loading. */
export type LoadProgress =
  ({ phase: 'fetch'; bytesFetched: number } & CompileProgress) | { phase: 'session'; backend: Backend };

/** One forward step through the shard. Exactly one of `tokens` / `hidden` is given. */
export interface StepInput {
  /** Token ids `[S]` (shards that start at the embedding). */
  tokens?: Int32Array;
  /** Hidden states `[S * hiddenSize]` (every other shard). */
  hidden?: Float32Array;
  /**
   * Absolute position of the first of the S inputs; must equal the session's cached length, unless
   * `rewind` is set.
   */
  position: number;
  /**
   * Truncate first: `position` may then lie below the cached length, and the cached positions
   * `>= position` (rejected drafted tokens) are dropped before this step runs. Carried by the step
   * itself so that a ring drops them without an extra message or lap.
   */
  rewind?: boolean;
  /**
   * On a head loaded with `logits: 'rows'`: return the logits of the last `logitsRows` positions of
   * this step (1 ≤ logitsRows ≤ S; default 1). Ignored by other shards.
   */
  logitsRows?: number;
}

/** The result of one step: hidden states to hand on, or logits. */
export interface StepOutput {
  kind: 'hidden' | 'logits';
  /**
   * `[S * hiddenSize]` hidden states, or `[rows * vocab]` logits (rows = 1 for `logits: 'last'`,
   * S for `all`, `logitsRows` for `rows`).
   */
  data: Float32Array;
  seqLen: number;
  /** Wall time of the ORT run in ms. */
  ms: number;
  /**
   * Where the rest of the call went (ms), for the hot-path timings (shared/util/perf-trace.ts):
   * absent from runners that do not measure it.
   */
  phases?: StepPhases;
}

/** A step's time outside the model's own run, by part (ms). */
export interface StepPhases {
  /** Waiting for the runner's turn (an earlier step of any session still running). */
  queueMs?: number;
  /** Building the inputs: token/position tensors, and the KV cut of a rewind. */
  feedMs?: number;
  /** Reading the output tensor back out of ONNX Runtime. */
  copyOutMs?: number;
  /** Worker runners: the call's message from the page's thread to the worker. */
  postMs?: number;
  /** Worker runners: the result's message from the worker back to the page's thread. */
  returnMs?: number;
}

/** Static facts about a runner. */
export interface RunnerInfo {
  loaded: boolean;
  backend?: Backend;
  backendReason?: string;
  range?: UnitRange;
  sessions: number;
}

/**
 * Runs one contiguous shard of a model. Each generation session keeps its own KV cache inside
 * the runner (on the GPU when the backend is WebGPU); only hidden states or logits leave it.
 * Implemented in-process for Node (`createOrtShardRunner`) and as a comlink-exposed Web Worker in
 * the browser; both speak this interface.
 */
export interface ShardRunner {
  load(
    request: LoadRequest,
    opts?: { signal?: AbortSignal; onProgress?: (p: LoadProgress) => void },
  ): Promise<LoadResult>;
  /** Starts a generation session with an empty KV cache; returns its id. */
  openSession(): Promise<string>;
  step(sessionId: string, input: StepInput, opts?: { signal?: AbortSignal }): Promise<StepOutput>;
  /** Frees a session's KV cache. Unknown ids are ignored (release is idempotent). */
  closeSession(sessionId: string): Promise<void>;
  info(): Promise<RunnerInfo>;
  /**
   * Starts the runtime ahead of any shard (ONNX Runtime's wasm fetched, compiled and instantiated,
   * its thread pool started), so that the first `load` only builds its graph. Optional; resolves
   * once warm, never rejects (a runtime that cannot start fails the `load` that needs it).
   */
  warm?(): Promise<void>;
  /** Releases everything. Safe to call twice. */
  dispose(): Promise<void>;
}
