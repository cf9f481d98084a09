/**
 * The coordinator's pure parts without a coordinator: `planRings` (inputs → rings, epochs, reasons),
 * `ringAssignments` and the assignment diff (old vs new → messages).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { serverMessageSchema, type PeerCapability } from '../../shared/protocol/signaling';
import { assignmentMessage, diffAssignments } from '../../signaling-server/src/assignment-diff';
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

describe('standby replicas', () => {
  const fast = (name: string) => peer(name, 1_000_000);
  // Far too slow to be worth a stage (the throughput planner leaves it out), roomy enough to hold one.
  const slow = (name: string): PlanningPeer => ({
    ...peer(name, 1_000_000),
    capability: { ...cap(1_000_000), tflops: 1e-4 },
  });

  it('spare peers back up live stages (one each, in ring order); a lost stage with a standby is swapped, not re-planned', () => {
    const models = (prev?: ReturnType<typeof planRings>) => [
      {
        model: stories,
        lastPlan: prev?.outcomes[0]!.lastPlan ?? null,
        ring: prev?.outcomes[0]!.ring ?? null,
      },
    ];
    const first = planRings({
      models: models(),
      contributors: [fast('a'), fast('b'), fast('c'), slow('s1'), slow('s2')],
      epoch: 0,
      objective: 'throughput',
    });
    const ring = first.outcomes[0]!.ring!;
    expect(ring.stages.map((s) => s.peer)).not.toContain(pid('s1'));
    expect(ring.stages.length).toBeGreaterThanOrEqual(2);
    // Two spares: the first two stages, in ring order.
    expect([...first.standbys]).toEqual([
      [pid('s1'), { model: stories.descriptor.id, range: ring.stages[0]!.range }],
      [pid('s2'), { model: stories.descriptor.id, range: ring.stages[1]!.range }],
    ]);
    // On the wire: a `standby` message of the protocol.
    const msg = assignmentMessage(
      {
        kind: 'standby',
        epoch: 1,
        ringId: ring.ringId,
        model: stories.descriptor.id,
        range: ring.stages[1]!.range,
      },
      () => stories.descriptor,
    );
    expect(serverMessageSchema.parse(msg)).toMatchObject({ type: 'standby', range: ring.stages[1]!.range });

    // Stage 1's peer is lost: s2 (its standby) takes exactly its place; every other stage stays.
    const lost = ring.stages[1]!.peer;
    const after = planRings({
      models: models(first),
      contributors: [fast('a'), fast('b'), fast('c'), slow('s1'), slow('s2')].filter((p) => p.id !== lost),
      epoch: first.epoch,
      objective: 'throughput',
      standbys: first.standbys,
    });
    const swapped = after.outcomes[0]!.ring!;
    expect(after.epoch).toBe(first.epoch + 1);
    expect(swapped.stages).toEqual(ring.stages.map((s) => (s.peer === lost ? { ...s, peer: pid('s2') } : s)));
    // The swapped-in standby serves; the other keeps backing up stage 0 (same units: no reload).
    expect([...after.standbys]).toEqual([
      [pid('s1'), { model: stories.descriptor.id, range: ring.stages[0]!.range }],
    ]);
    // The plan follows the swap, so the next re-plan's stability anchor is the repaired ring.
    expect(after.outcomes[0]!.lastPlan!.ring.map((s) => s.peer)).toEqual(swapped.stages.map((s) => s.peer));

    // Without a standby for the lost units, the planner re-plans around the loss as before.
    const unbacked = ring.stages[2]?.peer ?? ring.stages[0]!.peer;
    const replanned = planRings({
      models: models(first),
      // (Roomy survivors, so that two can carry the model.)
      contributors: ['a', 'b', 'c'].map((n) => peer(n, 4_000_000)).filter((p) => p.id !== unbacked),
      epoch: first.epoch,
      objective: 'throughput',
      standbys: new Map(),
    });
    expect(replanned.outcomes[0]!.ring!.stages.map((s) => s.peer)).not.toContain(unbacked);
    for (const sb of replanned.standbys.keys())
      expect(replanned.outcomes[0]!.ring!.stages.map((s) => s.peer)).not.toContain(sb);
  });

  it('a spare too small for any stage, or one that failed the model, backs nothing up', () => {
    const failed: PlanningPeer = { ...slow('f'), failedModels: new Set([stories.descriptor.id]) };
    const r = planRings({
      models: [{ model: stories, lastPlan: null, ring: null }],
      contributors: [
        fast('a'),
        fast('b'),
        fast('c'),
        { ...slow('tiny'), capability: { ...cap(1000), tflops: 1e-4 } },
        failed,
      ],
      epoch: 0,
      objective: 'throughput',
    });
    expect(r.outcomes[0]!.ring).not.toBeNull();
    expect(r.standbys.size).toBe(0);
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

describe('a validator ring promoted in place of a broken primary', () => {
  // 2.3 MB each and the latency objective: rings of two stages (as in the validation e2e).
  const contributors = ['a', 'b', 'c', 'd', 'e'].map((id) => peer(id, 2_300_000));
  const first = () =>
    planRings({
      models: [{ model: stories, lastPlan: null, ring: null }],
      contributors,
      epoch: 3,
      objective: 'latency',
    });

  it('takes the primary’s place as it is (ring id, epoch, stages): its stages keep serving, nothing reloads', () => {
    const p = first();
    const primary = p.outcomes[0]!.ring!;
    const free = contributors.filter((c) => !primary.stages.some((s) => s.peer === c.id));
    expect(free.length).toBeGreaterThanOrEqual(primary.stages.length);
    // A validator ring as validator-rings.ts forms it: the primary's cut, disjoint peers.
    const validator = {
      ringId: `${stories.descriptor.id}:3:v1`,
      model: stories.descriptor.id,
      epoch: 3,
      stages: primary.stages.map((s, i) => ({ peer: free[i]!.id, range: s.range })),
    };
    const deviant = primary.stages[0]!.peer;
    const after = planRings({
      models: [{ model: stories, lastPlan: p.outcomes[0]!.lastPlan, ring: primary }],
      contributors: contributors.filter((c) => c.id !== deviant),
      epoch: p.epoch,
      objective: 'latency',
      validatorRings: new Map([[stories.descriptor.id, [validator]]]),
    });
    const ring = after.outcomes[0]!.ring!;
    expect(ring).toBe(validator);
    expect(ring.ringId).toBe(`${stories.descriptor.id}:3:v1`);
    expect(ring.epoch).toBe(3);
    // Its peers' assignments are exactly the ones they serve now: the diff sends them nothing.
    const before = ringAssignments([validator]);
    const now = ringAssignments([ring]);
    for (const s of validator.stages) expect(now.get(s.peer)).toEqual(before.get(s.peer));
    // The stability anchor follows the promoted ring.
    expect(after.outcomes[0]!.lastPlan!.ring.map((s) => s.peer)).toEqual(validator.stages.map((s) => s.peer));
  });

  it('is not used while the primary is whole, nor when the validator ring lost a peer too', () => {
    const p = first();
    const primary = p.outcomes[0]!.ring!;
    const free = contributors.filter((c) => !primary.stages.some((s) => s.peer === c.id));
    const validator = {
      ringId: `${stories.descriptor.id}:3:v1`,
      model: stories.descriptor.id,
      epoch: 3,
      stages: primary.stages.map((s, i) => ({ peer: free[i]!.id, range: s.range })),
    };
    const validatorRings = new Map([[stories.descriptor.id, [validator]]]);
    const whole = planRings({
      models: [{ model: stories, lastPlan: p.outcomes[0]!.lastPlan, ring: primary }],
      contributors,
      epoch: p.epoch,
      objective: 'latency',
      validatorRings,
    });
    expect(whole.outcomes[0]!.ring).toBe(primary);
    const gone = new Set([primary.stages[0]!.peer, validator.stages[0]!.peer]);
    const both = planRings({
      models: [{ model: stories, lastPlan: p.outcomes[0]!.lastPlan, ring: primary }],
      contributors: contributors.filter((c) => !gone.has(c.id)),
      epoch: p.epoch,
      objective: 'latency',
      validatorRings,
    });
    expect(both.outcomes[0]!.ring).not.toBe(validator);
    expect(both.outcomes[0]!.ring?.stages.some((s) => gone.has(s.peer)) ?? false).toBe(false);
  });
});
