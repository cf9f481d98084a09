/**
 * The chat's security level k = 2 path (the requester the Chat page's store drives): real
 * contributors (their own session keys, real ring stages and ORT runners on stories260K) over the
 * fake signaling hub and in-memory links; the fake coordinator answers `ring-request` with a primary
 * and a validator ring carrying the keys the contributors registered. Two honest rings agree on
 * every step (golden text, proof of validated work sent); a contributor made dishonest through the
 * same test-only hook the browser e2e uses is located, its signed evidence sent to the coordinator,
 * and the next answer runs on the rings the coordinator re-plans without it.
 */
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createContributor, type Contributor } from '../../../shared/app/contributor';
import type { ClientMessageOf } from '../../../shared/protocol/signaling';
import { verificationLine } from '../../../shared/app/validated-ring';
import { mulberry32Float } from '../../../shared/util/prng';
import { TEST_TAMPERS, type TestTamperName } from '../../../shared/validation/test-tampers';
import { createValidationRegistry } from '../../../signaling-server/src/validation-registry';
import { stories260KRunner } from '../../helpers/engine';
import { loadGolden } from '../../helpers/golden';
import {
  createFakeSignalingHub,
  type FakeSignalingHub,
  type ServerMessageBody,
} from '../../helpers/memory-signaling';
import { scaled } from '../../helpers/timeouts';
import { CAPABILITY, GOLDEN_SETTINGS, STORIES, pid, requesterOn, warmUpOrt } from './app-fixture';

const golden = loadGolden();
const history = [{ role: 'user' as const, text: 'Once upon a time' }];
const signal = () => new AbortController().signal;
const RANGES: [number, number][] = [
  [0, 4],
  [4, 7],
];
const K2 = { ...GOLDEN_SETTINGS, security: 2 };

const contributors = new Map<string, Contributor>();
afterEach(async () => {
  await Promise.all([...contributors.values()].map((c) => c.stop()));
  contributors.clear();
});

/** Starts a contributor per name (one dishonest when `tamper` names it) and waits for its key. */
async function start(
  hub: FakeSignalingHub,
  keys: Map<string, string>,
  peers: string[],
  tamper?: { peer: string; name: TestTamperName },
) {
  for (const peer of peers) {
    const c = createContributor({
      network: async () => hub.network(peer),
      createRunner: stories260KRunner,
      connectTimeoutMs: 5000,
      ...(tamper?.peer === peer ? { testTamper: async () => TEST_TAMPERS[tamper.name] } : {}),
    });
    contributors.set(peer, c);
    await c.start({ capability: CAPABILITY });
  }
  await vi.waitFor(() => expect(peers.every((p) => keys.has(p))).toBe(true));
}

/** Assigns `peers` (stage order) as one ring of stories260K and waits until each serves. */
async function assignRing(hub: FakeSignalingHub, peers: string[], ringId: string, epoch: number) {
  peers.forEach((peer, i) =>
    hub.push(peer, {
      type: 'assignment',
      epoch,
      ringId,
      model: STORIES,
      range: RANGES[i]!,
      prev: peers[(i + 1) % 2]!,
      next: peers[(i + 1) % 2]!,
    }),
  );
  await vi.waitFor(
    () => {
      for (const p of peers) expect(contributors.get(p)!.store.getState().phase).toBe('serving');
    },
    { timeout: scaled(30_000) },
  );
}

/** The coordinator's `ring` answer at k = 2: the primary and one validator ring, with their keys. */
function ringAnswer(keys: Map<string, string>, primary: string[], validator: string[], epoch: number) {
  const stages = (peers: string[]) =>
    peers.map((peer, i) => ({ peer, range: RANGES[i]!, key: keys.get(peer)! }));
  return {
    type: 'ring' as const,
    epoch,
    ringId: `stories260K:${epoch}`,
    model: STORIES,
    stages: stages(primary),
    validators: [{ ringId: `stories260K:${epoch}:v1`, epoch, stages: stages(validator) }],
    security: { requested: 2, k: 2 },
  } satisfies ServerMessageBody;
}

/** A fake coordinator that records keys, evidence, work and requests, and answers ring-requests with `current()`. */
function coordinator(hub: FakeSignalingHub, current: () => ServerMessageBody) {
  const keys = new Map<string, string>();
  const requests: ClientMessageOf<'ring-request'>[] = [];
  const evidence: ClientMessageOf<'validation-evidence'>[] = [];
  const work: ClientMessageOf<'validated-work'>[] = [];
  hub.onSend((from, m) => {
    if (m.type === 'validation-key') keys.set(from, m.key);
    else if (m.type === 'validation-evidence') evidence.push(m as ClientMessageOf<'validation-evidence'>);
    else if (m.type === 'validated-work') work.push(m as ClientMessageOf<'validated-work'>);
    else if (m.type === 'ring-request') {
      requests.push(m as ClientMessageOf<'ring-request'>);
      hub.push(from, current());
    }
  });
  return { keys, evidence, work, requests };
}

describe('the chat at security level k = 2 (requester, real rings of contributors)', () => {
  beforeAll(warmUpOrt);

  it('two honest rings agree on every step: golden text, the verification line, proof of the work sent', async () => {
    const hub = createFakeSignalingHub();
    const [a0, a1, b0, b1] = ['a0', 'a1', 'b0', 'b1'].map(pid) as [string, string, string, string];
    const now: { answer?: ServerMessageBody } = {};
    const co = coordinator(hub, () => now.answer!);
    await start(hub, co.keys, [a0, a1, b0, b1]);
    await assignRing(hub, [a0, a1], 'stories260K:1', 1);
    await assignRing(hub, [b0, b1], 'stories260K:1:v1', 1);
    now.answer = ringAnswer(co.keys, [a0, a1], [b0, b1], 1);
    const r = requesterOn(hub, pid('req'));
    const res = await r.ask({ settings: K2, history, signal: signal() });
    expect(res.text + '\n').toBe(golden.text);
    expect(res.stats.verification).toMatchObject({
      k: 2,
      requested: 2,
      ringsAgreeing: 2,
      peersAgreeing: 4,
      deviants: [],
    });
    // One prefill + 59 decode steps, 2 stage comparisons each.
    expect(res.stats.verification!.stepsChecked).toBe(60);
    expect(res.stats.verification!.comparisons).toBe(120);
    expect(co.evidence).toEqual([]);
    await vi.waitFor(() => expect(co.work.reduce((n, m) => n + (m.proof?.length ?? 0), 0)).toBe(60));
    expect(co.work[0]).toMatchObject({
      ringId: 'stories260K:1',
      proofRings: ['stories260K:1', 'stories260K:1:v1'],
    });
    // Its usage: the answer's 60 generated tokens (the text's), on the primary ring.
    expect(hub.sent(pid('req'), 'ring-lap')).toEqual([
      expect.objectContaining({ ringId: 'stories260K:1', generated: { v: 1, tokens: 60 } }),
    ]);
  }, 120_000);

  it('spot-check mode: the validator ring re-runs a sampled fraction of steps; golden text and the line says how many', async () => {
    const hub = createFakeSignalingHub();
    const [a0, a1, b0, b1] = ['a0', 'a1', 'b0', 'b1'].map(pid) as [string, string, string, string];
    const now: { answer?: ServerMessageBody } = {};
    const co = coordinator(hub, () => now.answer!);
    await start(hub, co.keys, [a0, a1, b0, b1]);
    await assignRing(hub, [a0, a1], 'stories260K:1', 1);
    await assignRing(hub, [b0, b1], 'stories260K:1:v1', 1);
    // The coordinator grants spot checks at the ring's rate (0.2); the request asked for at least 0.1.
    now.answer = {
      ...ringAnswer(co.keys, [a0, a1], [b0, b1], 1),
      security: { requested: 2, k: 2, spot: { f: 0.2 } },
    };
    const r = requesterOn(hub, pid('req'), { spotRandom: mulberry32Float(3) });
    const res = await r.ask({ settings: { ...K2, spot: { f: 0.1 } }, history, signal: signal() });
    expect(co.requests.at(-1)!.security).toEqual({ v: 1, k: 2, degrade: false, spot: { f: 0.1 } });
    expect(res.text + '\n').toBe(golden.text);
    const v = res.stats.verification!;
    expect(v).toMatchObject({ k: 2, ringsAgreeing: 2, deviants: [], steps: 60, spot: { f: 0.2 } });
    expect(v.comparedSteps).toBeGreaterThan(0);
    expect(v.comparedSteps).toBeLessThan(60);
    expect(v.comparisons).toBe(2 * v.comparedSteps!);
    expect(verificationLine(v)).toBe(
      `security level 2: spot-checked ${v.comparedSteps} of 60 steps (f = 0.2) on a validator ring`,
    );
    // Every sampled step goes to the coordinator as proof of validated work, with the validator's
    // chunk of token ids; a real registry with the stages' keys credits each of them once.
    await vi.waitFor(() =>
      expect(co.work.reduce((n, m) => n + (m.proof?.length ?? 0), 0)).toBe(v.comparedSteps),
    );
    expect(co.work.flatMap((m) => m.proof!).every((p) => p.spot !== undefined)).toBe(true);
    // A spot-checked answer reports its usage like any other: the text's 60 tokens.
    expect(hub.sent(pid('req'), 'ring-lap')).toEqual([
      expect.objectContaining({ ringId: 'stories260K:1', generated: { v: 1, tokens: 60 } }),
    ]);
    const server = createValidationRegistry();
    for (const p of [a0, a1, b0, b1]) await server.setKey(p, co.keys.get(p)!);
    const rings = [
      { ringId: 'stories260K:1', stages: [a0, a1] },
      { ringId: 'stories260K:1:v1', stages: [b0, b1] },
    ].map((r) => ({ ringId: r.ringId, stages: r.stages.map((peer) => ({ peer, units: 1 })) }));
    let credited = 0;
    for (const m of co.work) credited += (await server.creditWork(rings, m.proof!)).steps;
    expect(credited).toBe(v.comparedSteps);
    for (const p of [a0, a1, b0, b1]) expect(server.standing(p).validatedSteps).toBe(v.comparedSteps);
    co.work.length = 0;
    console.log(`spot answer: ${verificationLine(v)}`);
    // A coordinator that offers spot checks to a request that asked for every step is not followed.
    const full = await r.ask({ settings: K2, history, signal: signal() });
    expect(co.requests.at(-1)!.security).toEqual({ v: 1, k: 2, degrade: false });
    expect(full.stats.verification).toMatchObject({ steps: 60, comparedSteps: 60 });
    expect(full.stats.verification!.spot).toBeUndefined();
  }, 120_000);

  for (const [name, reasons, onPrimary, compared] of [
    ['equivocate', ['equivocation'], true, 0],
    ['consistent', ['output-mismatch', 'wrong-token'], false, 1],
  ] as const) {
    it(`the ${name} tamper on the ${onPrimary ? 'primary' : 'validator'} ring's first stage is located and reported, the answer stays golden${onPrimary ? ' (the validator ring finishes it)' : ', and the next one runs without it'}`, async () => {
      const hub = createFakeSignalingHub();
      const [a0, a1, b0, b1, c0, c1] = ['a0', 'a1', 'b0', 'b1', 'c0', 'c1'].map(pid) as [
        string,
        string,
        string,
        string,
        string,
        string,
      ];
      let answer: ServerMessageBody | undefined;
      const co = coordinator(hub, () => answer!);
      // The primary's or the validator ring's first stage tampers with what it sends.
      const bad = onPrimary ? a0 : b0;
      await start(hub, co.keys, [a0, a1, b0, b1, c0, c1], { peer: bad, name });
      await assignRing(hub, [a0, a1], 'stories260K:1', 1);
      await assignRing(hub, [b0, b1], 'stories260K:1:v1', 1);
      await assignRing(hub, [c0, c1], 'stories260K:2:v1', 2);
      answer = ringAnswer(co.keys, [a0, a1], [b0, b1], 1);
      const req = pid('req');
      const r = requesterOn(hub, req);
      const first = await r.ask({ settings: K2, history, signal: signal() });
      expect(first.text + '\n').toBe(golden.text);
      expect(first.stats.verification).toMatchObject({
        k: 2,
        ringsAgreeing: 1,
        peersAgreeing: 2,
        deviants: [bad],
        steps: 60,
        // An equivocation is located from the deviant ring's own signed records, before any comparison.
        comparedSteps: compared,
        uncheckedFrom: { step: 1, reason: 'deviant' },
      });
      // Honest about what was not checked: one ring ran the 59 steps after the drop.
      expect(verificationLine(first.stats.verification!)).toContain(
        `rings compared on ${compared} of 60 steps (${2 * compared} stage comparisons) · unchecked from step 1 on (the deviant’s ring was dropped): 59 steps ran on one ring`,
      );
      await vi.waitFor(() => expect(co.evidence).toHaveLength(1));
      expect(co.evidence[0]).toMatchObject({
        ringId: onPrimary ? 'stories260K:1' : 'stories260K:1:v1',
        evidence: { peerId: bad, stage: 0, step: 0 },
      });
      expect(reasons).toContain(co.evidence[0]!.evidence.reason);
      // Steps after the drop were checked on one ring only: they prove no work.
      expect(co.work).toEqual([]);

      // The coordinator re-plans without the deviant and pushes the new rings: the next answer uses them.
      if (!onPrimary) {
        // As the real coordinator does: the re-plan gives the kept primary peers the new epoch too
        // (a stage refuses an epoch it was not assigned with RING_STALE_EPOCH).
        await assignRing(hub, [a0, a1], 'stories260K:2', 2);
        answer = ringAnswer(co.keys, [a0, a1], [c0, c1], 2);
        hub.push(req, answer);
        await hub.delivered();
        const second = await r.ask({ settings: K2, history, signal: signal() });
        expect(second.text).toBe(first.text);
        expect(second.stats.peers).not.toContain(bad);
        expect(second.stats.verification).toMatchObject({ ringsAgreeing: 2, deviants: [] });
      }
      expect(co.evidence).toHaveLength(1);
    }, 180_000);
  }
});
