/**
 * The exact checks of a validated generation on real stories260K shards (no referee needed): a
 * stage that commits honestly but sends something else is located as the sender, never the honest
 * receiver; a commitment that does not verify under the registered key is pinned on its signer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_TOLERANCE } from '../../../shared/validation/checks';
import {
  createValidationNetwork,
  trialPrompt,
  type ValidationNetwork,
} from '../../../tools/bench/validation-network';
import { TAMPER_CLASSES } from '../../../tools/bench/validation-tampers';
import { repoPath } from '../../helpers/golden';

const STEPS = 8;
let net: ValidationNetwork;

beforeAll(async () => {
  net = await createValidationNetwork({
    modelPath: repoPath('public/models/stories260K/stories260K.bin'),
    splits: [2, 4],
    rings: 1,
    contextLength: 16,
  });
}, 60_000);
afterAll(async () => {
  await net?.dispose();
});

describe('validated generation, one ring', () => {
  it('pins a boundary mismatch on the sender, not on the honest receiver', async () => {
    const cls = TAMPER_CLASSES.find((c) => c.name === 'honest-commit-tampered-send')!;
    for (const stage of [0, 1, 2]) {
      const r = await net.trial({
        k: 1,
        prompt: trialPrompt(net.config, 5),
        steps: STEPS,
        tolerance: DEFAULT_TOLERANCE,
        tamper: { cls, ring: 0, stage, seed: 1 },
      });
      expect(r.detections).toEqual([
        expect.objectContaining({
          via: 'boundary',
          step: 0,
          located: [expect.objectContaining({ peerId: `r0s${stage}`, reason: 'equivocation' })],
        }),
      ]);
      expect(r.detections[0]!.evidence[0]!.commitments).toHaveLength(stage === 2 ? 1 : 2);
    }
  }, 60_000);

  it('pins a commitment that does not verify on its signer and passes honest rings', async () => {
    const honest = await net.trial({
      k: 1,
      prompt: trialPrompt(net.config, 6),
      steps: STEPS,
      tolerance: DEFAULT_TOLERANCE,
    });
    expect(honest.detections).toEqual([]);
    expect(honest.tokens).toHaveLength(STEPS);
    for (const stage of [0, 1, 2]) {
      const forged = await net.trial({
        k: 1,
        prompt: trialPrompt(net.config, 6),
        steps: STEPS,
        tolerance: DEFAULT_TOLERANCE,
        forger: { ring: 0, stage },
      });
      expect(forged.detections).toEqual([
        expect.objectContaining({
          via: 'boundary',
          step: 0,
          located: [expect.objectContaining({ peerId: `r0s${stage}`, reason: 'bad-signature' })],
        }),
      ]);
    }
  }, 60_000);
});
