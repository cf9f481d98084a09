/**
 * Security level k = 2 on real rings (real ring stages and ORT runners on stories260K over
 * in-memory links; the referee is the requester's own runners): a stage of the validator ring that
 * tampers with what it sends (and commits to it) is detected, located by the referee and dropped,
 * and the answer is still the golden text; two honest rings give 0 false positives.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { generate } from '../../../shared/runtime/generate';
import { createSampler } from '../../../shared/runtime/sampler';
import type { ShardRunner } from '../../../shared/runtime/shard-runner';
import { DEFAULT_TOLERANCE } from '../../../shared/validation/checks';
import type { EvidenceRecord } from '../../../shared/validation/evidence';
import { createReferee } from '../../../shared/validation/referee';
import type { TamperFn } from '../../../shared/validation/stage';
import type { PeerLink } from '../../../shared/transport/types';
import type { ServerMessageOf } from '../../../shared/protocol/signaling';
import {
  createValidatedPipeline,
  type ValidatedPipeline,
} from '../../../shared/validation/validated-pipeline';
import {
  withValidatedFailover,
  type ValidatedFailoverPipeline,
} from '../../../shared/app/validated-failover';
import { silentLogger, type NetworkHandle } from '../../../shared/app/network-port';
import type { Pipeline } from '../../../shared/runtime/pipeline';
import type { MemoryTransportHub } from '../../../shared/transport/memory-transport';
import {
  GREEDY,
  buildMemoryRing,
  connectRequester,
  stopMemoryRing,
  type MemoryStage,
} from '../../../tools/bench/memory-ring';
import { loadStories260KRunners, stories260KRunner, stories260KTokenizer } from '../../helpers/engine';
import { loadGolden } from '../../helpers/golden';
import { buildSignedRings, SIGNED_RING_RANGES, SIGNED_RING_SPLITS } from '../../helpers/signed-rings';

const golden = loadGolden();
const tokenizer = stories260KTokenizer();
const SPLITS = SIGNED_RING_SPLITS;
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

async function run(
  tamper?: { ring: 'a' | 'b'; stage: number; fn: TamperFn },
  /** Called after each token (its position) with the rings' stages. */
  during?: (position: number, rings: MemoryStage[][]) => void,
  /** Wraps the validated pipeline (the requester's failover) given the hub it runs on. */
  wrap?: (p: ValidatedPipeline, hub: MemoryTransportHub) => Pipeline,
) {
  const { hub, registry, rings, links } = await buildSignedRings(cleanup, tamper);
  const runners = await refereeRunners();
  const evidence: EvidenceRecord[] = [];
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
    onEvidence: (e) => evidence.push(e),
  });
  const result = await generate({
    pipeline: wrap ? wrap(pipeline, hub) : pipeline,
    tokenizer,
    prompt: 'Once upon a time',
    steps: 64,
    sampler: createSampler({ temperature: 0 }),
    stopTokens: [],
    onToken: (e) => during?.(e.position, rings),
  });
  return { result, report: pipeline.report, evidence, rings };
}

describe('security level k = 2 on real rings', () => {
  it('honest rings agree on every step: golden text, 0 false positives', async () => {
    const { result, report } = await run();
    expect(result.tokens).toEqual(golden.sequenceTokens);
    expect(report.evidence).toEqual([]);
    expect(report.ringsAgreeing).toBe(2);
    expect(report.stepsChecked).toBe(64 - result.promptTokens + 1);
    // 3 stage comparisons per step.
    expect(report.comparisons).toBe(3 * report.stepsChecked);
    expect(report.maxAgreeingDistance).toBeLessThanOrEqual(DEFAULT_TOLERANCE.sketch);
    console.log(
      `k=2 honest: ${report.comparisons} comparisons, max distance ${report.maxAgreeingDistance.toExponential(2)}, ${report.commitmentBytesPerStep} B commitments per decode step`,
    );
  }, 120_000);

  const noise: TamperFn = (ctx) => ctx.data.map((x, i) => x * (1 + (i % 3 === 0 ? 1e-2 : -1e-2)));
  for (const [ring, stage] of [
    ['b', 1],
    ['b', 2],
    ['a', 0],
  ] as const) {
    it(`a tampering stage ${stage} of ring ${ring} is detected, located, and the answer stays golden`, async () => {
      const { result, report, evidence, rings } = await run({ ring, stage, fn: noise });
      const j = ring === 'a' ? 0 : 1;
      expect(result.tokens).toEqual(golden.sequenceTokens);
      expect(evidence).toHaveLength(1);
      expect(evidence[0]).toMatchObject({ peerId: rings[j]![stage]!.id, stage, ring: j, step: 0 });
      expect(['output-mismatch', 'wrong-token']).toContain(evidence[0]!.reason);
      expect(report.ringsAgreeing).toBe(1);
      expect(report.refereeSteps).toBe(1);
    }, 120_000);
  }

  it('a ring re-planned mid-answer fails the step at once with a typed error (no silent wait for the step deadline)', async () => {
    // The validator ring's stages stop (a re-plan gave its peers a new epoch) after the 20th token:
    // their requester hears it from the stages themselves, long before the 60 s step deadline.
    let stoppedAt = 0;
    const outcome = await run(undefined, (position, rings) => {
      if (position !== 20) return;
      stoppedAt = performance.now();
      for (const st of rings[1]!) void st.stage.stop();
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const waitedMs = performance.now() - stoppedAt;
    expect(outcome).toMatchObject({ code: 'RING_STALE_EPOCH', details: { replanned: true } });
    expect(waitedMs).toBeLessThan(20_000);
  }, 120_000);

  it('after a deviant is dropped, the honest ring re-planned away fails over to the new ring: golden text', async () => {
    // Ring b's stage 1 tampers (located at step 0); ring a, now alone, is re-planned away after the
    // 20th token; the coordinator's next ring (c, fresh stages) takes the answer over by replay.
    const requests: unknown[] = [];
    let failedOver: { position: number; ringId: string } | undefined;
    let wrapped: ValidatedFailoverPipeline | undefined;
    const { result, report, evidence } = await run(
      { ring: 'b', stage: 1, fn: noise },
      (position, rings) => {
        if (position === 20) for (const st of rings[0]!) void st.stage.stop();
      },
      (inner, hub) =>
        (wrapped = withValidatedFailover({
          inner,
          net: {
            peerId: 'req-c',
            signaling: { send: (m: unknown) => void requests.push(m), on: () => () => undefined },
          } as unknown as NetworkHandle,
          model: 'stories260K',
          k: 2,
          nextRing: async () => {
            const stages = await buildMemoryRing({
              hub,
              makeRunner: stories260KRunner,
              model: { url: 'stories260K.bin' },
              numLayers: 5,
              splits: SPLITS,
              contextLength: 256,
              prefix: 'c',
            });
            cleanup.push(() => stopMemoryRing(stages));
            const links = await connectRequester(hub, stages, 'req-c');
            cleanup.push(() => links.transport.close());
            ringC = { first: links.first, head: links.head, ids: stages.map((st) => st.id) };
            return {
              type: 'ring',
              v: 1,
              epoch: 1,
              ringId: 'c',
              model: { id: 'stories260K' },
              stages: stages.map((st, i) => ({ peer: st.id, range: RANGES[i]! })),
            } as unknown as ServerMessageOf<'ring'>;
          },
          linkTo: async (peer) => (peer === ringC!.ids[0] ? ringC!.first : ringC!.head),
          sampler: GREEDY,
          now: () => performance.now(),
          log: silentLogger,
          onFailover: (e) => (failedOver = e),
        })),
    );
    expect(evidence).toHaveLength(1);
    expect(evidence[0]).toMatchObject({ ring: 1, stage: 1 });
    expect(failedOver).toMatchObject({ ringId: 'c' });
    expect(requests).toEqual([
      { type: 'ring-request', model: 'stories260K', security: { v: 1, k: 2, degrade: true } },
    ]);
    expect(report.ringsAgreeing).toBe(1);
    expect(result.tokens).toEqual(golden.sequenceTokens);
    // What the verification line is built from: compared on step 0 only, one ring from step 1, and
    // the failover's step and the steps the new ring ran (not "1 of 2 rings agreed" on all of them).
    expect(report).toMatchObject({ comparedSteps: 1, uncheckedFrom: { step: 1, reason: 'deviant' } });
    expect(wrapped!.failover).toMatchObject({ step: report.steps, position: failedOver!.position });
    expect(report.steps + wrapped!.failover!.stepsAfter).toBe(64 - result.promptTokens + 1);
  }, 180_000);
});

let ringC: { first: PeerLink; head: PeerLink; ids: string[] } | undefined;
