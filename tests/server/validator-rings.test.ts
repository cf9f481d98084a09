/**
 * Security level k planned by the coordinator (signaling-server/src/validator-rings.ts): a requester
 * asking for k = 2 or 3 gets k − 1 validator rings with the primary's unit boundaries and peers
 * disjoint from it (and, where the rule is on, on other networks); their peers get real
 * assignments; the requester is introduced to each ring's first stage and head; too few peers is a
 * `no-ring` naming what is missing, or a lower level when the request allows it; a flagged peer is
 * in no later ring; on a lightweight model other whole-model replicas are the validator rings. The coordinator runs in memory with fake timers; every message it sends is
 * parsed with the wire schema.
 */
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  serverMessageSchema,
  type PeerCapability,
  type ServerMessage,
  type ServerMessageOf,
} from '../../shared/protocol/signaling';
import { loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import {
  createCoordinator,
  type CoordinatorOptions,
  type Ring,
} from '../../signaling-server/src/coordinator';
import { planValidatorRings, requestedLevel } from '../../signaling-server/src/validator-rings';

const DEBOUNCE = 200;
const pid = (name: string): string => `p_${name.padEnd(16, '0')}`;
const cap = (memoryBytes: number): PeerCapability => ({
  tflops: 10,
  bandwidthGBps: 100,
  memoryBytes,
  backend: 'wasm',
  mobile: false,
});

let stories: CatalogModel;
beforeAll(async () => {
  [stories] = (await loadCatalog([])) as [CatalogModel];
});
beforeEach(() => void vi.useFakeTimers());
afterEach(() => void vi.useRealTimers());

function harness(opts: Partial<CoordinatorOptions> = {}) {
  const inbox = new Map<string, ServerMessage[]>();
  const co = createCoordinator({
    catalog: [stories],
    send: (peer, msg) => {
      serverMessageSchema.parse(msg);
      inbox.set(peer, [...(inbox.get(peer) ?? []), msg]);
    },
    debounceMs: DEBOUNCE,
    maxWaitMs: 1000,
    ...opts,
  });
  co.start();
  const got = <T extends ServerMessage['type']>(peer: string, type: T) =>
    (inbox.get(peer) ?? []).filter((m): m is ServerMessageOf<T> => m.type === type);
  const join = (name: string, roles: Array<'contributor' | 'requester'> = ['contributor']) => {
    const id = pid(name);
    co.addPeer(id, roles);
    // 1 MB peers cannot hold the 1.83 MB model in fewer than three stages.
    if (roles.includes('contributor')) co.setCapability(id, cap(1_000_000));
    return id;
  };
  return {
    co,
    inbox,
    got,
    last: <T extends ServerMessage['type']>(p: string, t: T) => got(p, t).at(-1),
    join,
  };
}

/** Three peers form the primary ring first (so it stays put), then `more` join. */
function withPrimary(more: number, opts: Partial<CoordinatorOptions> = {}) {
  const h = harness(opts);
  const first = ['a', 'b', 'c'].map((n) => h.join(n));
  vi.advanceTimersByTime(DEBOUNCE);
  const rest = Array.from({ length: more }, (_, i) => h.join(`x${i}`));
  vi.advanceTimersByTime(DEBOUNCE);
  const primary = h.co.getRing('stories260K')!;
  expect(primary.stages.map((s) => s.peer).sort()).toEqual(first.sort());
  return { ...h, primary, rest };
}

const ranges = (r: { stages: { range: number[] }[] }) => r.stages.map((s) => s.range.join('-'));

describe('validator rings planned by the coordinator', () => {
  it('k = 2: one validator ring, same unit boundaries, disjoint peers, real assignments, introductions', () => {
    const h = withPrimary(3);
    const req = h.join('req', ['requester']);
    h.co.requestRing(req, 'stories260K', { v: 1, k: 2 });
    // The level rose above what is planned: the re-plan plans the validator ring and answers.
    expect(h.co.pending).toBe(true);
    vi.advanceTimersByTime(DEBOUNCE);
    const ring = h.last(req, 'ring')!;
    expect(ring.security).toEqual({ requested: 2, k: 2 });
    expect(ring.validators).toHaveLength(1);
    const v = ring.validators![0]!;
    expect(ranges(v)).toEqual(ranges(ring));
    const primaryPeers = new Set(ring.stages.map((s) => s.peer));
    expect(v.stages.every((s) => !primaryPeers.has(s.peer))).toBe(true);
    expect(new Set(v.stages.map((s) => s.peer)).size).toBe(v.stages.length);
    // Each validator peer is told to load and serve its units, in a ring of its own.
    v.stages.forEach((s, i) => {
      const a = h.last(s.peer, 'assignment')!;
      expect(a).toMatchObject({ ringId: v.ringId, epoch: v.epoch, range: s.range });
      expect(a.next).toBe(v.stages[(i + 1) % v.stages.length]!.peer);
    });
    expect(h.co.getValidatorRings('stories260K').map((r) => r.ringId)).toEqual([v.ringId]);
    // The requester may signal the validator ring's first stage and head, not its middle.
    expect(h.co.canSignal(req, v.stages[0]!.peer)).toBe(true);
    expect(h.co.canSignal(req, v.stages.at(-1)!.peer)).toBe(true);
    if (v.stages.length > 2) expect(h.co.canSignal(req, v.stages[1]!.peer)).toBe(false);
    // A k = 1 requester of the same model is sent the primary ring alone.
    const plain = h.join('plain', ['requester']);
    h.co.requestRing(plain, 'stories260K');
    expect(h.last(plain, 'ring')!.validators).toBeUndefined();
    expect(h.co.canSignal(plain, v.stages[0]!.peer)).toBe(false);
  });

  it('too few peers: a no-ring naming the missing units, or k = 1 when the request may degrade', () => {
    const h = withPrimary(2);
    const req = h.join('req', ['requester']);
    h.co.requestRing(req, 'stories260K', { v: 1, k: 2 });
    vi.advanceTimersByTime(DEBOUNCE);
    const no = h.last(req, 'no-ring')!;
    expect(no.security).toMatchObject({ requested: 2, k: 0 });
    expect(no.reason).toMatch(
      /security level 2 needs 1 validator ring.*missing: units \[\d+, \d+\) of validator ring 1/,
    );
    expect(h.last(req, 'ring')).toBeUndefined();
    const soft = h.join('soft', ['requester']);
    h.co.requestRing(soft, 'stories260K', { v: 1, k: 2, degrade: true });
    vi.advanceTimersByTime(DEBOUNCE);
    const ring = h.last(soft, 'ring')!;
    expect(ring.security).toMatchObject({ requested: 2, k: 1 });
    expect(ring.security!.missing).toMatch(/missing/);
    expect(ring.validators).toBeUndefined();
    // One more peer completes the validator ring: both requesters are pushed the level they asked.
    h.join('x9');
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.last(req, 'ring')!.security).toEqual({ requested: 2, k: 2 });
    expect(h.last(soft, 'ring')!.validators).toHaveLength(1);
  });

  it('k = 3: two validator rings, pairwise disjoint; a per-model minimum raises a plain request', () => {
    const h = withPrimary(6, { security: { modelMinimum: { stories260K: 3 } } });
    const req = h.join('req', ['requester']);
    h.co.requestRing(req, 'stories260K');
    vi.advanceTimersByTime(DEBOUNCE);
    const ring = h.last(req, 'ring')!;
    expect(ring.security).toEqual({ requested: 3, k: 3 });
    expect(ring.validators).toHaveLength(2);
    const all = [ring, ...ring.validators!].flatMap((r) => r.stages.map((s) => s.peer));
    expect(new Set(all).size).toBe(all.length);
    for (const v of ring.validators!) expect(ranges(v)).toEqual(ranges(ring));
  });

  it('a flagged peer is in no later ring, primary or validator', () => {
    const h = withPrimary(4);
    const req = h.join('req', ['requester']);
    h.co.requestRing(req, 'stories260K', { v: 1, k: 2 });
    vi.advanceTimersByTime(DEBOUNCE);
    const deviant = h.co.getValidatorRings('stories260K')[0]!.stages[0]!.peer;
    // What a proven deviation leaves behind (validation-registry.ts, tested there): a flag that
    // planning reads through isExcluded. The next re-plan (a join) leaves it out of every ring.
    const excluded = vi.spyOn(h.co.validation, 'isExcluded').mockImplementation((p) => p === deviant);
    h.join('x8');
    vi.advanceTimersByTime(DEBOUNCE);
    const rings: Ring[] = [h.co.getRing('stories260K')!, ...h.co.getValidatorRings('stories260K')];
    expect(rings).toHaveLength(2);
    expect(rings.flatMap((r) => r.stages.map((s) => s.peer))).not.toContain(deviant);
    excluded.mockRestore();
  });
});

describe('lightweight models: replicas validate each other', () => {
  // Category C peers that hold stories260K whole serve it as one-peer replicas (no planned ring).
  const phones = (h: ReturnType<typeof harness>, names: string[]) =>
    names.map((n) => {
      const id = pid(n);
      h.co.addPeer(id, ['contributor']);
      h.co.setCapability(id, { ...cap(4_000_000), tflops: 1, category: 'C' });
      return id;
    });

  it('k = 2 and 3 on replicas: other replicas are the validator rings, disjoint, introduced; too few is refused or degraded', () => {
    const h = harness();
    const ids = phones(h, ['r1', 'r2']);
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.co.getRing('stories260K')!.stages).toHaveLength(1);
    const req = h.join('req', ['requester']);
    h.co.requestRing(req, 'stories260K', { v: 1, k: 2 });
    vi.advanceTimersByTime(DEBOUNCE);
    const ring = h.last(req, 'ring')!;
    expect(ring.security).toEqual({ requested: 2, k: 2 });
    expect(ring.validators).toHaveLength(1);
    const v = ring.validators![0]!;
    expect(ranges(v)).toEqual(ranges(ring));
    expect(ring.stages[0]!.peer).not.toBe(v.stages[0]!.peer);
    expect([ring.stages[0]!.peer, v.stages[0]!.peer].sort()).toEqual([...ids].sort());
    // The requester is introduced to both replicas (a work proof may name both rings).
    expect(h.co.canSignal(req, v.stages[0]!.peer)).toBe(true);
    expect(h.co.getRing('stories260K', v.ringId)?.ringId).toBe(v.ringId);

    // Two replicas cannot give k = 3: refused with what is missing, never served silently at k = 1.
    const strict = h.join('strict', ['requester']);
    h.co.requestRing(strict, 'stories260K', { v: 1, k: 3 });
    vi.advanceTimersByTime(DEBOUNCE);
    const no = h.last(strict, 'no-ring')!;
    expect(no.security).toMatchObject({ requested: 3, k: 0 });
    expect(no.reason).toMatch(/security level 3 needs 3 replicas/);
    expect(h.last(strict, 'ring')).toBeUndefined();
    const soft = h.join('soft', ['requester']);
    h.co.requestRing(soft, 'stories260K', { v: 1, k: 3, degrade: true });
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.last(soft, 'ring')!.security).toMatchObject({ requested: 3, k: 2 });
    // A third phone completes k = 3 for the strict requester: three distinct replicas.
    phones(h, ['r3']);
    vi.advanceTimersByTime(DEBOUNCE);
    const full = h.last(strict, 'ring')!;
    expect(full.security).toEqual({ requested: 3, k: 3 });
    const all = [full, ...full.validators!].map((r) => r.stages[0]!.peer);
    expect(new Set(all).size).toBe(3);
  });

  it('distinct networks: a replica on the primary replica’s network is not a validator', () => {
    const h = harness({ security: { networkOf: (p) => (p === pid('r3') ? 'net-b' : 'net-a') } });
    phones(h, ['r1', 'r2', 'r3']);
    vi.advanceTimersByTime(DEBOUNCE);
    const req = h.join('req', ['requester']);
    h.co.requestRing(req, 'stories260K', { v: 1, k: 2 });
    vi.advanceTimersByTime(DEBOUNCE);
    const ring = h.last(req, 'ring')!;
    const nets = [ring, ...ring.validators!].map((r) => (r.stages[0]!.peer === pid('r3') ? 'b' : 'a'));
    expect(nets.sort()).toEqual(['a', 'b']);
  });
});

describe('planValidatorRings (pure)', () => {
  const peer = (id: string, memoryBytes = 1e6) => ({
    id,
    capability: cap(memoryBytes),
    failedModels: new Set<string>(),
  });
  const primary: Ring = {
    ringId: 'm:1',
    model: 'm',
    epoch: 1,
    stages: [
      { peer: 'a', range: [0, 3] },
      { peer: 'b', range: [3, 7] },
    ],
  };
  const base = { model: 'm', primary, count: 1, previous: [], need: () => 5e5, totalBytes: 1e6 };

  it("distinct networks: a peer on the primary ring's network is not taken; off, it is", () => {
    const net: Record<string, string> = { a: 'n1', b: 'n2', c: 'n1', d: 'n3', e: 'n4' };
    const pool = [peer('c'), peer('d'), peer('e')];
    const on = planValidatorRings({ ...base, pool, networkOf: (p) => net[p] });
    expect(on.rings[0]!.stages.map((s) => s.peer).sort()).toEqual(['d', 'e']);
    const onlyShared = planValidatorRings({
      ...base,
      pool: [peer('c'), peer('d')],
      networkOf: (p) => net[p],
    });
    expect(onlyShared.rings).toHaveLength(0);
    expect(onlyShared.missing[0]).toMatchObject({ ring: 1, why: 'network' });
    const off = planValidatorRings({ ...base, pool: [peer('c'), peer('d')] });
    expect(off.rings[0]!.stages.map((s) => s.peer).sort()).toEqual(['c', 'd']);
  });

  it('keeps a validator ring that still fits (no reload), and names memory when nobody holds a stage', () => {
    const first = planValidatorRings({ ...base, pool: [peer('c'), peer('d'), peer('e')] });
    const again = planValidatorRings({
      ...base,
      pool: [peer('e'), peer('d'), peer('c')],
      previous: first.rings,
    });
    expect(again.changed).toBe(false);
    expect(again.rings[0]).toBe(first.rings[0]);
    const small = planValidatorRings({ ...base, pool: [peer('c', 1e5), peer('d')] });
    expect(small.missing).toEqual([{ ring: 1, range: [3, 7], bytes: 5e5, why: 'memory' }]);
  });

  it('levels: the request, else the default, never below the model minimum, at most 3', () => {
    const policy = { defaultLevel: 2, modelMinimum: { m: 2 } };
    expect(requestedLevel(policy, 'other', undefined)).toBe(2);
    expect(requestedLevel(policy, 'm', { v: 1, k: 1 })).toBe(2);
    expect(requestedLevel({ defaultLevel: 1, modelMinimum: {} }, 'm', { v: 1, k: 3 })).toBe(3);
  });
});
