/**
 * Spot-checked steps prove validated work (issue 10): a sampled step on which the primary ring and
 * the validator ring (which caught up with every token since its last check as one chunk) agreed is
 * credited by the coordinator from the two rings' signed commitments and the chunk's token ids,
 * which it hashes itself against both first stages' signed input hashes. So a peer used only in
 * spot mode earns a validated record too, and its spot rate falls (BOINC's adaptive replication).
 * The proofs come from real rings (ring stages and ORT runners on stories260K over in-memory links,
 * the requester's validated pipeline in spot mode); the server side is the real coordinator and
 * registry with the stages' keys. A forged, mismatched or disagreeing spot proof is refused with
 * `VALIDATION_UNPROVEN_WORK` and changes nobody's record or rate.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import { toBase64 } from '../../shared/ring/stage-commitments';
import {
  clientMessageSchema,
  MAX_SIGNALING_FRAME_BYTES,
  SIGNALING_VERSION,
  type WorkProofStep,
} from '../../shared/protocol/signaling';
import { DEFAULT_TOLERANCE } from '../../shared/validation/checks';
import { encodeCommitment, type Commitment } from '../../shared/validation/commitment';
import { DEFAULT_SPOT_RATE } from '../../shared/validation/spot-check';
import type { TamperFn } from '../../shared/validation/stage';
import type { SpotProof } from '../../shared/validation/work-proof';
import { loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import { createValidationRegistry } from '../../signaling-server/src/validation-registry';
import { scaled } from '../helpers/timeouts';
import { provenWork } from '../helpers/work-proof';
import { sixPeerNetwork } from '../helpers/spot-network';

const RING_IDS: [string, string] = ['stories260K:1', 'stories260K:1:v1'];
const b64 = (c: Commitment) => toBase64(encodeCommitment(c));
const stepOf = (rings: Commitment[][], spot?: SpotProof): WorkProofStep => ({
  rings: rings.map((cs) => cs.map(b64)),
  ...(spot ? { spot: { tokens: [...spot.tokens], rows: spot.rows } } : {}),
});
const codeOf = (e: unknown) => (isRingworkError(e) ? e.code : String(e));

afterEach(() => void vi.useRealTimers());

/** The six-contributor network on stories260K (tests/helpers/spot-network.ts); `ask` asks for spot mode. */
async function network() {
  const [stories] = (await loadCatalog([])) as [CatalogModel];
  vi.useFakeTimers();
  const net = sixPeerNetwork(stories);
  return { ...net, ask: () => net.ask({ v: 1, k: 2, spot: {} }) };
}

describe('spot-checked steps prove validated work', () => {
  it(
    'an honest spot-checked answer is credited to both rings once; forged or mismatched spot proofs change nobody’s rate; the rate falls',
    async () => {
      const work = await provenWork({
        model: 'stories260K',
        ringIds: RING_IDS,
        stages: 3,
        steps: 40,
        spot: { f: 0.3, seed: 7 },
      });
      const sampled = work.compared;
      // A fraction of the steps was compared, each with the validator's chunk; all agreed.
      expect(sampled.length).toBeGreaterThan(1);
      expect(sampled.length).toBeLessThan(work.stepsRun);
      expect(sampled.every((c) => c.agreed && c.spot !== undefined)).toBe(true);
      expect(work.steps).toBe(sampled.length);
      // At least one sampled step caught up over unsampled ones (a chunk longer than the primary's step).
      const caughtUp = sampled.filter((c) => c.spot!.tokens.length > c.spot!.rows);
      expect(caughtUp.length).toBeGreaterThan(0);

      const { validation, ask } = await network();
      const first = ask();
      expect(first.stages).toHaveLength(3);
      expect(first.validators).toHaveLength(1);
      expect(first.security!.spot).toEqual({ f: DEFAULT_SPOT_RATE.fMax });
      const rings = [first, first.validators![0]!].map((r) => ({
        ringId: r.ringId,
        stages: r.stages.map((s) => ({ peer: s.peer, units: s.range[1] - s.range[0] })),
      }));
      // Commitments carry ring/stage/step coordinates, not peer ids: the server's peers in those
      // places register the real stages' keys (as `validation-key` does).
      for (let j = 0; j < 2; j++)
        for (let i = 0; i < 3; i++) await validation.setKey(rings[j]!.stages[i]!.peer, work.keys[j]![i]!);
      // Earlier validated work just short of the half-life: only this answer's credit can cross it.
      const before = DEFAULT_SPOT_RATE.halfLife - work.steps;
      expect(before).toBeGreaterThan(0);
      for (const r of rings) validation.validatedWork(r.stages, before);
      const peers = rings.flatMap((r) => r.stages.map((s) => s.peer));
      const recordOf = () => peers.map((p) => validation.standing(p).validatedSteps);

      // Forged and mismatched spot proofs: refused, nobody credited, the rate unchanged.
      const s = caughtUp[0]!;
      const other = sampled.find((c) => c !== s)!;
      const forged: [string, WorkProofStep][] = [
        // An earlier row of the chunk is not what the validator's stage 0 signed it received.
        [
          'earlier token',
          stepOf(s.rings, {
            tokens: [s.spot!.tokens[0]! + 1, ...s.spot!.tokens.slice(1)],
            rows: s.spot!.rows,
          }),
        ],
        // The sampled token differs from both first stages' inputs.
        [
          'sampled token',
          stepOf(s.rings, {
            tokens: [...s.spot!.tokens.slice(0, -1), s.spot!.tokens.at(-1)! + 1],
            rows: s.spot!.rows,
          }),
        ],
        // The chunk does not end where the primary's step does.
        ['rows', stepOf(s.rings, { tokens: s.spot!.tokens, rows: s.spot!.rows + 1 })],
        ['short chunk', stepOf(s.rings, { tokens: s.spot!.tokens.slice(1), rows: s.spot!.rows })],
        // The primary's step paired with the validator's chunk of another sampled step.
        ['other chunk', stepOf([s.rings[0]!, other.rings[1]!], other.spot)],
        ['other step', stepOf([other.rings[0]!, s.rings[1]!], s.spot)],
        // A catch-up step claimed as an ordinary k = 2 step: the rings ran other bytes there.
        ['no chunk', stepOf(s.rings)],
      ];
      for (const [name, step] of forged) {
        const got = await validation.creditWork(rings, [step]).catch(codeOf);
        expect(got, name).toBe('VALIDATION_UNPROVEN_WORK');
      }
      expect(recordOf()).toEqual(peers.map(() => before));
      expect(ask().security!.spot).toEqual({ f: DEFAULT_SPOT_RATE.fMax });

      // The honest proof: every sampled step credited once to every stage of both rings.
      let credited = 0;
      let chars = 0;
      for (const m of work.messages) {
        const frame = JSON.stringify({ ...m, v: SIGNALING_VERSION });
        chars += frame.length;
        expect(frame.length).toBeLessThanOrEqual(MAX_SIGNALING_FRAME_BYTES);
        clientMessageSchema.parse(JSON.parse(frame));
        const credit = await validation.creditWork(rings, m.proof!);
        expect(credit.maxDistance).toBeLessThanOrEqual(DEFAULT_TOLERANCE.sketch);
        credited += credit.steps;
      }
      expect(credited).toBe(sampled.length);
      expect(recordOf()).toEqual(peers.map(() => before + sampled.length));
      // Replays credit nothing twice, whether as spot proofs or re-paired.
      for (const m of work.messages) {
        expect(await validation.creditWork(rings, m.proof!)).toMatchObject({
          steps: 0,
          repeated: m.proof!.length,
        });
      }
      expect(recordOf()).toEqual(peers.map(() => before + sampled.length));
      // The next spot-checked request on these peers is checked at half the rate.
      expect(ask().security!.spot).toEqual({ f: DEFAULT_SPOT_RATE.fMax / 2 });
      console.log(
        `spot f=0.3: ${sampled.length} of ${work.stepsRun} steps sampled and credited (chunks ${sampled.map((c) => c.spot!.tokens.length).join(',')}), ${work.messages.length} messages, ${Math.round(chars / sampled.length)} B of JSON per proven step`,
      );
    },
    scaled(180_000),
  );

  it(
    'a sampled step on which the rings disagreed is refused, naming the stage; nobody is credited',
    async () => {
      const noise: TamperFn = (ctx) => ctx.data.map((x, i) => x * (1 + (i % 3 === 0 ? 1e-2 : -1e-2)));
      const work = await provenWork({
        model: 'stories260K',
        ringIds: RING_IDS,
        stages: 3,
        steps: 12,
        spot: { f: 0.5, seed: 3 },
        tamper: { stage: 1, fn: noise },
      });
      const bad = work.compared.find((c) => !c.agreed)!;
      expect(bad?.spot).toBeDefined();
      const validation = createValidationRegistry();
      const rings = work.peers.map((ps, j) => ({
        ringId: RING_IDS[j]!,
        stages: ps.map((peer) => ({ peer, units: 1 })),
      }));
      for (let j = 0; j < 2; j++)
        for (let i = 0; i < 3; i++) await validation.setKey(work.peers[j]![i]!, work.keys[j]![i]!);
      const err = await validation.creditWork(rings, [stepOf(bad.rings, bad.spot)]).catch((e: unknown) => e);
      expect(isRingworkError(err) && err.code).toBe('VALIDATION_UNPROVEN_WORK');
      expect(isRingworkError(err) && err.details).toMatchObject({ stage: 1 });
      for (const r of rings)
        for (const s of r.stages) expect(validation.standing(s.peer).validatedSteps).toBe(0);
    },
    scaled(180_000),
  );
});
