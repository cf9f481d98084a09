/**
 * `npm run bench:validation`: what result validation catches and what it costs, in one run on the
 * in-memory network of {@link createValidationNetwork} (real stories260K shards, onnxruntime-web
 * wasm): per tamper class at k = 2 with every step checked, trials (in which the tamper changed at
 * least one step), detected, correctly located (the tampering peer and nobody else) and steps until
 * detection; honest runs (k = 2 ring vs ring, and spot checks at f = 1 ring vs referee):
 * comparisons, flags and false positives; spot-check detection vs f for a peer cheating on 10 % of
 * steps against 1 − (1 − f·q)^n; compute and wall overhead of k = 2 and f = 0.1 over k = 1.
 */
import { mulberry32Float } from '../../shared/util/prng.js';
import { DEFAULT_TOLERANCE, type Tolerance } from '../../shared/validation/checks.js';
import { createSpotCheckPolicy, spotCheckDetectionProbability } from '../../shared/validation/spot-check.js';
import {
  createValidationNetwork,
  threadCountDistances,
  trialPrompt,
  type TrialResult,
  type ValidationNetwork,
} from './validation-network.js';
import { TAMPER_CLASSES, type TamperClass } from './validation-tampers.js';
import { formatWiredOverhead, runWiredOverhead, type WiredOverheadRow } from './validation-wired.js';

/** Options of {@link runValidationBench}. */
export interface ValidationBenchOptions {
  modelPath: string;
  /** Trials per tamper class. */
  trials: number;
  /** Honest k = 2 generations (and as many spot-checked at f = 1). */
  honestTrials: number;
  /** Trials per f in the spot-check section. */
  spotTrials: number;
  /** Honest generations per mode in the overhead section. */
  overheadTrials: number;
  steps: number;
  classes: readonly TamperClass[];
  tolerance?: Tolerance;
  /** Answers per mode on the real wired path (validation-wired.ts); 0: that section is skipped. */
  wiredAnswers?: number;
  /** Skip the spot-check and overhead sections (a `--tamper` run). */
  classesOnly?: boolean;
  log: (line: string) => void;
}

/** Per tamper class. */
export interface ClassReport {
  name: string;
  description: string;
  /** Trials in which the tamper changed at least one step. */
  trials: number;
  detected: number;
  located: number;
  /** Trials run in all (some changed nothing and are not counted). */
  runs: number;
  /** Steps from the first tampered step to the detection: mean and max. */
  stepsToDetection: { mean: number; max: number };
  /** Smallest referee distance seen at the deviant (how far the smallest tamper lands from honest). */
  minRefereeDistance: number | null;
}

/** The whole report (`--json`). */
export interface ValidationReport {
  classes: ClassReport[];
  honest: {
    comparisons: number;
    falsePositives: number;
    flags: number;
    trials: number;
    /** Largest honest sketch distance, ring vs ring (same build and thread count). */
    maxRingDistance: number;
    /** Largest honest sketch distance, ring vs the referee's batched recomputation. */
    maxRefereeDistance: number;
  };
  tolerance: Tolerance;
  commitmentBytesPerStep: number;
  /**
   * Spot checks vs f. `where`: the cheater is the head (its cheating leaves no state behind, so only
   * a check of a cheated step sees it: the formula's case) or a middle stage (the next stage's KV
   * cache keeps the cheated input, and the referee checks the whole input history, so any later
   * check finds it too).
   */
  spotCheck: {
    f: number;
    q: number;
    n: number;
    where: 'head' | 'middle';
    trials: number;
    detected: number;
    located: number;
    measured: number;
    predicted: number;
  }[];
  /** Honest sketch distances between wasm thread counts 1 and 2 (separate processes). */
  threads: { comparisons: number; maxDistance: number; tokensEqual: boolean } | null;
  overhead: { mode: string; computeMs: number; wallMs: number; computeRatio: number; wallRatio: number }[];
  /** The same on the real wired path, spot-check mode included (validation-wired.ts). */
  wired: WiredOverheadRow[];
  wallSeconds: number;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

async function runClass(
  net: ValidationNetwork,
  cls: TamperClass,
  o: ValidationBenchOptions,
  tol: Tolerance,
): Promise<ClassReport> {
  const stages = net.ranges.map((_, i) => i).filter((i) => cls.roles.includes(net.rolesOf(i)));
  const rep: ClassReport = {
    name: cls.name,
    description: cls.description,
    trials: 0,
    detected: 0,
    located: 0,
    runs: 0,
    stepsToDetection: { mean: 0, max: 0 },
    minRefereeDistance: null,
  };
  const delays: number[] = [];
  for (let t = 0; t < o.trials; t++) {
    // Rotate the tampering stage over the stages the class can play, and the ring over 0 and 1.
    const stage = stages[t % stages.length]!;
    const r: TrialResult = await net.trial({
      k: 2,
      prompt: trialPrompt(net.config, 1000 + t),
      steps: o.steps,
      tolerance: tol,
      stopAtDetection: true,
      tamper: { cls, ring: Math.floor(t / stages.length) % 2, stage, seed: 77 + t },
    });
    rep.runs++;
    if (r.tamperedSteps.length === 0) continue;
    rep.trials++;
    const det = r.detections[0];
    if (!det) continue;
    rep.detected++;
    const all = r.detections.flatMap((d) => d.located);
    if (all.length === 1 && all[0]!.peerId === r.tamperer) rep.located++;
    delays.push(det.step - r.tamperedSteps[0]!);
    for (const e of det.evidence) {
      if (e.refereeDistance !== undefined)
        rep.minRefereeDistance = Math.min(rep.minRefereeDistance ?? Infinity, e.refereeDistance);
    }
  }
  rep.stepsToDetection = { mean: mean(delays), max: delays.length ? Math.max(...delays) : 0 };
  return rep;
}

/** Runs every section. */
export async function runValidationBench(o: ValidationBenchOptions): Promise<ValidationReport> {
  const t0 = performance.now();
  const tol = o.tolerance ?? DEFAULT_TOLERANCE;
  const net = await createValidationNetwork({
    modelPath: o.modelPath,
    splits: [2, 4],
    rings: 2,
    contextLength: Math.max(o.steps, 8),
  });
  try {
    const report: ValidationReport = {
      classes: [],
      honest: {
        comparisons: 0,
        falsePositives: 0,
        flags: 0,
        trials: 0,
        maxRingDistance: 0,
        maxRefereeDistance: 0,
      },
      tolerance: tol,
      commitmentBytesPerStep: 0,
      spotCheck: [],
      wired: [],
      threads: null,
      overhead: [],
      wallSeconds: 0,
    };
    for (const cls of o.classes) {
      o.log(`class ${cls.name}...`);
      report.classes.push(await runClass(net, cls, o, tol));
    }
    o.log('honest runs...');
    for (let t = 0; t < o.honestTrials; t++) {
      const prompt = trialPrompt(net.config, 5000 + t);
      const k2 = await net.trial({ k: 2, prompt, steps: o.steps, tolerance: tol });
      const spot = await net.trial({
        k: 1,
        prompt,
        steps: o.steps,
        tolerance: tol,
        spotCheck: createSpotCheckPolicy({
          fMin: 1,
          fMax: 1,
          halfLife: Infinity,
          random: mulberry32Float(t),
        }),
      });
      for (const r of [k2, spot]) {
        report.honest.trials++;
        report.honest.comparisons += r.comparisons;
        report.honest.flags += r.flags;
        report.honest.falsePositives += r.detections.reduce((n, d) => n + d.located.length, 0);
      }
      report.honest.maxRingDistance = Math.max(report.honest.maxRingDistance, k2.maxAgreeingDistance);
      report.honest.maxRefereeDistance = Math.max(report.honest.maxRefereeDistance, spot.maxRefereeDistance);
      report.commitmentBytesPerStep = k2.commitmentBytesPerStep;
    }
    if (!o.classesOnly) {
      o.log('thread counts 1 vs 2...');
      report.threads = await threadCountDistances({
        modelPath: o.modelPath,
        splits: [2, 4],
        threads: [1, 2],
        prompts: Array.from({ length: Math.max(1, o.honestTrials) }, (_, t) =>
          trialPrompt(net.config, 5000 + t),
        ),
        steps: o.steps,
      });
      const cheat = TAMPER_CLASSES.find((c) => c.name === 'cheat-10pct')!;
      for (const f of [0.05, 0.1, 0.2, 0.5]) {
        for (const where of ['head', 'middle'] as const) {
          o.log(`spot checks f=${f}, cheater at the ${where}...`);
          const stage = where === 'head' ? net.ranges.length - 1 : 1;
          let detected = 0;
          let located = 0;
          for (let t = 0; t < o.spotTrials; t++) {
            const r = await net.trial({
              k: 1,
              prompt: trialPrompt(net.config, 9000 + t),
              steps: o.steps,
              tolerance: tol,
              stopAtDetection: true,
              tamper: { cls: cheat, ring: 0, stage, seed: 31 * t + Math.round(f * 1000) },
              spotCheck: createSpotCheckPolicy({
                fMin: f,
                fMax: f,
                halfLife: Infinity,
                random: mulberry32Float(17 * t + 3),
              }),
            });
            if (r.detections.length > 0) detected++;
            if (
              r.detections.flatMap((d) => d.located).every((l) => l.peerId === r.tamperer) &&
              r.detections.length > 0
            )
              located++;
          }
          // Forward passes of a generation: the prefill of BOS + 3 tokens, then one per fed token.
          const n = o.steps - 4;
          report.spotCheck.push({
            f,
            q: 0.1,
            n,
            where,
            trials: o.spotTrials,
            detected,
            located,
            measured: o.spotTrials ? detected / o.spotTrials : 0,
            predicted: spotCheckDetectionProbability(f, 0.1, n),
          });
        }
      }
      o.log('overhead...');
      const modes = [
        { mode: 'k=1 (no checks)', k: 1, f: 0 },
        { mode: 'k=2', k: 2, f: 0 },
        { mode: 'k=1, f=0.1', k: 1, f: 0.1 },
      ];
      const totals = modes.map(() => ({ computeMs: 0, wallMs: 0 }));
      // Modes interleaved trial by trial (after one discarded warm-up round), so load drift hits all alike.
      for (let t = -1; t < o.overheadTrials; t++) {
        for (const [i, m] of modes.entries()) {
          const r = await net.trial({
            k: m.k,
            prompt: trialPrompt(net.config, 7000 + Math.max(t, 0)),
            steps: o.steps,
            tolerance: tol,
            spotCheck:
              m.f > 0
                ? createSpotCheckPolicy({
                    fMin: m.f,
                    fMax: m.f,
                    halfLife: Infinity,
                    random: mulberry32Float(t + 1),
                  })
                : undefined,
          });
          if (t < 0) continue;
          totals[i]!.computeMs += r.computeMs.rings + r.computeMs.referee;
          totals[i]!.wallMs += r.wallMs;
        }
      }
      modes.forEach((m, i) =>
        report.overhead.push({ mode: m.mode, ...totals[i]!, computeRatio: 0, wallRatio: 0 }),
      );
      for (const m of report.overhead) {
        m.computeRatio = m.computeMs / report.overhead[0]!.computeMs;
        m.wallRatio = m.wallMs / report.overhead[0]!.wallMs;
      }
    }
    if (!o.classesOnly && (o.wiredAnswers ?? 0) > 0) {
      o.log('wired path...');
      report.wired = await runWiredOverhead({
        modelPath: o.modelPath,
        steps: o.steps,
        answers: o.wiredAnswers!,
        f: 0.1,
        log: o.log,
      });
    }
    report.wallSeconds = (performance.now() - t0) / 1000;
    return report;
  } finally {
    await net.dispose();
  }
}

const pad = (s: string | number, n: number) => String(s).padEnd(n);
const sci = (x: number | null) => (x === null ? '-' : x === 0 ? '0' : x.toExponential(1));

/** The human-readable report. */
export function formatValidationReport(r: ValidationReport): string {
  const lines: string[] = [];
  lines.push('k = 2, every step checked (one tampering stage, rotated over stages and rings):');
  lines.push(
    `  ${pad('class', 30)}${pad('trials', 8)}${pad('detected', 10)}${pad('located', 9)}${pad('steps to detect (mean/max)', 28)}min referee distance`,
  );
  for (const c of r.classes) {
    lines.push(
      `  ${pad(c.name, 30)}${pad(c.trials, 8)}${pad(c.detected, 10)}${pad(c.located, 9)}${pad(`${c.stepsToDetection.mean.toFixed(2)} / ${c.stepsToDetection.max}`, 28)}${sci(c.minRefereeDistance)}`,
    );
  }
  const h = r.honest;
  lines.push(
    `honest: ${h.trials} generations, ${h.comparisons} comparisons, ${h.flags} flags, ${h.falsePositives} false positives; max honest distance ring vs ring ${sci(h.maxRingDistance)}, ring vs referee ${sci(h.maxRefereeDistance)}; tolerance ${sci(r.tolerance.sketch)} (sketch), ${sci(r.tolerance.tensor)} (tensor)`,
  );
  if (r.threads) {
    lines.push(
      `honest, wasm 1 vs 2 threads (separate processes): ${r.threads.comparisons} comparisons, max distance ${sci(r.threads.maxDistance)}, same tokens: ${r.threads.tokensEqual}`,
    );
  }
  lines.push(`commitments: ${r.commitmentBytesPerStep} bytes per decode step per ring (all stages, signed)`);
  if (r.spotCheck.length) {
    lines.push('spot checks, one ring, a stage cheating on 10 % of steps (q = 0.1):');
    for (const s of r.spotCheck) {
      lines.push(
        `  f=${pad(s.f, 6)}cheater ${pad(s.where, 8)}detected ${pad(`${s.detected}/${s.trials}`, 8)}located ${pad(s.located, 5)}measured ${pad(s.measured.toFixed(2), 6)}predicted 1-(1-f·q)^${s.n} = ${s.predicted.toFixed(2)}`,
      );
    }
  }
  if (r.overhead.length) {
    lines.push('overhead (honest generations, same prompts):');
    for (const m of r.overhead) {
      lines.push(
        `  ${pad(m.mode, 18)}compute ${pad(`${m.computeMs.toFixed(0)} ms`, 10)}×${pad(m.computeRatio.toFixed(2), 7)}wall ${pad(`${m.wallMs.toFixed(0)} ms`, 10)}×${m.wallRatio.toFixed(2)}`,
      );
    }
  }
  if (r.wired.length) lines.push(...formatWiredOverhead(r.wired));
  lines.push(`wall time: ${r.wallSeconds.toFixed(1)} s`);
  return `${lines.join('\n')}\n`;
}
