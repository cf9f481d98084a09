/**
 * Validated work is not the requester's word: the coordinator's registry credits steps only from a
 * proof it checks itself (signaling-server/src/validation-work.ts). The proofs come from real k = 2
 * rings (ring stages and ORT runners on stories260K over in-memory links, the requester's
 * validated pipeline and its work-proof builder); the server side is the real registry with the
 * stages' registered keys. A replayed proof credits nothing twice; a proof the requester assembled
 * from other steps, signed itself, or took from rings that disagreed credits nobody.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import { splitUnits } from '../../shared/graph/units';
import { toBase64 } from '../../shared/ring/stage-commitments';
import {
  clientMessageSchema,
  MAX_SIGNALING_FRAME_BYTES,
  SIGNALING_VERSION,
  type WorkProofStep,
} from '../../shared/protocol/signaling';
import { generate } from '../../shared/runtime/generate';
import { createSampler } from '../../shared/runtime/sampler';
import type { ShardRunner } from '../../shared/runtime/shard-runner';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';
import { DEFAULT_TOLERANCE } from '../../shared/validation/checks';
import { encodeCommitment, signCommitment, type Commitment } from '../../shared/validation/commitment';
import { createSessionKey } from '../../shared/validation/crypto';
import { createKeyRegistry } from '../../shared/validation/key-registry';
import { createReferee } from '../../shared/validation/referee';
import type { TamperFn } from '../../shared/validation/stage';
import { createValidatedPipeline } from '../../shared/validation/validated-pipeline';
import { createWorkProofBuilder } from '../../shared/validation/work-proof';
import { createValidationRegistry } from '../../signaling-server/src/validation-registry';
import {
  GREEDY,
  buildMemoryRing,
  connectRequester,
  stopMemoryRing,
  type MemoryStage,
} from '../../tools/bench/memory-ring';
import { stories260KRunner, stories260KTokenizer } from '../helpers/engine';
import { scaled } from '../helpers/timeouts';

const SPLITS = [2, 4];
const RANGES = splitUnits({ numLayers: 5 }, SPLITS).map((r) => [r[0], r[1]] as [number, number]);
const STEPS = 24;

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup) await f();
  cleanup = [];
});

async function refereeRunners(): Promise<ShardRunner[]> {
  const runners: ShardRunner[] = [];
  for (const range of RANGES) {
    const r = stories260KRunner();
    await r.load({
      model: { url: 'stories260K.bin' },
      range,
      weightFormat: 'f32',
      contextLength: 256,
      logits: 'last',
      backend: 'wasm',
    });
    runners.push(r);
  }
  cleanup.push(async () => void (await Promise.all(runners.map((r) => r.dispose()))));
  return runners;
}

/** A k = 2 generation; every compared step's commitments, and the server registry knowing the keys. */
async function run(tamper?: { stage: number; fn: TamperFn }) {
  const hub = createMemoryTransportHub();
  const keysSeen = createKeyRegistry();
  const server = createValidationRegistry();
  const rings: MemoryStage[][] = [];
  for (const prefix of ['a', 'b']) {
    const keys = await Promise.all(RANGES.map(() => createSessionKey()));
    const stages = await buildMemoryRing({
      hub,
      makeRunner: stories260KRunner,
      model: { url: 'stories260K.bin' },
      numLayers: 5,
      splits: SPLITS,
      contextLength: 256,
      prefix,
      validation: (i) => ({
        key: keys[i]!,
        ...(prefix === 'b' && tamper?.stage === i ? { tamper: tamper.fn } : {}),
      }),
    });
    cleanup.push(() => stopMemoryRing(stages));
    for (let i = 0; i < stages.length; i++) {
      await keysSeen.register(stages[i]!.id, keys[i]!.publicKeyRaw);
      // What each stage's `validation-key` message registers with the coordinator.
      await server.setKey(stages[i]!.id, toBase64(keys[i]!.publicKeyRaw));
    }
    rings.push(stages);
  }
  const links = await Promise.all(rings.map((stages, j) => connectRequester(hub, stages, `req${j}`)));
  cleanup.push(async () => void (await Promise.all(links.map((l) => l.transport.close()))));
  const proof = createWorkProofBuilder({
    model: 'stories260K',
    ringIds: ['stories260K:1', 'stories260K:1:v1'],
  });
  const compared: { rings: Commitment[][]; agreed: boolean }[] = [];
  const pipeline = createValidatedPipeline({
    rings: rings.map((stages, j) => ({
      remote: {
        requesterId: `req${j}`,
        epoch: 1,
        first: links[j]!.first,
        head: links[j]!.head,
        sampler: GREEDY,
      },
      verifier: { peers: stages.map((s) => s.id), ranges: RANGES, registry: keysSeen, model: 'stories260K' },
    })),
    referee: createReferee({ runners: await refereeRunners(), rowLens: [64, 64, 512] }),
    tolerance: DEFAULT_TOLERANCE,
    onComparedStep: (rs, agreed) => {
      compared.push({ rings: rs.map((r) => r.commitments), agreed });
      if (agreed) proof.add(rs.map((r) => r.commitments));
    },
  });
  await generate({
    pipeline,
    tokenizer: stories260KTokenizer(),
    prompt: 'Once upon a time',
    steps: STEPS,
    sampler: createSampler({ temperature: 0 }),
    stopTokens: [],
  });
  const ringsOut = rings.map((stages, j) => ({
    ringId: j === 0 ? 'stories260K:1' : 'stories260K:1:v1',
    stages: stages.map((s, i) => ({ peer: s.id, units: RANGES[i]![1] - RANGES[i]![0] })),
  }));
  return { server, proof, compared, rings: ringsOut, report: pipeline.report };
}

const b64 = (c: Commitment) => toBase64(encodeCommitment(c));
const stepOf = (rings: Commitment[][]): WorkProofStep => ({ rings: rings.map((cs) => cs.map(b64)) });
const codeOf = (e: unknown) => (isRingworkError(e) ? e.code : String(e));

describe('validated work is credited only on a proof the server checks', () => {
  it(
    'agreed steps of two honest rings are credited once to every stage of both rings',
    async () => {
      const { server, proof, compared, rings, report } = await run();
      expect(compared.every((c) => c.agreed)).toBe(true);
      expect(proof.pending).toBe(report.stepsChecked);
      const credited: [string, number, number][] = [];
      server.onValidatedWork((p, u, s) => credited.push([p, u, s]));
      const messages = proof.drain();
      let steps = 0;
      for (const m of messages) {
        // Each message is a valid signaling frame under the frame limit.
        const frame = JSON.stringify({ ...m, v: SIGNALING_VERSION });
        expect(frame.length).toBeLessThanOrEqual(MAX_SIGNALING_FRAME_BYTES);
        clientMessageSchema.parse(JSON.parse(frame));
        const credit = await server.creditWork(rings, m.proof!);
        expect(credit.maxDistance).toBeLessThanOrEqual(DEFAULT_TOLERANCE.sketch);
        steps += credit.steps;
      }
      expect(steps).toBe(report.stepsChecked);
      for (const r of rings)
        for (const s of r.stages) expect(server.standing(s.peer).validatedSteps).toBe(report.stepsChecked);
      expect(new Set(credited.map((c) => c[0])).size).toBe(6);
      // The same proof again credits nothing.
      const again = await server.creditWork(rings, messages[0]!.proof!);
      expect(again).toMatchObject({ steps: 0, repeated: messages[0]!.proof!.length });

      const [s0, s1] = [compared[1]!.rings, compared[2]!.rings];
      // Ring b's commitments from another step: not one step of two rings.
      const mixed = await server.creditWork(rings, [stepOf([s0[0]!, s1[1]!])]).catch(codeOf);
      expect(mixed).toBe('VALIDATION_UNPROVEN_WORK');
      // The rings swapped: ring a's commitments do not verify under ring b's stages' keys.
      const swapped = await server.creditWork(rings, [stepOf([s0[1]!, s0[0]!])]).catch(codeOf);
      expect(swapped).toBe('VALIDATION_BAD_SIGNATURE');
      // The requester re-signs a commitment itself: it cannot sign for a stage.
      const mine = await createSessionKey();
      const forged = await signCommitment(mine, { ...s0[1]![2]! });
      const self = await server
        .creditWork(rings, [stepOf([s0[0]!, [s0[1]![0]!, s0[1]![1]!, forged]])])
        .catch(codeOf);
      expect(self).toBe('VALIDATION_BAD_SIGNATURE');
      // A single ring proves nothing.
      expect(await server.creditWork([rings[0]!], [{ rings: [s0[0]!.map(b64)] }]).catch(codeOf)).toBe(
        'VALIDATION_UNPROVEN_WORK',
      );
      expect(server.standing(rings[0]!.stages[0]!.peer).validatedSteps).toBe(report.stepsChecked);
    },
    scaled(180_000),
  );

  it(
    'a step on which the rings disagreed is refused, naming the stage; nobody is credited',
    async () => {
      const noise: TamperFn = (ctx) => ctx.data.map((x, i) => x * (1 + (i % 3 === 0 ? 1e-2 : -1e-2)));
      const { server, compared, rings } = await run({ stage: 1, fn: noise });
      const bad = compared.find((c) => !c.agreed)!;
      expect(bad).toBeDefined();
      const err = await server.creditWork(rings, [stepOf(bad.rings)]).catch((e: unknown) => e);
      expect(isRingworkError(err) && err.code).toBe('VALIDATION_UNPROVEN_WORK');
      expect(isRingworkError(err) && err.details).toMatchObject({ stage: 1 });
      for (const r of rings) for (const s of r.stages) expect(server.standing(s.peer).validatedSteps).toBe(0);
    },
    scaled(180_000),
  );
});
