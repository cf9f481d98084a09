import { describe, expect, it } from 'vitest';
import { chooseBackend, looksLikeSoftwareAdapter } from '../../shared/device/backend-choice';
import { classifyDevice } from '../../shared/device/device-class';
import { f16BitsToF32, f32ToF16Bits } from '../../shared/device/half';
import { compareMatmul, randomMatrix, referenceMatmul } from '../../shared/device/matmul-reference';
import {
  categorize,
  DEFAULT_DEVICE_CATEGORY_THRESHOLDS,
  deviceCategoryThresholdsSchema,
  deviceProfileSchema,
  toPlannerPeer,
  type DeviceProfile,
} from '../../shared/device/profile';
import { median, summarize } from '../../shared/device/stats';
import { peerProfileSchema } from '../../shared/planner/types';

/** A profile shaped like the one headless Chromium produces (SwiftShader adapter, wasm CPU path). */
function wasmProfile(): DeviceProfile {
  return {
    schemaVersion: 1,
    backend: 'wasm',
    backendReason: 'WebGPU adapter "google swiftshader" is a fallback (software) adapter.',
    tflops: 0.03,
    bandwidthGBps: 8.5,
    memoryBytes: 4 * 2 ** 30,
    memoryBasis: 'wasm-estimate',
    category: 'C',
    categoryThresholds: { aAboveTflops: 20, cBelowTflops: 5 },
    gpu: {
      adapter: { vendor: 'google', architecture: 'swiftshader', device: '', description: 'SwiftShader' },
      isFallbackAdapter: true,
      features: ['subgroups', 'timestamp-query'],
      shaderF16: false,
      subgroups: true,
      limits: {
        maxBufferSize: 2 ** 30,
        maxStorageBufferBindingSize: 2 ** 30,
        maxComputeWorkgroupStorageSize: 16384,
        maxComputeInvocationsPerWorkgroup: 256,
        maxComputeWorkgroupsPerDimension: 65535,
      },
      matmulGflops: { f32: 0.3, f16: null },
      matmulSize: { f32: 128, f16: null },
      bandwidthGBps: 2.1,
      usableMemoryBytes: 256 * 2 ** 20,
      memoryProbeCapBytes: 256 * 2 ** 20,
      memoryProbeCapped: true,
      verify: {
        f32: { dtype: 'f32', m: 67, k: 45, n: 93, maxAbsError: 1e-6, relError: 2e-7, passed: true },
        f16: null,
      },
    },
    cpu: { gflops: 30, threads: 2, matmulShape: { m: 256, k: 1024, n: 1024 }, bandwidthGBps: 8.5 },
    device: { class: 'desktop', classBasis: 'ua-client-hints', deviceMemoryGB: 8, hardwareConcurrency: 2 },
    network: { rttMs: 0.4, rttSamples: 5, throughputMbps: 900, throughputBytes: 1 << 20 },
    spread: { samples: 5, matmulRelSpread: 0.08, bandwidthRelSpread: 0.1, cpuMatmulRelSpread: 0.08 },
    notes: [],
    phaseMs: { 'cpu-matmul': 800 },
    durationMs: 3100,
    measuredAt: '2025-11-22T10:00:00.000Z',
  };
}

/** A hardware-GPU profile (category A). */
function gpuProfile(): DeviceProfile {
  const p = wasmProfile();
  return {
    ...p,
    backend: 'webgpu',
    backendReason: 'Hardware WebGPU adapter "nvidia ada"; its matmul matched the CPU reference.',
    tflops: 25,
    bandwidthGBps: 700,
    memoryBytes: 4 * 2 ** 30,
    memoryBasis: 'webgpu-probe',
    category: 'A',
    gpu: {
      ...p.gpu!,
      adapter: { vendor: 'nvidia', architecture: 'ada', device: '', description: '' },
      isFallbackAdapter: false,
      shaderF16: true,
      matmulGflops: { f32: 25_000, f16: 48_000 },
      matmulSize: { f32: 2048, f16: 2048 },
      bandwidthGBps: 700,
      usableMemoryBytes: 4 * 2 ** 30,
      memoryProbeCapBytes: 4 * 2 ** 30,
    },
    cpu: null,
  };
}

const issues = (x: unknown) => {
  const r = deviceProfileSchema.safeParse(x);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('deviceProfileSchema', () => {
  it('accepts a wasm profile with a fallback GPU and a hardware WebGPU profile', () => {
    expect(issues(wasmProfile())).toEqual([]);
    expect(issues(gpuProfile())).toEqual([]);
    const { network: _n, ...noNetwork } = wasmProfile();
    expect(issues({ ...noNetwork, gpu: null })).toEqual([]);
    const withBattery = wasmProfile();
    withBattery.device.battery = { charging: false, level: 0.42 };
    expect(issues(withBattery)).toEqual([]);
  });

  it.each<[string, (p: DeviceProfile) => unknown]>([
    ['an unknown backend', (p) => ({ ...p, backend: 'webgl' })],
    ['an empty backend reason', (p) => ({ ...p, backendReason: '' })],
    ['zero TFLOPS', (p) => ({ ...p, tflops: 0 })],
    ['infinite TFLOPS', (p) => ({ ...p, tflops: Infinity })],
    ['NaN bandwidth', (p) => ({ ...p, bandwidthGBps: NaN })],
    ['fractional memory bytes', (p) => ({ ...p, memoryBytes: 1.5 })],
    ['a missing spread', (p) => ({ ...p, spread: undefined })],
    ['an extra top-level key', (p) => ({ ...p, gflops: 30 })],
    ['an extra gpu key', (p) => ({ ...p, gpu: { ...p.gpu, vram: 1 } })],
    [
      'a battery level above 1',
      (p) => ({ ...p, device: { ...p.device, battery: { charging: true, level: 2 } } }),
    ],
    ['a non-ISO measuredAt', (p) => ({ ...p, measuredAt: 'yesterday' })],
    ['zero threads', (p) => ({ ...p, cpu: { ...p.cpu, threads: 0 } })],
    ['a negative spread', (p) => ({ ...p, spread: { ...p.spread, matmulRelSpread: -0.1 } })],
    ['backend wasm without a cpu profile', (p) => ({ ...p, cpu: null })],
    ['backend webgpu on a fallback adapter', (p) => ({ ...p, backend: 'webgpu' })],
    ['a category that does not match the TFLOPS', (p) => ({ ...p, category: 'B' })],
  ])('rejects %s', (_what, mutate) => {
    expect(issues(mutate(wasmProfile())).length).toBeGreaterThan(0);
  });

  it('rejects backend webgpu without a gpu profile, and a mobile device outside category C', () => {
    expect(issues({ ...gpuProfile(), gpu: null }).join()).toMatch(/gpu/);
    const mobile = gpuProfile();
    mobile.device = { ...mobile.device, class: 'mobile', classBasis: 'ua-client-hints' };
    expect(issues(mobile).join()).toMatch(/expected C/);
    expect(issues({ ...mobile, category: 'C' })).toEqual([]);
  });

  it('maps to a planner peer that the planner accepts', () => {
    const peer = toPlannerPeer('peer-1', gpuProfile());
    expect(peer).toEqual({
      id: 'peer-1',
      tflops: 25,
      bandwidthGBps: 700,
      memoryBytes: 4 * 2 ** 30,
      category: 'A',
    });
    expect(peerProfileSchema.parse(peer)).toEqual(peer);
  });
});

describe('categorize', () => {
  it('uses A > 20, C < 5 TFLOPS by default, with B inclusive at both ends', () => {
    const desktop = { mobile: false };
    expect(categorize(20.01, desktop)).toBe('A');
    expect(categorize(20, desktop)).toBe('B');
    expect(categorize(12, desktop)).toBe('B');
    expect(categorize(5, desktop)).toBe('B');
    expect(categorize(4.99, desktop)).toBe('C');
    expect(categorize(0.03, desktop)).toBe('C');
  });

  it('honours configured thresholds', () => {
    const t = { aAboveTflops: 10, cBelowTflops: 1 };
    expect(categorize(12, { mobile: false }, t)).toBe('A');
    expect(categorize(5, { mobile: false }, t)).toBe('B');
    expect(categorize(0.5, { mobile: false }, t)).toBe('C');
    expect(categorize(0.5, { mobile: false }, { aAboveTflops: 1, cBelowTflops: 0 })).toBe('B');
  });

  it('puts mobile devices in C whatever they measure', () => {
    expect(categorize(100, { mobile: true })).toBe('C');
    expect(categorize(100, { mobile: true }, { aAboveTflops: 1, cBelowTflops: 0 })).toBe('C');
  });

  it('validates thresholds', () => {
    expect(deviceCategoryThresholdsSchema.safeParse(DEFAULT_DEVICE_CATEGORY_THRESHOLDS).success).toBe(true);
    expect(deviceCategoryThresholdsSchema.safeParse({ aAboveTflops: 5, cBelowTflops: 20 }).success).toBe(
      false,
    );
    expect(deviceCategoryThresholdsSchema.safeParse({ aAboveTflops: 0, cBelowTflops: 0 }).success).toBe(
      false,
    );
  });
});

describe('classifyDevice', () => {
  it('trusts UA client hints first', () => {
    expect(classifyDevice({ uaMobile: true, pointerCoarse: false })).toEqual({
      class: 'mobile',
      basis: 'ua-client-hints',
    });
    expect(classifyDevice({ uaMobile: false, pointerCoarse: true, userAgent: 'Android' })).toEqual({
      class: 'desktop',
      basis: 'ua-client-hints',
    });
  });

  it('falls back to the UA string, iPadOS included, then the pointer, then deviceMemory', () => {
    const iphone =
      'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148';
    const mac =
      'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15';
    expect(classifyDevice({ userAgent: iphone })).toEqual({ class: 'mobile', basis: 'user-agent' });
    expect(classifyDevice({ userAgent: mac, maxTouchPoints: 5 })).toEqual({
      class: 'mobile',
      basis: 'user-agent',
    });
    expect(classifyDevice({ userAgent: mac, maxTouchPoints: 0 }).class).toBe('desktop');
    expect(classifyDevice({ pointerCoarse: true, anyPointerFine: false })).toEqual({
      class: 'mobile',
      basis: 'pointer',
    });
    expect(classifyDevice({ pointerCoarse: true, anyPointerFine: true }).class).toBe('desktop');
    expect(classifyDevice({ deviceMemoryGB: 2, maxTouchPoints: 5 })).toEqual({
      class: 'mobile',
      basis: 'device-memory',
    });
    expect(classifyDevice({})).toEqual({ class: 'desktop', basis: 'default' });
  });
});

describe('chooseBackend', () => {
  const device = {
    kind: 'device' as const,
    isFallbackAdapter: false,
    softwareAdapter: false,
    adapterName: 'nvidia ada',
    verifyPassed: true,
    verifyRelError: 1e-7,
  };

  it('picks WebGPU only on a verified hardware adapter', () => {
    expect(chooseBackend(device).backend).toBe('webgpu');
    expect(chooseBackend({ ...device, isFallbackAdapter: true })).toMatchObject({
      backend: 'wasm',
      reason: expect.stringMatching(/fallback/),
    });
    expect(chooseBackend({ ...device, softwareAdapter: true }).backend).toBe('wasm');
    expect(chooseBackend({ ...device, verifyPassed: false, verifyRelError: 0.5 }).reason).toMatch(/0\.5/);
    expect(chooseBackend({ ...device, verifyPassed: false, verifyRelError: null }).reason).toMatch(
      /non-finite/,
    );
    expect(chooseBackend({ kind: 'unavailable' }).reason).toMatch(/navigator\.gpu/);
    expect(chooseBackend({ kind: 'no-adapter' }).backend).toBe('wasm');
    expect(chooseBackend({ kind: 'device-failed', message: 'boom' }).reason).toMatch(/boom/);
  });

  it('recognises software adapters by name', () => {
    expect(looksLikeSoftwareAdapter('google', 'swiftshader')).toBe(true);
    expect(looksLikeSoftwareAdapter(undefined, 'llvmpipe (LLVM 15.0.6, 256 bits)')).toBe(true);
    expect(looksLikeSoftwareAdapter('nvidia', 'ada', '')).toBe(false);
  });
});

describe('measurement helpers', () => {
  it('summarises samples with median and relative spread', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
    expect(summarize([9, 10, 11, 10, 10])).toEqual({
      median: 10,
      min: 9,
      max: 11,
      relSpread: 0.2,
      samples: 5,
    });
  });

  it('converts binary16 exactly', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds up to Infinity
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -26)).toBe(0x0000);
    expect(f32ToF16Bits(0.1)).toBe(0x2e66);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie rounds to even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
    // Every finite binary16 value survives the round trip.
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue;
      const back = f32ToF16Bits(f16BitsToF32(h));
      if (back !== h) expect(back).toBe(h);
    }
  });

  it('computes the matmul reference and its error measures', () => {
    // [1 2; 3 4] · [5 6; 7 8] = [19 22; 43 50]
    const c = referenceMatmul([1, 2, 3, 4], [5, 6, 7, 8], 2, 2, 2);
    expect(Array.from(c)).toEqual([19, 22, 43, 50]);
    expect(compareMatmul([19, 22, 43, 50.5], c)).toEqual({ maxAbsError: 0.5, relError: 0.01 });
    expect(compareMatmul([NaN, 22, 43, 50], c).maxAbsError).toBe(Infinity);
    const r = randomMatrix(1000, 7);
    expect(r).toEqual(randomMatrix(1000, 7));
    expect(Math.min(...r)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...r)).toBeLessThan(1);
  });
});
