/**
 * Credits from validation: the real validation registry's hooks feed a real (in-memory PGlite)
 * ledger through connectValidationCredit. Validated work credits each stage's address with the
 * FLOPs of its units by the stories260K profile × steps; the requester's own identity (another
 * session, same address) earns nothing; work without a named requester or that no assignment
 * places earns nothing; a proven equivocation (real P-256 signatures) becomes evidence, a penalty
 * and a slash request carrying the evidence hash.
 *
 * Slow: opening a PGlite database costs seconds on the shared machine; one is opened per test.
 */
import { pino } from 'pino';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { ModelProfile } from '../../shared/model/profile';
import { toBase64 } from '../../shared/ring/stage-commitments';
import { signCommitment, signReceipt } from '../../shared/validation/commitment';
import { createSessionKey, sha256, type SessionKey } from '../../shared/validation/crypto';
import { evidenceOf } from '../../shared/validation/evidence';
import { sketchOf } from '../../shared/validation/sketch';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { systemClock } from '../../signaling-server/src/clock';
import type { PeerAssignment } from '../../signaling-server/src/coordinator-types';
import { flopsFromProfiles, flopsPerStep } from '../../signaling-server/src/ledger/credit';
import { openLedger, type Ledger } from '../../signaling-server/src/ledger/ledger';
import {
  connectValidationCredit,
  evidenceHash,
  type DeviantToSlash,
} from '../../signaling-server/src/ledger/validation-credit';
import { createValidationRegistry } from '../../signaling-server/src/validation-registry';
import { scaled } from '../helpers/timeouts';

const silent = pino({ level: 'silent' });
let profile: ModelProfile;
let model: string;

beforeAll(async () => {
  const catalog = await loadCatalog([]);
  profile = catalog[0]!.profile;
  model = catalog[0]!.descriptor.id;
}, scaled(30_000));

const addr = (): string => privateKeyToAccount(generatePrivateKey()).address;
const PEERS = ['p_stage0_aaaaaaaaaa', 'p_stage1_bbbbbbbbbb', 'p_stage2_cccccccccc'];
const REQUESTER = 'p_requester_rrrrrrr';

/** A ledger bridged to a fresh registry; three stages split the model's units 0-2 / 2-5 / 5-end. */
async function setup() {
  const units = profile.layers.length;
  const ranges: Array<[number, number]> = [
    [0, 2],
    [2, 5],
    [5, units],
  ];
  const ledger: Ledger = await openLedger(
    { kind: 'memory' },
    {
      clock: systemClock,
      logger: silent,
      flopsOf: flopsFromProfiles(new Map([[model, profile]])),
      batchMs: 5,
    },
  );
  const registry = createValidationRegistry();
  const addresses = new Map<string, string>(PEERS.map((p) => [p, addr()]));
  const slashed: DeviantToSlash[] = [];
  const warn = vi.fn();
  const off = connectValidationCredit({
    ledger,
    validation: registry,
    assignmentOf: (peer): PeerAssignment | null => {
      const i = PEERS.indexOf(peer);
      return i < 0
        ? null
        : { kind: 'assigned', epoch: 1, ringId: 'r1', model, range: ranges[i]!, prev: null, next: null };
    },
    addressOf: (peer) => addresses.get(peer),
    logger: { warn, error: warn },
    onDeviant: (d) => void slashed.push(d),
  });
  const ring = PEERS.map((peer, i) => ({ peer, units: ranges[i]![1] - ranges[i]![0] }));
  return { ledger, registry, addresses, ranges, ring, slashed, warn, off };
}

describe('credits from validation', () => {
  it(
    'credits each stage the FLOPs of its units by the profile × steps; the requester’s own address earns nothing',
    async () => {
      const { ledger, registry, addresses, ranges, ring, off } = await setup();
      try {
        // The requester signed in with stage 2's address in another session: a colluding self-serve.
        addresses.set(REQUESTER, addresses.get(PEERS[2]!)!);
        registry.validatedWork(ring, 7, { requester: REQUESTER, model, ringId: 'r1' });
        registry.validatedWork(ring, 5, { requester: REQUESTER, model, ringId: 'r1' });
        await vi.waitFor(async () => expect(ledger.stats().pending).toBe(0));
        await ledger.flush();
        for (let i = 0; i < 2; i++) {
          const a = await ledger.account(addresses.get(PEERS[i]!)!);
          // Hand arithmetic over the profile, independent of flopsPerStep.
          let perStep = 0;
          for (let u = ranges[i]![0]; u < ranges[i]![1]; u++) perStep += profile.layers[u]!.flopsPerToken;
          expect(perStep).toBeGreaterThan(0);
          expect(a.validatedSteps).toBe(12);
          expect(a.flops).toBeCloseTo(12 * perStep, 3);
        }
        expect(await ledger.account(addresses.get(PEERS[2]!)!)).toMatchObject({
          flops: 0,
          validatedSteps: 0,
        });
        // Credit is proportional to the units served: stage 1 (3 units) vs stage 0 (2 units).
        const [a0, a1] = await Promise.all(PEERS.slice(0, 2).map((p) => ledger.account(addresses.get(p)!)));
        expect(a1!.flops / a0!.flops).toBeCloseTo(
          flopsPerStep(profile, ranges[1]!)! / flopsPerStep(profile, ranges[0]!)!,
          9,
        );
        const board = await ledger.leaderboard();
        expect(board.map((r) => r.address).sort()).toEqual(
          PEERS.slice(0, 2)
            .map((p) => addresses.get(p)!.toLowerCase())
            .sort(),
        );
        // The requester's usage is every stage's FLOPs of both validations.
        const usage = await ledger.usage(addresses.get(REQUESTER)!);
        expect(usage.steps).toBe(12);
        expect(usage.flops).toBeCloseTo(12 * flopsPerStep(profile, [0, profile.layers.length])!, 3);
      } finally {
        off();
        await ledger.stop();
      }
    },
    scaled(60_000),
  );

  it(
    'work with no requester named, or units the assignment does not place, earns nothing',
    async () => {
      const { ledger, registry, addresses, ring, warn, off } = await setup();
      try {
        registry.validatedWork(ring, 9);
        registry.validatedWork([{ peer: PEERS[0]!, units: 4 }], 9, { requester: REQUESTER, model });
        registry.validatedWork([{ peer: 'p_not_assigned_zzzz', units: 2 }], 9, {
          requester: REQUESTER,
          model,
        });
        await ledger.flush();
        for (const p of PEERS)
          expect(await ledger.account(addresses.get(p)!)).toMatchObject({ flops: 0, validatedSteps: 0 });
        expect(await ledger.leaderboard()).toEqual([]);
        expect(warn).toHaveBeenCalledTimes(2);
      } finally {
        off();
        await ledger.stop();
      }
    },
    scaled(60_000),
  );

  it(
    'a proven equivocation is recorded as evidence and a penalty, and handed to the slasher with its hash',
    async () => {
      const { ledger, registry, addresses, slashed, off } = await setup();
      try {
        const keys = [await createSessionKey(), await createSessionKey()];
        for (let i = 0; i < 2; i++) await registry.setKey(PEERS[i]!, toBase64(keys[i]!.publicKeyRaw));
        const ev = await equivocationEvidence(keys[0]!, keys[1]!);
        expect(await registry.submitEvidence(REQUESTER, ev, PEERS)).toBe('proven');
        await vi.waitFor(() => expect(slashed).toHaveLength(1));
        expect(slashed[0]).toMatchObject({
          peerId: PEERS[0],
          address: addresses.get(PEERS[0]!),
          evidenceHash: evidenceHash(ev),
        });
        expect(evidenceHash(ev)).toMatch(/^0x[0-9a-f]{64}$/);
        const penalties = await ledger.penalties(addresses.get(PEERS[0]!)!);
        expect(penalties).toHaveLength(1);
        expect(penalties[0]).toMatchObject({ reason: 'equivocation', evidenceHash: evidenceHash(ev) });
        expect(await ledger.penalties(addresses.get(PEERS[1]!)!)).toEqual([]);
      } finally {
        off();
        await ledger.stop();
      }
    },
    scaled(60_000),
  );
});

/** Stage 0 commits to one output but signs a receipt for other bytes that stage 1 received. */
async function equivocationEvidence(k0: SessionKey, k1: SessionKey) {
  const session = new Uint8Array(16).fill(7);
  const commit = (key: SessionKey, stage: number, inHash: Uint8Array, outHash: Uint8Array, r: Uint8Array) =>
    signCommitment(key, {
      session,
      ring: 0,
      stage,
      step: 3,
      position: 9,
      kind: 'hidden',
      inHash,
      outHash,
      inReceipt: r,
      token: -1,
      sketch: sketchOf(Float32Array.from([1, 2, 3, 4]), 4),
    });
  const honest = await sha256(Uint8Array.of(1, 2, 3));
  const sent = await sha256(Uint8Array.of(9, 9, 9));
  const sender = await commit(k0, 0, await sha256(Uint8Array.of(0)), honest, new Uint8Array(64));
  const receipt = await signReceipt(k0, { session, ring: 0, stage: 0, step: 3, position: 9 }, sent);
  const receiver = await commit(k1, 1, sent, await sha256(Uint8Array.of(5)), receipt);
  return evidenceOf({
    model: 'm',
    range: [0, 2],
    peerId: PEERS[0]!,
    reason: 'equivocation',
    commitment: sender,
    others: [receiver],
  });
}
