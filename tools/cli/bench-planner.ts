/**
 * `npm run bench:planner [-- --seed 1 --runs 7]` compares Ringwork's planner with exo's memory-weighted
 * ring on seeded fleets of 4, 16 and 64 peers (mixed categories A/B/C, realistic device figures) and
 * Llama-3.2-1B-, 3.1-8B- and 3.1-70B-shaped profiles (q4, 2,048 tokens of KV), for both objectives,
 * under default links (20 ms, 100 Mbit/s) and LAN links (1 ms, 1 Gbit/s). It prints objective ÷
 * reference, where the reference is the proven optimum (≤ 8 eligible peers) or the lower bound, and
 * the planning time for 1,000 peers × 200 units.
 */
import { parseArgs } from 'node:util';
import { isRingworkError } from '../../shared/errors.js';
import { profileModel, type ModelProfile } from '../../shared/model/profile.js';
import type { ModelConfig } from '../../shared/model/types.js';
import {
  categorize,
  lowerBound,
  planExo,
  planRingwork,
  type DefaultLink,
  type Objective,
  type PeerProfileInput,
  type Plan,
  type PlanInput,
} from '../../shared/planner/index.js';
import { mulberry32Float } from '../../shared/util/prng.js';
import { intFlag, runCli } from './cli-util.js';

/** Device figures: FP32 TFLOPS, memory bandwidth GB/s, memory a browser peer offers, GB. */
const DEVICES = [
  { name: 'rtx-4090', tflops: 82.6, bw: 1008, gb: 24, weight: 6 },
  { name: 'rtx-3090', tflops: 35.6, bw: 936, gb: 24, weight: 5 },
  { name: 'rtx-4080', tflops: 48.7, bw: 717, gb: 16, weight: 5 },
  { name: 'm1-max', tflops: 10.4, bw: 400, gb: 32, weight: 8 },
  { name: 'm3-pro', tflops: 7.4, bw: 150, gb: 18, weight: 6 },
  { name: 'rtx-3060', tflops: 12.7, bw: 360, gb: 12, weight: 8 },
  { name: 'radeon-780m-igpu', tflops: 8.6, bw: 120, gb: 16, weight: 6 },
  { name: 'm1', tflops: 2.6, bw: 68, gb: 8, weight: 10 },
  { name: 'iris-xe-igpu', tflops: 2.2, bw: 68, gb: 8, weight: 10 },
  { name: 'uhd-620-igpu', tflops: 0.4, bw: 34, gb: 4, weight: 4 },
  { name: 'phone-sd8g3', tflops: 4.6, bw: 50, gb: 4, weight: 10 },
  { name: 'phone-a17', tflops: 2.1, bw: 45, gb: 4, weight: 10 },
] as const;

/** A seeded fleet; the first three peers are one of each category so that small fleets mix too. */
function fleet(size: number, seed: number): PeerProfileInput[] {
  const rand = mulberry32Float(seed);
  const totalWeight = DEVICES.reduce((a, d) => a + d.weight, 0);
  const pick = (): (typeof DEVICES)[number] => {
    let x = rand() * totalWeight;
    for (const d of DEVICES) if ((x -= d.weight) < 0) return d;
    return DEVICES[DEVICES.length - 1]!;
  };
  const byCat = (c: string): (typeof DEVICES)[number][] =>
    DEVICES.filter((d) => categorize({ tflops: d.tflops }) === c);
  const peers: PeerProfileInput[] = [];
  for (let i = 0; i < size; i++) {
    const forced = i < 3 ? byCat('ABC'[i]!) : null;
    const d = forced ? forced[Math.floor(rand() * forced.length)]! : pick();
    // ±10% around the datasheet: clocks, drivers and thermals differ between machines.
    const jitter = (): number => 0.9 + 0.2 * rand();
    peers.push({
      id: `${d.name}-${String(i).padStart(4, '0')}`,
      tflops: +(d.tflops * jitter()).toFixed(2),
      bandwidthGBps: +(d.bw * jitter()).toFixed(1),
      memoryBytes: d.gb * 1e9,
    });
  }
  return peers;
}

const LLAMA3_BASE = {
  architecture: 'llama',
  vocabSize: 128256,
  maxPositions: 131072,
  rmsNormEps: 1e-5,
  ropeTheta: 500000,
  ropeLayout: 'half',
  attentionBias: false,
  bosTokenId: 128000,
  eosTokenIds: [128001],
} as const;

const MODELS: { name: string; config: ModelConfig }[] = [
  {
    name: 'llama-3.2-1b',
    config: {
      ...LLAMA3_BASE,
      eosTokenIds: [128001],
      hiddenSize: 2048,
      intermediateSize: 8192,
      numLayers: 16,
      numHeads: 32,
      numKvHeads: 8,
      headDim: 64,
      tiedEmbeddings: true,
    },
  },
  {
    name: 'llama-3.1-8b',
    config: {
      ...LLAMA3_BASE,
      eosTokenIds: [128001],
      hiddenSize: 4096,
      intermediateSize: 14336,
      numLayers: 32,
      numHeads: 32,
      numKvHeads: 8,
      headDim: 128,
      tiedEmbeddings: false,
    },
  },
  {
    name: 'llama-3.1-70b',
    config: {
      ...LLAMA3_BASE,
      eosTokenIds: [128001],
      hiddenSize: 8192,
      intermediateSize: 28672,
      numLayers: 80,
      numHeads: 64,
      numKvHeads: 8,
      headDim: 128,
      tiedEmbeddings: false,
    },
  },
];

const CONTEXT = 2048;
const fmt = (x: number, d = 3): string => (Number.isFinite(x) ? x.toFixed(d) : '—');
const ms = (s: number): string => `${(s * 1e3).toFixed(2)} ms`;

function tryPlan(f: () => Plan): Plan | string {
  try {
    return f();
  } catch (e) {
    if (isRingworkError(e, 'PLAN_INFEASIBLE')) {
      const missing = e.details.missingBytes as number | undefined;
      return missing ? `infeasible (${(missing / 1e9).toFixed(1)} GB missing)` : 'infeasible';
    }
    throw e;
  }
}

/** How the plan was found: exhaustive, heuristic that met its lower bound, heuristic checked by DP. */
function algo(p: Plan, verified: Plan | null): string {
  if (p.algorithm === 'ringwork-exhaustive') return 'exhaustive';
  if (p.optimal) return 'heur=lb';
  return verified ? 'heur(ver)' : 'heur';
}

/** How many peers Ringwork may use for a profile (the category policy): can the subset DP verify? */
function eligible(peers: readonly PeerProfileInput[], profile: ModelProfile): number {
  const total = profile.layers.reduce((a, l) => a + l.weightBytes + l.kvBytesPerToken * CONTEXT, 0);
  return peers.filter((p) => categorize(p) !== 'C' || p.memoryBytes >= total).length;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

runCli(async () => {
  const { values } = parseArgs({ options: { seed: { type: 'string' }, runs: { type: 'string' } } });
  const seed = intFlag('seed', values.seed, 1);
  const runs = intFlag('runs', values.runs, 7, 1);
  const profiles: ModelProfile[] = MODELS.map((m) =>
    profileModel(m.name, m.config, { format: 'q4', contextTokens: CONTEXT }),
  );
  const scenarios: { name: string; link?: DefaultLink }[] = [
    { name: 'default links (20 ms, 100 Mbit/s)' },
    { name: 'LAN links (1 ms, 1 Gbit/s)', link: { rttMs: 1, mbps: 1000 } },
  ];
  const w = process.stdout.write.bind(process.stdout);
  w(
    `Ringwork planner bench — seed ${seed}, q4 weights, KV for ${CONTEXT} tokens. Values are seconds per token.\n`,
  );
  w(
    'ref = proven optimum ("opt": exhaustive search, a heuristic plan meeting its lower bound, or a subset-DP check\n' +
      'with ≤ 12 eligible peers) or the lower bound ("lb"); ratios are objective ÷ ref.\n',
  );
  w(
    `exo = exo's memory-weighted ring over all peers (as exo does it); exo/elig = the same over Ringwork's eligible peers.\n`,
  );
  w(
    `gain = exo ÷ Ringwork (higher is better for Ringwork). "!mem" marks an exo plan that exceeds some peer's memory.\n\n`,
  );
  const fleets = [4, 16, 64].map((n) => ({ n, peers: fleet(n, seed * 1000 + n) }));
  for (const f of fleets) {
    const cats = { A: 0, B: 0, C: 0 };
    for (const p of f.peers) cats[categorize(p)]++;
    w(`fleet ${f.n}: ${cats.A} A, ${cats.B} B, ${cats.C} C\n`);
  }
  w('\n');
  const gains: { scenario: string; objective: Objective; gain: number }[] = [];
  const worstRef = { heuristic: 0, exact: 0, verified: 0 };
  for (const sc of scenarios) {
    w(`== ${sc.name}\n`);
    w(
      'fleet model          objective   ringwork      ref           rw/ref  search     exo           exo/ref   gain   exo/elig      gain   plan-time\n',
    );
    for (const f of fleets) {
      for (const profile of profiles) {
        for (const objective of ['latency', 'throughput'] as const) {
          const input: PlanInput = {
            profile,
            peers: f.peers,
            objective,
            contextTokens: CONTEXT,
            options: sc.link ? { defaultLink: sc.link } : undefined,
          };
          const t0 = performance.now();
          const rw = tryPlan(() => planRingwork(input));
          const dt = performance.now() - t0;
          const exo = tryPlan(() => planExo(input));
          const exoElig = tryPlan(() => planExo(input, { eligibleOnly: true }));
          const head = `${String(f.n).padEnd(5)} ${profile.name.padEnd(14)} ${objective.padEnd(11)} `;
          if (typeof rw === 'string') {
            w(`${head}${rw}\n`);
            continue;
          }
          const lb = objective === 'latency' ? lowerBound(input).latency : lowerBound(input).throughput;
          // Where the heuristic ran on ≤ 12 eligible peers, the subset DP can still prove the optimum.
          let verified: Plan | null = null;
          if (!rw.optimal && eligible(f.peers, profile) <= 12) {
            verified = planRingwork({ ...input, options: { ...input.options, exhaustiveLimit: 12 } });
          }
          const optimum = rw.optimal ? rw.objective.value : verified?.objective.value;
          const ref = optimum ?? Math.max(lb, rw.lowerBound);
          const ratio = rw.objective.value / ref;
          if (optimum !== undefined) worstRef.exact = Math.max(worstRef.exact, ratio);
          else worstRef.heuristic = Math.max(worstRef.heuristic, ratio);
          if (verified) worstRef.verified = Math.max(worstRef.verified, ratio);
          const cell = (p: Plan | string): [string, string, string] => {
            if (typeof p === 'string') return [p.slice(0, 13).padEnd(13), '', ''];
            const g = p.objective.value / rw.objective.value;
            return [
              `${fmt(p.objective.value, 5)}${p.memoryOk ? '' : ' !mem'}`.padEnd(13),
              fmt(p.objective.value / ref, 2).padStart(8),
              `${fmt(g, 2)}×`.padStart(6),
            ];
          };
          const [ev, er, eg] = cell(exo);
          const [xv, , xg] = cell(exoElig);
          if (typeof exo !== 'string')
            gains.push({ scenario: sc.name, objective, gain: exo.objective.value / rw.objective.value });
          w(
            `${head}${fmt(rw.objective.value, 5).padEnd(13)} ${`${fmt(ref, 5)} ${optimum !== undefined ? 'opt' : 'lb'}`.padEnd(13)} ${fmt(ratio, 3).padStart(6)}  ${algo(rw, verified).padEnd(10)} ${ev} ${er} ${eg}   ${xv} ${xg}   ${dt.toFixed(1)} ms (${rw.ring.length} stages)\n`,
          );
        }
      }
    }
    w('\n');
  }

  // Planning time at scale.
  const bigProfile = profileModel(
    'llama-8b-shaped-198-blocks',
    { ...MODELS[1]!.config, numLayers: 198 },
    { format: 'q4', contextTokens: CONTEXT },
  );
  const bigFleet = fleet(1000, seed * 1000 + 1000);
  w(
    `== planning time, ${bigFleet.length} peers × ${bigProfile.layers.length} units (median of ${runs} after a warm-up)\n`,
  );
  for (const objective of ['latency', 'throughput'] as const) {
    const input: PlanInput = { profile: bigProfile, peers: bigFleet, objective, contextTokens: CONTEXT };
    planRingwork(input);
    const times: number[] = [];
    let plan: Plan | null = null;
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      plan = planRingwork(input);
      times.push(performance.now() - t0);
    }
    const t0 = performance.now();
    const exo = planExo(input);
    const exoMs = performance.now() - t0;
    w(
      `${objective.padEnd(11)} ringwork ${median(times).toFixed(1)} ms (max ${Math.max(...times).toFixed(1)} ms), ${plan!.ring.length} stages, ${ms(plan!.objective.value)}/token, ÷ lower bound ${fmt(plan!.objective.value / plan!.lowerBound, 3)}; exo ${exoMs.toFixed(1)} ms, ${ms(exo.objective.value)}/token${exo.memoryOk ? '' : ' (exceeds memory)'}\n`,
    );
  }
  w('\n== summary\n');
  w(`worst ringwork ÷ optimum where the optimum is known: ${fmt(worstRef.exact, 4)}\n`);
  w(
    `  of which heuristic plans checked by the subset DP (≤ 12 eligible peers): ${fmt(worstRef.verified, 4)}\n`,
  );
  w(`worst ringwork ÷ lower bound where the optimum is not known: ${fmt(worstRef.heuristic, 4)}\n`);
  for (const sc of scenarios) {
    for (const objective of ['latency', 'throughput'] as const) {
      const g = gains.filter((x) => x.scenario === sc.name && x.objective === objective).map((x) => x.gain);
      if (g.length === 0) continue;
      w(
        `${sc.name}, ${objective}: exo ÷ ringwork min ${fmt(Math.min(...g), 2)}×, median ${fmt(median(g), 2)}×, max ${fmt(Math.max(...g), 2)}×\n`,
      );
    }
  }
});
