import * as ort from 'onnxruntime-web';

let configured = false;

/**
 * Configures onnxruntime-web once per realm (its env is frozen after the first session).
 * Threads only work when the page is cross-origin isolated; production builds load ORT's wasm
 * glue from /ort/ (see vite.config.ts). `threads` (1-4) overrides the default of
 * {@link defaultWasmThreads}.
 */
export function configureOrt(opts: { threads?: number } = {}): typeof ort {
  if (configured) return ort;
  configured = true;
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
  const cores = (globalThis.navigator?.hardwareConcurrency as number | undefined) ?? 1;
  ort.env.wasm.numThreads = isolated
    ? Math.max(1, Math.min(opts.threads ?? defaultWasmThreads(cores), 4))
    : 1;
  if (import.meta.env.PROD) ort.env.wasm.wasmPaths = new URL('/ort/', globalThis.location.href).href;
  ort.env.logLevel = 'error';
  return ort;
}

/**
 * Wasm threads for a page on a machine with `cores` logical cores: half of them, at most 4 (ONNX
 * Runtime Web's own default). All cores was the default before; measured with `npm run bench:swarm
 * -- --also-threads 1` on a shared 2-core machine, a 1-peer stories15M swarm decoded 2.3x faster at 1
 * thread than at 2 (pool threads spin and a decode step of a small model has little work per op to
 * split), and `npm run bench:engine` pairs wasm 2 threads ÷ 1 thread at 0.58-0.68.
 */
export function defaultWasmThreads(cores: number): number {
  return Math.max(1, Math.min(Math.ceil(cores / 2), 4));
}
