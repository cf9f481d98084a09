/**
 * `npm run bench:speculative`: speculative decoding through a ring whose hops cost what a real
 * network's do. In-process contributors (real ring stages, real ORT runners, the real peer-link
 * framing) on in-memory links that add `hopMs` one way to every message (requester → stage 0 →
 * … → head → requester: stages + 1 hops per lap). In one run:
 *
 * 1. greedy decoding without a draft (one lap per token), then with a q4 draft of the same model in
 *    the requester (quantised at load) for each k: decode tok/s side by side, acceptance rate,
 *    tokens per lap, and whether the text is the same (and adaptive k up to the largest one);
 * 2. on a synthetic model (random weights with stories15M's shapes, where logits are nearly flat),
 *    locally: how many generated tokens agree with step-by-step decoding and the smallest top-2
 *    logit gap step-by-step decoding saw — a k+1-row verify pass sums in another float order than
 *    k+1 one-row passes, so a gap below that rounding can flip a greedy pick.
 */
import { splitUnits } from '../../shared/graph/units.js';
import { createRemotePipeline } from '../../shared/ring/remote-pipeline.js';
import { generate, type GenerateResult } from '../../shared/runtime/generate.js';
import { createSampler } from '../../shared/runtime/sampler.js';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport.js';
import { createNodeShardRunner } from '../../signaling-server/src/model/open-node-model.js';
import type { ModelLocation } from '../../shared/model/open-model.js';
import { loadLocalPipeline } from '../model/local-pipeline.js';
import { GREEDY, buildMemoryRing, connectRequester, stopMemoryRing } from './memory-ring.js';

/** Options of {@link runSpeculativeBench}. */
export interface SpeculativeBenchOptions {
  modelPath: string;
  /** One-way delay of every hop, ms (default 20). */
  hopMs: number;
  /** Link rate, Mbit/s (default 200). */
  mbps: number;
  /** Ring stages (default 3). */
  stages: number;
  /** Positions per run, BOS and prompt included (default 64). */
  steps: number;
  /** Draft lengths to measure (default 2, 4, 6). */
  ks: number[];
  prompt: string;
  /** The synthetic model's directory (written once), or undefined to skip that part. */
  synthetic?: () => Promise<ModelLocation>;
  /** Positions of the synthetic comparison (default 48). */
  syntheticSteps: number;
  log: (line: string) => void;
}

/** One measured configuration. */
export interface SpeculativeRun {
  /** 0 = no draft; with `adaptive`, the largest k. */
  k: number;
  adaptive: boolean;
  decodeTokPerS: number;
  /** Decode wall time per generated token, ms. */
  msPerToken: number;
  laps: number;
  tokensPerLap: number;
  acceptanceRate: number;
  /** Draft compute per generated token, ms (in the requester). */
  draftMsPerToken: number;
  /** decode tok/s ÷ the no-draft run's. */
  speedup: number;
  sameText: boolean;
}

/** The synthetic-model comparison (local, no ring). */
export interface SyntheticAgreement {
  model: string;
  k: number;
  generated: number;
  /** Generated tokens equal to step-by-step decoding before the first difference. */
  agreeing: number;
  agreement: number;
  identical: boolean;
  /** Smallest top-1 minus top-2 logit over step-by-step decoding's positions. */
  minTop2Gap: number;
  acceptanceRate: number;
}

export interface SpeculativeBenchResult {
  model: string;
  hopMs: number;
  stages: number;
  ranges: Array<[number, number]>;
  steps: number;
  draft: { format: 'q4'; weightBytes: number };
  runs: SpeculativeRun[];
  /** Best drafted decode tok/s ÷ no-draft decode tok/s. */
  bestSpeedup: number;
  synthetic?: SyntheticAgreement;
}

/** Runs the benchmark; see the module comment. */
export async function runSpeculativeBench(o: SpeculativeBenchOptions): Promise<SpeculativeBenchResult> {
  const model = { url: o.modelPath };
  const draft = await loadLocalPipeline({ model, weightFormat: 'q4', contextLength: o.steps });
  const L = draft.config.numLayers;
  // Even unit boundaries over embedding + blocks + head.
  const splits = Array.from({ length: o.stages - 1 }, (_, i) => Math.round(((i + 1) * (L + 2)) / o.stages));
  const ranges = splitUnits({ numLayers: L }, splits);
  const hub = createMemoryTransportHub({ shape: () => ({ delayMs: o.hopMs, mbps: o.mbps }) });
  const stages = await buildMemoryRing({
    hub,
    makeRunner: () => createNodeShardRunner(),
    model,
    numLayers: L,
    splits,
    contextLength: o.steps,
    logits: 'rows',
    prefix: 'spec',
  });
  const runs: SpeculativeRun[] = [];
  try {
    let n = 0;
    const ask = async (k: number, adaptive: boolean): Promise<GenerateResult> => {
      const requester = `req${++n}`;
      const { transport, first, head } = await connectRequester(hub, stages, requester);
      try {
        return await generate({
          pipeline: createRemotePipeline({ requesterId: requester, epoch: 1, first, head, sampler: GREEDY }),
          tokenizer: draft.tokenizer,
          prompt: o.prompt,
          steps: o.steps,
          sampler: createSampler({ temperature: 0 }),
          stopTokens: [],
          ...(k > 0 ? { draft: { pipeline: draft.pipeline, k, adaptive } } : {}),
        });
      } finally {
        await transport.close();
      }
    };
    let base: GenerateResult | undefined;
    const plan = [0, ...o.ks].map((k) => ({ k, adaptive: false }));
    // Adaptive drafting up to the largest k.
    plan.push({ k: Math.max(...o.ks), adaptive: true });
    for (const { k, adaptive } of plan) {
      const r = await ask(k, adaptive);
      base ??= r;
      const t = r.timings;
      const s = r.speculative;
      const run: SpeculativeRun = {
        k,
        adaptive,
        decodeTokPerS: round(t.decodeTokPerS),
        msPerToken: round(t.decodeMs / Math.max(1, t.decodeTokens)),
        laps: s?.laps ?? t.decodeTokens,
        tokensPerLap: round(s?.tokensPerLap ?? 1),
        acceptanceRate: round(s?.acceptanceRate ?? 0, 3),
        draftMsPerToken: round((s?.draftMs ?? 0) / Math.max(1, t.decodeTokens)),
        speedup: round(t.decodeTokPerS / base.timings.decodeTokPerS, 2),
        sameText: r.text === base.text,
      };
      runs.push(run);
      o.log(
        `k=${adaptive ? '≤' : ''}${k}: ${run.decodeTokPerS} tok/s, ${run.laps} laps, ${run.tokensPerLap} tokens/lap, ` +
          `acceptance ${run.acceptanceRate}, same text ${run.sameText}`,
      );
    }
  } finally {
    await stopMemoryRing(stages);
  }
  const synthetic = o.synthetic ? await syntheticAgreement(await o.synthetic(), o, 4) : undefined;
  await draft.dispose();
  const drafted = runs.filter((r) => r.k > 0);
  return {
    model: o.modelPath,
    hopMs: o.hopMs,
    stages: o.stages,
    ranges: ranges.map((r) => [r[0], r[1]]),
    steps: o.steps,
    draft: { format: 'q4', weightBytes: draft.loads[0]!.weightBytes },
    runs,
    bestSpeedup: Math.max(...drafted.map((r) => r.speedup)),
    ...(synthetic ? { synthetic } : {}),
  };
}

/** Step-by-step vs drafted greedy decoding of the synthetic model, locally, token by token. */
async function syntheticAgreement(
  model: ModelLocation,
  o: SpeculativeBenchOptions,
  k: number,
): Promise<SyntheticAgreement> {
  o.log(`synthetic model ${model.url}: step-by-step vs drafted (k=${k}) ...`);
  const steps = o.syntheticSteps;
  const target = await loadLocalPipeline({ model, contextLength: steps, logits: 'rows' });
  const draft = await loadLocalPipeline({ model, weightFormat: 'q4', contextLength: steps });
  try {
    let minGap = Infinity;
    const base = { tokenizer: target.tokenizer, prompt: o.prompt, steps, stopTokens: [] as number[] };
    const plain = await generate({
      ...base,
      pipeline: target.pipeline,
      sampler: createSampler({ temperature: 0 }),
      onLogits: (_p, l) =>
        (minGap = Math.min(minGap, top2Gap(l.subarray(l.length - target.config.vocabSize)))),
    });
    const spec = await generate({
      ...base,
      pipeline: target.pipeline,
      sampler: createSampler({ temperature: 0 }),
      draft: { pipeline: draft.pipeline, k },
    });
    const gen = plain.tokens.slice(plain.promptTokens);
    const got = spec.tokens.slice(spec.promptTokens);
    let agreeing = 0;
    while (agreeing < gen.length && gen[agreeing] === got[agreeing]) agreeing++;
    return {
      model: model.url,
      k,
      generated: gen.length,
      agreeing,
      agreement: round(agreeing / Math.max(1, gen.length), 3),
      identical: plain.text === spec.text,
      minTop2Gap: minGap,
      acceptanceRate: round(spec.speculative?.acceptanceRate ?? 0, 3),
    };
  } finally {
    await target.dispose();
    await draft.dispose();
  }
}

/** Largest minus second-largest value of a logits row. */
export function top2Gap(row: Float32Array): number {
  let a = -Infinity;
  let b = -Infinity;
  for (const v of row) {
    if (v > a) {
      b = a;
      a = v;
    } else if (v > b) b = v;
  }
  return a - b;
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

/** The human-readable report. */
export function formatSpeculativeReport(r: SpeculativeBenchResult): string {
  const lines = [
    `speculative decoding: ${r.model}, ${r.stages} stages ${r.ranges.map((x) => `[${x[0]},${x[1]})`).join(' → ')}, ` +
      `${r.hopMs} ms per hop (${r.stages + 1} hops per lap), ${r.steps} positions, q4 draft ${(r.draft.weightBytes / 1024).toFixed(0)} KiB`,
    `  k  tok/s  ×base  laps  tok/lap  accept  draft ms/tok  same text`,
    ...r.runs.map(
      (x) =>
        `${`${x.adaptive ? '≤' : ''}${x.k}`.padStart(3)}  ${x.decodeTokPerS.toFixed(1).padStart(5)}  ${x.speedup.toFixed(2).padStart(5)}  ` +
        `${String(x.laps).padStart(4)}  ${x.tokensPerLap.toFixed(2).padStart(7)}  ${x.acceptanceRate.toFixed(3).padStart(6)}  ` +
        `${x.draftMsPerToken.toFixed(1).padStart(12)}  ${x.sameText}`,
    ),
    `best speedup ${r.bestSpeedup.toFixed(2)}×`,
  ];
  const s = r.synthetic;
  if (s) {
    lines.push(
      `synthetic (${s.model}, k=${s.k}): ${s.agreeing}/${s.generated} generated tokens agree with step-by-step ` +
        `decoding (${(100 * s.agreement).toFixed(1)} %, identical ${s.identical}); smallest top-2 logit gap ` +
        `${s.minTop2Gap.toExponential(2)}; acceptance ${s.acceptanceRate}`,
    );
  }
  return lines.join('\n');
}
