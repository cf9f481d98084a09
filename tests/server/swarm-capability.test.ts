/**
 * What swarm pages declare (tools/swarm/swarm-capability.ts) and what the planner then predicts for
 * them under the server's default per-stage overhead: memory forces exactly N stages, and a token's
 * planned time is N × (overhead + hop) plus a compute share that a tiny model barely adds.
 */
import { describe, expect, it } from 'vitest';
import { isRingworkError } from '../../shared/errors.js';
import { openModelLocation } from '../../shared/model/open-model.js';
import { profileModel, type ModelProfile } from '../../shared/model/profile.js';
import { DEFAULT_LINK, hopSeconds, planRingwork, type PlanInput } from '../../shared/planner/index.js';
import { DEFAULT_STAGE_OVERHEAD_MS } from '../../signaling-server/src/config.js';
import { nodeOpenerFor } from '../../signaling-server/src/model/open-node-model.js';
import { minBottleneck, SWARM_TFLOPS, swarmMemoryBytes } from '../../tools/swarm/swarm-capability.js';
import { runs } from '../helpers/tier.js';

/** Every way to cut `units` into at most k contiguous stages, smallest largest stage. */
function bruteBottleneck(units: number[], k: number): number {
  const sum = (a: number, b: number) => units.slice(a, b).reduce((x, y) => x + y, 0);
  const go = (start: number, left: number): number => {
    if (start === units.length) return 0;
    if (left === 1) return sum(start, units.length);
    let best = Infinity;
    for (let end = start + 1; end <= units.length; end++)
      best = Math.min(best, Math.max(sum(start, end), go(end, left - 1)));
    return best;
  };
  return go(0, k);
}

const CONTEXT = 512;

async function stories260K(): Promise<ModelProfile> {
  const opened = await openModelLocation({ url: 'public/models/stories260K/stories260K.bin' }, nodeOpenerFor);
  return profileModel('stories260K', opened.source.config, { format: 'f32', contextTokens: CONTEXT });
}

function swarmInput(profile: ModelProfile, n: number, peers = n): PlanInput {
  const memoryBytes = swarmMemoryBytes(
    profile.layers.map((l) => l.weightBytes + l.kvBytesPerToken * CONTEXT),
    n,
  );
  return {
    profile,
    peers: Array.from({ length: peers }, (_, i) => ({
      id: `p${i}`,
      tflops: SWARM_TFLOPS,
      bandwidthGBps: 100,
      memoryBytes,
    })),
    objective: 'throughput',
    contextTokens: CONTEXT,
    // As the swarm's server runs: every peer may take a shard (--category-c-below-tflops 0).
    options: {
      stageOverheadMs: DEFAULT_STAGE_OVERHEAD_MS,
      categoryThresholds: { aAboveTflops: 20, cBelowTflops: 0 },
    },
  };
}

describe('swarm capability', () => {
  it('finds the exact linear-partition bottleneck', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 1000;
    for (let t = 0; t < runs(200); t++) {
      const units = Array.from({ length: 1 + (t % 7) }, () => Math.floor(rnd()));
      for (let k = 1; k <= 4; k++) expect(minBottleneck(units, k)).toBe(bruteBottleneck(units, k));
    }
  });

  it('refuses a peer count that memory cannot force', () => {
    // The first unit holds most of the model: 2 and 3 stages need the same room for it.
    let err: unknown;
    try {
      swarmMemoryBytes([100, 10, 10], 3);
    } catch (e) {
      err = e;
    }
    expect(isRingworkError(err, 'INVALID_ARGUMENT')).toBe(true);
  });

  it('makes the planner use exactly N peers, and plans N × (overhead + hop) per token', async () => {
    const profile = await stories260K();
    for (const n of [1, 2, 3, 4]) {
      const plan = planRingwork(swarmInput(profile, n));
      expect(plan.ring).toHaveLength(n);
      if (n > 1) {
        let err: unknown;
        try {
          planRingwork(swarmInput(profile, n, n - 1));
        } catch (e) {
          err = e;
        }
        expect(isRingworkError(err, 'PLAN_INFEASIBLE')).toBe(true);
      }
      const compute = plan.ring.reduce((a, s) => a + s.computeS, 0);
      const hops =
        n === 1
          ? 0
          : plan.ring.reduce(
              (a, s) => a + hopSeconds(DEFAULT_LINK, profile.layers[s.layers[1] - 1]!.outBytesPerToken),
              0,
            );
      const overhead = (n * DEFAULT_STAGE_OVERHEAD_MS) / 1000;
      expect(plan.predicted.latencyS).toBeCloseTo(overhead + hops + compute, 9);
      // At a realistic speed stories260K's FLOPs are a sliver of a token's time: the stages are.
      expect(compute).toBeLessThan(0.01 * plan.predicted.latencyS);
      expect(compute).toBeGreaterThan(0);
    }
  });
});
