/** Unit tests of the ring planner: cost model, exo baseline, policy, errors, bounds, re-planning. */
import { describe, expect, it } from 'vitest';
import { isRingworkError, type ErrorCode, type RingworkError } from '../../shared/errors.js';
import type { ModelProfile } from '../../shared/model/profile.js';
import { profileModel } from '../../shared/model/profile.js';
import type { ModelConfig } from '../../shared/model/types.js';
import {
  categorize,
  evaluatePlan,
  lowerBound,
  peersFileSchema,
  planExo,
  planRingwork,
  planSchema,
  pyRound5,
  replan,
  type PeerProfileInput,
  type PlanInput,
} from '../../shared/planner/index.js';

function expectError(f: () => unknown, code: ErrorCode, ...mentions: string[]): RingworkError {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(isRingworkError(err), `expected ${code}, got ${String(err)}`).toBe(true);
  const re = err as RingworkError;
  expect(re.code, re.message).toBe(code);
  for (const m of mentions) expect(re.message).toContain(m);
  return re;
}

/** A uniform toy model: `n` units of `w` weight bytes, `f` FLOPs, no KV, `out` bytes handed on. */
function toy(n: number, w = 1e9, f = 2e9, out = 8192, kv = 0): ModelProfile {
  return {
    name: 'toy',
    layers: Array.from({ length: n }, (_, i) => ({
      name: `u${i}`,
      flopsPerToken: f,
      weightBytes: w,
      kvBytesPerToken: kv,
      outBytesPerToken: out,
    })),
  };
}

const peer = (
  id: string,
  tflops: number,
  bw: number,
  gb: number,
  category?: 'A' | 'B' | 'C',
): PeerProfileInput => ({
  id,
  tflops,
  bandwidthGBps: bw,
  memoryBytes: gb * 1e9,
  ...(category ? { category } : {}),
});

describe('cost model', () => {
  it('evaluates roofline stages, hops with default and given links, and the closing hop', () => {
    const profile = toy(4, 1e9, 4e12, 1e6);
    const input: PlanInput = {
      profile,
      peers: [peer('a', 10, 500, 10), peer('b', 100, 100, 10)],
      links: [{ from: 'a', to: 'b', rttMs: 10, mbps: 800 }],
      objective: 'latency',
    };
    const e = evaluatePlan(input, [
      { peer: 'a', layers: [0, 3] },
      { peer: 'b', layers: [3, 4] },
    ]);
    // a: 3 units × max(4e12/10e12 = 0.4 s, 1e9/500e9 = 0.002 s) = 1.2 s; b: max(0.04, 0.01) = 0.04 s.
    expect(e.stages[0]!.computeS).toBeCloseTo(1.2, 12);
    expect(e.stages[1]!.computeS).toBeCloseTo(0.04, 12);
    // a → b: 5 ms + 1e6 B at 100 MB/s = 15 ms; b → a uses the same link (reverse lookup).
    expect(e.stages[0]!.hopS).toBeCloseTo(0.015, 12);
    expect(e.stages[1]!.hopS).toBeCloseTo(0.015, 12);
    expect(e.latencyS).toBeCloseTo(1.2 + 0.04 + 0.03, 12);
    expect(e.throughputS).toBeCloseTo(1.215, 12);
    expect(e.memoryOk).toBe(true);
    // Without links: 10 ms + 1e6 B at 12.5 MB/s = 90 ms.
    const d = evaluatePlan({ ...input, links: undefined }, [
      { peer: 'a', layers: [0, 2] },
      { peer: 'b', layers: [2, 4] },
    ]);
    expect(d.stages[0]!.hopS).toBeCloseTo(0.09, 12);
    // One peer: no hop at all.
    const one = evaluatePlan(input, [{ peer: 'b', layers: [0, 4] }]);
    expect(one.stages[0]!.hopS).toBe(0);
    expect(one.latencyS).toBeCloseTo(0.16, 12);
  });

  it('charges a fixed per-stage overhead with each hop (a one-peer ring pays it once), and plans with it', () => {
    const profile = toy(4, 1e9, 4e12, 1000);
    const peers = [peer('a', 100, 500, 10), peer('b', 100, 500, 10)];
    const base: PlanInput = { profile, peers, objective: 'latency' };
    const withOverhead: PlanInput = { ...base, options: { stageOverheadMs: 30 } };
    const two = [
      { peer: 'a', layers: [0, 2] as [number, number] },
      { peer: 'b', layers: [2, 4] as [number, number] },
    ];
    const plain = evaluatePlan(base, two);
    const e = evaluatePlan(withOverhead, two);
    // Each of the 2 stages: + 30 ms on its outgoing hop; compute unchanged.
    expect(e.stages.map((s) => s.computeS)).toEqual(plain.stages.map((s) => s.computeS));
    expect(e.stages[0]!.hopS).toBeCloseTo(plain.stages[0]!.hopS + 0.03, 12);
    expect(e.latencyS).toBeCloseTo(plain.latencyS + 2 * 0.03, 12);
    expect(e.throughputS).toBeCloseTo(plain.throughputS + 0.03, 12);
    const one = evaluatePlan(withOverhead, [{ peer: 'a', layers: [0, 4] }]);
    expect(one.stages[0]!.hopS).toBeCloseTo(0.03, 12);
    expect(one.latencyS).toBeCloseTo(4 * 0.04 + 0.03, 12);
    // The planner's single-request estimate is 1 / that latency, and its search sees the overhead:
    // two equal peers split a model only while a stage's share of compute outweighs a hop + overhead.
    const fast = planRingwork({ ...withOverhead, objective: 'throughput' });
    expect(fast.predicted.latencyS).toBeCloseTo(
      evaluatePlan(
        withOverhead,
        fast.ring.map((r) => ({ peer: r.peer, layers: r.layers })),
      ).latencyS,
      12,
    );
    // A fast peer that holds 3 of the 4 units: worth a hop at no overhead, not at 2 s per stage.
    const mixed: PlanInput = {
      profile,
      peers: [peer('a', 10, 500, 10), peer('b', 1000, 500, 3)],
      objective: 'latency',
    };
    const split = planRingwork(mixed);
    expect(split.ring.map((r) => r.peer).sort()).toEqual(['a', 'b']);
    const heavy = planRingwork({ ...mixed, options: { stageOverheadMs: 2000 } });
    expect(heavy.ring.map((r) => r.peer)).toEqual(['a']);
    expect(heavy.predicted.latencyS).toBeCloseTo(4 * 0.4 + 2, 9);
  });

  it('reserves KV memory for the context and flags overflows', () => {
    const input: PlanInput = {
      profile: toy(2, 1e9, 0, 0, 1e5),
      peers: [peer('a', 10, 100, 2.1)],
      objective: 'latency',
    };
    expect(evaluatePlan({ ...input, contextTokens: 500 }, [{ peer: 'a', layers: [0, 2] }]).memoryOk).toBe(
      true,
    );
    const over = evaluatePlan({ ...input, contextTokens: 2048 }, [{ peer: 'a', layers: [0, 2] }]);
    expect(over.memoryOk).toBe(false);
    expect(over.overflows[0]!.overBytes).toBeCloseTo(2e9 + 2 * 1e5 * 2048 - 2.1e9, 0);
  });

  it('rejects rings that do not cover the units exactly once', () => {
    const input: PlanInput = {
      profile: toy(4),
      peers: [peer('a', 10, 100, 9), peer('b', 10, 100, 9)],
      objective: 'latency',
    };
    expectError(
      () => evaluatePlan(input, [{ peer: 'a', layers: [0, 3] }]),
      'PLAN_BAD_INPUT',
      'covers units [0, 3) of 4',
    );
    expectError(
      () =>
        evaluatePlan(input, [
          { peer: 'a', layers: [0, 2] },
          { peer: 'b', layers: [1, 4] },
        ]),
      'PLAN_BAD_INPUT',
      'must start at 2',
    );
    expectError(
      () => evaluatePlan(input, [{ peer: 'zz', layers: [0, 4] }]),
      'PLAN_BAD_INPUT',
      '"zz" is not in the fleet',
    );
  });
});

describe('categories and eligibility', () => {
  it('derives A/B/C from TFLOPS with configurable thresholds, and honours a declared category', () => {
    expect(categorize({ tflops: 82.6 })).toBe('A');
    expect(categorize({ tflops: 20 })).toBe('B');
    expect(categorize({ tflops: 5 })).toBe('B');
    expect(categorize({ tflops: 4.6 })).toBe('C');
    expect(categorize({ tflops: 82.6, category: 'C' })).toBe('C');
    expect(categorize({ tflops: 12 }, { aAboveTflops: 10, cBelowTflops: 2 })).toBe('A');
  });

  it('keeps C peers out of shards, but lets them run a model they hold whole', () => {
    const peers = [peer('gpu', 80, 1000, 6), peer('gpu2', 30, 900, 6), peer('phone', 4.6, 50, 4)];
    const big = planRingwork({ profile: toy(10), peers, objective: 'throughput' });
    expect(big.ring.map((s) => s.peer)).not.toContain('phone');
    expect(big.excluded.find((e) => e.peer === 'phone')!.reason).toMatch(
      /^category C: available for lightweight whole models/,
    );
    // A 3 GB model fits whole on the phone: it is a candidate like any other.
    const small = planRingwork({ profile: toy(3), peers: [peer('phone', 4.6, 50, 4)], objective: 'latency' });
    expect(small.ring).toEqual([expect.objectContaining({ peer: 'phone', layers: [0, 3] })]);
  });

  it('explains peers that cannot hold any unit', () => {
    const plan = planRingwork({
      profile: toy(4),
      peers: [peer('a', 10, 100, 5), peer('tiny', 50, 1000, 0.5)],
      objective: 'latency',
    });
    expect(plan.excluded).toEqual([
      { peer: 'tiny', reason: expect.stringMatching(/^cannot hold any single unit/) },
    ]);
  });
});

describe('input validation', () => {
  const profile = toy(4);
  it('rejects unknown fields, negative numbers, empty fleets, duplicates and dangling links', () => {
    const base = { profile, objective: 'latency' as const };
    expectError(
      () => planRingwork({ ...base, peers: [{ ...peer('a', 10, 100, 9), gpu: 'x' } as PeerProfileInput] }),
      'PLAN_BAD_INPUT',
      'peers[0]',
      'gpu',
    );
    expectError(
      () => planRingwork({ ...base, peers: [peer('a', -1, 100, 9)] }),
      'PLAN_BAD_INPUT',
      'peers[0].tflops',
    );
    expectError(() => planRingwork({ ...base, peers: [] }), 'PLAN_BAD_INPUT', 'the fleet is empty');
    expectError(
      () => planRingwork({ ...base, peers: [peer('a', 1, 1, 9), peer('a', 2, 2, 9)] }),
      'PLAN_BAD_INPUT',
      'duplicate peer id "a"',
    );
    expectError(
      () =>
        planRingwork({
          ...base,
          peers: [peer('a', 1, 1, 9)],
          links: [{ from: 'a', to: 'q', rttMs: 1, mbps: 1 }],
        }),
      'PLAN_BAD_INPUT',
      'links[0].to: unknown peer "q"',
    );
    expectError(
      () =>
        planRingwork({
          ...base,
          profile: { ...profile, layers: [{ ...profile.layers[0]!, weightBytes: -5 }] },
          peers: [peer('a', 1, 1, 9)],
        }),
      'PLAN_BAD_INPUT',
      'profile.layers[0].weightBytes',
    );
  });

  it('parses the documented peers file', () => {
    const f = peersFileSchema.parse({
      peers: [{ id: 'a', tflops: 10.4, bandwidthGBps: 400, memoryBytes: 8000000000, category: 'B' }],
      links: [],
    });
    expect(f.peers[0]!.id).toBe('a');
  });
});

describe('infeasibility', () => {
  it('says how much memory is missing', () => {
    const err = expectError(
      () =>
        planRingwork({
          profile: toy(10),
          peers: [peer('a', 30, 900, 4), peer('b', 30, 900, 3)],
          objective: 'latency',
        }),
      'PLAN_INFEASIBLE',
      'needs 10.00 GB',
      'offer 7.00 GB',
      '3.00 GB of memory is missing',
    );
    expect(err.details.missingBytes).toBe(3e9);
    expect(err.details.requiredBytes).toBe(10e9);
  });

  it('names a unit that fits on no peer', () => {
    const profile = toy(3);
    profile.layers[1]!.weightBytes = 5e9;
    expectError(
      () =>
        planRingwork({
          profile,
          peers: [peer('a', 30, 900, 4), peer('b', 30, 900, 4)],
          objective: 'throughput',
        }),
      'PLAN_INFEASIBLE',
      '"u1"',
    );
  });
});

describe('exo baseline', () => {
  // Expected shards from exo's own code (RingMemoryWeightedPartitioningStrategy +
  // map_partitions_to_shards) run under CPython, converted to half-open ranges.
  const cases: { nodes: [string, number][]; L: number; shards: [string, number, number][] }[] = [
    {
      nodes: [
        ['a', 16e9],
        ['b', 8e9],
        ['c', 8e9],
      ],
      L: 10,
      shards: [
        ['a', 0, 5],
        ['c', 5, 7],
        ['b', 7, 10],
      ],
    },
    {
      nodes: [
        ['a', 24e9],
        ['b', 32e9],
        ['c', 8e9],
        ['d', 4e9],
      ],
      L: 18,
      shards: [
        ['b', 0, 8],
        ['a', 8, 14],
        ['c', 14, 16],
        ['d', 16, 18],
      ],
    },
    {
      nodes: [
        ['x', 7e9],
        ['y', 3e9],
        ['z', 1e6],
        ['w', 5e9],
      ],
      L: 34,
      shards: [
        ['x', 0, 15],
        ['w', 15, 27],
        ['y', 27, 33],
        ['z', 33, 34],
      ],
    },
    {
      nodes: [
        ['p0', 8e9],
        ['p1', 4e9],
        ['p2', 16e9],
        ['p3', 24e9],
        ['p4', 8e9],
        ['p5', 24e9],
        ['p6', 32e9],
        ['p7', 4e9],
        ['p8', 32e9],
      ],
      L: 82,
      shards: [
        ['p8', 0, 17],
        ['p6', 17, 34],
        ['p5', 34, 47],
        ['p3', 47, 60],
        ['p2', 60, 69],
        ['p4', 69, 73],
        ['p0', 73, 77],
        ['p7', 77, 79],
        ['p1', 79, 82],
      ],
    },
    {
      nodes: [
        ['big', 1e12],
        ['tiny', 1e3],
      ],
      L: 7,
      shards: [['big', 0, 7]],
    },
  ];
  for (const c of cases) {
    it(`reproduces exo on ${c.nodes.length} peers × ${c.L} units`, () => {
      const plan = planExo({
        profile: toy(c.L, 1, 1, 1),
        peers: c.nodes.map(([id, mem]) => ({ id, tflops: 10, bandwidthGBps: 100, memoryBytes: mem })),
        objective: 'throughput',
      });
      expect(plan.ring.map((s) => [s.peer, ...s.layers])).toEqual(c.shards);
      expect(plan.algorithm).toBe('exo');
    });
  }

  it('drops empty ranges and says why', () => {
    const plan = planExo({
      profile: toy(7, 1, 1, 1),
      peers: [
        { id: 'big', tflops: 10, bandwidthGBps: 100, memoryBytes: 1e12 },
        { id: 'tiny', tflops: 10, bandwidthGBps: 100, memoryBytes: 1e3 },
      ],
      objective: 'latency',
    });
    expect(plan.excluded).toEqual([{ peer: 'tiny', reason: expect.stringContaining('empty layer range') }]);
  });

  it("rounds like Python's round(x, 5)", () => {
    // [x, round(x, 5)] pairs produced by CPython.
    const pairs: [number, number][] = [
      [0.015625, 0.01562],
      [0.125, 0.125],
      [0.1 + 0.2, 0.3],
      [1 / 3, 0.33333],
      [2 / 3, 0.66667],
      [1.5e-5, 2e-5],
      [2.5e-5, 3e-5],
      [0.999995, 0.99999],
      [0.4999950000000001, 0.5],
      [0.123455, 0.12345],
      [0.123445, 0.12344],
      [0.6229016948897019, 0.6229],
      [0.7398985747399307, 0.7399],
      [0.029005228283614737, 0.02901],
    ];
    for (const [x, want] of pairs) expect(pyRound5(x), String(x)).toBe(want);
  });
});

describe('Ringwork vs exo on a compute-heterogeneous fleet', () => {
  const config: ModelConfig = {
    architecture: 'llama',
    hiddenSize: 4096,
    intermediateSize: 14336,
    numLayers: 32,
    numHeads: 32,
    numKvHeads: 8,
    headDim: 128,
    vocabSize: 128256,
    maxPositions: 8192,
    rmsNormEps: 1e-5,
    ropeTheta: 500000,
    ropeLayout: 'half',
    tiedEmbeddings: false,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
  };
  const profile = profileModel('8b', config, { format: 'q4', contextTokens: 2048 });
  // Nobody holds the 8B model whole: it must be sharded.
  const peers = [
    peer('4090', 82.6, 1008, 4),
    peer('m1max', 10.4, 400, 6),
    peer('3060', 12.7, 360, 3),
    peer('780m', 8.6, 120, 4),
  ];
  it('never loses to exo and reports the optimum', () => {
    for (const objective of ['latency', 'throughput'] as const) {
      const input: PlanInput = {
        profile,
        peers,
        objective,
        options: { defaultLink: { rttMs: 1, mbps: 1000 } },
      };
      const rw = planRingwork(input);
      const exo = planExo(input);
      expect(rw.optimal).toBe(true);
      expect(rw.objective.value).toBeLessThanOrEqual(exo.objective.value);
      expect(planSchema.parse(JSON.parse(JSON.stringify(rw)))).toBeTruthy();
    }
  });
});

describe('lower bound and heuristic at scale', () => {
  it('plans 300 peers × 100 units within memory, above its lower bound', () => {
    const profile = toy(100, 3e8, 6e8, 16384, 8192);
    const devices = [
      [82.6, 1008, 24],
      [10.4, 400, 32],
      [12.7, 360, 12],
      [2.6, 68, 8],
      [4.6, 50, 4],
    ] as const;
    const peers = Array.from({ length: 300 }, (_, i) => {
      const d = devices[(i * 7) % devices.length]!;
      return peer(
        `p${String(i).padStart(3, '0')}`,
        d[0] * (1 + (i % 13) / 100),
        d[1] * (1 + (i % 7) / 100),
        d[2],
      );
    });
    for (const objective of ['latency', 'throughput'] as const) {
      const input: PlanInput = { profile, peers, objective };
      const plan = planRingwork(input);
      expect(plan.algorithm).toBe('ringwork-heuristic');
      expect(evaluatePlan(input, plan.ring).memoryOk).toBe(true);
      const lb = lowerBound(input);
      expect(plan.objective.value).toBeGreaterThanOrEqual(
        (objective === 'latency' ? lb.latency : lb.throughput) * (1 - 1e-12),
      );
      expect(plan.objective.value / plan.lowerBound).toBeLessThan(1.2);
      expect(plan.excluded.length + plan.ring.length).toBe(300);
    }
  });
});

describe('stable re-planning', () => {
  const profile = toy(24, 5e8, 1e9, 8192);
  const base = [peer('a', 30, 900, 6), peer('b', 25, 800, 6), peer('c', 28, 850, 6)];

  it('keeps the ring when a peer joins and the fresh optimum is within 5%', () => {
    const first = planRingwork({ profile, peers: base, objective: 'throughput' });
    const joined = [...base, peer('d', 29, 870, 6)];
    const r = replan(first, profile, joined, 'throughput');
    expect(r.plan.objective.value).toBeLessThanOrEqual(r.fresh.objective.value * 1.05 * (1 + 1e-12));
    expect(r.layersMoved).toBeLessThanOrEqual(r.freshLayersMoved);
    expect(r.plan.layersMoved).toBe(r.layersMoved);
    expect(evaluatePlan({ profile, peers: joined, objective: 'throughput' }, r.plan.ring).memoryOk).toBe(
      true,
    );
  });

  it('moves only what it must when a peer leaves', () => {
    for (const objective of ['latency', 'throughput'] as const) {
      const peers = [...base, peer('d', 29, 870, 6)];
      const first = planRingwork({ profile, peers, objective });
      const gone = first.ring[1]!.peer;
      const left = peers.filter((p) => p.id !== gone);
      const r = replan(first, profile, { peers: left }, objective);
      const lost = first.ring[1]!.layers[1] - first.ring[1]!.layers[0];
      expect(r.layersMoved).toBeGreaterThanOrEqual(lost);
      expect(r.layersMoved).toBeLessThanOrEqual(r.freshLayersMoved);
      expect(r.plan.ring.map((s) => s.peer)).not.toContain(gone);
      expect(r.plan.objective.value).toBeLessThanOrEqual(r.fresh.objective.value * 1.05 * (1 + 1e-12));
    }
  });

  it('reports zero moves when nothing changed', () => {
    const first = planRingwork({ profile, peers: base, objective: 'latency' });
    const r = replan(first, profile, base, 'latency');
    expect(r.layersMoved).toBe(0);
    expect(r.plan.ring.map((s) => [s.peer, ...s.layers])).toEqual(
      first.ring.map((s) => [s.peer, ...s.layers]),
    );
  });

  it('rejects a malformed previous plan', () => {
    expectError(
      () => replan({ ring: [] } as never, profile, base, 'latency'),
      'PLAN_BAD_INPUT',
      'previous plan',
    );
  });
});
