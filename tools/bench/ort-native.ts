/**
 * onnxruntime-node (native CPU, MLAS kernels) behind the same {@link OrtModule} interface the
 * shard runner takes, so the benchmark runs the very graphs that onnxruntime-web runs and only the
 * runtime differs.
 *
 * onnxruntime-node 1.30's binding accepts `SessionOptions.externalData` as `{ path, data }` with
 * in-memory bytes (checked by the benchmark's test), which is exactly what `compileShard` emits:
 * no inlining of initializers or temporary files is needed.
 */
import type * as Ort from 'onnxruntime-common';
import type { OrtModule } from '../../shared/runtime/ort-shard-runner.js';

/** The outcome of {@link loadOrtNode}: the module, or why it is unavailable. */
export type OrtNodeLoad = { ok: true; ort: OrtModule; version: string } | { ok: false; reason: string };

/** How to get the native column: the package's CPU binaries ship inside it; only its CUDA extras are downloaded. */
export const NATIVE_HINT =
  '`npm run setup:native` installs it (CPU binaries only, no download outside the npm registry)';
/** The one line printed where onnxruntime-node is absent. */
export const NATIVE_MISSING = `onnxruntime-node is not installed (optional, benchmark-only): ${NATIVE_HINT}`;

/**
 * Imports onnxruntime-node lazily: it is an optional dependency with a native binary, and a missing or
 * broken binary must turn the native column into "unavailable", not crash the benchmark.
 */
export async function loadOrtNode(): Promise<OrtNodeLoad> {
  try {
    // A variable specifier: the package is optional, so typecheck must not require it.
    const specifier = 'onnxruntime-node';
    const mod = (await import(specifier)) as unknown as Partial<OrtModule> & { default?: OrtModule };
    // A CommonJS package: Node exposes its exports as named bindings and as `default`.
    const ort = mod.InferenceSession ? (mod as OrtModule) : mod.default;
    if (!ort?.InferenceSession || !ort.Tensor)
      return { ok: false, reason: 'onnxruntime-node exports no InferenceSession.' };
    return { ok: true, ort, version: ort.env.versions?.node ?? ort.env.versions?.common ?? 'unknown' };
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND')
      return { ok: false, reason: NATIVE_MISSING };
    return {
      ok: false,
      reason: `onnxruntime-node could not be loaded (${e instanceof Error ? e.message : String(e)}); ${NATIVE_HINT}.`,
    };
  }
}

/**
 * Wraps onnxruntime-node so the shard runner can drive it unchanged: the runner asks for the
 * `wasm` execution provider (the name onnxruntime-web knows), which the native build maps to its
 * CPU provider; thread counts are pinned so the comparison with single-threaded wasm is fair.
 */
export function nativeCpuOrt(native: OrtModule, threads: number): OrtModule {
  const create = (model: Uint8Array, options: Ort.InferenceSession.SessionOptions = {}) =>
    native.InferenceSession.create(model, {
      ...options,
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
    });
  return {
    Tensor: native.Tensor,
    env: native.env,
    // The runner only calls create(bytes, options); the other overloads are never used.
    InferenceSession: { create } as unknown as typeof Ort.InferenceSession,
  };
}
