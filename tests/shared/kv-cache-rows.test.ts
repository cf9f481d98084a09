/**
 * The `rows` KV-cache contract (the graph outputs only a step's K/V rows; the runner appends them
 * to a per-layer buffer it feeds as it is, masked past the cached length) against `concat` (the
 * whole cache in and out of every step), on real in-process runners (onnxruntime-web wasm,
 * stories260K: 8 query heads over 4 KV heads). The same logits through chunked prefill that
 * crosses the buffer's growth steps, decode, rewinds (before and after a growth), a verify pass
 * and a split at a block boundary.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingworkError } from '../../shared/errors';
import { compileShard, type KvCacheMode } from '../../shared/graph/compile-shard';
import type { UnitRange } from '../../shared/graph/units';
import { openLlama2cModel } from '../../shared/model/llama2c';
import type { ShardRunner, StepInput, StepOutput } from '../../shared/runtime/shard-runner';
import { argmax } from '../../shared/validation/stage';
import { stories260KOpener, stories260KRunner } from '../helpers/engine';
import { loadGolden } from '../helpers/golden';

const golden = loadGolden();
const seq = golden.sequenceTokens;
const CONTEXT = 128;
const runners: ShardRunner[] = [];

async function load(range: UnitRange, kvCache: KvCacheMode, logits: 'last' | 'rows' = 'rows') {
  const r = stories260KRunner();
  runners.push(r);
  const res = await r.load({
    model: { url: 'stories260K.bin' },
    range,
    weightFormat: 'f32',
    contextLength: CONTEXT,
    logits,
    backend: 'wasm',
    kvCache,
  });
  expect(res.io.kvCache).toBe(kvCache);
  return r;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** The golden sequence (64 positions), then fixed made-up tokens up to the context. */
const toks = (from: number, to: number) =>
  Int32Array.from({ length: to - from }, (_, i) => seq[from + i] ?? ((from + i) * 37 + 11) % 512);
const goldenArgmax = (p: number) => golden.argmax[p] ?? expect.any(Number);

afterAll(async () => {
  await Promise.all(runners.map((r) => r.dispose()));
});

describe('rows KV cache vs concat (stories260K, wasm)', () => {
  let rows: ShardRunner;
  let concat: ShardRunner;
  beforeAll(async () => {
    rows = await load([0, 7], 'rows');
    concat = await load([0, 7], 'concat');
  });

  it('the same logits through chunked prefill, decode across growth steps, rewinds and a verify pass', async () => {
    const a = await rows.openSession();
    const b = await concat.openSession();
    let worst = 0;
    const both = async (input: StepInput): Promise<StepOutput> => {
      const x = await rows.step(a, input);
      const y = await concat.step(b, input);
      worst = Math.max(worst, maxDiff(x.data, y.data));
      expect(argmax(x.data.subarray(x.data.length - 512))).toBe(argmax(y.data.subarray(y.data.length - 512)));
      return x;
    };
    // Chunks of 20 and 25 (the buffer grows by 32 positions: 32, then 64 inside the second chunk).
    await both({ tokens: toks(0, 20), position: 0 });
    await both({ tokens: toks(20, 45), position: 20 });
    for (let p = 45; p < 70; p++) {
      const out = await both({ tokens: toks(p, p + 1), position: p });
      if (p < golden.argmax.length) expect(argmax(out.data)).toBe(golden.argmax[p]);
    }
    // Rewind below the last growth (70 cached, capacity 96): stale rows must be masked, not read.
    await both({ tokens: Int32Array.of(7, 8, 9), position: 30, rewind: true, logitsRows: 3 });
    for (let p = 33; p < 40; p++) await both({ tokens: Int32Array.of((p * 13) % 512), position: p });
    // Rewind to the start: an empty cache in a non-empty buffer.
    await both({ tokens: toks(0, 12), position: 0, rewind: true });
    // Verify 4 positions in one pass, then a rewind over two of them, then on to the end of context.
    await both({ tokens: toks(12, 16), position: 12, logitsRows: 4 });
    await both({ tokens: toks(14, 15), position: 14, rewind: true });
    await both({ tokens: toks(15, 40), position: 15 });
    for (let p = 40; p < CONTEXT; p += 22) {
      const n = Math.min(22, CONTEXT - p);
      await both({ tokens: toks(p, p + n), position: p });
    }
    expect(worst).toBeLessThan(1e-4);
    // The context is full in both: one more position is refused the same way.
    for (const [r, id] of [
      [rows, a],
      [concat, b],
    ] as const) {
      const e = await r.step(id, { tokens: Int32Array.of(1), position: CONTEXT }).catch((x: unknown) => x);
      expect((e as RingworkError).code).toBe('RUNNER_CONTEXT_FULL');
    }
  });

  it('a rewound session equals a fresh one bitwise (stale rows are masked to exactly zero weight)', async () => {
    // The same chunks up to 33 in both (a row's value depends on the chunk it was computed in).
    const a = await rows.openSession();
    await rows.step(a, { tokens: toks(0, 33), position: 0 });
    await rows.step(a, { tokens: toks(33, 40), position: 33 });
    const other = seq[33] === 100 ? 101 : 100;
    const rewound = await rows.step(a, { tokens: Int32Array.of(other), position: 33, rewind: true });
    const f = await rows.openSession();
    await rows.step(f, { tokens: toks(0, 33), position: 0 });
    const fresh = await rows.step(f, { tokens: Int32Array.of(other), position: 33 });
    expect(Buffer.from(rewound.data.buffer).equals(Buffer.from(fresh.data.buffer))).toBe(true);
    await rows.closeSession(a);
    await rows.closeSession(f);
  });

  it('an aborted step leaves the rows cache as it was', async () => {
    const a = await rows.openSession();
    const want = await concat.openSession();
    await rows.step(a, { tokens: toks(0, 31), position: 0 });
    await concat.step(want, { tokens: toks(0, 31), position: 0 });
    const ac = new AbortController();
    const aborted = rows.step(a, { tokens: toks(31, 35), position: 31 }, { signal: ac.signal });
    ac.abort();
    expect(((await aborted.catch((x: unknown) => x)) as RingworkError).code).toBe('ABORTED');
    const x = await rows.step(a, { tokens: Int32Array.of(5), position: 31 });
    const y = await concat.step(want, { tokens: Int32Array.of(5), position: 31 });
    expect(maxDiff(x.data, y.data)).toBeLessThan(1e-4);
  });

  it('split at a block boundary: rows stages hand on the same hidden states as concat stages', async () => {
    const split: UnitRange[] = [
      [0, 3],
      [3, 7],
    ];
    const stages = async (mode: KvCacheMode) => Promise.all(split.map((r) => load(r, mode, 'last')));
    const [r0, r1] = await stages('rows');
    const [c0, c1] = await stages('concat');
    const ids = await Promise.all([r0!, r1!, c0!, c1!].map((r) => r.openSession()));
    for (const [p, n] of [
      [0, 9],
      [9, 1],
      [10, 30],
      [40, 1],
    ] as const) {
      const hr = await r0!.step(ids[0]!, { tokens: toks(p, p + n), position: p });
      const hc = await c0!.step(ids[2]!, { tokens: toks(p, p + n), position: p });
      expect(maxDiff(hr.data, hc.data)).toBeLessThan(1e-4);
      const lr = await r1!.step(ids[1]!, { hidden: hr.data, position: p });
      const lc = await c1!.step(ids[3]!, { hidden: hc.data, position: p });
      expect(maxDiff(lr.data, lc.data)).toBeLessThan(1e-4);
      expect(argmax(lr.data)).toEqual(goldenArgmax(p + n - 1));
    }
  });
});

describe('compiling the rows contract', () => {
  it('is what a wasm runner builds by default; outputs only new rows; a bad mode is GRAPH_BAD_OPTION', async () => {
    const r = stories260KRunner();
    runners.push(r);
    const res = await r.load({
      model: { url: 'stories260K.bin' },
      range: [0, 7],
      weightFormat: 'f32',
      contextLength: 32,
      logits: 'last',
      backend: 'wasm',
    });
    expect(res.io.kvCache).toBe('rows');
    expect(res.io.kv[0]).toMatchObject({ pastKey: 'past_key.0', presentKey: 'new_key.0' });
    const source = await openLlama2cModel(stories260KOpener(), 'stories260K.bin');
    const bad = await compileShard(source, {
      range: [0, 7],
      weightFormat: 'f32',
      logits: 'last',
      contextLength: 32,
      kvCache: 'ring' as KvCacheMode,
    }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(RingworkError);
    expect((bad as RingworkError).code).toBe('GRAPH_BAD_OPTION');
    // A shard without blocks (the head alone) has no cache at all.
    const head = await compileShard(source, {
      range: [6, 7],
      weightFormat: 'f32',
      logits: 'last',
      contextLength: 32,
      kvCache: 'rows',
    });
    expect(head.io.kv).toHaveLength(0);
    expect(head.io.kvCache).toBeUndefined();
  });
});
