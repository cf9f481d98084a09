/**
 * The profiling sequence, run inside the profiler worker: network (optional), WebGPU (adapter,
 * matmul check, matmul f32/f16, bandwidth, usable memory), then the wasm CPU path when WebGPU will
 * not be used. Every step has a share of the time budget, so the whole profile stays under ~5 s
 * on anything from SwiftShader to a discrete GPU, and checks the abort signal between steps.
 *
 * Size (~520 lines): one linear sequence of timed steps sharing a time budget; the kernels live in
 * `webgpu-bench.ts` and `cpu-bench.ts`.
 */
import {
  chooseBackend,
  looksLikeSoftwareAdapter,
  type WebGpuStatus,
} from '../../../shared/device/backend-choice';
import { classifyDevice } from '../../../shared/device/device-class';
import {
  categorize,
  type CpuProfile,
  type DeviceCategoryThresholds,
  type DeviceProfile,
  type GpuProfile,
  type MatmulCheck,
  type NetworkProfile,
} from '../../../shared/device/profile';
import { isRingworkError, RingworkError, throwIfAborted } from '../../../shared/errors';
import { benchCpuBandwidth, prepareCpuBench, type CpuBench } from './cpu-bench';
import type { PageFacts } from './device-info';
import { raceAbort } from './measure';
import { measureNetwork } from './network-bench';
import { benchBandwidth, benchMatmul, probeMemory, verifyMatmul } from './webgpu-bench';

/** Steps of a profile, in the order they run. */
export type ProfilePhase =
  | 'network'
  | 'webgpu-open'
  | 'gpu-verify'
  | 'gpu-matmul-f32'
  | 'gpu-matmul-f16'
  | 'gpu-bandwidth'
  | 'gpu-memory'
  | 'cpu-setup'
  | 'cpu-matmul'
  | 'cpu-bandwidth';

/** Progress events, in order: phase starts and ends, and the backend decision once it is made. */
export type ProfileProgress =
  | { type: 'phase-start'; phase: ProfilePhase; elapsedMs: number }
  | { type: 'phase-end'; phase: ProfilePhase; elapsedMs: number; ms: number; summary: string }
  | { type: 'backend'; backend: 'webgpu' | 'wasm'; reason: string; elapsedMs: number };

/** What the page sends the worker (options already validated and defaulted by the client). */
export interface ProfileRequest {
  facts: PageFacts;
  /** Absolute base URL of the signaling server; the network step is skipped without one. */
  serverUrl?: string | undefined;
  budgetMs: number;
  memoryCapBytes: number;
  samples: number;
  categoryThresholds: DeviceCategoryThresholds;
}

/**
 * Shares of the budget. A hardware GPU spends it on the GPU; a software adapter only gets enough
 * to record its numbers (they never drive the plan) and the wasm CPU path gets the rest. The
 * network share is a timeout, not a target. The shares add up to well under 1: worker start-up,
 * loading the wasm runtime and compiling kernels need time too, and the budget is a promise
 * about the whole profile.
 */
const SHARES = {
  network: 0.1,
  hardware: { matmulF32: 0.25, matmulF16: 0.15, bandwidth: 0.1, memory: 0.1 },
  software: { matmulF32: 0.08, bandwidth: 0.04, memory: 0.04, cpuMatmul: 0.2, cpuBandwidth: 0.04 },
} as const;
/** A software adapter's "GPU memory" is host RAM; probing gigabytes of it only costs time. */
const SOFTWARE_MEMORY_PROBE_CAP = 128 * 2 ** 20;
/** onnxruntime-web's wasm heap is 32-bit: 4 GiB at most, whatever the device has. */
const WASM32_HEAP_BYTES = 4 * 2 ** 30;
const MAX_NOTES = 12;

/** Options of {@link runProfile}. */
export interface RunOptions {
  signal?: AbortSignal | undefined;
  onProgress?: ((p: ProfileProgress) => void) | undefined;
}

/** A GPU adapter and device opened for profiling. */
interface OpenedGpu {
  adapter: GPUAdapter;
  device: GPUDevice;
  isFallbackAdapter: boolean;
  software: boolean;
  name: string;
  isLost(): boolean;
  lostMessage(): string;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

function adapterName(info: GPUAdapterInfo | undefined): string {
  const parts = [info?.vendor, info?.architecture, info?.device].filter((s) => s);
  return parts.length > 0 ? parts.join(' ') : info?.description || 'unknown adapter';
}

/** Opens the WebGPU adapter and a device with the adapter's full buffer limits (for the memory probe). */
async function openGpu(notes: string[]): Promise<OpenedGpu | WebGpuStatus> {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  if (!gpu) return { kind: 'unavailable' };
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    // Some browsers throw instead of resolving null (blocklisted driver, GPU process crashed).
    return { kind: 'device-failed', message: `requestAdapter failed: ${message(e)}` };
  }
  if (!adapter) return { kind: 'no-adapter' };
  const info = adapter.info as GPUAdapterInfo | undefined;
  // Older Chromium reported the flag on the adapter itself.
  const isFallbackAdapter =
    info?.isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      requiredFeatures: adapter.features.has('shader-f16') ? ['shader-f16'] : [],
      requiredLimits: {
        maxBufferSize: adapter.limits.maxBufferSize,
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      },
    });
  } catch (e) {
    return { kind: 'device-failed', message: `requestDevice failed: ${message(e)}` };
  }
  let lost: string | undefined;
  void device.lost.then((l) => (lost = `${l.reason}: ${l.message}`));
  device.addEventListener('uncapturederror', (ev) => {
    if (notes.length < MAX_NOTES) notes.push(`WebGPU error: ${ev.error.message}`);
  });
  return {
    adapter,
    device,
    isFallbackAdapter,
    software:
      isFallbackAdapter ||
      looksLikeSoftwareAdapter(info?.vendor, info?.architecture, info?.device, info?.description),
    name: adapterName(info),
    isLost: () => lost !== undefined,
    lostMessage: () => lost ?? '',
  };
}

/** Outcome of {@link verifyGpuMatmul}; null when there is no usable WebGPU adapter. */
export type MatmulVerification = {
  adapter: string;
  isFallbackAdapter: boolean;
  f32: MatmulCheck;
  f16: MatmulCheck | null;
} | null;

/** Checks the matmul kernel against the CPU reference on a device of its own (for tests and diagnostics). */
export async function verifyGpuMatmul(): Promise<MatmulVerification> {
  const opened = await openGpu([]);
  if ('kind' in opened) return null;
  try {
    const f32 = await verifyMatmul(opened.device, 'f32');
    const f16 = opened.device.features.has('shader-f16') ? await verifyMatmul(opened.device, 'f16') : null;
    return { adapter: opened.name, isFallbackAdapter: opened.isFallbackAdapter, f32, f16 };
  } finally {
    opened.device.destroy();
  }
}

const fmt = (x: number, digits = 3) => Number(x.toPrecision(digits));

/** What every step of one profile shares: the request, the clock, the budget and the bookkeeping. */
interface RunContext {
  req: ProfileRequest;
  signal: AbortSignal | undefined;
  notes: string[];
  phaseMs: Record<string, number>;
  /** Repeats each measurement got (the profile reports the fewest). */
  sampleCounts: number[];
  elapsed(): number;
  budgetFor(share: number): number;
  phase<T>(name: ProfilePhase, fn: () => Promise<T>, summary: (r: T) => string): Promise<T>;
  emit(p: ProfileProgress): void;
  /** Rethrows aborts; every other error is the caller's to handle. */
  rethrowAbort(e: unknown): void;
}

function createContext(req: ProfileRequest, o: RunOptions): RunContext {
  const start = performance.now();
  const elapsed = () => performance.now() - start;
  const phaseMs: Record<string, number> = {};
  const emit = (p: ProfileProgress) => {
    try {
      // Across comlink this returns a promise; a page that went away must not fail the profile.
      void Promise.resolve(o.onProgress?.(p)).catch(() => undefined);
    } catch {
      /* ignored for the same reason */
    }
  };
  return {
    req,
    signal: o.signal,
    notes: [],
    phaseMs,
    sampleCounts: [],
    elapsed,
    // A share of the budget, shrunk to what is left of it when earlier steps overran, but never
    // below half the share: a measurement squeezed to nothing would be one noisy sample.
    budgetFor: (share) =>
      Math.max((share * req.budgetMs) / 2, Math.min(share * req.budgetMs, req.budgetMs - elapsed())),
    async phase(name, fn, summary) {
      throwIfAborted(o.signal, 'Device profiling');
      const t0 = performance.now();
      emit({ type: 'phase-start', phase: name, elapsedMs: elapsed() });
      try {
        const r = await fn();
        const ms = performance.now() - t0;
        emit({ type: 'phase-end', phase: name, elapsedMs: elapsed(), ms, summary: summary(r) });
        return r;
      } finally {
        phaseMs[name] = performance.now() - t0;
      }
    },
    emit,
    rethrowAbort(e) {
      if (isRingworkError(e, 'ABORTED')) throw e;
      throwIfAborted(o.signal, 'Device profiling');
    },
  };
}

/** Outcome of the WebGPU steps. */
interface GpuOutcome {
  status: WebGpuStatus;
  gpu: GpuProfile | null;
  spread: { f32?: number; f16?: number; bandwidth?: number };
}

/**
 * Checks and measures the opened device, and always destroys it (which frees every buffer the
 * benchmarks left behind, also on abort). A failure other than an abort is recorded, not thrown:
 * the peer can still run on wasm.
 */
async function profileGpu(ctx: RunContext, opened: OpenedGpu): Promise<GpuOutcome> {
  const { device } = opened;
  const { req, signal } = ctx;
  try {
    const verifyF32 = await ctx.phase(
      'gpu-verify',
      () => verifyMatmul(device, 'f32', undefined, signal),
      (c) => `f32 rel error ${c.relError}`,
    );
    const verifyF16 = device.features.has('shader-f16')
      ? await verifyMatmul(device, 'f16', undefined, signal)
      : null;
    if (verifyF16 && !verifyF16.passed) {
      ctx.notes.push(`f16 matmul check failed (rel error ${verifyF16.relError}); f16 not measured.`);
    }
    // Only a trustworthy hardware adapter gets the big budget; otherwise its figures are for the record.
    const hardware = !opened.software && verifyF32.passed;
    const shares = hardware ? SHARES.hardware : SHARES.software;
    const f32 = await ctx.phase(
      'gpu-matmul-f32',
      () =>
        benchMatmul(device, {
          dtype: 'f32',
          budgetMs: ctx.budgetFor(shares.matmulF32),
          samples: req.samples,
          signal,
        }),
      (r) => `${fmt(r.rate.median / 1e9)} GFLOPS at ${r.size}³`,
    );
    const f16 =
      hardware && verifyF16?.passed
        ? await ctx.phase(
            'gpu-matmul-f16',
            () =>
              benchMatmul(device, {
                dtype: 'f16',
                budgetMs: ctx.budgetFor(SHARES.hardware.matmulF16),
                samples: req.samples,
                signal,
              }),
            (r) => `${fmt(r.rate.median / 1e9)} GFLOPS at ${r.size}³`,
          )
        : null;
    const bw = await ctx.phase(
      'gpu-bandwidth',
      () =>
        benchBandwidth(device, { budgetMs: ctx.budgetFor(shares.bandwidth), samples: req.samples, signal }),
      (r) => `${fmt(r.rate.median / 1e9)} GB/s over ${r.size >> 20} MiB`,
    );
    const memCap = hardware ? req.memoryCapBytes : Math.min(req.memoryCapBytes, SOFTWARE_MEMORY_PROBE_CAP);
    const mem = await ctx.phase(
      'gpu-memory',
      () =>
        probeMemory(device, {
          capBytes: memCap,
          deadlineMs: ctx.budgetFor(shares.memory),
          signal,
          isLost: opened.isLost,
        }),
      (m) => `${fmt(m.usableBytes / 2 ** 20)} MiB${m.capped ? ' (capped)' : ''}`,
    );
    if (opened.isLost()) throw new Error(`device lost: ${opened.lostMessage()}`);
    for (const r of [f32, f16, bw]) if (r) ctx.sampleCounts.push(r.rate.samples);
    const { adapter } = opened;
    const info = adapter.info as GPUAdapterInfo | undefined;
    const l = adapter.limits;
    return {
      status: {
        kind: 'device',
        isFallbackAdapter: opened.isFallbackAdapter,
        softwareAdapter: opened.software,
        adapterName: opened.name,
        verifyPassed: verifyF32.passed,
        verifyRelError: verifyF32.relError,
      },
      gpu: {
        adapter: {
          vendor: info?.vendor ?? '',
          architecture: info?.architecture ?? '',
          device: info?.device ?? '',
          description: info?.description ?? '',
        },
        isFallbackAdapter: opened.isFallbackAdapter,
        features: [...adapter.features].sort(),
        shaderF16: adapter.features.has('shader-f16'),
        subgroups: adapter.features.has('subgroups'),
        limits: {
          maxBufferSize: l.maxBufferSize,
          maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
          maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
          maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
          maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
        },
        matmulGflops: { f32: f32.rate.median / 1e9, f16: f16 ? f16.rate.median / 1e9 : null },
        matmulSize: { f32: f32.size, f16: f16 ? f16.size : null },
        bandwidthGBps: bw.rate.median / 1e9,
        usableMemoryBytes: mem.usableBytes,
        memoryProbeCapBytes: memCap,
        memoryProbeCapped: mem.capped,
        verify: { f32: verifyF32, f16: verifyF16 },
      },
      spread: {
        f32: f32.rate.relSpread,
        ...(f16 ? { f16: f16.rate.relSpread } : {}),
        bandwidth: bw.rate.relSpread,
      },
    };
  } catch (e) {
    ctx.rethrowAbort(e);
    ctx.notes.push(`WebGPU profiling failed: ${message(e)}`);
    return { status: { kind: 'device-failed', message: message(e) }, gpu: null, spread: {} };
  } finally {
    device.destroy();
  }
}

/** Outcome of the wasm CPU steps. */
interface CpuOutcome {
  cpu: CpuProfile;
  spread: { matmul: number; bandwidth: number };
}

/** Waits for the wasm runtime (already loading), then measures MatMul and host bandwidth. */
async function profileCpu(ctx: RunContext, prep: Promise<CpuBench>): Promise<CpuOutcome> {
  const { req, signal } = ctx;
  const bench = await ctx.phase(
    'cpu-setup',
    () => raceAbort(prep, signal, 'Loading the wasm runtime'),
    (b) => `onnxruntime-web wasm, ${b.threads} thread(s), loaded in ${Math.round(b.setupMs)} ms`,
  );
  ctx.phaseMs['ort-load'] = bench.setupMs;
  ctx.phaseMs['ort-import'] = bench.importMs;
  const mm = await ctx.phase(
    'cpu-matmul',
    () =>
      bench.measureMatmul({
        budgetMs: ctx.budgetFor(SHARES.software.cpuMatmul),
        samples: req.samples,
        signal,
      }),
    (r) => `${fmt(r.rate.median / 1e9)} GFLOPS, ${r.threads} thread(s), m=${r.size}`,
  );
  const bw = await ctx.phase(
    'cpu-bandwidth',
    () =>
      benchCpuBandwidth({
        budgetMs: ctx.budgetFor(SHARES.software.cpuBandwidth),
        samples: req.samples,
        signal,
      }),
    (r) => `${fmt(r.rate.median / 1e9)} GB/s over ${r.size >> 20} MiB`,
  );
  ctx.sampleCounts.push(mm.rate.samples, bw.rate.samples);
  return {
    cpu: {
      gflops: mm.rate.median / 1e9,
      threads: mm.threads,
      matmulShape: mm.shape,
      bandwidthGBps: bw.rate.median / 1e9,
    },
    spread: { matmul: mm.rate.relSpread, bandwidth: bw.rate.relSpread },
  };
}

/** Runs the whole profile. `durationMs` is the worker's own time; the client replaces it with the page's. */
export async function runProfile(req: ProfileRequest, o: RunOptions = {}): Promise<DeviceProfile> {
  const ctx = createContext(req, o);
  const { signal } = ctx;
  const measuredAt = new Date().toISOString();

  // 1. Network first: nothing else is running yet, so it sees an idle CPU.
  let network: NetworkProfile | undefined;
  if (req.serverUrl) {
    try {
      network = await ctx.phase(
        'network',
        () => measureNetwork(req.serverUrl!, { signal, timeoutMs: ctx.budgetFor(SHARES.network) }),
        (n) => `RTT ${fmt(n.rttMs)} ms, ${fmt(n.throughputMbps)} Mbit/s`,
      );
    } catch (e) {
      ctx.rethrowAbort(e);
      ctx.notes.push(`Network measurement skipped: ${message(e)}`);
    }
  }

  // 2. WebGPU. Loading the wasm runtime takes seconds; when WebGPU is missing or software the CPU
  // path is certain, so the load starts right away and overlaps the GPU steps (whose figures are
  // then only for the record). Whatever happens, the session is released at the end.
  const opened = await ctx.phase(
    'webgpu-open',
    () => openGpu(ctx.notes),
    (g) => ('kind' in g ? g.kind : g.name),
  );
  let cpuPrep: Promise<CpuBench> | undefined;
  const startCpuPrep = () => {
    const p = prepareCpuBench();
    p.catch(() => undefined); // awaited later; this only keeps an early failure from going unhandled
    return p;
  };
  if ('kind' in opened || opened.software) cpuPrep = startCpuPrep();
  try {
    const g: GpuOutcome =
      'kind' in opened ? { status: opened, gpu: null, spread: {} } : await profileGpu(ctx, opened);
    const choice = chooseBackend(g.status);
    ctx.emit({ type: 'backend', backend: choice.backend, reason: choice.reason, elapsedMs: ctx.elapsed() });

    // 3. The wasm CPU path, when that is what the peer will run.
    let c: CpuOutcome | undefined;
    if (choice.backend === 'wasm') {
      try {
        c = await profileCpu(ctx, (cpuPrep ??= startCpuPrep()));
      } catch (e) {
        ctx.rethrowAbort(e);
        throw new RingworkError(
          'RUNNER_BACKEND_FAILED',
          `Neither backend could be profiled: WebGPU is unusable (${choice.reason}) and the wasm benchmark failed: ${message(e)}`,
          { cause: e, details: { webgpu: choice.reason, wasm: message(e) } },
        );
      }
    }

    // 4. Compose.
    const facts = req.facts;
    const cls = classifyDevice(facts);
    const gpu = g.gpu;
    const onGpu = choice.backend === 'webgpu' && gpu !== null;
    const cpu = c?.cpu ?? null;
    const tflops = onGpu ? gpu.matmulGflops.f32 / 1000 : cpu!.gflops / 1000;
    const wasmMemory = Math.min(
      req.memoryCapBytes,
      WASM32_HEAP_BYTES,
      // Half of the device's RAM: the OS, the browser and the page need the rest.
      facts.deviceMemoryGB !== undefined ? (facts.deviceMemoryGB * 2 ** 30) / 2 : WASM32_HEAP_BYTES,
    );
    const optional = <K extends string, V>(key: K, v: V | undefined) =>
      (v === undefined ? {} : { [key]: v }) as Partial<Record<K, V>>;
    return {
      schemaVersion: 1,
      backend: choice.backend,
      backendReason: choice.reason,
      tflops,
      bandwidthGBps: onGpu ? gpu.bandwidthGBps : cpu!.bandwidthGBps,
      memoryBytes: Math.floor(onGpu ? gpu.usableMemoryBytes : wasmMemory),
      memoryBasis: onGpu ? 'webgpu-probe' : 'wasm-estimate',
      category: categorize(tflops, { mobile: cls.class === 'mobile' }, req.categoryThresholds),
      categoryThresholds: req.categoryThresholds,
      gpu,
      cpu,
      device: {
        class: cls.class,
        classBasis: cls.basis,
        ...optional('deviceMemoryGB', facts.deviceMemoryGB),
        hardwareConcurrency: facts.hardwareConcurrency,
        ...optional('battery', facts.battery),
      },
      ...optional('network', network),
      spread: {
        samples: Math.max(1, Math.min(...ctx.sampleCounts)),
        matmulRelSpread: (onGpu ? g.spread.f32 : c?.spread.matmul) ?? 0,
        bandwidthRelSpread: (onGpu ? g.spread.bandwidth : c?.spread.bandwidth) ?? 0,
        ...optional('gpuMatmulF32RelSpread', g.spread.f32),
        ...optional('gpuMatmulF16RelSpread', g.spread.f16),
        ...optional('gpuBandwidthRelSpread', g.spread.bandwidth),
        ...optional('cpuMatmulRelSpread', c?.spread.matmul),
        ...optional('cpuBandwidthRelSpread', c?.spread.bandwidth),
      },
      notes: ctx.notes,
      phaseMs: ctx.phaseMs,
      durationMs: ctx.elapsed(),
      measuredAt,
    };
  } finally {
    void cpuPrep?.then(
      (b) => b.release(),
      () => undefined,
    );
  }
}
