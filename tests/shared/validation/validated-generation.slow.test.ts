/**
 * Result validation end to end on real stories260K shards (onnxruntime-web wasm) with k = 2 rings
 * and a referee: every built-in tamper class is detected and located at the tampering peer (and
 * nobody else) on a short generation, honest runs raise no flag, the answer continues on the honest
 * ring with exactly the undisturbed tokens, a boundary mismatch is pinned on the sender, a forged
 * commitment on its signer, and spot checks catch a cheater.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32Float } from '../../../shared/util/prng';
import { DEFAULT_TOLERANCE } from '../../../shared/validation/checks';
import { createSpotCheckPolicy } from '../../../shared/validation/spot-check';
import {
  createValidationNetwork,
  trialPrompt,
  type ValidationNetwork,
} from '../../../tools/bench/validation-network';
import { TAMPER_CLASSES, type TamperClass } from '../../../tools/bench/validation-tampers';
import { repoPath } from '../../helpers/golden';
import { QUICK } from '../../helpers/tier';

const STEPS = 16;
let net: ValidationNetwork;

beforeAll(async () => {
  net = await createValidationNetwork({
    modelPath: repoPath('public/models/stories260K/stories260K.bin'),
    splits: [2, 4],
    rings: 2,
    contextLength: 64,
  });
}, 60_000);
afterAll(async () => {
  await net?.dispose();
});

const cls = (name: string): TamperClass => TAMPER_CLASSES.find((c) => c.name === name)!;

describe('k = 2 validation', () => {
  it('raises no flag on honest generations and agrees exactly ring vs ring', async () => {
    for (let t = 0; t < (QUICK ? 1 : 3); t++) {
      const r = await net.trial({
        k: 2,
        prompt: trialPrompt(net.config, 40 + t),
        steps: STEPS,
        tolerance: DEFAULT_TOLERANCE,
      });
      expect(r.detections).toEqual([]);
      expect(r.flags).toBe(0);
      expect(r.comparisons).toBe(r.steps * net.ranges.length);
      expect(r.tokens).toHaveLength(STEPS);
    }
  }, 60_000);

  // Every class on every stage it can play, in either ring.
  const ROLES = ['first', 'middle', 'head'] as const; // stages of the 2,4 split
  const plays = TAMPER_CLASSES.flatMap((c) =>
    [0, 1, 2].filter((s) => c.roles.includes(ROLES[s]!)).map((stage) => ({ c, stage })),
  );
  it.each(plays.map((p) => [p.c.name, p.stage, p] as const))(
    'detects and locates %s on stage %i',
    async (_n, _s, { c, stage }) => {
      expect(net.rolesOf(stage)).toBe(ROLES[stage]);
      const ring = stage % 2;
      // Seed 3 makes cheat-10pct cheat within the 16 steps (asserted below).
      const r = await net.trial({
        k: 2,
        prompt: trialPrompt(net.config, 11 + stage),
        steps: STEPS,
        tolerance: DEFAULT_TOLERANCE,
        tamper: { cls: c, ring, stage, seed: 3 },
      });
      expect(r.tamperedSteps.length).toBeGreaterThan(0);
      expect(r.detections).toHaveLength(1);
      const d = r.detections[0]!;
      expect(d.located).toEqual([expect.objectContaining({ peerId: `r${ring}s${stage}`, ring, stage })]);
      expect(d.step).toBe(r.tamperedSteps[0]);
      expect(d.evidence[0]).toMatchObject({
        peerId: `r${ring}s${stage}`,
        model: 'stories260K',
        step: d.step,
        v: 1,
      });
      expect(d.evidence[0]!.commitments.length).toBeGreaterThan(0);
      // The answer continues on the honest ring with exactly the tokens of an undisturbed run.
      const clean = await net.trial({
        k: 1,
        prompt: trialPrompt(net.config, 11 + stage),
        steps: STEPS,
        tolerance: DEFAULT_TOLERANCE,
      });
      expect(r.tokens).toEqual(clean.tokens);
    },
    60_000,
  );
});

describe('spot checks', () => {
  it('at f = 1 find a consistent cheater with one ring and the referee, and pass honest peers', async () => {
    const policy = () =>
      createSpotCheckPolicy({ fMin: 1, fMax: 1, halfLife: Infinity, random: mulberry32Float(1) });
    const honest = await net.trial({
      k: 1,
      prompt: trialPrompt(net.config, 8),
      steps: STEPS,
      tolerance: DEFAULT_TOLERANCE,
      spotCheck: policy(),
    });
    expect(honest.detections).toEqual([]);
    expect(honest.stepsChecked).toBe(honest.steps);
    const bad = await net.trial({
      k: 1,
      prompt: trialPrompt(net.config, 8),
      steps: STEPS,
      tolerance: DEFAULT_TOLERANCE,
      spotCheck: policy(),
      tamper: { cls: cls('sign-flip'), ring: 0, stage: 1, seed: 2 },
    });
    expect(bad.detections[0]).toMatchObject({ via: 'spot-check', step: 0, located: [{ peerId: 'r0s1' }] });
  }, 30_000);
});
