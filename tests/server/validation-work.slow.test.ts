/**
 * Validated work is not the requester's word: the coordinator's registry credits steps only from a
 * proof it checks itself (signaling-server/src/validation-work.ts). The proofs come from real k = 2
 * rings (ring stages and ORT runners on stories260K over in-memory links, the requester's
 * validated pipeline and its work-proof builder); the server side is the real registry with the
 * stages' registered keys. A replayed proof credits nothing twice; a proof the requester assembled
 * from other steps, signed itself, or took from rings that disagreed credits nobody.
 */
import { describe, expect, it } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import { splitUnits } from '../../shared/graph/units';
import { toBase64 } from '../../shared/ring/stage-commitments';
import {
  clientMessageSchema,
  MAX_SIGNALING_FRAME_BYTES,
  SIGNALING_VERSION,
  type WorkProofStep,
} from '../../shared/protocol/signaling';
import { DEFAULT_TOLERANCE } from '../../shared/validation/checks';
import { encodeCommitment, signCommitment, type Commitment } from '../../shared/validation/commitment';
import { createSessionKey } from '../../shared/validation/crypto';
import type { TamperFn } from '../../shared/validation/stage';
import { createValidationRegistry } from '../../signaling-server/src/validation-registry';
import { scaled } from '../helpers/timeouts';
import { provenWork } from '../helpers/work-proof';

/** Each stage's units: stories260K split at units 2 and 4 (the helper's three-stage split). */
const UNITS = splitUnits({ numLayers: 5 }, [2, 4]).map((r) => r[1] - r[0]);
const STAGES = UNITS.length;
const STEPS = 24;
const RING_IDS: [string, string] = ['stories260K:1', 'stories260K:1:v1'];

/**
 * A k = 2 generation (tests/helpers/work-proof.ts); the server registry knowing every stage's key,
 * as each stage's `validation-key` message registers it with the coordinator.
 */
async function run(tamper?: { stage: number; fn: TamperFn }) {
  const work = await provenWork({
    model: 'stories260K',
    ringIds: RING_IDS,
    stages: STAGES,
    steps: STEPS,
    ...(tamper ? { tamper } : {}),
  });
  const server = createValidationRegistry();
  for (let j = 0; j < 2; j++)
    for (let i = 0; i < STAGES; i++) await server.setKey(work.peers[j]![i]!, work.keys[j]![i]!);
  const rings = work.peers.map((peers, j) => ({
    ringId: RING_IDS[j]!,
    stages: peers.map((peer, i) => ({ peer, units: UNITS[i]! })),
  }));
  return { server, work, rings };
}

const b64 = (c: Commitment) => toBase64(encodeCommitment(c));
const stepOf = (rings: Commitment[][]): WorkProofStep => ({ rings: rings.map((cs) => cs.map(b64)) });
const codeOf = (e: unknown) => (isRingworkError(e) ? e.code : String(e));

describe('validated work is credited only on a proof the server checks', () => {
  it(
    'agreed steps of two honest rings are credited once to every stage of both rings',
    async () => {
      const { server, work, rings } = await run();
      const { compared, messages, stepsChecked } = work;
      expect(compared.every((c) => c.agreed)).toBe(true);
      // Every checked step went into the proof.
      expect(work.steps).toBe(stepsChecked);
      const credited: [string, number, number][] = [];
      server.onValidatedWork((p, u, s) => credited.push([p, u, s]));
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
      expect(steps).toBe(stepsChecked);
      for (const r of rings)
        for (const s of r.stages) expect(server.standing(s.peer).validatedSteps).toBe(stepsChecked);
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
      expect(server.standing(rings[0]!.stages[0]!.peer).validatedSteps).toBe(stepsChecked);
    },
    scaled(180_000),
  );

  it(
    'a step on which the rings disagreed is refused, naming the stage; nobody is credited',
    async () => {
      const noise: TamperFn = (ctx) => ctx.data.map((x, i) => x * (1 + (i % 3 === 0 ? 1e-2 : -1e-2)));
      const {
        server,
        work: { compared },
        rings,
      } = await run({ stage: 1, fn: noise });
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
