/**
 * The coordinator's pure parts without a coordinator: `planRings` (inputs → rings, epochs, reasons),
 * `ringAssignments` and the assignment diff (old vs new → messages).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { serverMessageSchema, type PeerCapability } from '../../shared/protocol/signaling';
import { diffAssignments } from '../../signaling-server/src/assignment-diff';
import { loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import { planRings, ringAssignments, type PlanningPeer } from '../../signaling-server/src/ring-planning';

const cap = (memoryBytes: number): PeerCapability => ({
  tflops: 10,
  bandwidthGBps: 100,
  memoryBytes,
  backend: 'wasm',
  mobile: false,
});
/** A wire-valid peer id from a short name. */
const pid = (name: string): string => `p_${name.padEnd(16, '0')}`;
const peer = (name: string, memoryBytes: number): PlanningPeer => ({
  id: pid(name),
  capability: cap(memoryBytes),
  failedModels: new Set(),
});

let stories: CatalogModel;
beforeAll(async () => {
  [stories] = (await loadCatalog([])) as [CatalogModel];
});

describe('planRings', () => {
  it('is deterministic, and keeps the ring object and epoch when nothing changed', () => {
    const contributors = ['a', 'b', 'c'].map((id) => peer(id, 1_000_000));
    const input = {
      models: [{ model: stories, lastPlan: null, ring: null }],
      contributors,
      epoch: 0,
      objective: 'throughput' as const,
    };
    const first = planRings(input);
    expect(planRings(input)).toEqual(first);
    expect(first.epoch).toBe(1);
    const ring = first.outcomes[0]!.ring!;
    expect(ring.ringId).toBe(`${stories.descriptor.id}:1`);
    expect(ring.stages.map((s) => s.range[0])[0]).toBe(0);
    const again = planRings({
      ...input,
      models: [{ model: stories, lastPlan: first.outcomes[0]!.lastPlan, ring }],
      epoch: 1,
    });
    expect(again.epoch).toBe(1);
    expect(again.outcomes[0]!.changed).toBe(false);
    expect(again.outcomes[0]!.ring).toBe(ring);
  });

  it('reports no ring, with the missing bytes, and a reason for every pooled peer', () => {
    const r = planRings({
      models: [{ model: stories, lastPlan: null, ring: null }],
      contributors: [peer('tiny', 1000)],
      epoch: 4,
      objective: 'throughput',
    });
    expect(r.epoch).toBe(4);
    expect(r.outcomes[0]!.ring).toBeNull();
    expect(r.outcomes[0]!.noRing!.missingBytes).toBeGreaterThan(0);
    expect(r.reasons.get(pid('tiny'))).toMatch(/waiting for more peers/);
  });
});

describe('ring assignments and their diff', () => {
  it('closes the ring and sends only what changed', () => {
    const r = planRings({
      models: [{ model: stories, lastPlan: null, ring: null }],
      contributors: ['a', 'b', 'c'].map((id) => peer(id, 1_000_000)),
      epoch: 0,
      objective: 'throughput',
    });
    const next = ringAssignments(r.outcomes.map((o) => o.ring));
    const ids = [...next.keys()];
    expect(ids.length).toBeGreaterThan(1);
    const first = next.get(ids[0]!)!;
    expect(first.kind === 'assigned' && first.prev).toBe(ids[ids.length - 1]);
    const fresh = ids.map((id) => ({ id, assignment: null, sentKey: null }));
    const changes = diffAssignments(fresh, next, () => stories.descriptor);
    expect(changes.map((c) => c.peer)).toEqual(ids);
    for (const c of changes) expect(serverMessageSchema.safeParse(c.message).success).toBe(true);
    const sent = changes.map((c) => ({ id: c.peer, assignment: c.assignment, sentKey: c.key }));
    expect(diffAssignments(sent, next, () => stories.descriptor)).toEqual([]);
  });
});
