/**
 * `npm run bench:validation -- --wired N`: what security levels cost on the real wired path — the
 * ring protocol between in-process stages (real ring stages, signed commitments, real ORT runners
 * on stories260K, in-memory links), the requester's validated pipeline
 * (shared/validation/validated-pipeline.ts) and its own runners as the referee. Modes, interleaved
 * answer by answer so load drift hits all alike (after one discarded warm-up round):
 *
 * - `k=1`: one ring, no commitments asked (a plain chat answer);
 * - `k=1 + commitments`: one ring whose commitments are checked (signatures, boundary hashes);
 * - `k=2`: a validator ring runs every step, compared stage by stage;
 * - `spot f`: the validator ring runs only sampled steps, catching up with one chunk.
 *
 * Compute is the stages' own step time (every ring and the referee), laps are the validator ring's
 * steps (each one a pass through its stages, whatever its rows), rows the tokens it ran.
 */
import { splitUnits } from '../../shared/graph/units.js';
import { createRemotePipeline } from '../../shared/ring/remote-pipeline.js';
import { generate } from '../../shared/runtime/generate.js';
import type { Pipeline } from '../../shared/runtime/pipeline.js';
import { createSampler } from '../../shared/runtime/sampler.js';
import type { ShardRunner } from '../../shared/runtime/shard-runner.js';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport.js';
import { mulberry32Float } from '../../shared/util/prng.js';
import { DEFAULT_TOLERANCE } from '../../shared/validation/checks.js';
import { createSessionKey } from '../../shared/validation/crypto.js';
import { createKeyRegistry } from '../../shared/validation/key-registry.js';
import { createReferee } from '../../shared/validation/referee.js';
import { spotCheckDetectionProbability } from '../../shared/validation/spot-check.js';
import type { TamperFn } from '../../shared/validation/stage.js';
import { createValidatedPipeline } from '../../shared/validation/validated-pipeline.js';
import { loadLocalPipeline } from '../model/local-pipeline.js';
import { createNodeShardRunner } from '../../signaling-server/src/model/open-node-model.js';
import {
  GREEDY,
  buildMemoryRing,
  connectRequester,
  stopMemoryRing,
  type MemoryStage,
} from './memory-ring.js';

/** One mode's totals over the measured answers. */
export interface WiredOverheadRow {
  mode: string;
  answers: number;
  /** Steps, all answers (each answer's prefill is one). */
  steps: number;
  /** Steps compared across rings, all answers. */
  comparedSteps: number;
  /** Stage compute, all rings and the referee, ms. */
  computeMs: number;
  wallMs: number;
  /** The validator ring's laps and rows, all answers. */
  validatorLaps: number;
  validatorRows: number;
  /** Over `k=1`. */
  computeRatio: number;
  wallRatio: number;
  /** Honest answers whose tokens differed from k = 1's, or that located a deviant (false positives). */
  falsePositives: number;
}

/** Counts a runner's step time and rows into `acc`. */
function counted(acc: { ms: number; laps: number; rows: number }): () => ShardRunner {
  return () => {
    const r = createNodeShardRunner();
    return {
      ...r,
      step: async (id, input, opts) => {
        const out = await r.step(id, input, opts);
        acc.ms += out.ms;
        acc.laps++;
        acc.rows += out.seqLen;
        return out;
      },
    };
  };
}

/** Ring a (primary) and ring b (validator) of in-process stages, and the requester's referee. */
async function wiredNetwork(modelPath: string, tamper?: (stage: number) => TamperFn | undefined) {
  const model = { url: modelPath };
  const local = await loadLocalPipeline({ model, weightFormat: 'f32', contextLength: 256 });
  const L = local.config.numLayers;
  const splits = [Math.round((L + 2) / 3), Math.round((2 * (L + 2)) / 3)];
  const ranges = splitUnits({ numLayers: L }, splits).map((r) => [r[0], r[1]] as [number, number]);
  const hub = createMemoryTransportHub();
  const registry = createKeyRegistry();
  const acc = ['a', 'b', 'ref'].map(() => ({ ms: 0, laps: 0, rows: 0 }));
  const rings: MemoryStage[][] = [];
  const refRunners: ShardRunner[] = [];
  const dispose = async () => {
    for (const st of rings) await stopMemoryRing(st);
    await Promise.all(refRunners.map((r) => r.dispose().catch(() => undefined)));
    await local.dispose();
  };
  try {
    for (const [j, prefix] of ['a', 'b'].entries()) {
      const keys = await Promise.all(ranges.map(() => createSessionKey()));
      const stages = await buildMemoryRing({
        hub,
        makeRunner: counted(acc[j]!),
        model,
        numLayers: L,
        splits,
        contextLength: 256,
        prefix,
        validation: (i) => {
          const fn = j === 0 ? tamper?.(i) : undefined;
          return { key: keys[i]!, ...(fn ? { tamper: fn } : {}) };
        },
      });
      rings.push(stages);
      for (let i = 0; i < stages.length; i++) await registry.register(stages[i]!.id, keys[i]!.publicKeyRaw);
    }
    const rowLens: number[] = [];
    for (const range of ranges) {
      const r = counted(acc[2]!)();
      const loaded = await r.load({
        model,
        range,
        weightFormat: 'f32',
        contextLength: 256,
        logits: 'last',
        backend: 'wasm',
      });
      refRunners.push(r);
      rowLens.push(range[1] === L + 2 ? loaded.config.vocabSize : loaded.config.hiddenSize);
    }
    const referee = createReferee({ runners: refRunners, rowLens });
    let n = 0;
    /** Fresh requester links to both rings and the pipeline specs over them. */
    const connect = async () => {
      const ids = rings.map(() => `req${++n}`);
      const conns = await Promise.all(rings.map((st, j) => connectRequester(hub, st, ids[j]!)));
      const remote = (j: number) => ({
        requesterId: ids[j]!,
        epoch: 1,
        first: conns[j]!.first,
        head: conns[j]!.head,
        sampler: GREEDY,
      });
      const spec = (j: number) => ({
        remote: remote(j),
        verifier: { peers: rings[j]!.map((s) => s.id), ranges, registry, model: 'stories260K' },
      });
      return { remote, spec, close: () => Promise.all(conns.map((c) => c.transport.close())) };
    };
    return { tokenizer: local.tokenizer, ranges, rings, referee, acc, connect, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** Runs the wired-path overhead section; see the module comment. */
export async function runWiredOverhead(o: {
  modelPath: string;
  steps: number;
  answers: number;
  /** Spot-check rate of the `spot` mode. */
  f: number;
  log: (line: string) => void;
}): Promise<WiredOverheadRow[]> {
  const net = await wiredNetwork(o.modelPath);
  const { acc, ranges, referee } = net;
  try {
    const modes = ['k=1', 'k=1 + commitments', 'k=2', `spot f=${o.f}`];
    const rows: WiredOverheadRow[] = modes.map((mode) => ({
      mode,
      answers: 0,
      steps: 0,
      comparedSteps: 0,
      computeMs: 0,
      wallMs: 0,
      validatorLaps: 0,
      validatorRows: 0,
      computeRatio: 0,
      wallRatio: 0,
      falsePositives: 0,
    }));
    for (let t = -1; t < o.answers; t++) {
      let baseline: number[] | undefined;
      for (const m of modes.keys()) {
        const { remote, spec, close } = await net.connect();
        const validated =
          m === 0
            ? undefined
            : createValidatedPipeline({
                rings: m === 1 ? [spec(0)] : [spec(0), spec(1)],
                referee,
                tolerance: DEFAULT_TOLERANCE,
                ...(m === 3 ? { spot: { f: o.f, random: mulberry32Float(1000 + t), greedy: true } } : {}),
              });
        const pipeline: Pipeline = validated ?? createRemotePipeline(remote(0));
        const before = acc.map((a) => ({ ...a }));
        const t0 = performance.now();
        const r = await generate({
          pipeline,
          tokenizer: net.tokenizer,
          prompt: `Once upon a time ${['there was', 'a girl', 'the sun', 'a little dog'][Math.max(t, 0) % 4]}`,
          steps: o.steps,
          sampler: createSampler({ temperature: 0 }),
          stopTokens: [],
        });
        const wall = performance.now() - t0;
        await close();
        if (m === 0) baseline = r.tokens;
        if (t < 0) continue;
        const row = rows[m]!;
        row.answers++;
        row.wallMs += wall;
        row.computeMs += acc.reduce((s, a, i) => s + a.ms - before[i]!.ms, 0);
        // The validator ring's first stage: one step per lap.
        row.validatorLaps += (acc[1]!.laps - before[1]!.laps) / ranges.length;
        row.validatorRows += (acc[1]!.rows - before[1]!.rows) / ranges.length;
        row.steps += validated?.report.steps ?? o.steps - r.promptTokens + 1;
        row.comparedSteps += validated?.report.comparedSteps ?? 0;
        if ((validated?.report.evidence.length ?? 0) > 0 || r.tokens.join() !== baseline!.join())
          row.falsePositives++;
      }
      if (t >= 0) o.log(`  wired answer ${t + 1}/${o.answers} done`);
    }
    for (const row of rows) {
      row.computeRatio = row.computeMs / rows[0]!.computeMs;
      row.wallRatio = row.wallMs / rows[0]!.wallMs;
    }
    return rows;
  } finally {
    await net.dispose();
  }
}

/** Spot-check detection on the wired path, per f and cheater. */
export interface WiredSpotRow {
  f: number;
  /** The primary ring's cheating stage: `middle` (its output feeds the next stage's KV cache) or `head`. */
  where: 'middle' | 'head';
  /** Trials in which the cheater changed at least one step. */
  trials: number;
  detected: number;
  /** Detected and located on the cheater (nobody else). */
  located: number;
  /** Mean step (0-based, the prefill is 0) at which the cheater was detected: a sampled step. */
  stepsToDetect: number;
  /** 1 − (1 − f·q)^n with q = 0.1 and n the answer's decode steps. */
  predicted: number;
}

/**
 * A primary-ring stage that cheats on 10 % of its steps (relative noise 1e-2, drawn per trial), a
 * spot-checked answer per trial: detected, and located on the cheater, against the formula. A head's
 * cheating leaves no state, so only a sampled cheated step catches it (the formula); a middle
 * stage's cheated output stays in the next stage's KV cache, so any later sampled step disagrees
 * and the referee's history check (spot-settle.ts) locates the cheater at the step it cheated.
 */
export async function runWiredSpotDetection(o: {
  modelPath: string;
  steps: number;
  trials: number;
  fs: readonly number[];
  log: (line: string) => void;
}): Promise<WiredSpotRow[]> {
  const current = { where: 'middle' as 'middle' | 'head', rng: mulberry32Float(1), cheated: 0 };
  const cheat =
    (where: 'middle' | 'head'): TamperFn =>
    (ctx) => {
      if (current.where !== where || ctx.step === 0 || current.rng() >= 0.1) return undefined;
      current.cheated++;
      return ctx.data.map((x, i) => x * (1 + (i % 3 === 0 ? 1e-2 : -1e-2)));
    };
  const net = await wiredNetwork(o.modelPath, (stage) =>
    stage === 1 ? cheat('middle') : stage === 2 ? cheat('head') : undefined,
  );
  const rows: WiredSpotRow[] = [];
  try {
    let seed = 0;
    for (const where of ['middle', 'head'] as const) {
      for (const f of o.fs) {
        const row: WiredSpotRow = {
          f,
          where,
          trials: 0,
          detected: 0,
          located: 0,
          stepsToDetect: 0,
          predicted: 0,
        };
        let decodeSteps = 0;
        for (let t = 0; t < o.trials; t++) {
          seed++;
          Object.assign(current, { where, rng: mulberry32Float(seed * 7919), cheated: 0 });
          const { spec, close } = await net.connect();
          const bad = net.rings[0]![where === 'middle' ? 1 : 2]!.id;
          const pipeline = createValidatedPipeline({
            rings: [spec(0), spec(1)],
            referee: net.referee,
            tolerance: DEFAULT_TOLERANCE,
            spot: { f, random: mulberry32Float(seed), greedy: true },
          });
          const r = await generate({
            pipeline,
            tokenizer: net.tokenizer,
            prompt: `Once upon a time ${['there was', 'a girl', 'the sun', 'a little dog'][t % 4]}`,
            steps: o.steps,
            sampler: createSampler({ temperature: 0 }),
            stopTokens: [],
          });
          await close();
          decodeSteps = o.steps - r.promptTokens;
          if (current.cheated === 0) continue;
          row.trials++;
          const ev = pipeline.report.evidence;
          if (ev.length === 0) continue;
          row.detected++;
          if (ev.every((e) => e.peerId === bad)) row.located++;
          // The pipeline's checks stop after the detection step (the deviant's ring is dropped).
          row.stepsToDetect += (pipeline.report.uncheckedFrom?.step ?? 1) - 1;
        }
        row.stepsToDetect = row.detected ? row.stepsToDetect / row.detected : 0;
        row.predicted = spotCheckDetectionProbability(f, 0.1, decodeSteps);
        rows.push(row);
        o.log(`  spot f=${f} ${where}: detected ${row.detected}/${row.trials}`);
      }
    }
    return rows;
  } finally {
    await net.dispose();
  }
}

const pad = (s: string | number, n: number) => String(s).padEnd(n);

/** The human-readable lines of {@link runWiredSpotDetection}'s rows. */
export function formatWiredSpot(rows: readonly WiredSpotRow[]): string[] {
  const lines = ['wired path, spot checks, a primary stage cheating on 10 % of steps (q = 0.1):'];
  for (const r of rows) {
    lines.push(
      `  f=${pad(r.f, 6)}cheater ${pad(r.where, 8)}detected ${pad(`${r.detected}/${r.trials}`, 8)}located ${pad(r.located, 5)}detected at step (mean) ${pad(r.stepsToDetect.toFixed(1), 6)}predicted 1-(1-f·q)^n = ${r.predicted.toFixed(2)}`,
    );
  }
  return lines;
}

/** The human-readable lines of {@link runWiredOverhead}'s rows. */
export function formatWiredOverhead(rows: readonly WiredOverheadRow[]): string[] {
  const lines = ['wired path (ring protocol, signed commitments, requester pipeline; honest answers):'];
  for (const r of rows) {
    lines.push(
      `  ${pad(r.mode, 20)}compute ${pad(`${r.computeMs.toFixed(0)} ms`, 10)}×${pad(r.computeRatio.toFixed(2), 7)}wall ${pad(`${r.wallMs.toFixed(0)} ms`, 10)}×${pad(r.wallRatio.toFixed(2), 7)}validator laps ${pad(r.validatorLaps, 6)}rows ${pad(r.validatorRows, 6)}compared ${pad(`${r.comparedSteps}/${r.steps}`, 9)}false positives ${r.falsePositives}`,
    );
  }
  return lines;
}
