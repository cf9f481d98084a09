/**
 * Which engine backend a peer should run on, and why. Pure: the profiler worker gathers the facts,
 * this decides, and tests can cover every branch without a browser.
 */

/** What the profiler found out about WebGPU on this device. */
export type WebGpuStatus =
  /** `navigator.gpu` is missing (no WebGPU in this browser, or it is disabled). */
  | { kind: 'unavailable' }
  /** `requestAdapter()` resolved to null. */
  | { kind: 'no-adapter' }
  /** An adapter exists but `requestDevice()` failed or the device was lost while profiling. */
  | { kind: 'device-failed'; message: string }
  /** A working device; the benchmark and matmul check ran. */
  | {
      kind: 'device';
      isFallbackAdapter: boolean;
      /** Adapter looks like a CPU rasteriser even if the browser does not flag it as fallback. */
      softwareAdapter: boolean;
      /** Human-readable adapter name, e.g. "google swiftshader" or "nvidia ampere". */
      adapterName: string;
      verifyPassed: boolean;
      /** Relative error of the f32 matmul check; null when the result held NaN/Infinity. */
      verifyRelError: number | null;
    };

/** The chosen backend and a sentence that says why. */
export interface BackendChoice {
  backend: 'webgpu' | 'wasm';
  reason: string;
}

const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|software|microsoft basic render|\bwarp\b/i;

/** True when adapter info names a known CPU implementation of WebGPU (SwiftShader, llvmpipe, WARP). */
export function looksLikeSoftwareAdapter(...fields: (string | undefined)[]): boolean {
  return fields.some((f) => f !== undefined && SOFTWARE_ADAPTER.test(f));
}

/**
 * WebGPU wins only on a hardware adapter whose matmul matched the CPU reference: a software
 * adapter runs WGSL on the CPU far slower than onnxruntime's wasm kernels (well under 1 GFLOPS
 * against tens), and a wrong kernel must never be trusted with a shard.
 */
export function chooseBackend(s: WebGpuStatus): BackendChoice {
  switch (s.kind) {
    case 'unavailable':
      return { backend: 'wasm', reason: 'WebGPU is not available in this browser (no navigator.gpu).' };
    case 'no-adapter':
      return { backend: 'wasm', reason: 'WebGPU is present but no adapter was found.' };
    case 'device-failed':
      return { backend: 'wasm', reason: `WebGPU device could not be used: ${s.message}` };
    case 'device':
      if (s.isFallbackAdapter) {
        return {
          backend: 'wasm',
          reason: `WebGPU adapter "${s.adapterName}" is a fallback (software) adapter; the wasm CPU backend is faster.`,
        };
      }
      if (s.softwareAdapter) {
        return {
          backend: 'wasm',
          reason: `WebGPU adapter "${s.adapterName}" is a software rasteriser (not flagged as fallback); the wasm CPU backend is faster.`,
        };
      }
      if (!s.verifyPassed) {
        const err = s.verifyRelError === null ? 'non-finite results' : `relative error ${s.verifyRelError}`;
        return {
          backend: 'wasm',
          reason: `WebGPU matmul on "${s.adapterName}" did not match the CPU reference (${err}).`,
        };
      }
      return {
        backend: 'webgpu',
        reason: `Hardware WebGPU adapter "${s.adapterName}"; its matmul matched the CPU reference.`,
      };
  }
}
