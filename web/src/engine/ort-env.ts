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
 * Wasm threads for a page on a machine with `cores` logical cores: all of them, at most 4 (a
 * decode step of a small shard has too little work per op to split further).
 */
export function defaultWasmThreads(cores: number): number {
  return Math.max(1, Math.min(cores, 4));
}
