/**
 * Proximity-aware planning: the link matrix (both ends' reports, worse wins, bounded), the planning
 * step with measured links (far links avoided vs a proximity-blind plan, minimum-bandwidth
 * exclusion) and the coordinator taking `link-report`s from introduced peers only.
 */
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import type { LinkInput } from '../../shared/planner/index';
import {
  serverMessageSchema,
  type PeerCapability,
  type ServerMessage,
} from '../../shared/protocol/signaling';
import { loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import { systemClock, type Clock } from '../../signaling-server/src/clock';
import { createCoordinator, type Ring } from '../../signaling-server/src/coordinator';
import { createLinkMatrix } from '../../signaling-server/src/link-matrix';
import { planRings, type PlanningPeer } from '../../signaling-server/src/ring-planning';

const pid = (name: string): string => `p_${name.padEnd(16, '0')}`;
const cap = (memoryBytes: number): PeerCapability => ({
  tflops: 10,
  bandwidthGBps: 100,
  memoryBytes,
  backend: 'wasm',
  mobile: false,
});

let stories: CatalogModel;
/** Memory per peer such that a ring needs all four. */
let quarter: number;
beforeAll(async () => {
  [stories] = (await loadCatalog([])) as [CatalogModel];
  quarter = Math.ceil(stories.totalBytes * 0.35);
});

/** The ring's edges as unordered pairs `a|b` (it closes). */
const edges = (ring: Ring): Set<string> => {
  const ids = ring.stages.map((s) => s.peer);
  return new Set(ids.map((a, i) => [a, ids[(i + 1) % ids.length]!].sort().join('|')));
};
const key = (a: string, b: string) => [a, b].sort().join('|');

describe('link matrix', () => {
  it('combines both ends by taking the worse figure, and counts only links the reporter is part of', () => {
    let now = 0;
    const m = createLinkMatrix({ now: () => now });
    const [a, b, c] = ['a', 'b', 'c'].map(pid) as [string, string, string];
    const any = () => true;
    expect(m.report(a, [{ peer: b, rttMs: 10, mbps: 500 }], any)).toEqual({ accepted: 1, changed: true });
    // b sees it worse: the pair takes b's RTT and the lower bandwidth.
    m.report(b, [{ peer: a, rttMs: 30, mbps: 800 }], any);
    expect(m.links([a, b, c])).toEqual([{ from: a, to: b, rttMs: 30, mbps: 500 }]);
    // A report about itself, or about a peer it has no link to, counts for nothing.
    expect(m.report(c, [{ peer: c, rttMs: 1, mbps: 1 }], any).accepted).toBe(0);
    expect(m.report(c, [{ peer: a, rttMs: 1, mbps: 1 }], (p) => p === b).accepted).toBe(0);
    // A one-end figure is the reporter's; a jitter below the change factor is not a change.
    expect(m.report(c, [{ peer: b, rttMs: 40, mbps: 100 }], any).changed).toBe(true);
    expect(m.report(c, [{ peer: b, rttMs: 41, mbps: 101 }], any).changed).toBe(false);
    expect(m.edges().map((e) => e.reports)).toEqual([2, 1]);
    // A first figure about what the planner already assumes (20 ms, 100 Mbit/s) re-plans nothing.
    expect(m.report(a, [{ peer: c, rttMs: 15, mbps: 120 }], any)).toEqual({ accepted: 1, changed: false });
    // Reports age out; a peer that leaves takes its reports and those about it along.
    now = 10 * 60_000;
    expect(m.links([a, b, c])).toEqual([]);
    m.report(a, [{ peer: b, rttMs: 5, mbps: 5 }], any);
    m.forget(b);
    expect(m.edges()).toEqual([]);
  });

  it('keeps a bounded number of entries per reporter (the oldest goes)', () => {
    const m = createLinkMatrix({ now: () => 0, maxPeersPerReporter: 3 });
    const peers = ['b', 'c', 'd', 'e'].map(pid);
    for (const p of peers) m.report(pid('a'), [{ peer: p, rttMs: 1, mbps: 1 }], () => true);
    expect(m.edges().map((e) => e.b)).toEqual(peers.slice(1));
  });
});

describe('planning with measured links', () => {
  const four = (): PlanningPeer[] =>
    ['a', 'b', 'c', 'd'].map((n) => ({ id: pid(n), capability: cap(quarter), failedModels: new Set() }));
  const plan = (links?: LinkInput[], minLinkMbps?: number) =>
    planRings({
      models: [{ model: stories, lastPlan: null, ring: null }],
      contributors: four(),
      epoch: 0,
      objective: 'throughput',
      links,
      minLinkMbps,
    });

  it('avoids far links that a proximity-blind plan of the same peers uses', () => {
    const blind = plan().outcomes[0]!;
    const blindRing = blind.ring!;
    expect(blindRing.stages).toHaveLength(4);
    // Make two of the blind ring's own edges "far" (80 ms RTT); every other pair is near (2 ms).
    const ids = blindRing.stages.map((s) => s.peer);
    const far = new Set([key(ids[0]!, ids[1]!), key(ids[2]!, ids[3]!)]);
    const links: LinkInput[] = [];
    for (let i = 0; i < 4; i++)
      for (let j = i + 1; j < 4; j++)
        links.push({
          from: ids[i]!,
          to: ids[j]!,
          rttMs: far.has(key(ids[i]!, ids[j]!)) ? 80 : 2,
          mbps: 500,
        });
    const aware = plan(links).outcomes[0]!;
    const used = edges(aware.ring!);
    expect(aware.ring!.stages).toHaveLength(4);
    for (const f of far) expect(used.has(f)).toBe(false);
    expect([...edges(blindRing)].filter((e) => far.has(e))).toHaveLength(2);
    // The blind ring under the true links is slower than what the aware planner predicts.
    expect(aware.plan!.predicted.throughputS).toBeLessThan(0.045);
  });

  it('leaves out a peer whose every measured link is below the minimum bandwidth, saying why', () => {
    const ids = four().map((p) => p.id);
    const slow = ids[3]!;
    const links: LinkInput[] = ids
      .filter((p) => p !== slow)
      .map((p) => ({ from: slow, to: p, rttMs: 5, mbps: 0.5 }));
    const r = plan(links, 10);
    expect(r.outcomes[0]!.ring?.stages.some((s) => s.peer === slow) ?? false).toBe(false);
    expect(r.reasons.get(slow)).toMatch(/below the 10 Mbit\/s minimum/);
    // Without the minimum the same peer is planned (it is needed for memory).
    expect(plan(links).outcomes[0]!.ring!.stages.some((s) => s.peer === slow)).toBe(true);
  });

  it('makes no standby of a peer whose links are below the minimum (it could never be swapped in)', () => {
    // Roomy peers: the ring leaves spares, which back up its stages. The first one has slow links.
    const roomy = ['a', 'b', 'c', 'd', 'e'].map((n) => ({
      id: pid(n),
      capability: cap(stories.totalBytes * 2),
      failedModels: new Set<string>(),
    }));
    const run = (min?: number) =>
      planRings({
        models: [{ model: stories, lastPlan: null, ring: null }],
        contributors: roomy,
        epoch: 0,
        objective: 'throughput',
        links: roomy.flatMap((p, i) =>
          roomy.slice(i + 1).map((q) => ({ from: p.id, to: q.id, rttMs: 5, mbps: i === 0 ? 0.5 : 500 })),
        ),
        minLinkMbps: min,
      });
    const slow = roomy[0]!.id;
    // Without a minimum the slow-linked peer is planned or made a standby like any other.
    const blind = run();
    const placed = (r: ReturnType<typeof run>) =>
      r.standbys.has(slow) || (r.outcomes[0]!.ring?.stages.some((s) => s.peer === slow) ?? false);
    expect(placed(blind)).toBe(true);
    const r = run(10);
    expect(r.standbys.size).toBeGreaterThan(0);
    expect(placed(r)).toBe(false);
    expect(r.reasons.get(slow)).toMatch(/below the 10 Mbit\/s minimum/);
  });
});

describe('the coordinator with link reports', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  const setup = (clock?: Clock) => {
    const inbox = new Map<string, ServerMessage[]>();
    const co = createCoordinator({
      catalog: [stories],
      ...(clock ? { clock } : {}),
      send: (peer, msg) => {
        serverMessageSchema.parse(msg);
        inbox.set(peer, [...(inbox.get(peer) ?? []), msg]);
      },
      debounceMs: 100,
      maxWaitMs: 500,
    });
    co.start();
    const ids = ['a', 'b', 'c', 'd'].map(pid);
    for (const id of ids) {
      co.addPeer(id, ['contributor']);
      co.setCapability(id, cap(quarter));
    }
    co.flush();
    return { co, ids, inbox };
  };

  it('re-plans around far links its ring neighbours measured; strangers’ reports do not count', () => {
    const { co, ids } = setup();
    const ring = co.getRing(stories.descriptor.id)!;
    const order = ring.stages.map((s) => s.peer);
    const [s0, s1, s2, s3] = order as [string, string, string, string];
    // A peer with no link to s0–s1 cannot say anything about it (its report is dropped).
    const outsider = ids.find((p) => p !== s0 && !co.canSignal(p, s0));
    expect(outsider).toBeDefined();
    co.reportLinks(outsider!, [{ peer: s0, rttMs: 500, mbps: 1 }]);
    expect(co.pending).toBe(false);
    expect(co.snapshot().links).toEqual([]);
    // Neighbours measure two of the ring's edges as far (80 ms) and the others as near.
    co.reportLinks(s0, [
      { peer: s1, rttMs: 80, mbps: 200 },
      { peer: s3, rttMs: 2, mbps: 500 },
    ]);
    co.reportLinks(s2, [
      { peer: s3, rttMs: 80, mbps: 200 },
      { peer: s1, rttMs: 2, mbps: 500 },
    ]);
    expect(co.pending).toBe(true);
    co.flush();
    const next = co.getRing(stories.descriptor.id)!;
    expect(next.epoch).toBeGreaterThan(ring.epoch);
    const used = edges(next);
    expect(used.has(key(s0, s1))).toBe(false);
    expect(used.has(key(s2, s3))).toBe(false);
    // The network view carries the measured edges (RTT per pair) for the Network page.
    const snap = co.snapshot();
    expect(snap.links?.find((l) => key(l.a, l.b) === key(s0, s1))?.rttMs).toBe(80);
  });

  it('link measurements re-plan at most once per interval; a change in between is kept and re-plans after it', () => {
    let t = 1_000_000;
    const { co } = setup({ ...systemClock, now: () => t });
    const ring = co.getRing(stories.descriptor.id)!;
    const [s0, s1] = ring.stages.map((s) => s.peer) as [string, string];
    co.reportLinks(s0, [{ peer: s1, rttMs: 80, mbps: 200 }]);
    expect(co.pending).toBe(true);
    co.flush();
    // Jitter a few seconds later between neighbours of the new ring: material by the matrix's bar,
    // but no re-plan yet.
    const [n0, n1] = co.getRing(stories.descriptor.id)!.stages.map((s) => s.peer) as [string, string];
    t += 6_000;
    co.reportLinks(n0, [{ peer: n1, rttMs: 300, mbps: 200 }]);
    expect(co.pending).toBe(false);
    expect(co.snapshot().links!.some((l) => l.rttMs === 300)).toBe(true); // kept for the next re-plan
    // After the interval, the next report (even an unchanged one) re-plans with what was owed.
    t += 120_000;
    co.reportLinks(n0, [{ peer: n1, rttMs: 300, mbps: 200 }]);
    expect(co.pending).toBe(true);
    co.stop();
  });

  it('rate-limits link reports per reporter with a typed error', () => {
    const { co } = setup();
    const ring = co.getRing(stories.descriptor.id)!;
    const [s0, s1] = ring.stages.map((s) => s.peer) as [string, string];
    for (let i = 0; i < 4; i++) co.reportLinks(s0, [{ peer: s1, rttMs: 2, mbps: 500 }]);
    try {
      co.reportLinks(s0, [{ peer: s1, rttMs: 2, mbps: 500 }]);
      expect.unreachable();
    } catch (e) {
      expect(isRingworkError(e, 'PROTOCOL_RATE_LIMITED')).toBe(true);
    }
  });
});
