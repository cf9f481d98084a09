/**
 * Lightweight replicas without a coordinator: `planReplicas` (which C peer serves which lightweight
 * model whole), `planRings` with replicas (epochs, ids, stability) and `pickRing` (least loaded first,
 * sticky).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { PeerCapability } from '../../shared/protocol/signaling';
import { catalogModelFromConfig, loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import type { Ring } from '../../signaling-server/src/coordinator-types';
import { pickRing, planReplicas, servingOf } from '../../signaling-server/src/lightweight-replicas';
import { planRings, type PlanningPeer } from '../../signaling-server/src/ring-planning';

const pid = (name: string): string => `p_${name.padEnd(16, '0')}`;
const cap = (memoryBytes: number, category?: 'A' | 'B' | 'C'): PeerCapability => ({
  tflops: category === 'C' ? 1 : 10,
  bandwidthGBps: 100,
  memoryBytes,
  backend: 'wasm',
  mobile: false,
  ...(category ? { category } : {}),
});
const peer = (name: string, memoryBytes: number, category?: 'A' | 'B' | 'C', failed: string[] = []) =>
  ({ id: pid(name), capability: cap(memoryBytes, category), failedModels: new Set(failed) }) as PlanningPeer;

let stories: CatalogModel;
let light2: CatalogModel;
let sharded: CatalogModel;
beforeAll(async () => {
  [stories] = (await loadCatalog([])) as [CatalogModel];
  // A second lightweight model (stories260K's shape under another id) and a sharded one.
  const cfg = stories.profile;
  expect(cfg.layers.length).toBe(7);
  light2 = { ...stories, descriptor: { ...stories.descriptor, id: 'light2' } };
  sharded = catalogModelFromConfig(
    'synth',
    {
      architecture: 'llama',
      hiddenSize: 64,
      intermediateSize: 172,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 4,
      headDim: 16,
      vocabSize: 512,
      maxPositions: 256,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      ropeLayout: 'half',
      tiedEmbeddings: true,
      attentionBias: false,
      bosTokenId: 1,
      eosTokenIds: [2],
    },
    { url: '/models/synth/' },
  );
});

const model = (m: CatalogModel, replicas: Ring[] = []) => ({
  model: m,
  lastPlan: null,
  ring: null,
  replicas,
});

describe('the catalog', () => {
  it('marks the embedded stories260K lightweight and other models sharded unless registered otherwise', () => {
    expect(servingOf(stories)).toBe('lightweight');
    expect(servingOf(sharded)).toBe('sharded');
    expect(sharded.descriptor.serving).toBe('sharded');
  });
});

describe('planReplicas', () => {
  it('gives each C peer a lightweight model whole, fewest replicas first; others get a reason', () => {
    const cs = [peer('c0', 3e6, 'C'), peer('c1', 3e6, 'C'), peer('c2', 3e6, 'C', ['stories260K'])];
    const tiny = peer('tiny', 1e5, 'C');
    const b = peer('b', 3e6, 'B');
    const r = planReplicas([model(sharded), model(stories), model(light2)], [...cs, tiny, b], new Set());
    expect(r.replicas[0]).toEqual([]);
    expect(r.replicas[1]!.map((x) => x.stages)).toEqual([[{ peer: cs[0]!.id, range: [0, 7] }]]);
    // c1 goes to the model with fewer replicas; c2 failed stories260K and serves light2 too.
    expect(r.replicas[2]!.map((x) => x.stages[0]!.peer)).toEqual([cs[1]!.id, cs[2]!.id]);
    expect([...r.used].sort()).toEqual(cs.map((c) => c.id).sort());
    expect(r.reasons.get(tiny.id)).toMatch(/^category C: serves lightweight models whole; none fits/);
    expect(r.reasons.has(b.id)).toBe(false);
  });

  it('keeps a replica a peer already serves (no reload)', () => {
    const c0 = peer('c0', 3e6, 'C');
    const was: Ring = {
      ringId: 'light2:3~0',
      model: 'light2',
      epoch: 3,
      stages: [{ peer: c0.id, range: [0, 7] }],
    };
    const r = planReplicas([model(stories), model(light2, [was])], [c0], new Set());
    expect(r.replicas[1]![0]).toBe(was);
    expect(r.replicas[0]).toEqual([]);
  });
});

describe('planRings with replicas', () => {
  it('C peers never join the planned ring; replicas get ids at the round’s epoch and keep them', () => {
    const input = {
      models: [model(sharded), model(stories)],
      contributors: [peer('b', 50e6, 'B'), peer('c0', 3e6, 'C'), peer('c1', 3e6, 'C')],
      epoch: 7,
      objective: 'throughput' as const,
    };
    const first = planRings(input);
    expect(first.epoch).toBe(8);
    const [o0, o1] = first.outcomes;
    expect(o0!.ring!.stages.map((s) => s.peer)).toEqual([pid('b')]);
    expect(o1!.ring).toBeNull();
    expect(o1!.noRing).toBeNull();
    expect(o1!.replicas.map((x) => x.ringId)).toEqual(['stories260K:8~0', 'stories260K:8~1']);
    expect(first.standbys.size).toBe(0);
    const again = planRings({
      ...input,
      models: [
        { model: sharded, lastPlan: o0!.lastPlan, ring: o0!.ring, replicas: [] },
        { model: stories, lastPlan: null, ring: null, replicas: o1!.replicas },
      ],
      epoch: 8,
    });
    expect(again.epoch).toBe(8);
    expect(again.outcomes[1]!.replicas).toEqual(o1!.replicas);
    // One replica leaves: a new epoch, the planned ring and the other replica untouched.
    const gone = planRings({
      ...input,
      contributors: input.contributors.slice(0, 2),
      models: [
        { model: sharded, lastPlan: o0!.lastPlan, ring: o0!.ring, replicas: [] },
        { model: stories, lastPlan: null, ring: null, replicas: o1!.replicas },
      ],
      epoch: 8,
    });
    expect(gone.epoch).toBe(9);
    expect(gone.outcomes[0]!.ring).toBe(o0!.ring);
    expect(gone.outcomes[0]!.ring!.ringId).toBe('synth:8');
    expect(gone.outcomes[1]!.replicas).toEqual([o1!.replicas[0]]);
  });
});

describe('pickRing', () => {
  const ring = (id: string): Ring => ({ ringId: id, model: 'm', epoch: 1, stages: [] });
  const rings = [ring('m:1'), ring('m:1~0'), ring('m:1~1')];
  it('keeps the ring a requester was sent while it serves, else the least loaded (first on ties)', () => {
    const loads: Record<string, number> = { 'm:1': 2, 'm:1~0': 1, 'm:1~1': 1 };
    const load = (id: string) => loads[id] ?? 0;
    expect(pickRing(rings, 'ring|m:1', load)).toBe(rings[0]);
    expect(pickRing(rings, null, load)).toBe(rings[1]);
    expect(pickRing(rings, 'ring|m:0', load)).toBe(rings[1]);
    loads['m:1~0'] = 3;
    expect(pickRing(rings, undefined, load)).toBe(rings[2]);
    expect(pickRing([], null, load)).toBeNull();
  });
});
