/**
 * CPU measurements for peers that will run on onnxruntime-web's wasm backend: MatMul throughput of
 * a real ORT session (the kernels a shard would run) and host memory bandwidth.
 */
import type * as Ort from 'onnxruntime-common';
import { RingworkError } from '../../../shared/errors';
import { GraphBuilder } from '../../../shared/graph/onnx-builder';
import { randomMatrix } from '../../../shared/device/matmul-reference';
import { measureAdaptive, type AdaptiveResult } from './measure';

/** Weight matrix of the benchmark: K×N like one 1024-wide projection of a small LLM. */
const K = 1024;
const N = 1024;
/**
 * Rows of the activation (tokens in a batch), grown to fit the budget. Starts at 64: below that
 * the product is bound by streaming the 4 MiB weight, not by arithmetic, and the figure is a
 * compute figure (bandwidth is measured separately).
 */
const M_SIZES = [64, 128, 256, 512, 1024] as const;

/** A `[m, K] × [K, N]` MatMul whose weight is a constant initializer, as in a model shard. */
function matmulModel(): Uint8Array {
  const g = new GraphBuilder();
  const a = g.input('a', 'float32', ['m', K]);
  const w = g.constFloat(randomMatrix(K * N, 11), [K, N], 'w');
  g.node('MatMul', [a, w], { outputs: ['y'] });
  g.output('y', 'float32', ['m', N]);
  return g.build('ringwork-cpu-bench', { '': 13 });
}

/** Result of {@link CpuBench.measureMatmul}. */
export interface CpuMatmulResult extends AdaptiveResult<number> {
  threads: number;
  shape: { m: number; k: number; n: number };
}

/** A loaded wasm runtime with the benchmark session, ready to measure. */
export interface CpuBench {
  /** wasm threads the session runs with (1 unless the page is cross-origin isolated). */
  threads: number;
  /** Time to load the wasm runtime and create the session, ms. */
  setupMs: number;
  /** Of which importing the ORT JavaScript, ms (the rest is fetching and compiling the wasm, and the session). */
  importMs: number;
  /** MatMul FLOP/s, grown over `m` to fit the budget. */
  measureMatmul(opts: {
    budgetMs: number;
    samples: number;
    signal?: AbortSignal | undefined;
  }): Promise<CpuMatmulResult>;
  release(): Promise<void>;
}

/**
 * Loads onnxruntime-web (wasm) and creates the MatMul session. Separate from measuring because it
 * is slow (the runtime is a ~28 MB wasm module to compile, seconds on a small machine): the
 * profiler starts it as soon as it knows the CPU path will be needed and overlaps it with the GPU
 * steps. ORT is imported lazily so a WebGPU peer never downloads it just to be profiled.
 */
export async function prepareCpuBench(): Promise<CpuBench> {
  const t0 = performance.now();
  const { configureOrt } = await import('../engine/ort-env');
  const ort = configureOrt();
  const tImport = performance.now();
  let session: Ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(matmulModel(), {
      executionProviders: ['wasm'],
      graphOptimizationLevel: 'all',
    });
  } catch (e) {
    throw new RingworkError(
      'RUNNER_BACKEND_FAILED',
      'onnxruntime-web wasm could not create a MatMul session.',
      {
        cause: e,
      },
    );
  }
  const threads = Math.max(1, ort.env.wasm.numThreads ?? 1);
  const input = randomMatrix(M_SIZES[M_SIZES.length - 1]! * K, 12);
  let released: Promise<void> | undefined;
  return {
    threads,
    setupMs: performance.now() - t0,
    importMs: tImport - t0,
    async measureMatmul(opts) {
      const r = await measureAdaptive({
        sizes: M_SIZES,
        workOf: (m) => 2 * m * K * N,
        budgetMs: opts.budgetMs,
        samples: opts.samples,
        signal: opts.signal,
        what: 'wasm MatMul benchmark',
        prepare: async (m) => {
          const feeds = { a: new ort.Tensor('float32', input.subarray(0, m * K), [m, K]) };
          return {
            work: 2 * m * K * N,
            run: async (reps) => {
              const start = performance.now();
              for (let i = 0; i < reps; i++) {
                const out = await session.run(feeds);
                out['y']?.dispose();
              }
              return performance.now() - start;
            },
            dispose: () => feeds.a.dispose(),
          };
        },
      });
      return { ...r, threads, shape: { m: r.size, k: K, n: N } };
    },
    release: () => (released ??= session.release()),
  };
}

/**
 * Host memory bandwidth in B/s from `TypedArray.set` (a memcpy in every engine) over buffers grown
 * from 8 MiB to 64 MiB — past the last-level cache of ordinary CPUs — counting read plus write.
 */
export async function benchCpuBandwidth(opts: {
  budgetMs: number;
  samples: number;
  signal?: AbortSignal | undefined;
}): Promise<AdaptiveResult<number>> {
  return measureAdaptive({
    sizes: [8 << 20, 16 << 20, 32 << 20, 64 << 20],
    workOf: (bytes) => 2 * bytes,
    budgetMs: opts.budgetMs,
    samples: opts.samples,
    signal: opts.signal,
    what: 'CPU bandwidth benchmark',
    prepare: async (bytes) => {
      // fill() touches every page so the first timed copy does not pay for page faults.
      const src = new Float64Array(bytes / 8).fill(1.5);
      const dst = new Float64Array(bytes / 8).fill(0);
      return {
        work: 2 * bytes,
        run: async (reps) => {
          const start = performance.now();
          for (let i = 0; i < reps; i++) dst.set(src);
          return performance.now() - start;
        },
        dispose: () => undefined,
      };
    },
  });
}
