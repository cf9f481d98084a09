/**
 * Coordinator unit tests with fake peers and fake timers: rings, assignments, debounced re-planning,
 * the category C policy, ring / no-ring answers, introductions and unreachable-peer confirmation.
 * Every message the coordinator sends is validated against the wire schema.
 */
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import type { ModelConfig } from '../../shared/model/types';
import { planRingwork } from '../../shared/planner/index';
import {
  serverMessageSchema,
  type PeerCapability,
  type ServerMessage,
  type ServerMessageOf,
} from '../../shared/protocol/signaling';
import { catalogModelFromConfig, loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import {
  createCoordinator,
  type Coordinator,
  type CoordinatorOptions,
} from '../../signaling-server/src/coordinator';
import { effectiveCapability, newEvidence } from '../../signaling-server/src/peer-trust';

const DEBOUNCE = 200;

/** A wire-valid peer id from a short name. */
const pid = (name: string): string => `p_${name.padEnd(16, '0')}`;

const cap = (memoryBytes: number, tflops = 10, extra: Partial<PeerCapability> = {}): PeerCapability => ({
  tflops,
  bandwidthGBps: 100,
  memoryBytes,
  backend: 'wasm',
  mobile: false,
  ...extra,
});

/** A ~150 MB model (f32) for infeasibility and multi-model tests. */
const BIG_CONFIG: ModelConfig = {
  architecture: 'llama',
  hiddenSize: 512,
  intermediateSize: 1376,
  numLayers: 8,
  numHeads: 8,
  numKvHeads: 8,
  headDim: 64,
  vocabSize: 8000,
  maxPositions: 1024,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeLayout: 'half',
  tiedEmbeddings: false,
  attentionBias: false,
  bosTokenId: 1,
  eosTokenIds: [2],
};

let stories: CatalogModel;
let big: CatalogModel;

beforeAll(async () => {
  [stories] = (await loadCatalog([])) as [CatalogModel];
  big = catalogModelFromConfig('big', BIG_CONFIG, { url: '/models/big/' });
});

interface Harness {
  co: Coordinator;
  inbox: Map<string, ServerMessage[]>;
  live: Map<string, { connected: boolean; lastSeen: number }>;
  /** Messages of `type` sent to `peer` (all of them, oldest first). */
  got<T extends ServerMessage['type']>(peer: string, type: T): Array<ServerMessageOf<T>>;
  last<T extends ServerMessage['type']>(peer: string, type: T): ServerMessageOf<T> | undefined;
  join(name: string, capability: PeerCapability, roles?: Array<'contributor' | 'requester'>): string;
}

function harness(catalog: CatalogModel[], opts: Partial<CoordinatorOptions> = {}): Harness {
  const inbox = new Map<string, ServerMessage[]>();
  const live = new Map<string, { connected: boolean; lastSeen: number }>();
  const co = createCoordinator({
    catalog,
    send: (peer, msg) => {
      // Everything the coordinator emits must be a valid wire frame.
      serverMessageSchema.parse(msg);
      const list = inbox.get(peer) ?? [];
      list.push(msg);
      inbox.set(peer, list);
    },
    debounceMs: DEBOUNCE,
    maxWaitMs: 1000,
    liveness: (id) => live.get(id),
    staleAfterMs: 10_000,
    ...opts,
  });
  co.start();
  const got = <T extends ServerMessage['type']>(peer: string, type: T) =>
    (inbox.get(peer) ?? []).filter((m): m is ServerMessageOf<T> => m.type === type);
  return {
    co,
    inbox,
    live,
    got,
    last: (peer, type) => got(peer, type).at(-1),
    join(name, capability, roles = ['contributor']) {
      const id = pid(name);
      co.addPeer(id, roles);
      live.set(id, { connected: true, lastSeen: Date.now() });
      if (roles.includes('contributor')) co.setCapability(id, capability);
      return id;
    },
  };
}

/** Checks that the assignments of `peers` form one ring covering [0, units) contiguously. */
function expectContiguousRing(
  h: Harness,
  peers: string[],
  units: number,
): Array<ServerMessageOf<'assignment'>> {
  const as = peers
    .map((p) => h.last(p, 'assignment'))
    .filter((a): a is ServerMessageOf<'assignment'> => a !== undefined);
  expect(as.length).toBeGreaterThan(0);
  const sorted = [...as].sort((a, b) => a.range[0] - b.range[0]);
  expect(sorted[0]!.range[0]).toBe(0);
  expect(sorted.at(-1)!.range[1]).toBe(units);
  for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.range[0]).toBe(sorted[i - 1]!.range[1]);
  for (const a of sorted) expect(a.range[1]).toBeGreaterThan(a.range[0]);
  // One ring, one epoch, and prev/next walk the ring in unit order (closing back to the first stage).
  expect(new Set(sorted.map((a) => a.ringId)).size).toBe(1);
  expect(new Set(sorted.map((a) => a.epoch)).size).toBe(1);
  const ids = sorted.map((a) => peers.find((p) => h.last(p, 'assignment') === a)!);
  const k = sorted.length;
  sorted.forEach((a, i) => {
    expect(a.next).toBe(k > 1 ? ids[(i + 1) % k] : null);
    expect(a.prev).toBe(k > 1 ? ids[(i - 1 + k) % k] : null);
  });
  return sorted;
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('joins and assignments', () => {
  it('a burst of joins → one debounced plan whose assignments cover all units contiguously', () => {
    const h = harness([stories]);
    const peers = ['a', 'b', 'c'].map((n) => h.join(n, cap(1_000_000)));
    vi.advanceTimersByTime(DEBOUNCE - 1);
    expect(h.inbox.size).toBe(0);
    vi.advanceTimersByTime(1);
    expect(h.co.snapshot().plans).toBe(1);
    const ring = expectContiguousRing(h, peers, stories.descriptor.units);
    // 1 MB peers cannot hold the 1.83 MB model in fewer than three contiguous stages.
    expect(ring).toHaveLength(3);
    expect(ring[0]!.model).toEqual(stories.descriptor);
    expect(h.co.epoch).toBe(1);
  });

  it('a peer that holds the whole model serves it alone; extra peers are told why they are idle', () => {
    const h = harness([stories]);
    const fast = h.join('fast', cap(1e9, 15));
    const slow = h.join('slow', cap(1e9, 6));
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.last(fast, 'assignment')).toMatchObject({ range: [0, 7], prev: null, next: null });
    // Spare capacity backs up the live stage (a standby replica of its units).
    expect(h.last(slow, 'standby')).toMatchObject({ range: [0, 7], model: { id: 'stories260K' } });
    expect(h.last(slow, 'assignment')).toBeUndefined();
  });

  it('re-plans at once (no debounce) after a ring stage leaves, and the ring still covers every unit', () => {
    const h = harness([stories]);
    const peers = ['a', 'b', 'c', 'd'].map((n) => h.join(n, cap(1_000_000)));
    vi.advanceTimersByTime(DEBOUNCE);
    const ring = expectContiguousRing(h, peers, 7);
    const gone = peers.find((p) => h.last(p, 'assignment') === ring[1])!;
    const epoch = h.co.epoch;
    h.inbox.clear();
    h.co.removePeer(gone, 'left');
    // Planned on the next turn of the event loop: a ring that lost a stage does not wait 200 ms.
    expect(h.co.pending).toBe(true);
    expect(h.inbox.size).toBe(0);
    vi.advanceTimersByTime(0);
    expect(h.co.epoch).toBe(epoch + 1);
    const rest = peers.filter((p) => p !== gone);
    const next = expectContiguousRing(h, rest, 7);
    expect(next.every((a) => a.epoch === epoch + 1)).toBe(true);
    expect(h.co.getAssignment(gone)).toBeNull();
  });

  it('plans an offline peer out within the debounce, and back in when it resumes', () => {
    const h = harness([stories]);
    const peers = ['a', 'b', 'c', 'd'].map((n) => h.join(n, cap(1_000_000)));
    vi.advanceTimersByTime(DEBOUNCE);
    const member = h.co.getRing('stories260K')!.stages[0]!.peer;
    const epoch = h.co.epoch;
    h.co.setOnline(member, false);
    expect(h.co.canSignal(member, h.co.getRing('stories260K')!.stages[1]!.peer)).toBe(false);
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.co.epoch).toBe(epoch + 1);
    expect(h.co.getRing('stories260K')!.stages.some((s) => s.peer === member)).toBe(false);
    expectContiguousRing(
      h,
      peers.filter((p) => p !== member),
      7,
    );
    h.inbox.delete(member);
    h.co.addPeer(member, ['contributor']);
    vi.advanceTimersByTime(DEBOUNCE);
    expect(
      h.inbox
        .get(member)
        ?.some((m) => m.type === 'assignment' || m.type === 'unassigned' || m.type === 'standby'),
    ).toBe(true);
  });

  it('is stable: a newcomer the ring does not need changes nothing for the ring members', () => {
    const h = harness([stories]);
    const peers = ['a', 'b', 'c'].map((n) => h.join(n, cap(1_000_000)));
    vi.advanceTimersByTime(DEBOUNCE);
    const before = peers.map((p) => h.got(p, 'assignment').length);
    const epoch = h.co.epoch;
    const late = h.join('late', cap(1_000_000, 6));
    vi.advanceTimersByTime(DEBOUNCE);
    expect(peers.map((p) => h.got(p, 'assignment').length)).toEqual(before);
    expect(h.co.epoch).toBe(epoch);
    // Not needed in the ring: it backs up a stage instead (a standby changes nothing for the ring).
    expect(h.last(late, 'standby')).toBeDefined();
    // A peer outside every ring leaving is debounced as before (only a ring's loss is urgent).
    h.co.removePeer(late, 'left');
    vi.advanceTimersByTime(0);
    expect(h.co.pending).toBe(true);
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.co.pending).toBe(false);
  });

  it('never waits longer than maxWait under a steady trickle of joins', () => {
    const h = harness([stories]);
    let joinsBeforePlan = 0;
    // Each join comes before the previous debounce expires: only maxWait (1 s) can force the plan.
    for (let i = 0; i < 12 && h.co.snapshot().plans === 0; i++) {
      h.join(`t${i}`, cap(1e9));
      joinsBeforePlan++;
      vi.advanceTimersByTime(150);
    }
    expect(h.co.snapshot().plans).toBe(1);
    expect(joinsBeforePlan).toBeLessThanOrEqual(7);
  });

  it('takes a model off a peer that reports failing to load it', () => {
    const h = harness([stories]);
    const a = h.join('a', cap(1e9, 15));
    const b = h.join('b', cap(1e9, 6));
    vi.advanceTimersByTime(DEBOUNCE);
    const asg = h.last(a, 'assignment')!;
    h.co.assignmentStatus(a, { epoch: asg.epoch, state: 'failed', message: 'out of memory' });
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.last(b, 'assignment')).toMatchObject({ range: [0, 7] });
    expect(h.last(a, 'unassigned')).toBeDefined();
  });
});

describe('capping claims during a join wave', () => {
  it('a newcomer is capped at once; the re-plan re-caps everyone against the whole fleet', () => {
    const h = harness([stories]);
    // Claims above the class default (10 TFLOPS), so each cap depends on the others' median.
    const claims = [20, 40, 60, 80, 100, 120].map((t) => cap(1_000_000, t));
    const ids = claims.map((c, i) => h.join(`w${i}`, c));
    const byId = () => new Map(h.co.snapshot().peers.map((p) => [p.id, p]));
    // Before any re-plan every newcomer already has an effective capability and a category.
    for (const id of ids) expect(byId().get(id)!.capability).not.toBeNull();
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.co.snapshot().plans).toBe(1);
    const after = byId();
    ids.forEach((id, i) => {
      const others = claims.filter((_, j) => j !== i);
      const expected = effectiveCapability(claims[i]!, newEvidence(), others);
      expect(after.get(id)!.capability).toMatchObject({
        tflops: expected.tflops,
        bandwidthGBps: expected.bandwidthGBps,
      });
    });
    // The top claim is held to the median of the others (60), not taken at its word.
    expect(after.get(ids[5]!)!.capability!.tflops).toBe(60);
    // A later newcomer is capped against the fleet of that plan (no full re-cap on its join).
    const late = h.join('late', cap(1_000_000, 1000));
    expect(byId().get(late)!.capability!.tflops).toBe(
      effectiveCapability(cap(1_000_000, 1000), newEvidence(), claims).tflops,
    );
    expect(byId().get(ids[5]!)!.capability!.tflops).toBe(60);
    vi.advanceTimersByTime(DEBOUNCE);
    // After its re-plan the fleet includes it: the top claim's cap moves to the new median of the others.
    expect(byId().get(ids[5]!)!.capability!.tflops).toBe(
      effectiveCapability(claims[5]!, newEvidence(), [...claims.slice(0, 5), cap(1_000_000, 1000)]).tflops,
    );
  });
});

describe('category C', () => {
  it('C peers never take shards: each one that holds a lightweight model whole serves it alone (a replica)', () => {
    const h = harness([stories, big]);
    const a1 = h.join('a1', cap(100e6, 30));
    const a2 = h.join('a2', cap(100e6, 25));
    const c1 = h.join('c1', cap(3e6, 1));
    const c2 = h.join('c2', cap(3e6, 0.5));
    const c3 = h.join('c3', cap(1e6, 1));
    vi.advanceTimersByTime(DEBOUNCE);
    // The big (sharded) model, planned first, gets the A peers.
    const bigRing = h.co.getRing('big')!;
    expect(bigRing.stages.map((s) => s.peer).sort()).toEqual([a1, a2].sort());
    // stories260K is lightweight and fits a C peer with 3 MB: both serve it whole, one ring each.
    const rings = new Set<string>();
    for (const c of [c1, c2]) {
      const a = h.last(c, 'assignment')!;
      expect(a).toMatchObject({ range: [0, 7], prev: null, next: null });
      expect(a.model).toMatchObject({ id: 'stories260K', serving: 'lightweight' });
      rings.add(a.ringId);
      expect(h.last(c, 'standby')).toBeUndefined();
    }
    expect(rings.size).toBe(2);
    const snap = h.co.snapshot();
    const sm = snap.models.find((m) => m.id === 'stories260K')!;
    expect(sm.serving).toBe('lightweight');
    expect(sm.replicas?.map((r) => r.stages.map((s) => s.peer))).toEqual([[c1], [c2]]);
    expect(snap.models.find((m) => m.id === 'big')!.serving).toBe('sharded');
    // c3 holds no lightweight model whole: it serves nothing and is told why.
    const u3 = h.last(c3, 'unassigned')!;
    expect(u3.lightweightModels).toEqual([]);
    expect(u3.reason).toMatch(/^category C: serves lightweight models whole; none fits/);
    // No C peer anywhere holds a partial range or shares a ring.
    for (const r of snap.rings)
      for (const s of r.stages) if ([c1, c2, c3].includes(s.peer)) expect(r.stages).toHaveLength(1);
  });

  it('a C peer never serves a sharded model, not even one it could hold whole', () => {
    const h = harness([big]);
    const cs = ['c0', 'c1', 'c2'].map((n) => h.join(n, cap(400e6, 1)));
    const r = h.join('req', cap(0), ['requester']);
    h.co.requestRing(r, 'big');
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.co.getRing('big')).toBeNull();
    for (const c of cs) {
      expect(h.got(c, 'assignment')).toEqual([]);
      expect(h.got(c, 'standby')).toEqual([]);
    }
    expect(h.last(r, 'no-ring')?.reason).toMatch(/category C/);
    const contributors = h.co.snapshot().peers.filter((p) => p.roles.includes('contributor'));
    expect(contributors.map((p) => p.category)).toEqual(['C', 'C', 'C']);
    // A B peer joins: the sharded model gets its ring, still without any C peer.
    const b = h.join('b', cap(400e6, 10));
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.co.getRing('big')!.stages.map((s) => s.peer)).toEqual([b]);
  });

  it('a phone (mobile) is category C whatever it measures, and serves a lightweight model whole', () => {
    const h = harness([stories, big]);
    const b = h.join('b', cap(400e6, 10));
    const phone = h.join('phone', cap(400e6, 40, { mobile: true }));
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.co.snapshot().peers.find((p) => p.id === phone)?.category).toBe('C');
    expect(h.co.getRing('big')!.stages.map((s) => s.peer)).toEqual([b]);
    const a = h.last(phone, 'assignment')!;
    expect(a).toMatchObject({ range: [0, 7], prev: null, next: null, model: { id: 'stories260K' } });
  });

  it('requests for a lightweight model are spread over its replicas, least loaded first, and stay put', () => {
    const h = harness([stories]);
    const cs = ['c0', 'c1', 'c2'].map((n) => h.join(n, cap(3e6, 1)));
    vi.advanceTimersByTime(DEBOUNCE);
    const served = (req: string) => h.last(req, 'ring')!.stages.map((s) => s.peer);
    const reqs = ['r0', 'r1', 'r2', 'r3'].map((n) => h.join(n, cap(0), ['requester']));
    for (const r of reqs) h.co.requestRing(r, 'stories260K');
    // One requester per replica, then the fourth on the least loaded (all equal: the first).
    expect(reqs.map(served)).toEqual([[cs[0]], [cs[1]], [cs[2]], [cs[0]]]);
    for (const r of reqs) expect(h.last(r, 'ring')!.stages).toHaveLength(1);
    // A re-plan that changes nothing moves no one.
    h.co.setCapability(cs[1]!, cap(3.5e6, 1));
    vi.advanceTimersByTime(DEBOUNCE);
    for (const r of reqs) expect(h.got(r, 'ring')).toHaveLength(1);
    // A replica goes: its requester moves to a least loaded one (c1, with one requester).
    h.co.removePeer(cs[2]!, 'left');
    vi.advanceTimersByTime(DEBOUNCE);
    expect(served(reqs[2]!)).toEqual([cs[1]]);
    // The others stay where they were (no reconnect), and are introduced only to their own replica.
    expect(h.got(reqs[0]!, 'ring')).toHaveLength(1);
    expect(h.co.canSignal(reqs[0]!, cs[0]!)).toBe(true);
    expect(h.co.canSignal(reqs[0]!, cs[1]!)).toBe(false);
    // The replica is found by its id (validation evidence, stall reports).
    const ringId = h.last(reqs[2]!, 'ring')!.ringId;
    expect(h.co.getRing('stories260K', ringId)?.stages).toEqual([{ peer: cs[1], range: [0, 7] }]);
    expect(h.co.reportStall(reqs[2]!, { ringId, epoch: 0, position: 0, cause: 'deadline' })).toEqual([cs[1]]);
  });

  it('C peers that could only serve a model together are not sharded: no-ring instead', () => {
    const h = harness([stories]);
    // Each holds a few units but not the whole model: the planner's policy leaves them out.
    const cs = ['x', 'y', 'z', 'w'].map((n) => h.join(n, cap(1_000_000, 1)));
    const r = h.join('req', cap(0), ['requester']);
    h.co.requestRing(r, 'stories260K');
    vi.advanceTimersByTime(DEBOUNCE);
    for (const c of cs) expect(h.last(c, 'unassigned')?.lightweightModels).toEqual([]);
    const nr = h.last(r, 'no-ring')!;
    expect(nr.missingBytes).toBeGreaterThan(0);
  });
});

describe('requesters', () => {
  it('get the ring with its stages in order, and the new ring when it changes', () => {
    const h = harness([stories]);
    const peers = ['a', 'b', 'c', 'd'].map((n) => h.join(n, cap(1_000_000)));
    vi.advanceTimersByTime(DEBOUNCE);
    const r = h.join('req', cap(0), ['requester']);
    h.co.requestRing(r, 'stories260K');
    const ring = h.last(r, 'ring')!;
    expect(ring.stages.map((s) => s.range[0])).toEqual(
      [...ring.stages.map((s) => s.range[0])].sort((x, y) => x - y),
    );
    expect(ring.stages[0]!.range[0]).toBe(0);
    expect(ring.stages.at(-1)!.range[1]).toBe(7);
    for (const s of ring.stages) expect(h.last(s.peer, 'assignment')!.range).toEqual(s.range);
    // A stage leaves: the requester is pushed the new ring.
    h.co.removePeer(ring.stages[0]!.peer, 'left');
    vi.advanceTimersByTime(DEBOUNCE);
    const rings = h.got(r, 'ring');
    expect(rings).toHaveLength(2);
    expect(rings[1]!.epoch).toBeGreaterThan(rings[0]!.epoch);
    expect(rings[1]!.stages.some((s) => s.peer === ring.stages[0]!.peer)).toBe(false);
    expect(peers.length).toBe(4);
  });

  it('get no-ring with the planner’s missingBytes when the fleet is too small', () => {
    const h = harness([big]);
    const a = h.join('a', cap(20e6));
    const b = h.join('b', cap(20e6));
    const r = h.join('req', cap(0), ['requester']);
    vi.advanceTimersByTime(DEBOUNCE);
    h.co.requestRing(r, 'big');
    const nr = h.last(r, 'no-ring')!;
    let expected: number | undefined;
    try {
      planRingwork({
        profile: big.profile,
        peers: [a, b].map((id) => ({ id, tflops: 10, bandwidthGBps: 100, memoryBytes: 20e6 })),
        objective: 'throughput',
        contextTokens: big.descriptor.contextLength,
      });
    } catch (e) {
      if (isRingworkError(e, 'PLAN_INFEASIBLE')) expected = e.details.missingBytes as number;
    }
    expect(expected).toBeGreaterThan(0);
    expect(nr.missingBytes).toBe(expected);
    expect(nr.reason).toMatch(/missing/);
    expect(h.last(a, 'unassigned')!.reason).toMatch(/waiting for more peers/);
  });

  it('get no-ring with the whole model size when nobody contributes, then the ring once peers join', () => {
    const h = harness([stories]);
    const r = h.join('req', cap(0), ['requester']);
    h.co.requestRing(r, 'stories260K');
    // It carries what a requester needs to run the model alone when it fits: where, and how big.
    expect(h.last(r, 'no-ring')).toMatchObject({
      model: 'stories260K',
      missingBytes: stories.totalBytes,
      descriptor: stories.descriptor,
      totalBytes: stories.totalBytes,
    });
    h.join('a', cap(1e9));
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.last(r, 'ring')?.stages).toHaveLength(1);
  });

  it('a request during a pending re-plan is answered with the new ring, not the stale one', () => {
    const h = harness([stories]);
    const r = h.join('req', cap(0), ['requester']);
    h.join('a', cap(1e9));
    h.co.requestRing(r, 'stories260K');
    expect(h.got(r, 'no-ring')).toHaveLength(0);
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.got(r, 'ring')).toHaveLength(1);
    expect(h.got(r, 'no-ring')).toHaveLength(0);
  });
});

describe('introductions and unreachable peers', () => {
  it('introduces ring neighbours, and a requester to the first stage and head of its ring only', () => {
    const h = harness([stories]);
    const peers = ['a', 'b', 'c', 'd'].map((n) => h.join(n, cap(1_000_000)));
    const idle = h.join('idle', cap(100_000));
    const r = h.join('req', cap(0), ['requester']);
    const other = h.join('oth', cap(0), ['requester']);
    vi.advanceTimersByTime(DEBOUNCE);
    const ring = h.co.getRing('stories260K')!;
    const k = ring.stages.length;
    expect(k).toBeGreaterThanOrEqual(3);
    for (let i = 0; i < k; i++) {
      const a = ring.stages[i]!.peer;
      const b = ring.stages[(i + 1) % k]!.peer;
      expect(h.co.canSignal(a, b)).toBe(true);
      expect(h.co.canSignal(b, a)).toBe(true);
    }
    for (const s of ring.stages) expect(h.co.canSignal(r, s.peer)).toBe(false);
    h.co.requestRing(r, 'stories260K');
    ring.stages.forEach((s, i) => {
      const talks = i === 0 || i === k - 1;
      expect(h.co.canSignal(r, s.peer)).toBe(talks);
      expect(h.co.canSignal(s.peer, r)).toBe(talks);
      expect(h.co.canSignal(other, s.peer)).toBe(false);
      expect(h.co.canSignal(idle, s.peer)).toBe(false);
    });
    expect(h.co.canSignal(r, other)).toBe(false);
    expect(h.co.canSignal(r, r)).toBe(false);
    expect(peers).toHaveLength(4);
  });

  it('peer-unreachable: a peer with a socket is probed, one without is evicted; strangers refused', () => {
    const h = harness([stories]);
    const peers = ['a', 'b', 'c'].map((n) => h.join(n, cap(1_000_000)));
    const stranger = h.join('s', cap(0), ['requester']);
    vi.advanceTimersByTime(DEBOUNCE);
    const [x, y, z] = peers as [string, string, string];
    // Every stage of a three-stage ring neighbours the other two.
    expect(h.co.reportUnreachable(x, z, 'ice failed')).toBe('probe');
    expect(h.co.reportUnreachable(y, z, 'ice failed')).toBe('probe');
    expect(h.co.reportUnreachable(x, z, 'ice failed again')).toBe('probe');
    // A stale heartbeat is probed too (the server decides by its own ping); no socket confirms a report.
    h.live.set(y, { connected: true, lastSeen: Date.now() - 60_000 });
    expect(h.co.reportUnreachable(z, y, 'datachannel closed')).toBe('probe');
    h.live.set(y, { connected: false, lastSeen: Date.now() - 60_000 });
    expect(h.co.reportUnreachable(z, y, 'datachannel closed')).toBe('evict');
    expect(() => h.co.reportUnreachable(stranger, x, 'lies')).toThrowError(
      expect.objectContaining({ code: 'PROTOCOL_NOT_ALLOWED' }) as Error,
    );
    expect(() => h.co.reportUnreachable(x, pid('nobody'), '?')).toThrowError(
      expect.objectContaining({ code: 'PROTOCOL_UNKNOWN_PEER' }) as Error,
    );
  });

  it('rate-limits peer-unreachable reports per reporter', () => {
    const h = harness([stories], { reportBurst: 2, reportRefillMs: 10_000 });
    const [x, , z] = ['a', 'b', 'c'].map((n) => h.join(n, cap(1_000_000))) as [string, string, string];
    vi.advanceTimersByTime(DEBOUNCE);
    expect(h.co.reportUnreachable(x, z, 'one')).toBe('probe');
    expect(h.co.reportUnreachable(x, z, 'two')).toBe('probe');
    expect(() => h.co.reportUnreachable(x, z, 'three')).toThrowError(
      expect.objectContaining({ code: 'PROTOCOL_RATE_LIMITED' }) as Error,
    );
    vi.advanceTimersByTime(10_000);
    h.live.set(z, { connected: true, lastSeen: Date.now() });
    expect(h.co.reportUnreachable(x, z, 'four')).toBe('probe');
  });

  it('resync re-sends the current assignment and subscribed rings', () => {
    const h = harness([stories]);
    const a = h.join('a', cap(1e9), ['contributor', 'requester']);
    vi.advanceTimersByTime(DEBOUNCE);
    h.co.requestRing(a, 'stories260K');
    h.inbox.clear();
    h.co.resync(a);
    expect(h.got(a, 'assignment')).toHaveLength(1);
    expect(h.got(a, 'ring')).toHaveLength(1);
  });

  it('speed figures: planned single request (1/latency) apart from pipelined capacity; observed from ring-laps of the current ring', () => {
    const h = harness([stories]);
    ['a', 'b', 'c', 'd'].map((n) => h.join(n, cap(1_000_000, 10)));
    vi.advanceTimersByTime(DEBOUNCE);
    const r = h.join('req', cap(0), ['requester']);
    h.co.requestRing(r, 'stories260K');
    const ring = h.last(r, 'ring')!;
    const model = () => h.co.snapshot().models.find((m) => m.id === 'stories260K')!;
    const planned = model();
    expect(planned.predictedTokensPerSecond).toBeGreaterThan(0);
    expect(planned.pipelinedTokensPerSecond!).toBeGreaterThanOrEqual(planned.predictedTokensPerSecond!);
    expect(planned.observedTokensPerSecond).toBeNull();
    // A warm-up-sized lap says nothing; real ones count, as the median of the last few.
    h.co.reportLap(r, { ringId: ring.ringId, msPerToken: 10, tokens: 4 });
    expect(model().observedTokensPerSecond).toBeNull();
    vi.advanceTimersByTime(5_000);
    h.co.reportLap(r, { ringId: ring.ringId, msPerToken: 100, tokens: 59 });
    expect(model().observedTokensPerSecond).toBeCloseTo(10, 6);
    vi.advanceTimersByTime(5_000);
    h.co.reportLap(r, { ringId: ring.ringId, msPerToken: 50, tokens: 59 });
    vi.advanceTimersByTime(5_000);
    h.co.reportLap(r, { ringId: ring.ringId, msPerToken: 60, tokens: 59 });
    expect(model().observedTokensPerSecond).toBeCloseTo(1000 / 60, 6);
    // A new ring starts without figures of the old one.
    h.co.removePeer(ring.stages[0]!.peer, 'left');
    vi.advanceTimersByTime(DEBOUNCE);
    expect(model().ring?.ringId).not.toBe(ring.ringId);
    expect(model().observedTokensPerSecond).toBeNull();
  });

  it('stop() cancels a pending re-plan', () => {
    const h = harness([stories]);
    h.join('a', cap(1e9));
    h.co.stop();
    vi.advanceTimersByTime(DEBOUNCE * 10);
    expect(h.inbox.size).toBe(0);
    h.co.stop();
  });
});
