/**
 * Commitments and receipts: the canonical encoding round-trips, signatures bind every field to the
 * registered key, and forgeries (a changed field, another peer's key, an unknown signer, a
 * malformed wire form) are refused with typed errors.
 */
import { describe, expect, it } from 'vitest';
import { isRingworkError } from '../../../shared/errors';
import { createSessionKey, sha256 } from '../../../shared/validation/crypto';
import {
  decodeCommitment,
  encodeCommitment,
  signCommitment,
  signReceipt,
  verifyCommitment,
  verifyReceipt,
  type UnsignedCommitment,
} from '../../../shared/validation/commitment';
import { createKeyRegistry } from '../../../shared/validation/key-registry';
import { sketchOf } from '../../../shared/validation/sketch';

async function sample(): Promise<UnsignedCommitment> {
  const out = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 1.7) * (i + 1));
  return {
    session: new Uint8Array(16).fill(7),
    ring: 1,
    stage: 2,
    step: 5,
    position: 9,
    kind: 'hidden',
    inHash: await sha256(new Uint8Array([1, 2, 3])),
    outHash: await sha256(new Uint8Array(out.buffer)),
    inReceipt: new Uint8Array(64).fill(3),
    token: -1,
    sketch: sketchOf(out, 64),
  };
}

describe('commitments', () => {
  it('round-trip through the wire form and verify under the signer key', async () => {
    const key = await createSessionKey();
    const c = await signCommitment(key, await sample());
    const wire = encodeCommitment(c);
    const back = decodeCommitment(wire);
    expect(encodeCommitment(back)).toEqual(wire);
    expect(back.sketch).toEqual(c.sketch);
    expect(await verifyCommitment(key.publicKey, back)).toBe(true);
    // A hidden state of 64 with the default sketch: a few hundred bytes per stage and step.
    expect(wire.length).toBeLessThan(400);
  });

  it('reject a forged field, another peer key and an unknown signer', async () => {
    const alice = await createSessionKey();
    const mallory = await createSessionKey();
    const registry = createKeyRegistry();
    await registry.register('alice', alice.publicKeyRaw);
    await registry.register('mallory', mallory.publicKeyRaw);
    const c = await signCommitment(alice, await sample());
    expect(await verifyCommitment(registry.keyOf('alice'), c)).toBe(true);
    // A later stage rewriting the sketch, the hash or the token on the way to the requester.
    const sketchForged = {
      ...c,
      sketch: {
        ...c.sketch,
        rows: [{ ...c.sketch.rows[0]!, val: c.sketch.rows[0]!.val.map((v) => v * 1.01) }],
      },
    };
    const hashForged = { ...c, outHash: c.outHash.map((b, i) => (i === 0 ? b ^ 1 : b)) };
    const tokenForged = { ...c, token: 3 };
    for (const f of [sketchForged, hashForged, tokenForged])
      expect(await verifyCommitment(registry.keyOf('alice'), f)).toBe(false);
    // Mallory signing a commitment in Alice's place.
    const byMallory = await signCommitment(mallory, await sample());
    expect(await verifyCommitment(registry.keyOf('alice'), byMallory)).toBe(false);
    let err: unknown;
    try {
      registry.keyOf('nobody');
    } catch (e) {
      err = e;
    }
    expect(isRingworkError(err) && err.code).toBe('VALIDATION_UNKNOWN_SIGNER');
  });

  it('refuse malformed wire bytes with VALIDATION_BAD_COMMITMENT', async () => {
    const wire = encodeCommitment(await signCommitment(await createSessionKey(), await sample()));
    const cases = [
      wire.slice(0, 20),
      wire.slice(0, wire.length - 1),
      Uint8Array.from(wire, (b, i) => (i === 0 ? 0 : b)),
      Uint8Array.from(wire, (b, i) => (i === 4 ? 9 : b)),
    ];
    for (const bytes of cases) {
      expect(() => decodeCommitment(bytes)).toThrow(
        expect.objectContaining({ code: 'VALIDATION_BAD_COMMITMENT' }),
      );
    }
  });

  it('bind receipts to the coordinates and the hash', async () => {
    const key = await createSessionKey();
    const c = await sample();
    const h = await sha256(new Uint8Array([9]));
    const sig = await signReceipt(key, c, h);
    expect(await verifyReceipt(key.publicKey, c, h, sig)).toBe(true);
    expect(await verifyReceipt(key.publicKey, { ...c, step: 6 }, h, sig)).toBe(false);
    expect(await verifyReceipt(key.publicKey, c, await sha256(new Uint8Array([8])), sig)).toBe(false);
  });
});
