/**
 * The coordinator's validation registry with real signatures (WebCrypto P-256): evidence is checked
 * by the server itself — equivocation proven by two signed records flags and excludes the peer and
 * fires `onDeviant`; a forged record or an unregistered signer is refused; a reason the records
 * cannot prove on their own only counts as a report (never a requester's word alone).
 */
import { describe, expect, it } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import { toBase64 } from '../../shared/ring/stage-commitments';
import {
  encodeCommitment,
  signCommitment,
  signReceipt,
  type Commitment,
} from '../../shared/validation/commitment';
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

/** One ring's step of two stages (hidden, then the head's logits), every record signed and chained. */
async function ringStep(keys: SessionKey[], ring: number, hidden: Float32Array, logits: Float32Array) {
  const nonce = new Uint8Array(16).fill(ring + 1);
  const tokens = await sha256(Uint8Array.of(4, 0, 0, 0));
  const at = (stage: number) => ({ session: nonce, ring: 0, stage, step: 5, position: 9 });
  const out0 = await sha256(new Uint8Array(hidden.buffer.slice(0)));
  const s0 = await signCommitment(keys[0]!, {
    ...at(0),
    kind: 'hidden',
    inHash: tokens,
    outHash: out0,
    inReceipt: new Uint8Array(64),
    token: -1,
    sketch: sketchOf(hidden, hidden.length),
  });
  let token = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[token]!) token = i;
  const s1 = await signCommitment(keys[1]!, {
    ...at(1),
    kind: 'logits',
    inHash: out0,
    outHash: await sha256(Uint8Array.from(new Uint8Array(Int32Array.of(token).buffer))),
    inReceipt: await signReceipt(keys[0]!, at(0), out0),
    token,
    sketch: sketchOf(logits, logits.length),
  });
  return [s0, s1];
}

describe('validation registry: what only the records prove', () => {
  const RINGS = [0, 1, 2].map((j) => [0, 1].map((i) => `p_${'abc'[j]}${i}`.padEnd(18, 'x')));
  const hidden = Float32Array.from({ length: 16 }, (_, i) => Math.sin(i + 1));
  const logits = Float32Array.from({ length: 32 }, (_, i) => Math.cos(i / 3));

  async function threeRings(deviantLogits: Float32Array) {
    const reg = createValidationRegistry();
    const keys: SessionKey[][] = [];
    for (const ring of RINGS) {
      const ks = [await createSessionKey(), await createSessionKey()];
      for (let i = 0; i < 2; i++) await reg.setKey(ring[i]!, toBase64(ks[i]!.publicKeyRaw));
      keys.push(ks);
    }
    const steps = [
      await ringStep(keys[0]!, 0, hidden, logits),
      await ringStep(keys[1]!, 1, hidden, logits),
      await ringStep(keys[2]!, 2, hidden, deviantLogits),
    ];
    const majority = (ring: number) => ({
      rings: RINGS.map((peers, j) => ({ ringId: `r${j}`, peers })),
      ring,
      step: { rings: steps.map((cs) => cs.map((c) => toBase64(encodeCommitment(c)))) },
    });
    return { reg, steps, majority };
  }

  it('k = 3: a head that the two other rings outvote (a referee-decided deviant, no equivocation) is flagged', async () => {
    const off = logits.map((x, i) => (i === 7 ? x + 0.5 : x));
    const { reg, steps, majority } = await threeRings(off);
    const events: DeviantEvent[] = [];
    reg.onDeviant((e) => events.push(e));
    const ev = evidenceOf({
      model: 'm',
      range: [2, 4],
      peerId: RINGS[2]![1]!,
      reason: 'output-mismatch',
      commitment: steps[2]![1]!,
    });
    // Without the other rings' records it is the requester's word: a report.
    expect(await reg.submitEvidence('p_rrrrrrrrrrrrrrrr', ev, RINGS[2]!)).toBe('reported');
    expect(reg.isExcluded(RINGS[2]![1]!)).toBe(false);
    expect(await reg.submitEvidence('p_rrrrrrrrrrrrrrrr', ev, RINGS[2]!, majority(2))).toBe('proven');
    expect(reg.isExcluded(RINGS[2]![1]!)).toBe(true);
    expect(events.map((e) => e.peer)).toEqual([RINGS[2]![1]]);
    for (const p of [...RINGS[0]!, ...RINGS[1]!, RINGS[2]![0]!]) expect(reg.isExcluded(p)).toBe(false);
  });

  it('k = 3: blaming an honest stage of the majority, or one with no majority behind it, proves nothing', async () => {
    const off = logits.map((x, i) => (i === 7 ? x + 0.5 : x));
    const { reg, steps, majority } = await threeRings(off);
    const honest = evidenceOf({
      model: 'm',
      range: [2, 4],
      peerId: RINGS[0]![1]!,
      reason: 'output-mismatch',
      commitment: steps[0]![1]!,
    });
    expect(await reg.submitEvidence('p_rrrrrrrrrrrrrrrr', honest, RINGS[0]!, majority(0))).toBe('reported');
    expect(reg.isExcluded(RINGS[0]![1]!)).toBe(false);
    // The deviant's own stage 0 agreed with everyone: it is not the outvoted stage.
    const wrongStage = evidenceOf({
      model: 'm',
      range: [0, 2],
      peerId: RINGS[2]![0]!,
      reason: 'output-mismatch',
      commitment: steps[2]![0]!,
    });
    expect(await reg.submitEvidence('p_rrrrrrrrrrrrrrrr', wrongStage, RINGS[2]!, majority(2))).toBe(
      'reported',
    );
    expect(reg.isExcluded(RINGS[2]![0]!)).toBe(false);
    // All three agree: nobody is outvoted.
    const same = await threeRings(logits);
    const ev = evidenceOf({
      model: 'm',
      range: [2, 4],
      peerId: RINGS[2]![1]!,
      reason: 'output-mismatch',
      commitment: same.steps[2]![1]!,
    });
    expect(await same.reg.submitEvidence('p_rrrrrrrrrrrrrrrr', ev, RINGS[2]!, same.majority(2))).toBe(
      'reported',
    );
  });

  it("the head's equivocation: its own receipt for the token the requester got proves it", async () => {
    const { reg } = await setup();
    const head = await createSessionKey();
    await reg.setKey(PEERS[1]!, toBase64(head.publicKeyRaw));
    const at = { session, ring: 0, stage: 1, step: 3, position: 9 };
    const honestToken = await sha256(Uint8Array.of(7, 0, 0, 0));
    const sentToken = await sha256(Uint8Array.of(8, 0, 0, 0));
    const c = await signCommitment(head, {
      ...at,
      kind: 'logits',
      inHash: await sha256(Uint8Array.of(1)),
      outHash: honestToken,
      inReceipt: new Uint8Array(64),
      token: 7,
      sketch: sketchOf(Float32Array.from([1, 2, 3, 4]), 4),
    });
    const ev = (hash: Uint8Array, signature: Uint8Array) =>
      evidenceOf({
        model: 'm',
        range: [2, 4],
        peerId: PEERS[1]!,
        reason: 'equivocation',
        commitment: c,
        receipt: { hash, signature },
      });
    // A receipt over the committed bytes proves nothing; a forged one neither.
    expect(
      await reg.submitEvidence(
        'p_rrrrrrrrrrrrrrrr',
        ev(honestToken, await signReceipt(head, at, honestToken)),
        PEERS,
      ),
    ).toBe('reported');
    const stranger = await createSessionKey();
    expect(
      await reg.submitEvidence(
        'p_rrrrrrrrrrrrrrrr',
        ev(sentToken, await signReceipt(stranger, at, sentToken)),
        PEERS,
      ),
    ).toBe('reported');
    expect(reg.isExcluded(PEERS[1]!)).toBe(false);
    expect(
      await reg.submitEvidence(
        'p_rrrrrrrrrrrrrrrr',
        ev(sentToken, await signReceipt(head, at, sentToken)),
        PEERS,
      ),
    ).toBe('proven');
    expect(reg.isExcluded(PEERS[1]!)).toBe(true);
  });
});
