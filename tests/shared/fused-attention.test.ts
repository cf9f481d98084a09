/**
 * The fused attention graph (`attention: 'fused'`: one GroupQueryAttention node per block) against
 * the default `ops` graph, on real in-process runners (onnxruntime-web wasm): the same logits and
 * greedy tokens through a chunked prefill, decode steps, a rewind (speculative decoding's
 * truncate) and a split at a block boundary; models whose head size the kernel refuses get `ops`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingworkError } from '../../shared/errors';
import type { AttentionMode } from '../../shared/graph/compile-shard';
import type { UnitRange } from '../../shared/graph/units';
import type { ShardRunner, StepInput } from '../../shared/runtime/shard-runner';
import { argmax } from '../../shared/validation/stage';
import { createNodeShardRunner } from '../../signaling-server/src/model/open-node-model';
import { synthesizeModel } from '../../tools/model/synth';
import { repoPath } from '../helpers/golden';

// test-tiny: 3 blocks, dim 64, 4 query heads over 2 KV heads of size 16 (GQA), untied head.
const UNITS = 5;
const VOCAB = 300;
let root: string;
const runners: ShardRunner[] = [];

async function load(
  range: UnitRange,
  attention: AttentionMode,
  url = root,
  logits: 'last' | 'rows' = 'rows',
) {
  const r = createNodeShardRunner();
  runners.push(r);
  const res = await r.load({
    model: { url },
    range,
    weightFormat: 'f32',
    contextLength: 64,
    logits,
    backend: 'wasm',
    attention,
  });
  return { r, res };
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

/** Runs the same steps on two runners; returns each step's logits from both. */
async function both(a: ShardRunner, b: ShardRunner, steps: StepInput[]) {
  const [sa, sb] = [await a.openSession(), await b.openSession()];
  const out: [Float32Array, Float32Array][] = [];
  for (const s of steps) {
    const x = await a.step(sa, { ...s });
    const y = await b.step(sb, { ...s });
    out.push([x.data, y.data]);
  }
  return out;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ringwork-fused-'));
  await synthesizeModel({ preset: 'test-tiny', outDir: root, seed: 7 });
}, 60_000);

afterAll(async () => {
  await Promise.all(runners.map((r) => r.dispose()));
  if (root) await rm(root, { recursive: true, force: true });
});

describe('fused attention (GroupQueryAttention) vs ops, wasm', () => {
  it('the whole model: same logits (within 1e-4) and greedy tokens through chunked prefill, decode and a rewind', async () => {
    const fused = await load([0, UNITS], 'fused');
    const ops = await load([0, UNITS], 'ops');
    expect(fused.res.io.attention).toBe('fused');
    expect(ops.res.io.attention).toBe('ops');
    const prompt = [1, 17, 250, 42, 9, 120, 33, 7];
    const steps: StepInput[] = [
      // A prefill in two chunks: the second one attends to a cache it did not write in this run.
      { tokens: Int32Array.from(prompt.slice(0, 5)), position: 0, logitsRows: 5 },
      { tokens: Int32Array.from(prompt.slice(5)), position: 5, logitsRows: 3 },
      { tokens: Int32Array.of(5), position: 8 },
      { tokens: Int32Array.of(77), position: 9 },
      { tokens: Int32Array.of(3), position: 10 },
      // Speculative verification: drop positions 9.. and check three rows at once.
      { tokens: Int32Array.of(200, 12, 64), position: 9, rewind: true, logitsRows: 3 },
      { tokens: Int32Array.of(8), position: 12 },
    ];
    const out = await both(fused.r, ops.r, steps);
    for (const [i, [x, y]] of out.entries()) {
      expect(x.length, `step ${i}`).toBe(y.length);
      expect(maxDiff(x, y), `step ${i}`).toBeLessThan(1e-4);
      for (let row = 0; row < x.length / VOCAB; row++) {
        const at = (d: Float32Array) => argmax(d.subarray(row * VOCAB, (row + 1) * VOCAB));
        expect(at(x), `step ${i} row ${row}`).toBe(at(y));
      }
    }
  }, 120_000);

  it('split at a block boundary: fused stages hand on the same hidden states as ops stages', async () => {
    const f0 = await load([0, 2], 'fused');
    const o0 = await load([0, 2], 'ops');
    const f1 = await load([2, UNITS], 'fused');
    const o1 = await load([2, UNITS], 'ops');
    const tokens = Int32Array.of(1, 40, 90, 160, 5, 6);
    const [hf, ho] = (await both(f0.r, o0.r, [{ tokens, position: 0 }]))[0]!;
    expect(maxDiff(hf, ho)).toBeLessThan(1e-4);
    const [lf, lo] = (await both(f1.r, o1.r, [{ hidden: hf.slice(), position: 0 }]))[0]!;
    expect(maxDiff(lf, lo)).toBeLessThan(1e-4);
    expect(argmax(lf)).toBe(argmax(lo));
  }, 120_000);

  it('a head size the fused kernel refuses (stories260K: 8) builds the ops graph; a bad mode is GRAPH_BAD_OPTION', async () => {
    const bin = repoPath('public/models/stories260K/stories260K.bin');
    const { res } = await load([0, 7], 'fused', bin, 'last');
    expect(res.io.attention).toBe('ops');
    const r = createNodeShardRunner();
    runners.push(r);
    const e = await r
      .load({
        model: { url: root },
        range: [0, UNITS],
        weightFormat: 'f32',
        contextLength: 64,
        logits: 'last',
        backend: 'wasm',
        attention: 'flash' as AttentionMode,
      })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RingworkError);
    expect((e as RingworkError).code).toBe('GRAPH_BAD_OPTION');
  }, 120_000);
});
