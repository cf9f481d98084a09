import type * as Ort from 'onnxruntime-common';
import { RingworkError, throwIfAborted } from '../errors.js';
import { compileShard, type KvCacheMode, type ShardIo } from '../graph/compile-shard.js';
import { GraphBuilder } from '../graph/onnx-builder.js';
import type { UnitRange } from '../graph/units.js';
import type { ModelSource } from '../model/types.js';
import type {
  Backend,
  LoadRequest,
  LoadResult,
  ModelRef,
  RunnerInfo,
  ShardRunner,
  StepInput,
  StepOutput,
} from './shard-runner.js';

/** The parts of the `onnxruntime-web` module the runner uses (injected so shared/ stays host-neutral). */
export interface OrtModule {
  InferenceSession: typeof Ort.InferenceSession;
  Tensor: typeof Ort.Tensor;
  env: Ort.Env;
}

/** Dependencies of {@link createOrtShardRunner}. */
export interface OrtShardRunnerDeps {
  ort: OrtModule;
  /** Opens a model by reference (URL loader in browsers, file or URL loader in Node). */
  openModel: (ref: ModelRef, signal?: AbortSignal) => Promise<ModelSource>;
  /** Decides the backend for `auto`; defaults to probing `navigator.gpu`. */
  probeWebGpu?: () => Promise<{ ok: boolean; reason: string }>;
  now?: () => number;
  newId?: () => string;
  /**
   * Warm the engine's code up after the first load (ms of decode-shaped steps on a throwaway
   * session; default 0 = off). V8 runs wasm first with its baseline compiler and moves hot
   * functions to its optimizing one only once they have run a while: measured on stories15M, a
   * page's first decode steps took 2-3x the warmed-up time for ~1 s of decoding, which is a
   * short answer's whole life. Optimized code stays for the life of the realm, so only a runner's
   * first load pays (a failover's reload does not). Pages set it; Node CLIs and tests do not.
   */
  warmUpMs?: number;
  /**
   * After the load's `warmUpMs`, keep warming up in the background for up to this many ms more
   * (default 0 = off), until the first real step: the load is not delayed, and a step that arrives
   * waits for at most one warm-up step. Traced on stage pages, V8 went on compiling ORT's kernels
   * to optimized code through the whole first answer after 600 ms of warm-up (its thread pool's
   * CPU, ~90 % of it `wasm.TopTierCompilation`, as much as the model's own runs): kernels that
   * run little per step need many steps before V8 tiers them up.
   */
  idleWarmUpMs?: number;
  /**
   * At most this many warm-up steps, foreground and background together (default: no cap, the
   * budgets decide). The steps walk the
   * positions of the context and start over from 0 (a rewind) when they reach its end.
   */
  warmUpSteps?: number;
}

interface KvPair {
  key: Ort.Tensor;
  value: Ort.Tensor;
}

/**
 * A `rows` cache (see `KvCacheMode`): per layer, key and value buffers `[kvHeads, capacity,
 * headDim]` whose first `length` rows of each head are the cache. Fed to ORT as they are (no JS
 * copy); the step's new rows are written in place.
 */
interface RowsKv {
  capacity: number;
  keys: Map<number, { key: Float32Array; value: Float32Array }>;
}

interface GenSession {
  length: number;
  kv: Map<number, KvPair>;
  rows?: RowsKv;
}

/**
 * A `rows` buffer grows by this many positions at a time: every step feeds the whole buffer (the
 * rows past the cache are masked), so spare rows cost copy-in and attention work, and each
 * growth costs one copy of the cache.
 */
const ROWS_GRANULE = 32;

/** Positions of the chunk each warm-up lap starts with (a short prompt's prefill). */
const WARM_UP_CHUNK = 16;

/** Default WebGPU probe: a real (non-fallback) adapter must exist. */
export async function probeWebGpu(): Promise<{ ok: boolean; reason: string }> {
  const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter(): Promise<unknown> } } }).navigator?.gpu;
  if (!gpu)
    return {
      ok: false,
      reason: 'WebGPU is not available here (navigator.gpu is missing); using wasm on the CPU.',
    };
  try {
    const adapter = (await gpu.requestAdapter()) as {
      isFallbackAdapter?: boolean;
      info?: { isFallbackAdapter?: boolean };
    } | null;
    if (!adapter) return { ok: false, reason: 'WebGPU found no adapter; using wasm on the CPU.' };
    if (adapter.info?.isFallbackAdapter || adapter.isFallbackAdapter) {
      return {
        ok: false,
        reason: 'The WebGPU adapter is a CPU fallback (SwiftShader), slower than wasm; using wasm.',
      };
    }
    return { ok: true, reason: 'A hardware WebGPU adapter is available.' };
  } catch (e) {
    return { ok: false, reason: `WebGPU adapter request failed (${String(e)}); using wasm.` };
  }
}

/**
 * A {@link ShardRunner} on onnxruntime-web (wasm or WebGPU), in the calling thread. The browser
 * worker wraps exactly this; Node tests and CLIs use it directly with the wasm backend.
 */
export function createOrtShardRunner(deps: OrtShardRunnerDeps): ShardRunner {
  const { ort } = deps;
  const now = deps.now ?? (() => performance.now());
  let nextId = 0;
  const newId = deps.newId ?? (() => `s${++nextId}`);
  let session: Ort.InferenceSession | undefined;
  let io: ShardIo | undefined;
  let backend: Backend | undefined;
  let backendReason: string | undefined;
  let range: UnitRange | undefined;
  let contextLength = 0;
  let probed: Promise<{ ok: boolean; reason: string }> | undefined;
  const sessions = new Map<string, GenSession>();
  let disposed = false;
  // ORT sessions must not run concurrently; generation sessions take turns.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn, fn);
    queue = p.catch(() => undefined);
    return p;
  };

  const emptyKv = (): Ort.Tensor =>
    new ort.Tensor('float32', new Float32Array(0), [1, io!.kvHeads, 0, io!.headDim]);

  const disposeSession = (s: GenSession) => {
    for (const { key, value } of s.kv.values()) {
      if (key.location === 'gpu-buffer') key.dispose();
      if (value.location === 'gpu-buffer') value.dispose();
    }
    s.kv.clear();
    s.rows = undefined;
  };

  /** Frees the sessions and the ORT session (after any step in flight); the runner stays usable. */
  const unload = () => {
    idleWarmUp.stopped = true;
    return serial(async () => {
      for (const s of sessions.values()) disposeSession(s);
      sessions.clear();
      const old = session;
      session = undefined;
      io = undefined;
      backend = undefined;
      backendReason = undefined;
      range = undefined;
      await old?.release();
    });
  };

  const doOpenSession = async (): Promise<string> => {
    if (disposed) throw disposedError();
    if (!session) throw notLoaded();
    const id = newId();
    sessions.set(id, { length: 0, kv: new Map() });
    return id;
  };
  const doStep = (
    sessionId: string,
    input: StepInput,
    opts: { signal?: AbortSignal } = {},
  ): Promise<StepOutput> => {
    const called = now();
    const work = serial(async () => {
      const started = now();
      throwIfAborted(opts.signal, 'The step');
      if (disposed) throw disposedError();
      if (!session || !io) throw notLoaded();
      const s = sessions.get(sessionId);
      if (!s) {
        throw new RingworkError(
          'RUNNER_UNKNOWN_SESSION',
          `No generation session "${sessionId}": open one with openSession() first.`,
          {
            details: { sessionId },
          },
        );
      }
      const S = checkInput(io, input, s.length);
      if (input.position + S > contextLength) {
        throw new RingworkError(
          'RUNNER_CONTEXT_FULL',
          `Context full: position ${input.position} + ${S} tokens exceeds this shard's context of ${contextLength}. Start a new session or load with a longer contextLength.`,
          { details: { position: input.position, tokens: S, contextLength } },
        );
      }
      const feeds: Record<string, Ort.Tensor> = {};
      if (io.tokens)
        feeds[io.tokens] = new ort.Tensor(
          'int64',
          BigInt64Array.from(input.tokens!, (t) => BigInt(t)),
          [1, S],
        );
      if (io.hiddenIn) feeds[io.hiddenIn] = new ort.Tensor('float32', input.hidden!, [1, S, io.hiddenSize]);
      if (io.positions) {
        feeds[io.positions] = new ort.Tensor(
          'int64',
          BigInt64Array.from({ length: S }, (_, i) => BigInt(input.position + i)),
          [1, S],
        );
      }
      if (io.logitsRows) {
        const rows = logitsRowsOf(input, S);
        feeds[io.logitsRows] = new ort.Tensor('int64', BigInt64Array.of(BigInt(rows)), [1]);
      }
      // A rewind feeds the cache cut to `position` (`rows`: the graph masks the buffer's rows from
      // `position` on, so nothing is cut); the session's own cache changes only once the run
      // succeeds, so a failed or aborted step leaves it as it was.
      const keep = input.position;
      const rows = io.kvCache === 'rows' ? (s.rows ??= { capacity: 0, keys: new Map() }) : undefined;
      for (const kv of io.kv) {
        if (rows) {
          const b = rows.keys.get(kv.layer);
          const dims = [1, io.kvHeads, rows.capacity, io.headDim];
          feeds[kv.pastKey] = new ort.Tensor('float32', b?.key ?? new Float32Array(0), dims);
          feeds[kv.pastValue] = new ort.Tensor('float32', b?.value ?? new Float32Array(0), dims);
          continue;
        }
        const past = s.kv.get(kv.layer);
        const cut = keep < s.length && past;
        feeds[kv.pastKey] = cut ? await truncateKv(ort, past.key, keep) : (past?.key ?? emptyKv());
        feeds[kv.pastValue] = cut ? await truncateKv(ort, past.value, keep) : (past?.value ?? emptyKv());
      }
      const t0 = now();
      const out = await session.run(feeds);
      const ms = now() - t0;
      if (opts.signal?.aborted) {
        // The caller has already been told ABORTED: drop the outputs, leave the cache as it was.
        for (const t of Object.values(out)) if (t.location === 'gpu-buffer') t.dispose();
        throw new RingworkError('ABORTED', 'The step was aborted.', { cause: opts.signal.reason });
      }
      if (rows) {
        appendRows(rows, io, out, keep, S, contextLength);
      } else {
        for (const kv of io.kv) {
          const old = s.kv.get(kv.layer);
          s.kv.set(kv.layer, { key: out[kv.presentKey]!, value: out[kv.presentValue]! });
          if (old?.key.location === 'gpu-buffer') old.key.dispose();
          if (old?.value.location === 'gpu-buffer') old.value.dispose();
        }
      }
      s.length = input.position + S;
      const result = out[io.output]!;
      const c0 = now();
      const data = (await result.getData()) as Float32Array;
      const phases = { queueMs: started - called, feedMs: t0 - started, copyOutMs: now() - c0 };
      return { kind: io.outputKind, data, seqLen: S, ms, phases };
    });
    return opts.signal ? abortable(work, opts.signal) : work;
  };
  let warming: Promise<void> | undefined;
  let warmedUp = false;
  /** The background warm-up's stop flag: set by the first real step, a load, an unload. */
  let idleWarmUp = { stopped: true };
  /**
   * Runs one-position steps (zeros in, outputs dropped) on a throwaway session, once per runner:
   * `budgetMs` in the foreground (the returned promise settles after it, with the ms spent), then up to `idleMs` more in the background until `idleWarmUp` is stopped (see
   * {@link OrtShardRunnerDeps.warmUpMs} and `idleWarmUpMs`). A failure here is not the load's: the
   * real steps report whatever is wrong.
   */
  const warmUpSteps = (budgetMs: number, idleMs: number, signal?: AbortSignal): Promise<number> => {
    warmedUp = true;
    const flag = { stopped: false };
    idleWarmUp = flag;
    const t0 = now();
    let foregroundDone: (ms: number) => void = () => undefined;
    const foreground = new Promise<number>((r) => (foregroundDone = r));
    void (async () => {
      const id = await doOpenSession();
      try {
        // Until the budgets are spent, not a fixed count: V8 moves a wasm function to optimized
        // code once it has run a while, so kernels that run little per step need many steps.
        const max = deps.warmUpSteps ?? Infinity;
        // Each lap over the context starts with a prompt-shaped chunk: a prefill runs other
        // kernels (matrix-matrix, not matrix-vector) than a decode step.
        const chunk = Math.min(WARM_UP_CHUNK, contextLength);
        let inForeground = true;
        for (let n = 0, p = 0; n < max; n++) {
          const spent = now() - t0;
          if (inForeground && (spent >= budgetMs || signal?.aborted)) {
            if (signal?.aborted || idleMs <= 0 || flag.stopped) break;
            inForeground = false;
            foregroundDone(spent);
          }
          if (!inForeground && (flag.stopped || spent >= budgetMs + idleMs)) break;
          const S = p === 0 ? chunk : 1;
          const input: StepInput = io!.tokens
            ? { tokens: new Int32Array(S), position: p }
            : { hidden: new Float32Array(S * io!.hiddenSize), position: p };
          await doStep(id, p === 0 && n > 0 ? { ...input, rewind: true } : input);
          p = (p + S) % contextLength;
        }
      } catch {
        /* see above */
      } finally {
        // Closed before a foreground-only warm-up reports done: the load leaves no session open.
        await runner.closeSession(id);
        foregroundDone(now() - t0);
      }
    })().catch(() => foregroundDone(now() - t0));
    return foreground;
  };
  const runner: ShardRunner = {
    warm() {
      // One tiny wasm session: ORT starts its runtime (the wasm module and thread pool, shared by
      // every later session of this realm) on the first session it creates, whatever its graph.
      warming ??= (async () => {
        if (session || disposed) return;
        try {
          const g = new GraphBuilder();
          g.output(g.node('Identity', [g.input('x', 'float32', [1])], { outputs: ['y'] }), 'float32', [1]);
          const s = await ort.InferenceSession.create(g.build('warm', { '': 13 }), {
            executionProviders: ['wasm'],
          });
          await s.release();
        } catch {
          /* the shard's own load reports what fails */
        }
      })();
      return warming;
    },
    async load(request: LoadRequest, opts = {}): Promise<LoadResult> {
      const t0 = now();
      // Check before tearing down the current shard: an aborted request must leave it loaded.
      if (disposed) throw disposedError();
      throwIfAborted(opts.signal, 'Loading the shard');
      idleWarmUp.stopped = true;
      if (session) await unload();
      const source = await deps.openModel(request.model, opts.signal);
      const tOpened = now();
      const before = source.bytesRead;
      // The backend is chosen before compiling: it decides the KV-cache contract of the graph.
      let choice: { backend: Backend; reason: string };
      const wanted = request.backend ?? 'auto';
      if (wanted === 'wasm') choice = { backend: 'wasm', reason: 'wasm was requested.' };
      else if (wanted === 'webgpu') choice = { backend: 'webgpu', reason: 'WebGPU was requested.' };
      else {
        // Once per runner: a kept runner loading its next shard (a failover) need not ask again.
        probed ??= (deps.probeWebGpu ?? probeWebGpu)();
        const probe = await probed;
        choice = { backend: probe.ok ? 'webgpu' : 'wasm', reason: probe.reason };
      }
      const tProbed = now();
      const compiled = await compileShard(
        source,
        {
          range: request.range,
          weightFormat: request.weightFormat,
          logits: request.logits,
          contextLength: Math.min(request.contextLength, source.config.maxPositions),
          ...(request.attention ? { attention: request.attention } : {}),
          // On WebGPU the cache stays on the GPU as `present_*` (JS cannot write into a GPU
          // buffer in place); a WebGPU session that fails and falls back to wasm keeps `concat`,
          // which the runner serves as well.
          kvCache: choice.backend === 'wasm' ? (request.kvCache ?? DEFAULT_WASM_KV_CACHE) : 'concat',
        },
        {
          signal: opts.signal,
          onProgress: (p) =>
            opts.onProgress?.({ phase: 'fetch', bytesFetched: source.bytesRead - before, ...p }),
        },
      );
      throwIfAborted(opts.signal, 'Loading the shard');
      const tCompiled = now();
      opts.onProgress?.({ phase: 'session', backend: choice.backend });
      const create = (b: Backend) => {
        const options: Ort.InferenceSession.SessionOptions = {
          executionProviders: [b],
          externalData: compiled.externalData,
          graphOptimizationLevel: 'all',
        };
        if (b === 'webgpu') {
          // Keep the KV cache on the GPU between steps; only the hand-off tensor comes back.
          const loc: Record<string, Ort.Tensor.DataLocation> = {};
          for (const kv of compiled.io.kv) {
            loc[kv.presentKey] = 'gpu-buffer';
            loc[kv.presentValue] = 'gpu-buffer';
          }
          options.preferredOutputLocation = loc;
        }
        return ort.InferenceSession.create(compiled.model, options);
      };
      try {
        session = await create(choice.backend);
      } catch (e) {
        if (choice.backend !== 'webgpu' || wanted === 'webgpu') {
          throw new RingworkError(
            'RUNNER_BACKEND_FAILED',
            `onnxruntime-web could not create a ${choice.backend} session: ${String(e)}`,
            {
              details: { backend: choice.backend },
              cause: e,
            },
          );
        }
        choice = {
          backend: 'wasm',
          reason: `WebGPU session creation failed (${String(e)}); fell back to wasm.`,
        };
        session = await create('wasm');
      }
      if (disposed) {
        // dispose() ran while this load was compiling: do not resurrect the runner.
        await session.release();
        session = undefined;
        throw disposedError();
      }
      io = compiled.io;
      backend = choice.backend;
      backendReason = choice.reason;
      range = request.range;
      contextLength = Math.min(request.contextLength, source.config.maxPositions);
      const tSession = now();
      const budget = deps.warmUpMs ?? 0;
      const warmUp =
        warmedUp || budget <= 0 || backend !== 'wasm'
          ? 0
          : await warmUpSteps(budget, deps.idleWarmUpMs ?? 0, opts.signal);
      return {
        backend,
        backendReason,
        config: source.config,
        io,
        weightBytes: compiled.weightBytes,
        bytesFetched: source.bytesRead - before,
        loadMs: now() - t0,
        phasesMs: {
          open: tOpened - t0,
          compile: tCompiled - tProbed,
          probe: tProbed - tOpened,
          session: tSession - tCompiled,
          ...(warmUp > 0 ? { warmUp } : {}),
        },
      };
    },

    async openSession() {
      idleWarmUp.stopped = true;
      return doOpenSession();
    },

    step(sessionId: string, input: StepInput, opts = {}): Promise<StepOutput> {
      // A real step: the background warm-up yields for good (this waits for at most its step).
      idleWarmUp.stopped = true;
      return doStep(sessionId, input, opts);
    },

    async closeSession(sessionId: string) {
      const s = sessions.get(sessionId);
      if (!s) return;
      sessions.delete(sessionId);
      await serial(async () => disposeSession(s));
    },

    async info(): Promise<RunnerInfo> {
      if (disposed) return { loaded: false, sessions: 0 };
      return { loaded: !!session, backend, backendReason, range, sessions: sessions.size };
    },

    async dispose() {
      disposed = true;
      idleWarmUp.stopped = true;
      await unload();
    },
  };
  return runner;
}

function disposedError(): RingworkError {
  return new RingworkError('RUNNER_DISPOSED', 'The runner was disposed: create a new one.');
}

/**
 * Settles like `work`, except that it rejects with ABORTED as soon as `signal` fires: the caller is
 * not kept waiting for a run that ORT cannot interrupt (the run still finishes in the background,
 * in turn, and its result is dropped).
 */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () =>
      reject(new RingworkError('ABORTED', 'The step was aborted.', { cause: signal.reason }));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * The first `keep` positions of a KV tensor `[1, heads, length, headDim]`. The graph appends with
 * `Concat(past, new)` and its causal mask takes the key index as the position, so stale rows must
 * be cut, not masked. The layout is head-major, so a cut is one copy per head: O(cache), the same
 * order as the copy the wasm backend makes of every past input on every step. A cache held on the
 * GPU is read back once (JS cannot slice a GPU buffer) and fed from the CPU for this step.
 */
async function truncateKv(ort: OrtModule, t: Ort.Tensor, keep: number): Promise<Ort.Tensor> {
  const [, heads, length, dim] = t.dims as [number, number, number, number];
  if (keep >= length) return t;
  const data = (t.location === 'cpu' ? t.data : await t.getData()) as Float32Array;
  const out = new Float32Array(heads * keep * dim);
  for (let h = 0; h < heads; h++)
    out.set(data.subarray(h * length * dim, h * length * dim + keep * dim), h * keep * dim);
  return new ort.Tensor('float32', out, [1, heads, keep, dim]);
}

/**
 * The KV-cache contract a wasm shard is compiled with when the request names none: `rows`
 * measured faster than `concat` at every context length on stories15M's shape (see README,
 * `npm run bench:engine`).
 */
export const DEFAULT_WASM_KV_CACHE: KvCacheMode = 'rows';

/**
 * Writes a step's new rows `[1, kvHeads, S, headDim]` (per layer, from the `new_*` outputs) at
 * `position` of each head of a `rows` cache, growing its buffers first when they are too short
 * (by {@link ROWS_GRANULE} positions, at most `contextLength`). O(new) but for a growth.
 */
function appendRows(
  rows: RowsKv,
  io: ShardIo,
  out: Record<string, Ort.Tensor>,
  position: number,
  S: number,
  contextLength: number,
): void {
  const { kvHeads: H, headDim: d } = io;
  const end = position + S;
  if (end > rows.capacity) {
    const capacity = Math.min(contextLength, Math.ceil(end / ROWS_GRANULE) * ROWS_GRANULE);
    const grow = (old: Float32Array | undefined) => {
      const b = new Float32Array(H * capacity * d);
      // Only the cached prefix matters: rows from `position` on are about to be written.
      const keep = Math.min(position, rows.capacity) * d;
      if (old)
        for (let h = 0; h < H; h++)
          b.set(old.subarray(h * rows.capacity * d, h * rows.capacity * d + keep), h * capacity * d);
      return b;
    };
    for (const kv of io.kv) {
      const b = rows.keys.get(kv.layer);
      rows.keys.set(kv.layer, { key: grow(b?.key), value: grow(b?.value) });
    }
    rows.capacity = capacity;
  }
  const cap = rows.capacity;
  for (const kv of io.kv) {
    const b = rows.keys.get(kv.layer)!;
    const k = out[kv.presentKey]!.data as Float32Array;
    const v = out[kv.presentValue]!.data as Float32Array;
    for (let h = 0; h < H; h++) {
      b.key.set(k.subarray(h * S * d, (h + 1) * S * d), (h * cap + position) * d);
      b.value.set(v.subarray(h * S * d, (h + 1) * S * d), (h * cap + position) * d);
    }
  }
}

/** How many logits rows a step asks of a `rows` head (RUNNER_BAD_INPUT outside 1..S). */
export function logitsRowsOf(input: StepInput, positions: number): number {
  const rows = input.logitsRows ?? 1;
  if (!Number.isInteger(rows) || rows < 1 || rows > positions) {
    throw new RingworkError(
      'RUNNER_BAD_INPUT',
      `logitsRows must be an integer from 1 to the step's ${positions} positions, got ${rows}.`,
      { details: { logitsRows: rows, positions } },
    );
  }
  return rows;
}

function notLoaded(): RingworkError {
  return new RingworkError('RUNNER_NOT_LOADED', 'The runner has no shard loaded: call load() first.');
}

/**
 * Checks one step's input against a shard's I/O and the session's cached length (positions must be
 * consecutive, or at most the cached length with `rewind`); returns the number of positions it
 * carries. Throws RUNNER_BAD_INPUT.
 */
export function checkInput(io: ShardIo, input: StepInput, cached: number): number {
  const bad = (msg: string, details: Record<string, unknown>) =>
    new RingworkError('RUNNER_BAD_INPUT', msg, { details });
  const rewound = input.rewind === true && input.position >= 0 && input.position <= cached;
  if (!Number.isInteger(input.position) || (input.position !== cached && !rewound)) {
    throw bad(
      `Position ${input.position} does not follow the session's ${cached} cached positions; steps must be consecutive (or rewind to at most ${cached}).`,
      {
        position: input.position,
        cached,
      },
    );
  }
  if (input.tokens !== undefined && input.hidden !== undefined) {
    throw bad('Pass exactly one of `tokens` and `hidden`, not both.', {});
  }
  if (io.tokens) {
    if (!(input.tokens instanceof Int32Array) || input.tokens.length === 0) {
      throw bad('This shard starts at the embedding: pass `tokens` (a non-empty Int32Array).', {});
    }
    for (const t of input.tokens) {
      if (t < 0 || t >= io.vocabSize)
        throw bad(`Token id ${t} is outside the vocabulary [0, ${io.vocabSize}).`, { token: t });
    }
    return input.tokens.length;
  }
  const h = input.hidden;
  if (!(h instanceof Float32Array) || h.length === 0 || h.length % io.hiddenSize !== 0) {
    throw bad(
      `This shard takes hidden states: pass \`hidden\` as a Float32Array whose length is a multiple of ${io.hiddenSize}.`,
      {
        length: h?.length,
      },
    );
  }
  for (let i = 0; i < h.length; i++) {
    if (!Number.isFinite(h[i]!))
      throw bad(`Hidden state element ${i} is ${h[i]}: the previous stage produced NaN/Inf.`, { index: i });
  }
  return h.length / io.hiddenSize;
}
