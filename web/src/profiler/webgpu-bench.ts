/**
 * WebGPU measurements: a tiled, vectorised WGSL matmul (f32, and f16 where `shader-f16` exists),
 * its check against a CPU reference, a buffer-copy bandwidth kernel, and a usable-memory probe.
 * Runs wherever `navigator.gpu` exists (the profiler runs it in a worker).
 */
import { RingworkError, throwIfAborted } from '../../../shared/errors';
import { f16BitsToF32, f32ToF16Bits } from '../../../shared/device/half';
import { compareMatmul, randomMatrix, referenceMatmul } from '../../../shared/device/matmul-reference';
import type { MatmulCheck } from '../../../shared/device/profile';
import { measureAdaptive, raceAbort, type AdaptiveResult } from './measure';

/** Element type of a matmul run. */
export type GpuDtype = 'f32' | 'f16';

/** Output tile of one workgroup (rows × cols) and the K slice staged per step. */
const TILE_M = 64;
const TILE_N = 64;
const TILE_K = 16;
/** 16×16 threads, each owning a 4×4 block of outputs: 64×64 per workgroup. */
const WG = 16;

/**
 * Relative-error tolerances of {@link verifyMatmul}: f32 results agree with an f64 reference to
 * ~1e-7; an f16 kernel also accumulates in f16 (eps 4.9e-4), so a 45-term dot product may drift
 * by a few 1e-3.
 */
export const MATMUL_TOLERANCE: Readonly<Record<GpuDtype, number>> = { f32: 1e-4, f16: 2e-2 };

/**
 * The matmul kernel. `C[M×N] = A[M×K] · B[K×N]`, all row-major with rows padded to a multiple of
 * four elements (zero-filled) so every global load and store is one vec4. Each workgroup stages a
 * 64×16 slice of A and a 16×64 slice of B in workgroup memory per K step (one vec4 load per thread
 * for each), then every thread accumulates a 4×4 block: per 4-wide k it reads one vec4 of A per
 * row (a broadcast across the row of threads) and four vec4 rows of B, and issues 16 vec4 FMAs.
 * Bounds are checked on loads (zero outside) and stores, so any M, N, K work.
 */
export function matmulWgsl(dtype: GpuDtype): string {
  const T = dtype;
  const kVecs = TILE_K / 4;
  // Fully unrolled K step; each 4-wide k gets its own block so its temporaries die at the brace.
  const inner: string[] = [];
  for (let kv = 0; kv < kVecs; kv++) {
    const lines: string[] = [];
    for (let j = 0; j < 4; j++) lines.push(`let b${j} = tileB[${kv * 4 + j}u][tx];`);
    for (let i = 0; i < 4; i++) {
      lines.push(`let a${i} = tileA[row0 + ${i}u][${kv}u];`);
      for (const [j, c] of ['x', 'y', 'z', 'w'].entries()) {
        lines.push(`acc${i} = fma(vec4<${T}>(a${i}.${c}), b${j}, acc${i});`);
      }
    }
    inner.push(`{\n      ${lines.join('\n      ')}\n    }`);
  }
  return /* wgsl */ `${dtype === 'f16' ? 'enable f16;' : ''}
struct Dims { m: u32, k: u32, kv: u32, nv: u32 }
@group(0) @binding(0) var<storage, read> A: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<${T}>>;
@group(0) @binding(2) var<storage, read_write> C: array<vec4<${T}>>;
@group(0) @binding(3) var<uniform> dims: Dims;

var<workgroup> tileA: array<array<vec4<${T}>, ${kVecs}>, ${TILE_M}>;
var<workgroup> tileB: array<array<vec4<${T}>, ${TILE_N / 4}>, ${TILE_K}>;

@compute @workgroup_size(${WG}, ${WG}, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tx = lid.x;
  let row0 = lid.y * 4u;
  let t = lid.y * ${WG}u + tx;
  let m0 = wid.y * ${TILE_M}u;
  let n0v = wid.x * ${TILE_N / 4}u;
  let aRow = t / ${kVecs}u;
  let aCol = t % ${kVecs}u;
  let bRow = t / ${TILE_N / 4}u;
  let bCol = t % ${TILE_N / 4}u;
  var acc0 = vec4<${T}>(0);
  var acc1 = vec4<${T}>(0);
  var acc2 = vec4<${T}>(0);
  var acc3 = vec4<${T}>(0);
  let steps = (dims.k + ${TILE_K - 1}u) / ${TILE_K}u;
  for (var s = 0u; s < steps; s++) {
    let gm = m0 + aRow;
    let gkv = s * ${kVecs}u + aCol;
    var av = vec4<${T}>(0);
    if (gm < dims.m && gkv < dims.kv) { av = A[gm * dims.kv + gkv]; }
    tileA[aRow][aCol] = av;
    let gk = s * ${TILE_K}u + bRow;
    let gnv = n0v + bCol;
    var bv = vec4<${T}>(0);
    if (gk < dims.k && gnv < dims.nv) { bv = B[gk * dims.nv + gnv]; }
    tileB[bRow][bCol] = bv;
    workgroupBarrier();
    ${inner.join('\n    ')}
    workgroupBarrier();
  }
  let gnv = n0v + tx;
  if (gnv < dims.nv) {
    if (m0 + row0 < dims.m) { C[(m0 + row0) * dims.nv + gnv] = acc0; }
    if (m0 + row0 + 1u < dims.m) { C[(m0 + row0 + 1u) * dims.nv + gnv] = acc1; }
    if (m0 + row0 + 2u < dims.m) { C[(m0 + row0 + 2u) * dims.nv + gnv] = acc2; }
    if (m0 + row0 + 3u < dims.m) { C[(m0 + row0 + 3u) * dims.nv + gnv] = acc3; }
  }
}
`;
}

/** Grid-stride vec4 copy: every byte of `src` read once and of `dst` written once. */
const COPY_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = arrayLength(&src);
  let stride = nwg.x * 256u;
  for (var i = gid.x; i < n; i += stride) { dst[i] = src[i]; }
}
`;

const ceil4 = (x: number) => Math.ceil(x / 4) * 4;

/**
 * Compiled pipelines per device. The check and the benchmark share one kernel, and on SwiftShader
 * compiling it costs about a second, so it is compiled once per device.
 */
const pipelineCache = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

/** A compute pipeline (cached per device and label); WGSL errors become a typed error. */
function computePipeline(
  device: GPUDevice,
  code: string,
  label: string,
  signal?: AbortSignal,
): Promise<GPUComputePipeline> {
  let cache = pipelineCache.get(device);
  if (!cache) pipelineCache.set(device, (cache = new Map()));
  let p = cache.get(label);
  if (!p) {
    const module = device.createShaderModule({ code, label });
    p = device
      .createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' }, label })
      .catch(async (e: unknown) => {
        const info = await module.getCompilationInfo().catch(() => undefined);
        throw new RingworkError('RUNNER_BACKEND_FAILED', `WebGPU pipeline "${label}" could not be created.`, {
          cause: e,
          details: { messages: info?.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`) ?? [] },
        });
      });
    cache.set(label, p);
  }
  return raceAbort(p, signal, `Compiling the WebGPU "${label}" kernel`);
}

/** Times `reps` dispatches submitted together, from submit to the queue reporting them done. */
async function timeDispatches(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  bindGroup: GPUBindGroup,
  workgroups: [number, number],
  reps: number,
): Promise<number> {
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  for (let r = 0; r < reps; r++) pass.dispatchWorkgroups(workgroups[0], workgroups[1]);
  pass.end();
  const commands = encoder.finish();
  const t0 = performance.now();
  device.queue.submit([commands]);
  await device.queue.onSubmittedWorkDone();
  return performance.now() - t0;
}

type HostArray = Float32Array<ArrayBuffer> | Uint16Array<ArrayBuffer>;

/** Converts f32 values to the bytes a `dtype` storage buffer holds. */
function encode(values: Float32Array<ArrayBuffer>, dtype: GpuDtype): HostArray {
  if (dtype === 'f32') return values;
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i]!);
  return out;
}

/** Rounds values to what the GPU sees in `dtype` (identity for f32). */
function quantize(values: Float32Array<ArrayBuffer>, dtype: GpuDtype): Float32Array<ArrayBuffer> {
  if (dtype === 'f32') return values;
  return Float32Array.from(values, (v) => f16BitsToF32(f32ToF16Bits(v)));
}

/** Copies a row-major `rows × cols` matrix into rows padded to `pitch` elements (zeros after). */
function padRows(
  src: Float32Array<ArrayBuffer>,
  rows: number,
  cols: number,
  pitch: number,
): Float32Array<ArrayBuffer> {
  if (pitch === cols) return src;
  const out = new Float32Array(rows * pitch);
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * cols, (r + 1) * cols), r * pitch);
  return out;
}

/** GPU buffers of one matmul problem. */
interface MatmulBuffers {
  a: GPUBuffer;
  b: GPUBuffer;
  c: GPUBuffer;
  dims: GPUBuffer;
  bindGroup: GPUBindGroup;
  workgroups: [number, number];
  destroy(): void;
}

function createMatmulBuffers(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  dtype: GpuDtype,
  m: number,
  k: number,
  n: number,
  fill: { a: HostArray; b: HostArray },
): MatmulBuffers {
  const elem = dtype === 'f32' ? 4 : 2;
  const kp = ceil4(k);
  const np = ceil4(n);
  const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const a = device.createBuffer({ size: m * kp * elem, usage: storage, label: 'matmul A' });
  const b = device.createBuffer({ size: k * np * elem, usage: storage, label: 'matmul B' });
  const c = device.createBuffer({
    size: m * np * elem,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    label: 'matmul C',
  });
  const dims = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(a, 0, fill.a);
  device.queue.writeBuffer(b, 0, fill.b);
  device.queue.writeBuffer(dims, 0, new Uint32Array([m, k, kp / 4, np / 4]));
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [a, b, c, dims].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  return {
    a,
    b,
    c,
    dims,
    bindGroup,
    workgroups: [Math.ceil(n / TILE_N), Math.ceil(m / TILE_M)],
    destroy() {
      for (const buf of [a, b, c, dims]) buf.destroy();
    },
  };
}

/** Reads a GPU buffer back to the CPU. */
async function readBuffer(device: GPUDevice, src: GPUBuffer, size: number): Promise<ArrayBuffer> {
  const staging = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(src, 0, staging, 0, size);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    return staging.getMappedRange().slice(0);
  } finally {
    staging.destroy();
  }
}

/**
 * Runs the matmul kernel on a small random case with odd sizes (67×45 · 45×93 by default: partial
 * tiles in M and N, K not a multiple of the K tile, rows that need padding) and compares with an
 * f64 CPU reference computed from the same (for f16: f16-rounded) inputs.
 */
export async function verifyMatmul(
  device: GPUDevice,
  dtype: GpuDtype = 'f32',
  shape: { m: number; k: number; n: number } = { m: 67, k: 45, n: 93 },
  signal?: AbortSignal,
): Promise<MatmulCheck> {
  const { m, k, n } = shape;
  const a = quantize(randomMatrix(m * k, 1), dtype);
  const b = quantize(randomMatrix(k * n, 2), dtype);
  const pipeline = await computePipeline(device, matmulWgsl(dtype), `matmul-${dtype}`, signal);
  const np = ceil4(n);
  const bufs = createMatmulBuffers(device, pipeline, dtype, m, k, n, {
    a: encode(padRows(a, m, k, ceil4(k)), dtype),
    b: encode(padRows(b, k, n, np), dtype),
  });
  try {
    await timeDispatches(device, pipeline, bufs.bindGroup, bufs.workgroups, 1);
    const raw = await readBuffer(device, bufs.c, bufs.c.size);
    const padded =
      dtype === 'f32'
        ? new Float32Array(raw)
        : Float32Array.from(new Uint16Array(raw), (h) => f16BitsToF32(h));
    const got = new Float32Array(m * n);
    for (let r = 0; r < m; r++) got.set(padded.subarray(r * np, r * np + n), r * n);
    const err = compareMatmul(got, referenceMatmul(a, b, m, k, n));
    const finite = Number.isFinite(err.maxAbsError);
    return {
      dtype,
      m,
      k,
      n,
      maxAbsError: finite ? err.maxAbsError : null,
      relError: finite ? err.relError : null,
      passed: finite && err.relError <= MATMUL_TOLERANCE[dtype],
    };
  } finally {
    bufs.destroy();
  }
}

/** Square sizes the matmul benchmark may grow through. */
const MATMUL_SIZES = [128, 256, 512, 1024, 2048] as const;

/**
 * Matmul throughput in FLOP/s: square problems grown from 128 while they fit the budget (stays
 * at 128 on SwiftShader, reaches 1024–2048 on a discrete GPU), then timed over several batches of
 * dispatches with `onSubmittedWorkDone`.
 */
export async function benchMatmul(
  device: GPUDevice,
  opts: { dtype: GpuDtype; budgetMs: number; samples: number; signal?: AbortSignal | undefined },
): Promise<AdaptiveResult<number>> {
  const { dtype } = opts;
  const pipeline = await computePipeline(device, matmulWgsl(dtype), `matmul-${dtype}`, opts.signal);
  const limit = device.limits.maxStorageBufferBindingSize / (dtype === 'f32' ? 4 : 2);
  const sizes = MATMUL_SIZES.filter((s) => s * s <= limit);
  // One random block tiled over the whole matrix: realistic values without generating 4M randoms.
  const block = encode(randomMatrix(1 << 16, 3), dtype);
  const filled = (len: number) => {
    const out = dtype === 'f32' ? new Float32Array(len) : new Uint16Array(len);
    for (let i = 0; i < len; i += block.length)
      out.set(block.subarray(0, Math.min(block.length, len - i)), i);
    return out;
  };
  return measureAdaptive({
    sizes,
    workOf: (s) => 2 * s ** 3,
    budgetMs: opts.budgetMs,
    samples: opts.samples,
    signal: opts.signal,
    what: `WebGPU ${dtype} matmul benchmark`,
    prepare: async (s) => {
      const bufs = createMatmulBuffers(device, pipeline, dtype, s, s, s, {
        a: filled(s * s),
        b: filled(s * s),
      });
      return {
        work: 2 * s ** 3,
        run: (reps) => timeDispatches(device, pipeline, bufs.bindGroup, bufs.workgroups, reps),
        dispose: () => bufs.destroy(),
      };
    },
  });
}

/**
 * Memory bandwidth in B/s: a vec4 copy kernel over buffers grown from 4 MiB (up to 256 MiB or the
 * binding limit), counting bytes read plus bytes written.
 */
export async function benchBandwidth(
  device: GPUDevice,
  opts: { budgetMs: number; samples: number; signal?: AbortSignal | undefined },
): Promise<AdaptiveResult<number>> {
  const pipeline = await computePipeline(device, COPY_WGSL, 'bandwidth-copy', opts.signal);
  const max = Math.min(256 << 20, device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  const sizes: number[] = [];
  for (let s = 4 << 20; s <= max; s *= 2) sizes.push(s);
  return measureAdaptive({
    sizes,
    workOf: (bytes) => 2 * bytes,
    budgetMs: opts.budgetMs,
    samples: opts.samples,
    signal: opts.signal,
    what: 'WebGPU bandwidth benchmark',
    prepare: async (bytes) => {
      const usage = GPUBufferUsage.STORAGE;
      const src = device.createBuffer({ size: bytes, usage, label: 'bandwidth src' });
      const dst = device.createBuffer({ size: bytes, usage, label: 'bandwidth dst' });
      const bindGroup = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [src, dst].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      // Enough threads to keep any GPU's memory system busy; the kernel strides over the rest.
      const groups = Math.min(
        Math.ceil(bytes / 16 / 256),
        8192,
        device.limits.maxComputeWorkgroupsPerDimension,
      );
      return {
        work: 2 * bytes,
        run: (reps) => timeDispatches(device, pipeline, bindGroup, [groups, 1], reps),
        dispose: () => {
          src.destroy();
          dst.destroy();
        },
      };
    },
  });
}

/** Outcome of {@link probeMemory}. */
export interface MemoryProbe {
  usableBytes: number;
  /** True when the probe stopped at the cap or the deadline, not at an allocation failure. */
  capped: boolean;
  /** Buffers that were live at the peak. */
  buffers: number;
}

/**
 * The largest total of buffers that can be allocated and touched, up to `capBytes`. Buffers are
 * allocated in chunks (a quarter of the cap, at most 256 MiB or the adapter's buffer limit); each allocation sits in
 * `out-of-memory` and `validation` error scopes, and a 4-byte write to its end forces the driver to
 * commit real memory rather than a lazy reservation. A failed chunk is retried at half the size
 * down to 16 MiB, so the result is within 16 MiB of the real limit. Everything is destroyed before
 * returning, whatever happens.
 */
export async function probeMemory(
  device: GPUDevice,
  opts: { capBytes: number; deadlineMs: number; signal?: AbortSignal | undefined; isLost?: () => boolean },
): Promise<MemoryProbe> {
  const MIN_CHUNK = 16 << 20;
  const start = performance.now();
  const buffers: GPUBuffer[] = [];
  const touch = new Uint32Array([1]);
  let total = 0;
  // At least four steps to the cap, so a deadline cuts the probe at a useful granularity.
  let chunk = Math.min(
    256 << 20,
    device.limits.maxBufferSize,
    Math.max(opts.capBytes / 4, MIN_CHUNK),
    opts.capBytes,
  );
  chunk = Math.floor(chunk);
  chunk -= chunk % 4;
  let failed = false;
  try {
    while (total < opts.capBytes && chunk >= 4) {
      throwIfAborted(opts.signal, 'WebGPU memory probe');
      if (performance.now() - start > opts.deadlineMs || opts.isLost?.()) break;
      let size = Math.min(chunk, opts.capBytes - total);
      size -= size % 4;
      if (size < 4) break;
      device.pushErrorScope('out-of-memory');
      device.pushErrorScope('validation');
      const buf = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
      device.queue.writeBuffer(buf, size - 4, touch);
      const invalid = await device.popErrorScope();
      const oom = await device.popErrorScope();
      if (invalid || oom) {
        buf.destroy();
        failed = true;
        if (chunk / 2 < MIN_CHUNK) break;
        chunk = Math.floor(chunk / 2 / 4) * 4;
        continue;
      }
      buffers.push(buf);
      total += size;
    }
    // Make sure the commits really happened before calling the memory usable.
    await device.queue.onSubmittedWorkDone();
    return { usableBytes: total, capped: !failed, buffers: buffers.length };
  } finally {
    for (const b of buffers) b.destroy();
  }
}
