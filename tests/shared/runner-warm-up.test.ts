/**
 * The runner's engine warm-up after its first load (`OrtShardRunnerDeps.warmUpMs`, what a
 * contributor page's worker sets) and the per-step timing parts (`StepOutput.phases`), on a real
 * in-process runner (onnxruntime-web wasm, stories260K): warming up runs throwaway steps that must
 * leave no trace in what the runner later computes.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openLlama2cModel } from '../../shared/model/llama2c';
import { createOrtShardRunner, type OrtModule } from '../../shared/runtime/ort-shard-runner';
import type { LoadRequest, ShardRunner, StepInput } from '../../shared/runtime/shard-runner';
import type { UnitRange } from '../../shared/graph/units';
import { nodeOrt } from '../../signaling-server/src/model/open-node-model';
import { stories260KOpener } from '../helpers/engine';
import { goldenHidden, loadGolden } from '../helpers/golden';

const golden = loadGolden();
const DIM = 64;

const request = (range: UnitRange): LoadRequest => ({
  model: { url: 'stories260K.bin' },
  range,
  weightFormat: 'f32',
  contextLength: 64,
  logits: 'last',
  backend: 'wasm',
});

/** A stories260K runner whose ORT sessions count their runs. */
function countingRunner(warm: { warmUpMs?: number; idleWarmUpMs?: number; warmUpSteps?: number }) {
  const ort = nodeOrt();
  const counter = { runs: 0 };
  const counting: OrtModule = {
    ...ort,
    InferenceSession: {
      create: async (...args: Parameters<typeof ort.InferenceSession.create>) => {
        const s = await ort.InferenceSession.create(...args);
        const run = s.run.bind(s);
        s.run = ((...a: Parameters<typeof s.run>) => {
          counter.runs++;
          return run(...a);
        }) as typeof s.run;
        return s;
      },
    } as unknown as OrtModule['InferenceSession'],
  };
  const opener = stories260KOpener();
  const runner = createOrtShardRunner({
    ort: counting,
    openModel: () => openLlama2cModel(opener, 'stories260K.bin'),
    probeWebGpu: async () => ({ ok: false, reason: 'node' }),
    ...warm,
  });
  return { runner, counter };
}

/** The golden sequence's logits: 5 prompt positions prefilled, then one position per step. */
async function decode(runner: ShardRunner): Promise<Float32Array[]> {
  const seq = golden.sequenceTokens.slice(0, 12);
  const steps: StepInput[] = [
    { tokens: Int32Array.from(seq.slice(0, 5)), position: 0 },
    ...seq.slice(5).map((t, i) => ({ tokens: Int32Array.of(t), position: 5 + i })),
  ];
  const s = await runner.openSession();
  const out: Float32Array[] = [];
  for (const input of steps) out.push((await runner.step(s, input)).data.slice());
  await runner.closeSession(s);
  return out;
}

const runners: ShardRunner[] = [];
afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.dispose()));
});

describe('engine warm-up after the first load', () => {
  it('runs its steps on a throwaway session, once per runner; later logits are bitwise those of a cold runner', async () => {
    const warm = countingRunner({ warmUpMs: 60_000, warmUpSteps: 7 });
    const cold = countingRunner({});
    runners.push(warm.runner, cold.runner);

    const loaded = await warm.runner.load(request([0, 7]));
    expect(warm.counter.runs).toBe(7);
    expect(loaded.phasesMs?.warmUp).toBeGreaterThan(0);
    expect((await warm.runner.info()).sessions).toBe(0);
    const coldLoaded = await cold.runner.load(request([0, 7]));
    expect(cold.counter.runs).toBe(0);
    expect(coldLoaded.phasesMs?.warmUp).toBeUndefined();

    const got = await decode(warm.runner);
    const want = await decode(cold.runner);
    expect(got.length).toBe(want.length);
    got.forEach((l, i) =>
      expect(Buffer.from(l.buffer).equals(Buffer.from(want[i]!.buffer)), `step ${i}`).toBe(true),
    );

    // A later load (a failover's re-plan) keeps the optimized code: no second warm-up.
    const runsBefore = warm.counter.runs;
    const again = await warm.runner.load(request([0, 7]));
    expect(again.phasesMs?.warmUp).toBeUndefined();
    expect(warm.counter.runs).toBe(runsBefore);
  });

  it('walks past the end of the context (a rewind, then a prompt-sized chunk again) and leaves no trace', async () => {
    // contextLength 64: a 16-position chunk, 48 single steps, then the next lap from position 0.
    const warm = countingRunner({ warmUpMs: 60_000, warmUpSteps: 70 });
    const cold = countingRunner({});
    runners.push(warm.runner, cold.runner);
    await warm.runner.load(request([0, 7]));
    // A failed step would end the warm-up early (its errors are the real steps' to report).
    expect(warm.counter.runs).toBe(70);
    await cold.runner.load(request([0, 7]));
    const got = await decode(warm.runner);
    const want = await decode(cold.runner);
    got.forEach((l, i) =>
      expect(Buffer.from(l.buffer).equals(Buffer.from(want[i]!.buffer)), `step ${i}`).toBe(true),
    );
  });

  it('goes on warming up in the background after the load, until the first real step; results unchanged', async () => {
    const warm = countingRunner({ warmUpMs: 1, idleWarmUpMs: 60_000 });
    const cold = countingRunner({});
    runners.push(warm.runner, cold.runner);
    await warm.runner.load(request([0, 7]));
    await cold.runner.load(request([0, 7]));
    // The load returned after its 1 ms; the steps go on without it.
    await vi.waitFor(() => expect(warm.counter.runs).toBeGreaterThanOrEqual(5), { timeout: 30_000 });
    const got = await decode(warm.runner);
    const stoppedAt = warm.counter.runs;
    // Stopped for good: another answer runs exactly its own 8 steps.
    await decode(warm.runner);
    expect(warm.counter.runs - stoppedAt).toBe(8);
    expect((await warm.runner.info()).sessions).toBe(0);
    const want = await decode(cold.runner);
    got.forEach((l, i) =>
      expect(Buffer.from(l.buffer).equals(Buffer.from(want[i]!.buffer)), `step ${i}`).toBe(true),
    );
  });

  it('a middle shard warms up on zero hidden states and still turns golden block-0 states into block-2 ones', async () => {
    const { runner, counter } = countingRunner({ warmUpMs: 60_000, warmUpSteps: 3 });
    runners.push(runner);
    const loaded = await runner.load(request([2, 4]));
    expect(counter.runs).toBe(3);
    expect(loaded.phasesMs?.warmUp).toBeGreaterThan(0);
    const s = await runner.openSession();
    const hidden = new Float32Array(5 * DIM);
    for (let p = 0; p < 5; p++) hidden.set(goldenHidden(golden, p, 1), p * DIM);
    const out = await runner.step(s, { hidden, position: 0 });
    let worst = 0;
    for (let p = 0; p < 5; p++) {
      const want = goldenHidden(golden, p, 3);
      for (let i = 0; i < DIM; i++) worst = Math.max(worst, Math.abs(out.data[p * DIM + i]! - want[i]!));
    }
    expect(worst).toBeLessThan(1e-4);
  });

  it('an aborted load stops warming up and leaves the shard loaded', async () => {
    const { runner, counter } = countingRunner({ warmUpMs: 60_000, warmUpSteps: 50 });
    runners.push(runner);
    const ac = new AbortController();
    const loading = runner.load(request([0, 7]), {
      signal: ac.signal,
      onProgress: (p) => {
        if (p.phase === 'session') queueMicrotask(() => ac.abort());
      },
    });
    await loading;
    expect(counter.runs).toBeLessThan(50);
    expect((await runner.info()).loaded).toBe(true);
    expect((await decode(runner)).length).toBe(8);
  });
});

describe('step timing parts', () => {
  it('a step reports its queue wait, input building and output read-back next to the run', async () => {
    const { runner } = countingRunner({});
    runners.push(runner);
    await runner.load(request([0, 7]));
    const s = await runner.openSession();
    // Two steps of two sessions submitted together: the second waits for the first's run.
    const s2 = await runner.openSession();
    const [a, b] = await Promise.all([
      runner.step(s, { tokens: Int32Array.of(1), position: 0 }),
      runner.step(s2, { tokens: Int32Array.of(1), position: 0 }),
    ]);
    for (const o of [a, b]) {
      expect(o.phases).toBeDefined();
      for (const k of ['queueMs', 'feedMs', 'copyOutMs'] as const)
        expect(o.phases![k]).toBeGreaterThanOrEqual(0);
    }
    expect(b.phases!.queueMs).toBeGreaterThanOrEqual(a.ms);
  });
});
