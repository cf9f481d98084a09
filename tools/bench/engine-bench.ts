/**
 * The engine benchmark behind `npm run bench:engine`: for each model, onnxruntime-web wasm vs
 * onnxruntime-node native CPU on the same compiled graphs, a memory-bandwidth bound, and the cost of
 * splitting the model into chained shards. All variants of a model are loaded first, then measured
 * in turns of a few decode steps each, so every ratio compares work done milliseconds apart: on a
 * shared machine the absolute figures swing, the paired ratios much less.
 *
 * Size (~730 lines): the measurement and pairing of one benchmark, kept together so the result says
 * exactly what was measured; variants and statistics live in `variants.ts` / `measure.ts`, the
 * report in `engine-report.ts`.
 */
import { access } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RingworkError } from '../../shared/errors.js';
import {
  fusedAttentionFits,
  type AttentionMode,
  type KvCacheMode,
} from '../../shared/graph/compile-shard.js';
import type { UnitRange } from '../../shared/graph/units.js';
import type { ModelLocation } from '../../shared/model/open-model.js';
import type { ModelConfig } from '../../shared/model/types.js';
import type { OrtModule } from '../../shared/runtime/ort-shard-runner.js';
import { nodeOrt, openNodeModel } from '../../signaling-server/src/model/open-node-model.js';
import { SYNTH_PRESETS, synthesizeModel, type SynthPresetName } from '../model/synth.js';
import {
  decodeBytesPerToken,
  fixedPrompt,
  splitEvenly,
  spread,
  rate,
  type DecodeTiming,
  type GenerationSettings,
  type Spread,
} from './measure.js';
import { measureCopyBandwidth, type CopyBandwidth } from './memory-bandwidth.js';
import { loadOrtNode, nativeCpuOrt, type OrtNodeLoad } from './ort-native.js';
import {
  loadInProcessVariant,
  loadWasmChildVariant,
  type BenchVariant,
  type VariantRun,
} from './variants.js';

/** A model to benchmark. */
export interface BenchModelSpec {
  name: string;
  /** Where it comes from, for the report ("real", "synthetic, seed 1"). */
  note: string;
  model: ModelLocation;
}

/** Settings of {@link runEngineBench}. */
export interface EngineBenchOptions {
  models: BenchModelSpec[];
  /** Prompt length of the timed prefill. */
  promptTokens: number;
  /** Greedy decode steps per round and variant. */
  decodeSteps: number;
  /** Decode steps a variant runs before the next variant takes its turn. */
  decodeBlock: number;
  /** Timed prefills per round and variant (each in a fresh session). */
  prefillRepeats: number;
  /** Measured rounds; the report gives medians. */
  rounds: number;
  /** Untimed rounds first (at least this many, and at least `minWarmupMs` of them). */
  warmupRounds: number;
  /**
   * V8 compiles wasm with a baseline compiler and tiers hot functions up over the first few
   * hundred milliseconds of work; measuring before that would understate wasm by 2-5x.
   */
  minWarmupMs: number;
  /** Stages of the split variant. */
  splitParts: number;
  /** Also run wasm with 2 threads (in a child process). */
  wasmThreads2: boolean;
  /** Also run native CPU with 2 intra-op threads. */
  nativeThreads2: boolean;
  /**
   * Also run the wasm variants (1 thread, and 2 if `wasmThreads2`) on the fused-attention graph
   * (`GroupQueryAttention`), next to the default `ops` graph: before/after of that engine change in
   * one run. Only for models whose head size the fused kernel takes.
   */
  fusedAttention: boolean;
  /**
   * Also run wasm (1 thread, 2 if `wasmThreads2`) and native 1 thread on the `concat` KV-cache
   * graph (the whole cache in and out of every step), next to the default `rows` graph: the
   * before/after of that engine change in one run.
   */
  kvCompare: boolean;
  /**
   * Decode positions at which every variant's step time is measured (a fresh prefill of that many
   * tokens, then `positionSteps` timed steps), so that the KV-proportional part of a step shows;
   * each is lowered to fit the model's context. Empty: none.
   */
  positions: number[];
  positionSteps: number;
  /** Rounds of the position sweep (each position and variant once per round, interleaved). */
  positionRounds: number;
  /** Bytes per copy and repeats of the memory-bandwidth probe. */
  bandwidth: { bytes: number; repeats: number };
  /** onnxruntime-node, already imported (default: imported here). */
  native?: OrtNodeLoad;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
}

/** Variant ids, stable for `--json` consumers. */
export type VariantId =
  | 'wasm-1t'
  | 'wasm-2t'
  | 'wasm-1t-concat'
  | 'wasm-2t-concat'
  | 'wasm-1t-fused'
  | 'wasm-2t-fused'
  | 'native-1t'
  | 'native-1t-concat'
  | 'native-2t'
  | 'wasm-split-1t';

/** A variant's decode step at one position (medians over the sweep's rounds). */
export interface PositionTiming {
  position: number;
  msPerStep: number;
  cpuMsPerStep: number;
}

/** Results of one variant. */
export interface VariantResult {
  id: VariantId;
  label: string;
  available: boolean;
  /** Why it is unavailable, when it is. */
  reason?: string;
  ranges: UnitRange[];
  /** The attention graph it was asked to build (see `CompileOptions.attention`). */
  attention: AttentionMode;
  /** The KV-cache contract it was asked for (the fused graph always builds `concat`). */
  kvCache: KvCacheMode;
  /** Decode step time at each position of the sweep (see `EngineBenchOptions.positions`). */
  atPosition: PositionTiming[];
  weightBytes: number;
  loadMs: number;
  /** Every timed prefill, ms. */
  prefillMs: number[];
  /** Every timed decode block, in round order. */
  decodeBlocks: (DecodeTiming & { round: number })[];
  /** Over all timed prefills. */
  prefillTokPerS: Spread;
  /** Over rounds (each round's decode steps ÷ their total time). */
  decodeTokPerS: Spread;
  /** Mean wall ms per decode step, and the part of it inside ORT `session.run`. */
  decodeMsPerStep: number;
  decodeOrtMsPerStep: number;
  /** Mean CPU ms per decode step of the process that ran it (all its threads; see DecodeTiming). */
  decodeCpuMsPerStep: number;
  /** Whether its greedy tokens equal those of wasm 1 thread (same graphs, so they should). */
  sameTokensAsWasm?: boolean;
}

/** A target with its verdict. */
export interface TargetResult {
  name: string;
  value: number | null;
  min: number;
  pass: boolean;
}

/**
 * Ratios as medians of paired samples (decode blocks or prefills of two variants measured
 * back to back); null when a side is unavailable.
 */
export interface BenchRatios {
  /** a/b: wasm 1t ÷ native 1t. */
  wasmOverNativeDecode: number | null;
  wasmOverNativePrefill: number | null;
  /** a/c: wasm 1t decode ÷ memory-bandwidth bound. */
  wasmOverBoundDecode: number | null;
  /** native 1t decode ÷ memory-bandwidth bound. */
  nativeOverBoundDecode: number | null;
  /** split ÷ whole, both wasm 1t. */
  splitOverWholeDecode: number | null;
  splitOverWholePrefill: number | null;
  /** 2 threads ÷ 1 thread. */
  wasm2OverWasm1Decode: number | null;
  wasm2OverWasm1Prefill: number | null;
  native2OverNative1Decode: number | null;
  native2OverNative1Prefill: number | null;
  /** fused ÷ ops attention graph, wasm 1 thread: decode rate by wall time and by CPU time. */
  fusedOverOpsDecode: number | null;
  fusedOverOpsDecodeCpu: number | null;
  /** The same with 2 threads. */
  fusedOverOps2tDecode: number | null;
  fusedOverOps2tDecodeCpu: number | null;
  /** rows ÷ concat KV cache: decode rate, wasm 1 thread (by wall and by CPU), 2 threads, native. */
  rowsOverConcatDecode: number | null;
  rowsOverConcatDecodeCpu: number | null;
  rowsOverConcat2tDecode: number | null;
  rowsOverConcatNativeDecode: number | null;
}

/** rows ÷ concat decode rate at one position (medians of back-to-back pairs; null: not run). */
export interface PositionRatio {
  position: number;
  wasm1t: number | null;
  wasm1tCpu: number | null;
  wasm2t: number | null;
  native1t: number | null;
}

/** Results for one model. */
export interface ModelBenchResult {
  name: string;
  note: string;
  config: Pick<
    ModelConfig,
    'numLayers' | 'hiddenSize' | 'intermediateSize' | 'numHeads' | 'numKvHeads' | 'headDim' | 'vocabSize'
  >;
  /** Initializer bytes of the whole-model f32 compile. */
  weightBytes: number;
  /** Bytes a decode step reads (weights minus the embedding table, plus the mean KV cache). */
  decodeBytesPerToken: number;
  /** (c): copy GB/s × 1e9 ÷ decode bytes per token. */
  boundTokPerS: number;
  variants: VariantResult[];
  ratios: BenchRatios;
  /** The position sweep's positions, as lowered to fit the model. */
  positions: number[];
  rowsOverConcatAt: PositionRatio[];
  targets: TargetResult[];
}

/** Everything one run of the benchmark measured. */
export interface EngineBenchResult {
  machine: {
    cpu: string;
    cpus: number;
    /** 1-minute load average at the start and the end: above `cpus`, neighbours compete for the CPU. */
    loadAvg: [number, number];
    node: string;
    ortWeb: string;
    ortNode: string | null;
  };
  settings: Omit<EngineBenchOptions, 'models' | 'native' | 'log'>;
  bandwidth: Omit<CopyBandwidth, 'samples'> & { samples: number };
  models: ModelBenchResult[];
  totalMs: number;
}

/** a/b target: wasm must reach half of native CPU speed. */
export const TARGET_WASM_OVER_NATIVE = 0.5;
/** Split target: at most 5% slower than the whole model. */
export const TARGET_SPLIT_OVER_WHOLE = 0.95;

/**
 * Writes the synthetic model `preset` (f32, seed `seed`) into `dir` unless it is already there.
 * The weights file is renamed into place only when complete, so its presence means a finished
 * model.
 */
export async function ensureSynthModel(
  dir: string,
  preset: SynthPresetName,
  seed: number,
  log?: (line: string) => void,
  /** A longer context than the preset's (the same weights: values depend on seed and name only). */
  maxPositions?: number,
): Promise<ModelLocation> {
  const exists = async (f: string) =>
    access(path.join(dir, f)).then(
      () => true,
      () => false,
    );
  if (!((await exists('config.json')) && (await exists('model.safetensors')))) {
    log?.(`Writing synthetic ${preset} (f32, seed ${seed}) to ${dir} ...`);
    const config = maxPositions ? { ...SYNTH_PRESETS[preset], maxPositions } : preset;
    await synthesizeModel({ preset: config, outDir: dir, seed, dtype: 'f32' });
  }
  return { url: dir };
}

/** Runs the whole benchmark; see {@link EngineBenchOptions}. */
export async function runEngineBench(o: EngineBenchOptions): Promise<EngineBenchResult> {
  const t0 = performance.now();
  const loadStart = os.loadavg()[0]!;
  const log = o.log ?? (() => undefined);
  const native = o.native ?? (await loadOrtNode());
  if (!native.ok) log(`native CPU unavailable: ${native.reason}`);
  const wasmOrt = nodeOrt(1);
  if (wasmOrt.env.wasm.numThreads !== 1) {
    log(
      `note: onnxruntime-web was already set to ${String(wasmOrt.env.wasm.numThreads)} threads in this process.`,
    );
  }

  log(
    `Measuring memory copy bandwidth (${(o.bandwidth.bytes / 2 ** 20).toFixed(0)} MiB x ${o.bandwidth.repeats}) ...`,
  );
  const bw = measureCopyBandwidth(o.bandwidth);

  const models: ModelBenchResult[] = [];
  for (const m of o.models) models.push(await benchModel(o, m, native, bw, log));

  const { models: _m, native: _n, log: _l, ...settings } = o;
  return {
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cpus: os.availableParallelism(),
      loadAvg: [loadStart, os.loadavg()[0]!],
      node: process.version,
      ortWeb: wasmOrt.env.versions?.web ?? wasmOrt.env.versions?.common ?? 'unknown',
      ortNode: native.ok ? native.version : null,
    },
    settings,
    bandwidth: { gbps: bw.gbps, method: bw.method, bytes: bw.bytes, samples: bw.samples.length },
    models,
    totalMs: performance.now() - t0,
  };
}

async function benchModel(
  o: EngineBenchOptions,
  m: BenchModelSpec,
  native: OrtNodeLoad,
  bw: CopyBandwidth,
  log: (line: string) => void,
): Promise<ModelBenchResult> {
  const config = (await openNodeModel(m.model)).source.config;
  // Positions that do not fit the model are lowered to its last `positionSteps`, once each.
  const positions = [
    ...new Set(o.positions.map((p) => Math.max(1, Math.min(p, config.maxPositions - o.positionSteps)))),
  ].filter((p) => p + o.positionSteps <= config.maxPositions);
  const sweepEnd = positions.length ? Math.max(...positions) + o.positionSteps : 0;
  const contextLength = Math.max(o.promptTokens + o.decodeSteps, sweepEnd);
  if (o.promptTokens + o.decodeSteps > config.maxPositions) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `${m.name}: prompt ${o.promptTokens} + decode ${o.decodeSteps} exceeds its ${config.maxPositions} positions; use fewer steps.`,
      {
        details: {
          promptTokens: o.promptTokens,
          decodeSteps: o.decodeSteps,
          maxPositions: config.maxPositions,
        },
      },
    );
  }
  const whole: UnitRange[] = [[0, config.numLayers + 2]];
  const split = splitEvenly(config, o.splitParts);
  const base = { model: m.model, contextLength };
  const rangesText = split.map(([a, b]) => `[${a},${b})`).join('');

  type Plan = {
    id: VariantId;
    label: string;
    ranges: UnitRange[];
    attention: AttentionMode;
    kvCache: KvCacheMode;
    load: () => Promise<BenchVariant>;
  };
  const plans: Plan[] = [];
  const inProcess = (
    id: VariantId,
    label: string,
    ranges: UnitRange[],
    ort: () => OrtModule,
    attention: AttentionMode = 'ops',
    kvCache: KvCacheMode = attention === 'fused' ? 'concat' : 'rows',
  ) =>
    plans.push({
      id,
      label,
      ranges,
      attention,
      kvCache,
      load: () => loadInProcessVariant({ ...base, id, label, ranges, attention, kvCache, ort: ort() }),
    });
  const wasm2 = (
    id: VariantId,
    label: string,
    attention: AttentionMode,
    kvCache: KvCacheMode = attention === 'fused' ? 'concat' : 'rows',
  ) =>
    plans.push({
      id,
      label,
      ranges: whole,
      attention,
      kvCache,
      load: () => loadWasmChildVariant({ ...base, id, label, ranges: whole, threads: 2, attention, kvCache }),
    });
  const fused = o.fusedAttention && fusedAttentionFits(config.headDim);
  const nativeModule = (): OrtModule => {
    if (!native.ok) throw new Error(native.reason);
    return native.ort;
  };
  inProcess('wasm-1t', '(a) wasm, 1 thread', whole, () => nodeOrt(1));
  if (o.kvCompare) {
    inProcess(
      'wasm-1t-concat',
      'wasm, 1 thread, concat KV (before)',
      whole,
      () => nodeOrt(1),
      'ops',
      'concat',
    );
  }
  if (fused) inProcess('wasm-1t-fused', 'wasm, 1 thread, fused attention', whole, () => nodeOrt(1), 'fused');
  if (o.wasmThreads2) {
    wasm2('wasm-2t', 'wasm, 2 threads', 'ops');
    if (o.kvCompare) wasm2('wasm-2t-concat', 'wasm, 2 threads, concat KV (before)', 'ops', 'concat');
    if (fused) wasm2('wasm-2t-fused', 'wasm, 2 threads, fused attention', 'fused');
  }
  inProcess('native-1t', '(b) native CPU, 1 thread', whole, () => nativeCpuOrt(nativeModule(), 1));
  if (o.kvCompare) {
    inProcess(
      'native-1t-concat',
      'native CPU, 1 thread, concat KV (before)',
      whole,
      () => nativeCpuOrt(nativeModule(), 1),
      'ops',
      'concat',
    );
  }
  if (o.nativeThreads2)
    inProcess('native-2t', 'native CPU, 2 threads', whole, () => nativeCpuOrt(nativeModule(), 2));
  inProcess('wasm-split-1t', `wasm split-${split.length} ${rangesText}, 1 thread`, split, () => nodeOrt(1));

  // ---- load every variant before measuring any, so rounds can interleave them
  const loaded: { plan: Plan; variant?: BenchVariant; reason?: string }[] = [];
  for (const plan of plans) {
    if (plan.id.startsWith('native') && !native.ok) {
      loaded.push({ plan, reason: native.reason });
      continue;
    }
    log(`${m.name}: loading ${plan.label} ...`);
    try {
      loaded.push({ plan, variant: await plan.load() });
    } catch (e) {
      loaded.push({ plan, reason: e instanceof Error ? e.message : String(e) });
      log(`${m.name}: ${plan.label} unavailable: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  const settings: GenerationSettings = {
    prompt: fixedPrompt(config, o.promptTokens),
    vocabSize: config.vocabSize,
  };
  const live = loaded.flatMap((l) => (l.variant ? [{ id: l.plan.id, variant: l.variant }] : []));
  let samples: InterleavedSamples;
  let sweep: PositionSamples;
  try {
    samples = await measureInterleaved(live, settings, o, (line) => log(`${m.name}: ${line}`));
    // The split variant's step is the whole model's plus hand-offs: not what the sweep is about.
    sweep = await measurePositions(
      live.filter((l) => l.id !== 'wasm-split-1t'),
      config,
      { positions, steps: o.positionSteps, rounds: o.positionRounds },
      (line) => log(`${m.name}: ${line}`),
    );
  } finally {
    for (const l of live) await l.variant.dispose();
  }

  const reference = samples.tokens.get('wasm-1t');
  const variants: VariantResult[] = loaded.map(({ plan, variant, reason }) => {
    const prefillMs = samples.prefillMs.get(plan.id) ?? [];
    const blocks = samples.decode.get(plan.id) ?? [];
    const perRound = new Map<number, DecodeTiming>();
    for (const b of blocks) {
      const t = perRound.get(b.round) ?? { steps: 0, ms: 0, ortMs: 0, cpuMs: 0 };
      perRound.set(b.round, {
        steps: t.steps + b.steps,
        ms: t.ms + b.ms,
        ortMs: t.ortMs + b.ortMs,
        cpuMs: t.cpuMs + b.cpuMs,
      });
    }
    const steps = blocks.reduce((a, b) => a + b.steps, 0);
    const tokens = samples.tokens.get(plan.id);
    return {
      id: plan.id,
      label: plan.label,
      available: !!variant,
      ...(reason !== undefined ? { reason } : {}),
      ranges: plan.ranges,
      attention: plan.attention,
      kvCache: plan.kvCache,
      atPosition: positions.flatMap((p) => {
        const t = sweep.get(plan.id)?.get(p);
        if (!t?.length) return [];
        return [
          {
            position: p,
            msPerStep: spread(t.map((x) => x.ms / x.steps)).median,
            cpuMsPerStep: spread(t.map((x) => x.cpuMs / x.steps)).median,
          },
        ];
      }),
      weightBytes: variant?.weightBytes ?? 0,
      loadMs: variant?.loadMs ?? 0,
      prefillMs,
      decodeBlocks: blocks,
      prefillTokPerS: spread(prefillMs.map((ms) => rate(o.promptTokens, ms))),
      decodeTokPerS: spread([...perRound.values()].map((t) => rate(t.steps, t.ms))),
      decodeMsPerStep: steps ? blocks.reduce((a, b) => a + b.ms, 0) / steps : NaN,
      decodeOrtMsPerStep: steps ? blocks.reduce((a, b) => a + b.ortMs, 0) / steps : NaN,
      decodeCpuMsPerStep: steps ? blocks.reduce((a, b) => a + b.cpuMs, 0) / steps : NaN,
      ...(reference && tokens && plan.id !== 'wasm-1t'
        ? { sameTokensAsWasm: sameTokens(tokens, reference) }
        : {}),
    };
  });

  const weightBytes = variants.find((v) => v.id === 'wasm-1t')?.weightBytes ?? 0;
  // Mean cached length over the decode steps.
  const bytesPerToken = decodeBytesPerToken(config, weightBytes, o.promptTokens + o.decodeSteps / 2);
  const boundTokPerS = bytesPerToken > 0 ? (bw.gbps * 1e9) / bytesPerToken : 0;
  const paired = (a: VariantId, b: VariantId, phase: 'decode' | 'decode-cpu' | 'prefill') =>
    pairedRatio(samples, a, b, phase);
  const wasmDecode = variants.find((v) => v.id === 'wasm-1t')?.decodeTokPerS.median;
  const nativeDecode = variants.find((v) => v.id === 'native-1t' && v.available)?.decodeTokPerS.median;
  const ratios: BenchRatios = {
    wasmOverNativeDecode: paired('wasm-1t', 'native-1t', 'decode'),
    wasmOverNativePrefill: paired('wasm-1t', 'native-1t', 'prefill'),
    wasmOverBoundDecode: wasmDecode !== undefined && boundTokPerS > 0 ? wasmDecode / boundTokPerS : null,
    nativeOverBoundDecode:
      nativeDecode !== undefined && boundTokPerS > 0 ? nativeDecode / boundTokPerS : null,
    splitOverWholeDecode: paired('wasm-split-1t', 'wasm-1t', 'decode'),
    splitOverWholePrefill: paired('wasm-split-1t', 'wasm-1t', 'prefill'),
    wasm2OverWasm1Decode: paired('wasm-2t', 'wasm-1t', 'decode'),
    wasm2OverWasm1Prefill: paired('wasm-2t', 'wasm-1t', 'prefill'),
    native2OverNative1Decode: paired('native-2t', 'native-1t', 'decode'),
    native2OverNative1Prefill: paired('native-2t', 'native-1t', 'prefill'),
    fusedOverOpsDecode: paired('wasm-1t-fused', 'wasm-1t', 'decode'),
    fusedOverOpsDecodeCpu: paired('wasm-1t-fused', 'wasm-1t', 'decode-cpu'),
    fusedOverOps2tDecode: paired('wasm-2t-fused', 'wasm-2t', 'decode'),
    fusedOverOps2tDecodeCpu: paired('wasm-2t-fused', 'wasm-2t', 'decode-cpu'),
    rowsOverConcatDecode: paired('wasm-1t', 'wasm-1t-concat', 'decode'),
    rowsOverConcatDecodeCpu: paired('wasm-1t', 'wasm-1t-concat', 'decode-cpu'),
    rowsOverConcat2tDecode: paired('wasm-2t', 'wasm-2t-concat', 'decode'),
    rowsOverConcatNativeDecode: paired('native-1t', 'native-1t-concat', 'decode'),
  };
  const at = (a: VariantId, b: VariantId, p: number, cpu = false): number | null => {
    const ta = sweep.get(a)?.get(p);
    const tb = sweep.get(b)?.get(p);
    if (!ta?.length || !tb?.length) return null;
    return spread(ta.map((x, i) => (cpu ? tb[i]!.cpuMs / x.cpuMs : tb[i]!.ms / x.ms))).median;
  };
  const rowsOverConcatAt: PositionRatio[] = positions.map((p) => ({
    position: p,
    wasm1t: at('wasm-1t', 'wasm-1t-concat', p),
    wasm1tCpu: at('wasm-1t', 'wasm-1t-concat', p, true),
    wasm2t: at('wasm-2t', 'wasm-2t-concat', p),
    native1t: at('native-1t', 'native-1t-concat', p),
  }));
  const target = (name: string, value: number | null, min: number): TargetResult => ({
    name,
    value,
    min,
    pass: value !== null && value >= min,
  });
  return {
    name: m.name,
    note: m.note,
    config: {
      numLayers: config.numLayers,
      hiddenSize: config.hiddenSize,
      intermediateSize: config.intermediateSize,
      numHeads: config.numHeads,
      numKvHeads: config.numKvHeads,
      headDim: config.headDim,
      vocabSize: config.vocabSize,
    },
    weightBytes,
    decodeBytesPerToken: bytesPerToken,
    boundTokPerS,
    variants,
    ratios,
    positions,
    rowsOverConcatAt,
    targets: [
      target('a/b decode', ratios.wasmOverNativeDecode, TARGET_WASM_OVER_NATIVE),
      target('a/b prefill', ratios.wasmOverNativePrefill, TARGET_WASM_OVER_NATIVE),
      target('split/whole decode', ratios.splitOverWholeDecode, TARGET_SPLIT_OVER_WHOLE),
      target('split/whole prefill', ratios.splitOverWholePrefill, TARGET_SPLIT_OVER_WHOLE),
    ],
  };
}

/** Raw samples of {@link measureInterleaved}, by variant id. */
export interface InterleavedSamples {
  /** Timed prefills, ms, in (round, repeat) order: index i of two variants are a pair. */
  prefillMs: Map<string, number[]>;
  /** Timed decode blocks in (round, block) order: index i of two variants are a pair. */
  decode: Map<string, (DecodeTiming & { round: number })[]>;
  /** Greedy tokens of each variant's first measured round. */
  tokens: Map<string, number[]>;
}

/** How {@link measureInterleaved} schedules its work. */
export type InterleaveSchedule = Pick<
  EngineBenchOptions,
  'decodeSteps' | 'decodeBlock' | 'prefillRepeats' | 'rounds' | 'warmupRounds' | 'minWarmupMs'
>;

/**
 * Measures loaded variants side by side. Each round, every variant prefills `prefillRepeats`
 * times (fresh sessions, the last one kept), then the variants take turns decoding
 * `decodeBlock` steps until each has decoded `decodeSteps`; the turn order rotates with the round
 * and block. A neighbour's burst on a shared machine thus hits every variant within
 * milliseconds, and the paired samples make the ratios far steadier than the absolute figures.
 * Warm-up rounds (untimed) come first.
 */
export async function measureInterleaved(
  variants: readonly { id: string; variant: BenchVariant }[],
  settings: GenerationSettings,
  schedule: InterleaveSchedule,
  log: (line: string) => void = () => undefined,
): Promise<InterleavedSamples> {
  const samples: InterleavedSamples = {
    prefillMs: new Map(variants.map((v) => [v.id, []])),
    decode: new Map(variants.map((v) => [v.id, []])),
    tokens: new Map(),
  };
  const rotated = (k: number) => variants.map((_, i) => variants[(i + k) % variants.length]!);
  const blocks = Math.ceil(schedule.decodeSteps / schedule.decodeBlock);
  const round = async (r: number, record: boolean) => {
    const open = new Map<string, VariantRun>();
    try {
      for (let rep = 0; rep < schedule.prefillRepeats; rep++) {
        for (const { id, variant } of rotated(r + rep)) {
          const run = await variant.start(settings);
          const last = rep === schedule.prefillRepeats - 1;
          if (last) open.set(id, run);
          try {
            const ms = await run.prefill();
            if (record) samples.prefillMs.get(id)!.push(ms);
          } finally {
            if (!last) await run.close();
          }
        }
      }
      for (let b = 0; b < blocks; b++) {
        const steps = Math.min(schedule.decodeBlock, schedule.decodeSteps - b * schedule.decodeBlock);
        for (const { id } of rotated(r + b)) {
          const t = await open.get(id)!.decode(steps);
          if (record) samples.decode.get(id)!.push({ ...t, round: r });
        }
      }
      if (record && samples.tokens.size === 0) {
        for (const [id, run] of open) samples.tokens.set(id, await run.tokens());
      }
    } finally {
      for (const run of open.values()) await run.close();
    }
  };
  const t0 = performance.now();
  for (let w = 0; w < schedule.warmupRounds || performance.now() - t0 < schedule.minWarmupMs; w++) {
    log(`warm-up ${w + 1} ...`);
    await round(w, false);
  }
  for (let r = 0; r < schedule.rounds; r++) {
    log(`round ${r + 1}/${schedule.rounds} ...`);
    await round(r, true);
  }
  return samples;
}

/** Decode timings of the position sweep: variant id -> position -> one per round, in round order. */
export type PositionSamples = Map<string, Map<number, DecodeTiming[]>>;

/**
 * The position sweep: each round, for each position, every variant (in an order that rotates)
 * prefills that many tokens in a fresh session (untimed) and then decodes `steps` timed steps, so
 * index i of two variants' timings at a position ran back to back. Shows the part of a decode step
 * that grows with the cached length: the KV cache's copies and attention.
 */
export async function measurePositions(
  variants: readonly { id: string; variant: BenchVariant }[],
  config: Pick<ModelConfig, 'vocabSize' | 'bosTokenId'>,
  sweep: { positions: readonly number[]; steps: number; rounds: number },
  log: (line: string) => void = () => undefined,
): Promise<PositionSamples> {
  const out: PositionSamples = new Map(variants.map((v) => [v.id, new Map()]));
  if (sweep.positions.length === 0) return out;
  for (let r = 0; r < sweep.rounds; r++) {
    log(`positions ${sweep.positions.join(', ')}: round ${r + 1}/${sweep.rounds} ...`);
    for (const [i, p] of sweep.positions.entries()) {
      const settings: GenerationSettings = { prompt: fixedPrompt(config, p), vocabSize: config.vocabSize };
      for (let k = 0; k < variants.length; k++) {
        const { id, variant } = variants[(k + r + i) % variants.length]!;
        const run = await variant.start(settings);
        try {
          await run.prefill();
          const t = await run.decode(sweep.steps);
          const byPos = out.get(id)!;
          byPos.set(p, [...(byPos.get(p) ?? []), t]);
        } finally {
          await run.close();
        }
      }
    }
  }
  return out;
}

/**
 * Median over paired samples of (rate of `a`) ÷ (rate of `b`): decode blocks or prefills that ran
 * back to back (`decode-cpu`: decode blocks by CPU time instead of wall time). Null when either
 * variant has no samples.
 */
export function pairedRatio(
  samples: InterleavedSamples,
  a: string,
  b: string,
  phase: 'decode' | 'decode-cpu' | 'prefill',
): number | null {
  if (phase === 'prefill') {
    const pa = samples.prefillMs.get(a);
    const pb = samples.prefillMs.get(b);
    if (!pa?.length || !pb?.length) return null;
    // Same token count on both sides: the rate ratio is the inverse time ratio.
    return spread(pa.map((ms, i) => pb[i]! / ms)).median;
  }
  const da = samples.decode.get(a);
  const db = samples.decode.get(b);
  if (!da?.length || !db?.length) return null;
  if (phase === 'decode-cpu') return spread(da.map((x, i) => db[i]!.cpuMs / x.cpuMs)).median;
  return spread(da.map((x, i) => db[i]!.ms / x.ms)).median;
}

function sameTokens(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}
