/**
 * Spot-check mode planned by the coordinator (issue 10): a `ring-request` at k = 2 with `spot` gets
 * the validator ring and the rate f to re-execute steps at — the primary ring's least trusted
 * peer's rate, from the server's own verified record (validated steps, flags), never below the
 * floor. A model whose minimum level is 2 is checked on every step whatever the request says. A
 * requester's forged work proof or unproven evidence changes no peer's rate and flags nobody.
 */
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import { clientMessageSchema, MAX_SPOT_CHUNK_TOKENS } from '../../shared/protocol/signaling';
import { DEFAULT_SPOT_RATE, spotRate } from '../../shared/validation/spot-check';
import { createWorkProofBuilder, MAX_PROOF_CHARS } from '../../shared/validation/work-proof';
import { loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import type { CoordinatorOptions } from '../../signaling-server/src/coordinator';
import { peerSpotRate, ringSpotRate } from '../../signaling-server/src/validation-spot';
import { pid, sixPeerNetwork } from '../helpers/spot-network';

let stories: CatalogModel;
beforeAll(async () => {
  [stories] = (await loadCatalog([])) as [CatalogModel];
});
beforeEach(() => void vi.useFakeTimers());
afterEach(() => void vi.useRealTimers());

/** The six-contributor network on stories260K (tests/helpers/spot-network.ts). */
const network = (opts: Partial<CoordinatorOptions> = {}) => sixPeerNetwork(stories, opts);

describe('spot-check rates', () => {
  it('a peer is checked less as its validated record grows, never below the floor; a flagged one always', () => {
    const fs = [0, 119, 120, 240, 360, 10_000].map((clean) =>
      spotRate({ clean, flags: 0 }, DEFAULT_SPOT_RATE),
    );
    expect(fs).toEqual([0.25, 0.25, 0.125, 0.0625, 0.05, 0.05]);
    expect(spotRate({ clean: 10_000, flags: 1 }, DEFAULT_SPOT_RATE)).toBe(1);
    // Garbage records never lower the rate.
    expect(spotRate({ clean: Number.NaN, flags: 0 }, DEFAULT_SPOT_RATE)).toBe(0.25);
    expect(spotRate({ clean: -5, flags: 0 }, DEFAULT_SPOT_RATE)).toBe(0.25);
    expect(peerSpotRate({ validatedSteps: 1e9, flagged: false })).toBe(DEFAULT_SPOT_RATE.fMin);
    // A ring is checked at its least trusted peer's rate; a requester may ask for more, not fewer.
    const standing = (p: string) => ({ validatedSteps: p === 'new' ? 0 : 1e6, flagged: false });
    expect(ringSpotRate(['old', 'old'], standing)).toBe(0.05);
    expect(ringSpotRate(['old', 'new'], standing)).toBe(0.25);
    expect(ringSpotRate(['old', 'old'], standing, 0.5)).toBe(0.5);
    expect(ringSpotRate(['old', 'old'], standing, 0.01)).toBe(0.05);
  });

  it('the wire: spot is a mode of k = 2 only, f in (0, 1]', () => {
    const parse = (security: unknown) =>
      clientMessageSchema.safeParse({ type: 'ring-request', v: 1, model: 'm', security }).success;
    expect(parse({ v: 1, k: 2, spot: {} })).toBe(true);
    expect(parse({ v: 1, k: 2, spot: { f: 0.1 } })).toBe(true);
    expect(parse({ v: 1, k: 3, spot: {} })).toBe(false);
    expect(parse({ v: 1, k: 1, spot: {} })).toBe(false);
    expect(parse({ v: 1, k: 2, spot: { f: 0 } })).toBe(false);
    expect(parse({ v: 1, k: 2, spot: { f: 1.5 } })).toBe(false);
    expect(parse({ v: 1, k: 2, spot: { f: 0.1, extra: 1 } })).toBe(false);
  });

  it('the wire: a spot proof step carries a bounded chunk of token ids; the builder drops what does not fit', () => {
    const work = (spot: unknown) =>
      clientMessageSchema.safeParse({
        type: 'validated-work',
        v: 1,
        model: 'm',
        ringId: 'r',
        steps: 1,
        proof: [{ rings: [['AAAA'], ['AAAA']], spot }],
        proofRings: ['r', 'r:v1'],
      }).success;
    expect(work({ tokens: [1, 2, 3], rows: 1 })).toBe(true);
    expect(work({ tokens: [], rows: 1 })).toBe(false);
    expect(work({ tokens: [1, -2], rows: 1 })).toBe(false);
    expect(work({ tokens: [1.5], rows: 1 })).toBe(false);
    expect(work({ tokens: [1], rows: 0 })).toBe(false);
    expect(work({ tokens: new Array(MAX_SPOT_CHUNK_TOKENS + 1).fill(1), rows: 1 })).toBe(false);
    expect(work({ tokens: [1], rows: 1, extra: 1 })).toBe(false);
    const builder = createWorkProofBuilder({ model: 'm', ringIds: ['r', 'r:v1'] });
    builder.add([[], []], { tokens: new Array(MAX_SPOT_CHUNK_TOKENS + 1).fill(1), rows: 1 });
    // Within the token bound but over the characters one message carries.
    builder.add([[], []], { tokens: new Array(MAX_SPOT_CHUNK_TOKENS).fill(0x7fffffff), rows: 1 });
    expect(JSON.stringify(new Array(MAX_SPOT_CHUNK_TOKENS).fill(0x7fffffff)).length).toBeGreaterThan(
      MAX_PROOF_CHARS,
    );
    expect(builder.pending).toBe(0);
    builder.add([[], []], { tokens: [5, 6, 7], rows: 1 });
    expect(builder.drain()[0]!.proof).toEqual([{ rings: [[], []], spot: { tokens: [5, 6, 7], rows: 1 } }]);
  });
});

describe('spot-check mode planned by the coordinator', () => {
  it('k = 2 with spot: the validator ring and the primary ring peers’ rate, falling with their verified record', () => {
    const { ask, validation } = network();
    const first = ask({ v: 1, k: 2, spot: {} });
    expect(first.validators).toHaveLength(1);
    expect(first.security).toEqual({ requested: 2, k: 2, spot: { f: 0.25 } });
    // A requester asking for more checks gets them.
    expect(ask({ v: 1, k: 2, spot: { f: 0.5 } }).security!.spot).toEqual({ f: 0.5 });
    // The server credits validated work only after checking signed proofs (validation-work.ts);
    // here it credits directly, as it does after such a check.
    const primary = first.stages.map((s) => ({ peer: s.peer, units: s.range[1] - s.range[0] }));
    validation.validatedWork(primary, 240);
    expect(ask({ v: 1, k: 2, spot: {} }).security!.spot).toEqual({ f: 0.0625 });
    validation.validatedWork(primary, 100_000);
    expect(ask({ v: 1, k: 2, spot: {} }).security!.spot).toEqual({ f: DEFAULT_SPOT_RATE.fMin });
    // Full k = 2 (no spot) carries no rate.
    expect(ask({ v: 1, k: 2 }).security).toEqual({ requested: 2, k: 2 });
  });

  it('a model whose minimum level is 2 is checked on every step: spot is not granted', () => {
    const { ask } = network({ security: { modelMinimum: { stories260K: 2 } } });
    const ring = ask({ v: 1, k: 2, spot: { f: 0.1 } });
    expect(ring.validators).toHaveLength(1);
    expect(ring.security).toEqual({ requested: 2, k: 2 });
  });

  it("a requester's forged work proof or unproven evidence lowers no rate and flags nobody", async () => {
    const { ask, validation } = network();
    const ring = ask({ v: 1, k: 2, spot: {} });
    const peers = ring.stages.map((s) => s.peer);
    const proof = [{ rings: [['AAAA'], ['AAAA']] }];
    const err = await validation
      .creditWork(
        [ring, ...ring.validators!].map((r) => ({
          ringId: r.ringId,
          stages: r.stages.map((s) => ({ peer: s.peer, units: s.range[1] - s.range[0] })),
        })),
        proof,
      )
      .catch((e: unknown) => e);
    expect(isRingworkError(err)).toBe(true);
    const forged = await validation
      .submitEvidence(
        pid('req'),
        {
          v: 1,
          model: 'stories260K',
          range: [0, 2],
          peerId: peers[0]!,
          ring: 0,
          stage: 0,
          step: 3,
          position: 7,
          reason: 'output-mismatch',
          inHash: '00'.repeat(32),
          commitments: ['00'.repeat(40)],
        },
        peers,
      )
      .catch((e: unknown) => e);
    expect(isRingworkError(forged)).toBe(true);
    for (const p of peers)
      expect(validation.standing(p)).toMatchObject({ flagged: false, validatedSteps: 0 });
    expect(ask({ v: 1, k: 2, spot: {} }).security!.spot).toEqual({ f: 0.25 });
  });
});
