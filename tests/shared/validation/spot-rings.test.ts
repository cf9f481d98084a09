/**
 * Spot-check mode on real rings (issue 10): real ring stages and ORT runners on stories260K over
 * in-memory links, the requester's own runners as the referee. The validator ring runs only on a
 * sampled fraction f of steps (seeded), catching up with every token since its last check as one
 * chunk; the rings are compared at the sampled position.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { generate } from '../../../shared/runtime/generate';
import { createSampler } from '../../../shared/runtime/sampler';
import type { ShardRunner } from '../../../shared/runtime/shard-runner';
import { mulberry32Float } from '../../../shared/util/prng';
import { DEFAULT_TOLERANCE } from '../../../shared/validation/checks';
import type { EvidenceRecord } from '../../../shared/validation/evidence';
import { createReferee } from '../../../shared/validation/referee';
import type { TamperFn } from '../../../shared/validation/stage';
import { createValidatedPipeline } from '../../../shared/validation/validated-pipeline';
import { GREEDY } from '../../../tools/bench/memory-ring';
import { loadStories260KRunners, stories260KTokenizer } from '../../helpers/engine';
import { loadGolden } from '../../helpers/golden';
import { buildSignedRings, SIGNED_RING_RANGES } from '../../helpers/signed-rings';

const golden = loadGolden();
const tokenizer = stories260KTokenizer();
const RANGES = SIGNED_RING_RANGES;

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup) await f();
  cleanup = [];
});

/** The requester's own runners for the referee (same unit boundaries), disposed after the test. */
async function refereeRunners(): Promise<ShardRunner[]> {
  const runners = await loadStories260KRunners(RANGES);
  cleanup.push(async () => void (await Promise.all(runners.map((r) => r.dispose()))));
  return runners;
}

/** One 64-position greedy answer at spot-check rate `f` (seeded sampling), ring a primary, ring b validator. */
async function run(f: number, seed: number, tamper?: { ring: 'a' | 'b'; stage: number; fn: TamperFn }) {
  const { registry, rings, links } = await buildSignedRings(cleanup, tamper);
  const runners = await refereeRunners();
  const evidence: EvidenceRecord[] = [];
  const sampledAt: number[] = [];
  const random = mulberry32Float(seed);
  const pipeline = createValidatedPipeline({
    rings: rings.map((stages, j) => ({
      remote: {
        requesterId: `req${j}`,
        epoch: 1,
        first: links[j]!.first,
        head: links[j]!.head,
        sampler: GREEDY,
      },
      verifier: { peers: stages.map((s) => s.id), ranges: RANGES, registry, model: 'stories260K' },
    })),
    referee: createReferee({ runners, rowLens: [64, 64, 512] }),
    tolerance: DEFAULT_TOLERANCE,
    spot: { f, random, greedy: true },
    onEvidence: (e) => evidence.push(e),
    onReport: (r) => {
      if (r.comparedSteps > sampledAt.length) sampledAt.push(r.steps - 1);
    },
  });
  const result = await generate({
    pipeline,
    tokenizer,
    prompt: 'Once upon a time',
    steps: 64,
    sampler: createSampler({ temperature: 0 }),
    stopTokens: [],
  });
  return { result, report: pipeline.report, evidence, rings, sampledAt };
}

describe('spot-check mode on real rings', () => {
  it('honest rings: golden text, a sampled fraction of steps compared after chunked catch-up, 0 false positives', async () => {
    const { result, report, sampledAt } = await run(0.2, 7);
    expect(result.tokens).toEqual(golden.sequenceTokens);
    expect(report.evidence).toEqual([]);
    expect(report.steps).toBe(64 - result.promptTokens + 1);
    expect(report.comparedSteps).toBe(sampledAt.length);
    expect(report.comparedSteps).toBeGreaterThan(0);
    expect(report.comparedSteps).toBeLessThan(report.steps);
    expect(report.spot).toEqual({ f: 0.2 });
    expect(report.uncheckedFrom).toBeUndefined();
    expect(report.maxAgreeingDistance).toBeLessThanOrEqual(DEFAULT_TOLERANCE.sketch);
    console.log(
      `spot f=0.2 honest: ${report.comparedSteps} of ${report.steps} steps compared (at ${sampledAt.join(',')}), max distance chunked vs step-by-step ${report.maxAgreeingDistance.toExponential(2)}`,
    );
  }, 60_000);

  // Stage 1 of the primary ring adds 1e-3 noise on every 10th of its steps (10 %): its own KV cache
  // stays honest, but stage 2's cache keeps the cheated input, so a sampled step after a cheat
  // disagrees first at stage 2 — which computed honestly. The referee's history check must locate
  // stage 1 at the step it cheated.
  const cheat10: TamperFn = (ctx) =>
    ctx.step % 10 === 5 ? ctx.data.map((x, i) => x * (1 + (i % 3 === 0 ? 1e-3 : -1e-3))) : undefined;

  it('a primary stage cheating on 10 % of steps is caught at a sampled step and located at the step it cheated', async () => {
    const { result, report, evidence, rings, sampledAt } = await run(0.25, 11, {
      ring: 'a',
      stage: 1,
      fn: cheat10,
    });
    console.log(
      `spot f=0.25 cheat-10pct: sampled ${sampledAt.join(',')}; evidence ${JSON.stringify(evidence.map((e) => ({ peer: e.peerId, stage: e.stage, step: e.step, d: e.refereeDistance })))}`,
    );
    expect(evidence).toHaveLength(1);
    expect(evidence[0]).toMatchObject({ peerId: rings[0]![1]!.id, stage: 1, ring: 0 });
    expect(evidence[0]!.step % 10).toBe(5);
    expect(report.uncheckedFrom).toMatchObject({ reason: 'deviant' });
    // The answer went on on the validator ring; this tamper is too small to change a greedy token.
    expect(result.tokens).toEqual(golden.sequenceTokens);
  }, 60_000);

  it('a tampering validator ring is located at its first sampled step; the primary finishes the answer', async () => {
    const zeros: TamperFn = (ctx) => new Float32Array(ctx.data.length);
    const { result, report, evidence, rings, sampledAt } = await run(0.2, 7, {
      ring: 'b',
      stage: 1,
      fn: zeros,
    });
    expect(evidence).toHaveLength(1);
    expect(evidence[0]).toMatchObject({ peerId: rings[1]![1]!.id, stage: 1, ring: 1, step: 0 });
    expect(report.comparedSteps).toBe(1);
    expect(report.uncheckedFrom).toMatchObject({ step: sampledAt[0]! + 1, reason: 'deviant' });
    expect(result.tokens).toEqual(golden.sequenceTokens);
  }, 60_000);
});
