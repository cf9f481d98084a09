import { afterEach, describe, expect, it } from 'vitest';
import type { RingworkError } from '../../shared/errors';
import { createNullComputeRunner, nullComputeToken } from '../../shared/runtime/null-compute-runner';
import { enablePerfTrace, perfSummary, resetPerfTrace } from '../../shared/util/perf-trace';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';
import { askRing, buildMemoryRing, stopMemoryRing, type MemoryStage } from '../../tools/bench/memory-ring';
import { stories260KRunner, stories260KTokenizer } from '../helpers/engine';

const tokenizer = stories260KTokenizer();
let stages: MemoryStage[] = [];

afterEach(async () => {
  await stopMemoryRing(stages);
  stages = [];
});

describe('null-compute runner (tooling: the ring without the model)', () => {
  it('answers the position-derived token through a real 3-stage ring, every token a usable one', async () => {
    const hub = createMemoryTransportHub();
    stages = await buildMemoryRing({
      hub,
      makeRunner: () => createNullComputeRunner(stories260KRunner()),
      model: { url: 'stories260K.bin' },
      numLayers: 5,
      splits: [2, 4],
      contextLength: 64,
    });
    enablePerfTrace();
    resetPerfTrace();
    const r = await askRing({ hub, stages, requester: 'req', tokenizer, prompt: 'Once upon', steps: 20 });
    expect(r.stop).toBe('steps');
    const generated = r.tokens.slice(r.promptTokens);
    expect(generated.length).toBe(20 - r.promptTokens + 1);
    // The head at position p answers nullComputeToken(p); never UNK/BOS/EOS.
    generated.forEach((t, i) => {
      expect(t).toBe(nullComputeToken(r.promptTokens - 1 + i, 512));
      expect(t).toBeGreaterThanOrEqual(3);
      expect(t).toBeLessThan(512);
    });
    // The debug timings saw every stage's every step and every decode lap.
    const perf = perfSummary();
    const steps = 1 + (generated.length - 1); // the prefill, then one step per further token
    expect(perf['stage.runnerMs']?.n).toBe(3 * steps);
    expect(perf['stage.arrivedToSentMs']?.n).toBe(3 * steps);
    expect(perf['requester.lapMs']?.n).toBe(generated.length - 1);
    for (const k of ['stage.queueMs', 'stage.runnerOverheadMs', 'requester.hopsMs', 'requester.emitMs'])
      expect(perf[k]!.median, k).toBeGreaterThanOrEqual(0);
  });

  it('passes hidden states on unchanged and keeps the real runner’s position checks', async () => {
    const runner = createNullComputeRunner(stories260KRunner());
    try {
      await runner.load({
        model: { url: 'stories260K.bin' },
        range: [2, 4],
        weightFormat: 'f32',
        contextLength: 8,
        logits: 'last',
        backend: 'wasm',
      });
      const s = await runner.openSession();
      const hidden = Float32Array.from({ length: 2 * 64 }, (_, i) => i / 7);
      const out = await runner.step(s, { hidden, position: 0 });
      expect(out.kind).toBe('hidden');
      expect(out.seqLen).toBe(2);
      expect(Array.from(out.data)).toEqual(Array.from(hidden));
      let err: unknown;
      try {
        await runner.step(s, { hidden, position: 5 });
      } catch (e) {
        err = e;
      }
      expect((err as RingworkError).code).toBe('RUNNER_BAD_INPUT');
      err = undefined;
      try {
        await runner.step(s, { hidden: new Float32Array(7 * 64), position: 2 });
      } catch (e) {
        err = e;
      }
      expect((err as RingworkError).code).toBe('RUNNER_CONTEXT_FULL');
    } finally {
      await runner.dispose();
    }
  });

  it('a rows head answers one row per asked-for position, and a rewind resets the length', async () => {
    const runner = createNullComputeRunner(stories260KRunner());
    try {
      await runner.load({
        model: { url: 'stories260K.bin' },
        range: [4, 7],
        weightFormat: 'f32',
        contextLength: 16,
        logits: 'rows',
        backend: 'wasm',
      });
      const s = await runner.openSession();
      await runner.step(s, { hidden: new Float32Array(6 * 64), position: 0 });
      // Verify positions 3..5 after rewinding from 6: rows for 3, 4 and 5.
      const out = await runner.step(s, {
        hidden: new Float32Array(3 * 64),
        position: 3,
        rewind: true,
        logitsRows: 3,
      });
      expect(out.data.length).toBe(3 * 512);
      for (let r = 0; r < 3; r++) expect(out.data[r * 512 + nullComputeToken(3 + r, 512)]).toBe(50);
      // The session now holds 6 positions again: 6 follows, 7 does not.
      await runner.step(s, { hidden: new Float32Array(64), position: 6 });
      const err = await runner
        .step(s, { hidden: new Float32Array(64), position: 9 })
        .catch((e: RingworkError) => e);
      expect((err as RingworkError).code).toBe('RUNNER_BAD_INPUT');
    } finally {
      await runner.dispose();
    }
  });

  it('spreads tokens over the vocabulary without special ids', () => {
    const seen = new Set<number>();
    for (let p = 0; p < 200; p++) {
      const t = nullComputeToken(p, 32000);
      expect(t).toBeGreaterThanOrEqual(3);
      expect(t).toBeLessThan(32000);
      seen.add(t);
    }
    expect(seen.size).toBe(200);
  });
});
