/**
 * The line under a validated answer (shared/app/validated-ring.ts `verificationLine`): it says what
 * was compared on how many of the answer's steps, and from which step on nothing was — never "1 of
 * 2 rings agreed" over steps that one ring ran alone or that a failover ring ran unchecked.
 */
import { describe, expect, it } from 'vitest';
import { verificationLine, type AnswerVerification } from '../../../shared/app/validated-ring';

const base: AnswerVerification = {
  k: 2,
  requested: 2,
  ringsAgreeing: 2,
  peersAgreeing: 6,
  stepsChecked: 60,
  comparisons: 180,
  deviants: [],
  steps: 60,
  comparedSteps: 60,
};

describe('verificationLine', () => {
  it('every step compared', () => {
    expect(verificationLine(base)).toBe(
      'security level 2: 2 of 2 rings (6 peers) agreed on 60 of 60 steps (180 stage comparisons)',
    );
  });

  it('a deviant dropped at step 0, then a failover at step 20: the unchecked steps are named', () => {
    const v: AnswerVerification = {
      ...base,
      ringsAgreeing: 1,
      peersAgreeing: 3,
      comparisons: 3,
      comparedSteps: 1,
      deviants: ['p_bad0000000000000'],
      uncheckedFrom: { step: 1, reason: 'deviant' },
      failoverAt: 20,
    };
    const line = verificationLine(v);
    expect(line).toBe(
      'security level 2: rings compared on 1 of 60 steps (3 stage comparisons) · unchecked from step 1 on (the deviant’s ring was dropped; failed over to a new ring at step 20): 59 steps ran on one ring · bad000 deviated and was dropped',
    );
    expect(line).not.toMatch(/of 2 rings/);
  });

  it('spot-check mode: sampled steps of all, and the rate', () => {
    expect(verificationLine({ ...base, comparedSteps: 7, comparisons: 21, spot: { f: 0.1 } })).toBe(
      'security level 2: spot-checked 7 of 60 steps (f = 0.1) on a validator ring',
    );
  });

  it('a degraded level says what was asked; records without step counts still read', () => {
    const { steps: _s, comparedSteps: _c, ...old } = base;
    expect(verificationLine({ ...old, requested: 3 })).toBe(
      'security level 2 (asked 3): 2 of 2 rings (6 peers) agreed on 60 of 60 steps (180 stage comparisons)',
    );
  });
});
