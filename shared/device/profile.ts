/**
 * The device profile: what the browser profiler measured about one peer (compute, memory
 * bandwidth, usable memory, backend, device class, network), validated with zod at every boundary.
 * The planner consumes it through {@link toPlannerPeer}.
 */
import { z } from 'zod';

/** Capability classes: A (> 20 TFLOPS), B (5–20), C (< 5) by default; mobile devices are always C. */
export const deviceCategorySchema = z.enum(['A', 'B', 'C']);
export type DeviceCategory = z.infer<typeof deviceCategorySchema>;

/**
 * Thresholds of {@link categorize}: A above `aAboveTflops`, C below `cBelowTflops`, B in between
 * (both ends inclusive). Same shape as the planner's `categoryThresholds` so one config serves both.
 */
export const deviceCategoryThresholdsSchema = z
  .object({ aAboveTflops: z.number().positive().finite(), cBelowTflops: z.number().nonnegative().finite() })
  .strict()
  .refine((t) => t.cBelowTflops <= t.aAboveTflops, { message: 'cBelowTflops must not exceed aAboveTflops' });
export type DeviceCategoryThresholds = z.infer<typeof deviceCategoryThresholdsSchema>;

/** The issue's defaults: A above 20 TFLOPS, C below 5. */
export const DEFAULT_DEVICE_CATEGORY_THRESHOLDS: Readonly<DeviceCategoryThresholds> = Object.freeze({
  aAboveTflops: 20,
  cBelowTflops: 5,
});

/**
 * The category of a device with `tflops` of effective compute. Mobile devices are C whatever
 * they measure: thermal throttling and battery make their short-benchmark figures unsustainable.
 */
export function categorize(
  tflops: number,
  device: { mobile: boolean },
  thresholds: DeviceCategoryThresholds = DEFAULT_DEVICE_CATEGORY_THRESHOLDS,
): DeviceCategory {
  if (device.mobile) return 'C';
  if (tflops > thresholds.aAboveTflops) return 'A';
  if (tflops < thresholds.cBelowTflops) return 'C';
  return 'B';
}

const positive = z.number().positive();
const nonNegative = z.number().nonnegative();
const bytes = z.number().int().nonnegative();
const count = z.number().int().positive();

/** Result of checking a WGSL matmul against the CPU reference on a small, odd-sized case. */
export const matmulCheckSchema = z
  .object({
    dtype: z.enum(['f32', 'f16']),
    m: count,
    k: count,
    n: count,
    /** Largest absolute difference; null when the GPU result held NaN or Infinity. */
    maxAbsError: nonNegative.nullable(),
    /** `maxAbsError / max|reference|`; null when the GPU result held NaN or Infinity. */
    relError: nonNegative.nullable(),
    /** Whether `relError` is within the dtype's tolerance. */
    passed: z.boolean(),
  })
  .strict();
export type MatmulCheck = z.infer<typeof matmulCheckSchema>;

/** What the profiler measured on the WebGPU adapter (also on a fallback adapter, for the record). */
export const gpuProfileSchema = z
  .object({
    adapter: z
      .object({ vendor: z.string(), architecture: z.string(), device: z.string(), description: z.string() })
      .strict(),
    isFallbackAdapter: z.boolean(),
    /** Every adapter feature, sorted. */
    features: z.array(z.string()),
    shaderF16: z.boolean(),
    subgroups: z.boolean(),
    limits: z
      .object({
        maxBufferSize: bytes,
        maxStorageBufferBindingSize: bytes,
        maxComputeWorkgroupStorageSize: bytes,
        maxComputeInvocationsPerWorkgroup: count,
        maxComputeWorkgroupsPerDimension: count,
      })
      .strict(),
    /** Median throughput of the tiled WGSL matmul, 10^9 FLOP/s; f16 null without `shader-f16`. */
    matmulGflops: z.object({ f32: positive, f16: positive.nullable() }).strict(),
    /** Side of the square matmul the throughput was measured at (grown to fit the time budget). */
    matmulSize: z.object({ f32: count, f16: count.nullable() }).strict(),
    /** Buffer-copy kernel: (bytes read + bytes written) / time, 10^9 B/s. */
    bandwidthGBps: positive,
    /** Largest total of buffers that could be allocated and touched, up to the probe's cap. */
    usableMemoryBytes: bytes,
    memoryProbeCapBytes: bytes,
    /** True when the probe stopped at its cap (or deadline) rather than at an allocation failure. */
    memoryProbeCapped: z.boolean(),
    verify: z.object({ f32: matmulCheckSchema, f16: matmulCheckSchema.nullable() }).strict(),
  })
  .strict();
export type GpuProfile = z.infer<typeof gpuProfileSchema>;

/** What the profiler measured on the CPU through onnxruntime-web's wasm backend. */
export const cpuProfileSchema = z
  .object({
    /** Median MatMul throughput of an onnxruntime-web wasm session, 10^9 FLOP/s. */
    gflops: positive,
    /** wasm threads the session ran with (1 unless the page is cross-origin isolated). */
    threads: count,
    /** MatMul shape measured: [m, k] × [k, n], k×n a constant weight like a model's. */
    matmulShape: z.object({ m: count, k: count, n: count }).strict(),
    /** Typed-array copy: (bytes read + bytes written) / time, 10^9 B/s. */
    bandwidthGBps: positive,
  })
  .strict();
export type CpuProfile = z.infer<typeof cpuProfileSchema>;

export const deviceInfoSchema = z
  .object({
    class: z.enum(['mobile', 'desktop']),
    /** Which signal decided the class; see `classifyDevice`. */
    classBasis: z.enum(['ua-client-hints', 'user-agent', 'pointer', 'device-memory', 'default']),
    /** `navigator.deviceMemory` (rounded, capped at 8 by browsers); absent where not exposed. */
    deviceMemoryGB: positive.optional(),
    hardwareConcurrency: count,
    /** From `navigator.getBattery()`; absent where not exposed (Firefox, Safari, desktops without one). */
    battery: z
      .object({ charging: z.boolean(), level: z.number().min(0).max(1) })
      .strict()
      .optional(),
  })
  .strict();
export type DeviceInfo = z.infer<typeof deviceInfoSchema>;

/** Link to the signaling server (peer-to-peer links are measured later, by the coordinator). */
export const networkProfileSchema = z
  .object({
    /** Median of several small GETs to `/healthz`, after one warm-up request. */
    rttMs: positive,
    rttSamples: count,
    /** One ranged GET of a static file: bits received / elapsed time, 10^6 bit/s. */
    throughputMbps: positive,
    throughputBytes: count,
  })
  .strict();
export type NetworkProfile = z.infer<typeof networkProfileSchema>;

/**
 * Run-to-run spread, each `(max - min) / median` over the repeats of one measurement. The two
 * headline figures are named for what they back (`tflops`, `bandwidthGBps`).
 */
export const spreadSchema = z
  .object({
    /** Repeats per measurement (the fewest any measurement got if a deadline cut one short). */
    samples: count,
    matmulRelSpread: nonNegative,
    bandwidthRelSpread: nonNegative,
    gpuMatmulF32RelSpread: nonNegative.optional(),
    gpuMatmulF16RelSpread: nonNegative.optional(),
    gpuBandwidthRelSpread: nonNegative.optional(),
    cpuMatmulRelSpread: nonNegative.optional(),
    cpuBandwidthRelSpread: nonNegative.optional(),
  })
  .strict();

/** Fields of the profile before its cross-field rules. */
const profileObject = z
  .object({
    schemaVersion: z.literal(1),
    backend: z.enum(['webgpu', 'wasm']),
    backendReason: z.string().min(1),
    /** Effective compute the planner should use, 10^12 FLOP/s (GPU f32 matmul, else wasm MatMul). */
    tflops: positive,
    /** Memory bandwidth of the chosen backend, 10^9 B/s. */
    bandwidthGBps: positive,
    /** Memory the chosen backend can use for weights and KV cache, bytes. */
    memoryBytes: bytes,
    /** `webgpu-probe`: allocated and touched; `wasm-estimate`: wasm32 heap limit bounded by deviceMemory. */
    memoryBasis: z.enum(['webgpu-probe', 'wasm-estimate']),
    category: deviceCategorySchema,
    categoryThresholds: deviceCategoryThresholdsSchema,
    gpu: gpuProfileSchema.nullable(),
    cpu: cpuProfileSchema.nullable(),
    device: deviceInfoSchema,
    network: networkProfileSchema.optional(),
    spread: spreadSchema,
    /** Things worth knowing that did not stop the profile (a skipped step, a failed f16 check...). */
    notes: z.array(z.string()),
    /** Wall-clock time of each phase, ms. */
    phaseMs: z.record(z.string(), nonNegative),
    /** Wall-clock time of the whole profile as the caller saw it, ms (worker start-up included). */
    durationMs: nonNegative,
    measuredAt: z.iso.datetime(),
  })
  .strict();

/** A device profile, with the rules that tie its fields together. */
export const deviceProfileSchema = profileObject.superRefine((p, ctx) => {
  if (p.backend === 'webgpu' && (p.gpu === null || p.gpu.isFallbackAdapter)) {
    ctx.addIssue({ code: 'custom', path: ['gpu'], message: 'backend webgpu needs a hardware gpu profile' });
  }
  if (p.backend === 'wasm' && p.cpu === null) {
    ctx.addIssue({ code: 'custom', path: ['cpu'], message: 'backend wasm needs a cpu profile' });
  }
  const want = categorize(p.tflops, { mobile: p.device.class === 'mobile' }, p.categoryThresholds);
  if (p.category !== want) {
    ctx.addIssue({
      code: 'custom',
      path: ['category'],
      message: `category ${p.category} does not match ${p.tflops} TFLOPS on a ${p.device.class} (expected ${want})`,
    });
  }
});
export type DeviceProfile = z.infer<typeof deviceProfileSchema>;

/**
 * The planner's view of a profiled peer (`PeerProfileInput` in shared/planner): the four figures
 * its cost model uses plus the id the coordinator knows the peer by.
 */
export function toPlannerPeer(
  id: string,
  p: Pick<DeviceProfile, 'tflops' | 'bandwidthGBps' | 'memoryBytes' | 'category'>,
): { id: string; tflops: number; bandwidthGBps: number; memoryBytes: number; category: DeviceCategory } {
  return {
    id,
    tflops: p.tflops,
    bandwidthGBps: p.bandwidthGBps,
    memoryBytes: p.memoryBytes,
    category: p.category,
  };
}
