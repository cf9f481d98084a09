/**
 * The coordinator's validation registry with real signatures (WebCrypto P-256): evidence is checked
 * by the server itself — equivocation proven by two signed records flags and excludes the peer and
 * fires `onDeviant`; a forged record or an unregistered signer is refused; a reason the records
 * cannot prove on their own only counts as a report (never a requester's word alone).
 */
import { describe, expect, it } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import { toBase64 } from '../../shared/ring/stage-commitments';
import { signCommitment, signReceipt, type Commitment } from '../../shared/validation/commitment';
import { createSessionKey, sha256, type SessionKey } from '../../shared/validation/crypto';
import { evidenceOf, type EvidenceRecord } from '../../shared/validation/evidence';
import { sketchOf } from '../../shared/validation/sketch';
import {
  INITIAL_REPUTATION,
  createValidationRegistry,
  type DeviantEvent,
} from '../../signaling-server/src/validation-registry';

const session = new Uint8Array(16).fill(7);
const PEERS = ['p_aaaaaaaaaaaaaaaa', 'p_bbbbbbbbbbbbbbbb'];

async function commit(
  key: SessionKey,
  stage: number,
  inHash: Uint8Array,
  outHash: Uint8Array,
  inReceipt: Uint8Array,
) {
  return signCommitment(key, {
    session,
    ring: 0,
    stage,
    step: 3,
    position: 9,
    kind: 'hidden',
    inHash,
    outHash,
    inReceipt,
    token: -1,
    sketch: sketchOf(Float32Array.from([1, 2, 3, 4]), 4),
  });
}

/** Stage 0 commits to `honest` but signs a receipt for `sent`; stage 1 commits to having received `sent`. */
async function equivocation(
  k0: SessionKey,
  k1: SessionKey,
): Promise<{ sender: Commitment; receiver: Commitment }> {
  const honest = await sha256(Uint8Array.of(1, 2, 3));
  const sent = await sha256(Uint8Array.of(9, 9, 9));
  const sender = await commit(k0, 0, await sha256(Uint8Array.of(0)), honest, new Uint8Array(64));
  const receipt = await signReceipt(k0, { session, ring: 0, stage: 0, step: 3, position: 9 }, sent);
  const receiver = await commit(k1, 1, sent, await sha256(Uint8Array.of(5)), receipt);
  return { sender, receiver };
}

const record = (c: Commitment, others: Commitment[], reason: EvidenceRecord['reason']) =>
  evidenceOf({ model: 'm', range: [0, 2], peerId: PEERS[c.stage]!, reason, commitment: c, others });

async function setup() {
  const reg = createValidationRegistry();
  const keys = [await createSessionKey(), await createSessionKey()];
  for (let i = 0; i < 2; i++) await reg.setKey(PEERS[i]!, toBase64(keys[i]!.publicKeyRaw));
  return { reg, keys };
}

describe('validation registry', () => {
  it('proven equivocation flags and excludes the sender and tells the ledger hook', async () => {
    const { reg, keys } = await setup();
    const events: DeviantEvent[] = [];
    reg.onDeviant((e) => events.push(e));
    const { sender, receiver } = await equivocation(keys[0]!, keys[1]!);
    expect(reg.isExcluded(PEERS[0]!)).toBe(false);
    const verdict = await reg.submitEvidence(
      'p_rrrrrrrrrrrrrrrr',
      record(sender, [receiver], 'equivocation'),
      PEERS,
    );
    expect(verdict).toBe('proven');
    expect(reg.isExcluded(PEERS[0]!)).toBe(true);
    expect(reg.isExcluded(PEERS[1]!)).toBe(false);
    expect(reg.standing(PEERS[0]!)).toMatchObject({ flagged: true });
    expect(reg.standing(PEERS[0]!).reputation).toBeLessThan(INITIAL_REPUTATION);
    expect(events.map((e) => e.peer)).toEqual([PEERS[0]]);
  });

  it('blaming the honest receiver for the same records proves nothing', async () => {
    const { reg, keys } = await setup();
    const { sender, receiver } = await equivocation(keys[0]!, keys[1]!);
    const verdict = await reg.submitEvidence(
      'p_rrrrrrrrrrrrrrrr',
      record(receiver, [sender], 'equivocation'),
      PEERS,
    );
    expect(verdict).toBe('reported');
    expect(reg.isExcluded(PEERS[1]!)).toBe(false);
    expect(reg.standing(PEERS[1]!).reports).toBe(1);
  });

  it('refuses a record not signed by the registered key, and a reason it cannot prove is only a report', async () => {
    const { reg, keys } = await setup();
    const stranger = await createSessionKey();
    const { sender, receiver } = await equivocation(stranger, keys[1]!);
    const err = await reg
      .submitEvidence('p_rrrrrrrrrrrrrrrr', record(sender, [receiver], 'equivocation'), PEERS)
      .catch((e: unknown) => e);
    expect(isRingworkError(err) && err.code).toBe('VALIDATION_BAD_SIGNATURE');
    expect(reg.isExcluded(PEERS[0]!)).toBe(false);
    const honest = await equivocation(keys[0]!, keys[1]!);
    expect(
      await reg.submitEvidence('p_rrrrrrrrrrrrrrrr', record(honest.sender, [], 'output-mismatch'), PEERS),
    ).toBe('reported');
    expect(reg.isExcluded(PEERS[0]!)).toBe(false);
  });

  it('validated work raises reputation and reaches the ledger hook', async () => {
    const { reg } = await setup();
    const seen: [string, number, number][] = [];
    reg.onValidatedWork((p, u, s) => seen.push([p, u, s]));
    reg.validatedWork([{ peer: PEERS[0]!, units: 2 }], 40);
    expect(seen).toEqual([[PEERS[0], 2, 40]]);
    expect(reg.standing(PEERS[0]!)).toMatchObject({ validatedSteps: 40 });
    expect(reg.standing(PEERS[0]!).reputation).toBeGreaterThan(INITIAL_REPUTATION);
  });
});
