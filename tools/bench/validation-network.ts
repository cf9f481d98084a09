/**
 * The validation benchmark's in-memory network: k rings of real ORT shard runners (onnxruntime-web
 * wasm in this process) over stories260K with the same unit boundaries, a referee, fresh per-session
 * keys for every peer each trial, and the dishonest runners (q4, another model) the tamper classes
 * need. Stages exchange exact byte frames with signed receipts (`shared/validation/stage.ts`); the
 * ring protocol itself is not involved.
 */
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openLlama2cModel } from '../../shared/model/llama2c.js';
import { createMemoryFileOpener } from '../../shared/model/memory-source.js';
import type { ModelConfig } from '../../shared/model/types.js';
import { createOrtShardRunner, type OrtModule } from '../../shared/runtime/ort-shard-runner.js';
import type { ShardRunner } from '../../shared/runtime/shard-runner.js';
import { splitUnits } from '../../shared/graph/units.js';
import type { WeightFormat } from '../../shared/graph/compile-shard.js';
import { mulberry32 } from '../../shared/util/prng.js';
import { createSessionKey } from '../../shared/validation/crypto.js';
import { createKeyRegistry } from '../../shared/validation/key-registry.js';
import { createReferee } from '../../shared/validation/referee.js';
import {
  runValidatedGeneration,
  type ValidatedGenerationResult,
  type ValidatedRing,
} from '../../shared/validation/session.js';
import { sketchDistance, type SketchParams } from '../../shared/validation/sketch.js';
import type { SpotCheckPolicy } from '../../shared/validation/spot-check.js';
import { createValidatingStage, type ValidatingStage } from '../../shared/validation/stage.js';
import type { Tolerance } from '../../shared/validation/checks.js';
import { nodeOrt } from '../../signaling-server/src/model/open-node-model.js';
import type { ThreadChildReply, ThreadChildRequest } from './validation-thread-child.js';
import type { StageRole, TamperClass } from './validation-tampers.js';

/** Options of {@link createValidationNetwork}. */
export interface ValidationNetworkOptions {
  modelPath: string;
  /** Unit boundaries shared by every ring (default 2,4: three stages). */
  splits: number[];
  /** Rings to build (2 for k = 2). */
  rings: number;
  contextLength: number;
  ort?: OrtModule;
}

/** A loaded network, reused across trials (each trial opens fresh KV sessions and keys). */
export interface ValidationNetwork {
  config: ModelConfig;
  ranges: [number, number][];
  rowLens: number[];
  modelHash: string;
  rolesOf(stage: number): StageRole;
  /** Runs one trial. */
  trial(o: TrialOptions): Promise<TrialResult>;
  dispose(): Promise<void>;
}

/** One trial: a generation on `k` rings, maybe with one tampering stage. */
export interface TrialOptions {
  k: number;
  prompt: number[];
  steps: number;
  tolerance: Tolerance;
  sketch?: SketchParams;
  tamper?: { cls: TamperClass; ring: number; stage: number; seed: number };
  spotCheck?: SpotCheckPolicy;
  stopAtDetection?: boolean;
  /** This peer signs with a key other than the one it registered (a forger, or a rewritten commitment). */
  forger?: { ring: number; stage: number };
}

/** A trial's outcome with the benchmark's bookkeeping. */
export interface TrialResult extends ValidatedGenerationResult {
  /** Steps at which the tampering stage changed what it sent or committed to. */
  tamperedSteps: number[];
  /** The tampering peer, if any. */
  tamperer?: string;
  wallMs: number;
}

/** stories260K's weights shuffled with a seed: the same shapes, another model. */
function otherModelBytes(bin: Uint8Array, seed: number): Uint8Array {
  const out = bin.slice();
  const w = new Float32Array(out.buffer, 28, (out.length - 28) / 4);
  const next = mulberry32(seed);
  for (let i = w.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [w[i], w[j]] = [w[j]!, w[i]!];
  }
  return out;
}

/** Loads every runner a benchmark run needs. */
export async function createValidationNetwork(o: ValidationNetworkOptions): Promise<ValidationNetwork> {
  const ort = o.ort ?? nodeOrt();
  const bin = new Uint8Array(readFileSync(o.modelPath));
  const modelHash = createHash('sha256').update(bin).digest('hex');
  const files = { 'model.bin': bin, 'other.bin': otherModelBytes(bin, 0xbad5eed) };
  const opener = createMemoryFileOpener(files, 'mem:');
  const load = async (
    file: 'model.bin' | 'other.bin',
    range: [number, number],
    weightFormat: WeightFormat,
  ) => {
    const runner = createOrtShardRunner({
      ort,
      openModel: () => openLlama2cModel(opener, file),
      probeWebGpu: async () => ({ ok: false, reason: 'node' }),
    });
    const r = await runner.load({
      model: { url: `mem:${file}` },
      range,
      weightFormat,
      contextLength: o.contextLength,
      logits: 'last',
      backend: 'wasm',
    });
    return { runner, config: r.config };
  };
  const first = await load('model.bin', [0, 1], 'f32');
  const config = first.config;
  await first.runner.dispose();
  const ranges = splitUnits(config, o.splits).map((r) => [r[0], r[1]] as [number, number]);
  const rowLens = ranges.map((_, i) => (i === ranges.length - 1 ? config.vocabSize : config.hiddenSize));
  const honest: ShardRunner[][] = [];
  for (let r = 0; r < o.rings; r++)
    honest.push(
      await Promise.all(ranges.map(async (range) => (await load('model.bin', range, 'f32')).runner)),
    );
  const refereeRunners = await Promise.all(
    ranges.map(async (range) => (await load('model.bin', range, 'f32')).runner),
  );
  const variants = new Map<string, ShardRunner>();
  const variant = async (kind: 'q4' | 'other-model', stage: number) => {
    const key = `${kind}:${stage}`;
    let v = variants.get(key);
    if (!v) {
      v = (
        await load(kind === 'q4' ? 'model.bin' : 'other.bin', ranges[stage]!, kind === 'q4' ? 'q4' : 'f32')
      ).runner;
      variants.set(key, v);
    }
    return v;
  };
  const rolesOf = (stage: number): StageRole =>
    stage === 0 ? 'first' : stage === ranges.length - 1 ? 'head' : 'middle';

  return {
    config,
    ranges,
    rowLens,
    modelHash,
    rolesOf,
    async trial(t) {
      const t0 = performance.now();
      const registry = createKeyRegistry();
      const tamperedSteps = new Set<number>();
      let tamperer: string | undefined;
      const rings: ValidatedRing[] = [];
      for (let r = 0; r < t.k; r++) {
        const stages: ValidatingStage[] = [];
        for (let i = 0; i < ranges.length; i++) {
          const peerId = `r${r}s${i}`;
          const key = await createSessionKey();
          const forges = t.forger?.ring === r && t.forger.stage === i;
          await registry.register(
            peerId,
            forges ? (await createSessionKey()).publicKeyRaw : key.publicKeyRaw,
          );
          const bad = t.tamper && t.tamper.ring === r && t.tamper.stage === i ? t.tamper : undefined;
          if (bad) tamperer = peerId;
          const stage = createValidatingStage({
            peerId,
            key,
            runner: bad?.cls.runner ? await variant(bad.cls.runner, i) : honest[r]![i]!,
            range: ranges[i]!,
            ring: r,
            stage: i,
            isHead: i === ranges.length - 1,
            rowLen: rowLens[i]!,
            registry,
            sketch: t.sketch,
            behaviour: bad?.cls.behaviour?.(bad.seed, rolesOf(i)),
          });
          stages.push(
            bad
              ? {
                  ...stage,
                  begin: (s) => stage.begin(s),
                  end: () => stage.end(),
                  recordedInput: (s) => stage.recordedInput(s),
                  step: async (frame, step, position, opts) => {
                    const res = await stage.step(frame, step, position, opts);
                    if (res.tampered || bad.cls.runner) tamperedSteps.add(step);
                    return res;
                  },
                }
              : stage,
          );
        }
        rings.push({ ring: r, stages });
      }
      const res = await runValidatedGeneration({
        rings,
        registry,
        referee: createReferee({ runners: refereeRunners, rowLens }),
        rowLens,
        prompt: t.prompt,
        steps: t.steps,
        tolerance: t.tolerance,
        sketch: t.sketch,
        spotCheck: t.spotCheck,
        stopAtDetection: t.stopAtDetection,
        model: 'stories260K',
        modelHash,
      });
      return {
        ...res,
        tamperedSteps: [...tamperedSteps].sort((a, b) => a - b),
        tamperer,
        wallMs: performance.now() - t0,
      };
    },
    async dispose() {
      for (const r of [...honest.flat(), ...refereeRunners, ...variants.values()]) await r.dispose();
    },
  };
}

/** A seeded prompt: BOS and `n` random tokens (past the special ids). */
export function trialPrompt(config: ModelConfig, seed: number, n = 3): number[] {
  const next = mulberry32(seed);
  return [config.bosTokenId ?? 1, ...Array.from({ length: n }, () => 3 + (next() % (config.vocabSize - 3)))];
}

/**
 * Honest sketch distances between two wasm thread counts (each in its own child process, same
 * prompts, greedy): the largest distance per compared step and stage, and how many comparisons.
 */
export async function threadCountDistances(o: {
  modelPath: string;
  splits: number[];
  threads: [number, number];
  prompts: number[][];
  steps: number;
}): Promise<{ comparisons: number; maxDistance: number; tokensEqual: boolean }> {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  const runChild = (threads: number) =>
    new Promise<ThreadChildReply>((resolveReply, reject) => {
      const child = fork(fileURLToPath(new URL(`./validation-thread-child.${ext}`, import.meta.url)), [], {
        execArgv: process.execArgv,
        serialization: 'advanced',
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      child.once('message', (m: ThreadChildReply) => (m.ok ? resolveReply(m) : reject(new Error(m.message))));
      child.once('exit', (code) => code !== 0 && reject(new Error(`thread child exited with ${code}`)));
      child.send({
        modelPath: o.modelPath,
        splits: o.splits,
        threads,
        prompts: o.prompts,
        steps: o.steps,
      } satisfies ThreadChildRequest);
    });
  const a = await runChild(o.threads[0]);
  const b = await runChild(o.threads[1]);
  let comparisons = 0;
  let maxDistance = 0;
  let tokensEqual = true;
  a.runs!.forEach((ra, p) => {
    const rb = b.runs![p]!;
    tokensEqual &&= ra.tokens.join() === rb.tokens.join();
    // Greedy runs stay comparable step by step only while their tokens agree.
    for (let s = 0; s < Math.min(ra.sketches.length, rb.sketches.length); s++) {
      if (ra.tokens[s] !== rb.tokens[s]) break;
      ra.sketches[s]!.forEach((sk, i) => {
        comparisons++;
        maxDistance = Math.max(maxDistance, sketchDistance(sk, rb.sketches[s]![i]!));
      });
    }
  });
  return { comparisons, maxDistance, tokensEqual };
}
