/**
 * Benchmark variants: one way of running a whole model (a runtime, a thread count, a split),
 * loaded once and then measured repeatedly. In-process variants chain shard runners with
 * {@link createPipeline}; the multi-threaded wasm variant lives in a child process because
 * onnxruntime-web fixes its thread count for the life of the process.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RingworkError } from '../../shared/errors.js';
import type { AttentionMode, KvCacheMode } from '../../shared/graph/compile-shard.js';
import type { UnitRange } from '../../shared/graph/units.js';
import type { ModelLocation } from '../../shared/model/open-model.js';
import type { OrtModule } from '../../shared/runtime/ort-shard-runner.js';
import { createPipeline } from '../../shared/runtime/pipeline.js';
import type { ShardRunner } from '../../shared/runtime/shard-runner.js';
import { createNodeShardRunner } from '../../signaling-server/src/model/open-node-model.js';
import { startGeneration, type DecodeTiming, type GenerationSettings } from './measure.js';

/** A generation in progress on a variant, driven phase by phase (possibly in another process). */
export interface VariantRun {
  prefill(): Promise<number>;
  decode(steps: number): Promise<DecodeTiming>;
  tokens(): Promise<number[]>;
  close(): Promise<void>;
}

/** A loaded way of running the model. */
export interface BenchVariant {
  id: string;
  label: string;
  ranges: UnitRange[];
  /** Initializer bytes over all stages. */
  weightBytes: number;
  /** Compile + session creation time over all stages, ms. */
  loadMs: number;
  /** Opens a generation session (empty KV cache). */
  start(settings: GenerationSettings): Promise<VariantRun>;
  dispose(): Promise<void>;
}

/** How to load a variant's model. */
export interface VariantLoadSpec {
  id: string;
  label: string;
  model: ModelLocation;
  ranges: UnitRange[];
  /** Positions each shard must serve (prompt + decode steps). */
  contextLength: number;
  /** The attention graph (default: the runner's, `ops` on wasm). */
  attention?: AttentionMode;
  /** The KV-cache contract (default: the runner's, `rows` on wasm). */
  kvCache?: KvCacheMode;
}

/**
 * Loads one in-process runner per range on `ort` (onnxruntime-web's wasm module, or onnxruntime-node
 * wrapped by `nativeCpuOrt`) and chains them. Every variant compiles the same f32 graphs.
 */
export async function loadInProcessVariant(
  spec: VariantLoadSpec & { ort: OrtModule },
): Promise<BenchVariant> {
  const runners: ShardRunner[] = [];
  let weightBytes = 0;
  let loadMs = 0;
  try {
    for (const range of spec.ranges) {
      const runner = createNodeShardRunner({ ort: spec.ort });
      runners.push(runner);
      const r = await runner.load({
        model: spec.model,
        range,
        weightFormat: 'f32',
        contextLength: spec.contextLength,
        logits: 'last',
        backend: 'wasm',
        ...(spec.attention ? { attention: spec.attention } : {}),
        ...(spec.kvCache ? { kvCache: spec.kvCache } : {}),
      });
      weightBytes += r.weightBytes;
      loadMs += r.loadMs;
    }
  } catch (e) {
    await Promise.all(runners.map((r) => r.dispose()));
    throw e;
  }
  const pipeline = createPipeline(runners);
  return {
    id: spec.id,
    label: spec.label,
    ranges: spec.ranges,
    weightBytes,
    loadMs,
    async start(settings) {
      const run = await startGeneration(pipeline, settings);
      return {
        prefill: () => run.prefill(),
        decode: (steps) => run.decode(steps),
        tokens: async () => [...run.tokens],
        close: () => run.close(),
      };
    },
    async dispose() {
      await Promise.all(runners.map((r) => r.dispose()));
    },
  };
}

/** Requests the parent sends to the wasm child process; `run` names a generation session. */
export type ChildRequest =
  | ({ type: 'load'; threads: number } & VariantLoadSpec)
  | { type: 'start'; run: number; settings: Omit<GenerationSettings, 'now'> }
  | { type: 'prefill'; run: number }
  | { type: 'decode'; run: number; steps: number }
  | { type: 'tokens'; run: number }
  | { type: 'close'; run: number }
  | { type: 'dispose' };

/** The child's answer to one request: its result, or the error message. */
export type ChildReply = { ok: true; value: unknown } | { ok: false; message: string };

/**
 * Loads a wasm variant with `threads` threads in a child Node process (same tsx loader, same
 * code), driven over IPC one request at a time so it never runs concurrently with the parent's
 * measurements.
 */
export async function loadWasmChildVariant(
  spec: VariantLoadSpec & { threads: number },
): Promise<BenchVariant> {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  const child: ChildProcess = fork(
    fileURLToPath(new URL(`./wasm-thread-child.${ext}`, import.meta.url)),
    [],
    {
      // Inherits tsx's loader flags, so the child can import TypeScript like the parent.
      execArgv: process.execArgv,
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  let pending: { resolve: (r: ChildReply) => void; reject: (e: Error) => void } | undefined;
  let exited: Error | undefined;
  child.on('message', (m: ChildReply) => {
    const p = pending;
    pending = undefined;
    p?.resolve(m);
  });
  const onGone = (why: string) => {
    exited = new RingworkError(
      'RUNNER_BACKEND_FAILED',
      `The wasm ${spec.threads}-thread child process ${why}.`,
    );
    pending?.reject(exited);
    pending = undefined;
  };
  child.on('exit', (code, signal) => onGone(`exited (code ${code}, signal ${signal})`));
  child.on('error', (e) => onGone(`failed: ${e.message}`));
  // One request in flight at a time: the parent drives variants strictly in turn.
  const ask = <T>(req: ChildRequest): Promise<T> =>
    new Promise<ChildReply>((resolve, reject) => {
      if (exited) return reject(exited);
      pending = { resolve, reject };
      child.send(req);
    }).then((r) => {
      if (!r.ok)
        throw new RingworkError('RUNNER_BACKEND_FAILED', `wasm ${spec.threads}-thread child: ${r.message}`);
      return r.value as T;
    });
  const kill = () => {
    if (!exited) child.kill();
  };
  let loaded: { weightBytes: number; loadMs: number };
  try {
    loaded = await ask({ ...spec, type: 'load' });
  } catch (e) {
    kill();
    throw e;
  }
  let nextRun = 0;
  return {
    id: spec.id,
    label: spec.label,
    ranges: spec.ranges,
    weightBytes: loaded.weightBytes,
    loadMs: loaded.loadMs,
    async start(settings) {
      const run = ++nextRun;
      const { now: _now, ...plain } = settings;
      await ask({ type: 'start', run, settings: plain });
      return {
        prefill: () => ask<number>({ type: 'prefill', run }),
        decode: (steps) => ask<DecodeTiming>({ type: 'decode', run, steps }),
        tokens: () => ask<number[]>({ type: 'tokens', run }),
        close: () => ask<void>({ type: 'close', run }),
      };
    },
    async dispose() {
      try {
        if (!exited) await ask({ type: 'dispose' });
      } finally {
        kill();
      }
    },
  };
}
