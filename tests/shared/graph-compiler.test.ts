import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxNs } from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { RingworkError, type ErrorCode } from '../../shared/errors';
import { compileShard, tensorsFor, type CompileOptions } from '../../shared/graph/compile-shard';
import { quantizeBlockwise } from '../../shared/graph/quantize';
import { blocksIn, checkUnitRange, splitUnits, type UnitRange } from '../../shared/graph/units';
import { openLlama2cModel } from '../../shared/model/llama2c';
import { createMemoryFileOpener } from '../../shared/model/memory-source';
import type { ModelSource } from '../../shared/model/types';
import { repoPath } from '../helpers/golden';

const { onnx } = onnxProto as unknown as { onnx: typeof OnnxNs };
const bin = new Uint8Array(readFileSync(repoPath('public/models/stories260K/stories260K.bin')));
const config = { numLayers: 5 }; // stories260K: 7 units (0 = embed, 1..5 = blocks, 6 = head)

/** stories260K in memory, recording which tensors the compiler reads. */
async function source(): Promise<{ src: ModelSource; reads: string[] }> {
  const inner = await openLlama2cModel(createMemoryFileOpener({ 'stories260K.bin': bin }), 'stories260K.bin');
  const reads: string[] = [];
  const src: ModelSource = {
    format: inner.format,
    config: inner.config,
    tensors: inner.tensors,
    get bytesRead() {
      return inner.bytesRead;
    },
    readTensor(name, signal) {
      reads.push(name);
      return inner.readTensor(name, signal);
    },
  };
  return { src, reads };
}

function opts(range: UnitRange, over: Partial<CompileOptions> = {}): CompileOptions {
  return { range, weightFormat: 'f32', logits: 'last', contextLength: 64, ...over };
}

async function expectError(p: Promise<unknown> | (() => unknown), code: ErrorCode, ...mentions: string[]) {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeInstanceOf(RingworkError);
  const re = err as RingworkError;
  expect(re.code, re.message).toBe(code);
  for (const m of mentions) expect(re.message).toContain(m);
  return re;
}

/** Decodes a compiled model's bytes into the parts the tests look at. */
function decode(model: Uint8Array) {
  const m = onnx.ModelProto.decode(model);
  const g = m.graph!;
  return {
    opsets: m.opsetImport ?? [],
    input: g.input ?? [],
    output: g.output ?? [],
    initializer: g.initializer ?? [],
    node: g.node ?? [],
  };
}

const names = (vs: OnnxNs.IValueInfoProto[]) => vs.map((v) => v.name!).sort();
const kvNames = (kind: 'past' | 'present', layers: number[]) =>
  layers.flatMap((l) => [`${kind}_key.${l}`, `${kind}_value.${l}`]);

describe('unit ranges', () => {
  it('checkUnitRange accepts every valid range and rejects out-of-range, empty, reversed and fractional ones', async () => {
    for (let a = 0; a < 7; a++)
      for (let b = a + 1; b <= 7; b++) expect(() => checkUnitRange(config, [a, b])).not.toThrow();
    const bad: UnitRange[] = [
      [0, 8],
      [-1, 3],
      [3, 3],
      [4, 2],
      [7, 7],
      [0.5, 2],
      [0, Number.NaN],
    ];
    for (const r of bad) await expectError(() => checkUnitRange(config, r), 'GRAPH_BAD_RANGE', '5 layers');
  });

  it('checkUnitRange errors say what is allowed', async () => {
    const e = await expectError(() => checkUnitRange(config, [2, 9]), 'GRAPH_BAD_RANGE', '[2, 9)', '<= 7');
    expect(e.details).toEqual({ range: [2, 9], units: 7 });
  });

  it('splitUnits cuts the model at the boundaries', () => {
    expect(splitUnits(config, [])).toEqual([[0, 7]]);
    expect(splitUnits(config, [2, 4])).toEqual([
      [0, 2],
      [2, 4],
      [4, 7],
    ]);
    expect(splitUnits(config, [1, 2, 3, 4, 5, 6])).toHaveLength(7);
  });

  it('splitUnits rejects out-of-range, duplicate, unsorted and fractional boundaries', async () => {
    for (const cuts of [[0], [7], [9], [-1], [2, 2], [4, 2], [2, 5, 3], [2.5], [Number.NaN]]) {
      const e = await expectError(() => splitUnits(config, cuts), 'GRAPH_BAD_RANGE');
      expect(e.details.boundaries).toEqual(cuts);
    }
  });

  it('blocksIn lists the transformer blocks of a range', () => {
    expect(blocksIn(config, [0, 7])).toEqual([0, 1, 2, 3, 4]);
    expect(blocksIn(config, [2, 4])).toEqual([1, 2]);
    expect(blocksIn(config, [0, 1])).toEqual([]);
    expect(blocksIn(config, [6, 7])).toEqual([]);
  });
});

describe('compileShard options', () => {
  it('rejects a bad contextLength or weightFormat (GRAPH_BAD_OPTION) before reading any tensor', async () => {
    const { src, reads } = await source();
    for (const contextLength of [0, -1, 1.5, Number.NaN]) {
      const e = await expectError(
        compileShard(src, opts([0, 7], { contextLength })),
        'GRAPH_BAD_OPTION',
        'contextLength',
      );
      expect(e.details).toHaveProperty('contextLength');
    }
    for (const weightFormat of ['q2', 'F32', 'fp16', '']) {
      await expectError(
        compileShard(src, opts([0, 7], { weightFormat: weightFormat as CompileOptions['weightFormat'] })),
        'GRAPH_BAD_OPTION',
        'weight format',
      );
    }
    await expectError(compileShard(src, opts([0, 8])), 'GRAPH_BAD_RANGE');
    expect(reads).toEqual([]);
  });

  it('an aborted signal stops compilation with ABORTED', async () => {
    const { src } = await source();
    const ac = new AbortController();
    ac.abort();
    await expectError(compileShard(src, opts([0, 7]), { signal: ac.signal }), 'ABORTED');
  });
});

describe('compiled graphs (stories260K)', () => {
  it('[0,7): input_ids in, logits out, KV for all 5 blocks', async () => {
    const { src, reads } = await source();
    const shard = await compileShard(src, opts([0, 7]));
    const g = decode(shard.model);
    expect(names(g.input)).toEqual(['input_ids', 'position_ids', ...kvNames('past', [0, 1, 2, 3, 4])].sort());
    expect(names(g.output)).toEqual(['logits', ...kvNames('present', [0, 1, 2, 3, 4])].sort());
    expect(shard.io).toMatchObject({
      tokens: 'input_ids',
      output: 'logits',
      outputKind: 'logits',
      hiddenSize: 64,
      vocabSize: 512,
    });
    expect(shard.io.hiddenIn).toBeUndefined();
    expect(shard.io.kv.map((k) => k.layer)).toEqual([0, 1, 2, 3, 4]);
    // Read every tensor it needs once (the tied embedding serves both ends).
    expect(reads.sort()).toEqual([...new Set(tensorsFor(src.config, [0, 7]))].sort());
    // logits 'last' has one row; the vocab is fixed.
    const dims = g.output.find((o) => o.name === 'logits')!.type!.tensorType!.shape!.dim!;
    expect(dims.map((d) => Number(d.dimValue))).toEqual([1, 1, 512]);
  });

  it('[2,4): hidden_in / hidden_out and exactly the KV inputs of blocks 1 and 2; no embedding read', async () => {
    const { src, reads } = await source();
    const shard = await compileShard(src, opts([2, 4]));
    const g = decode(shard.model);
    expect(names(g.input)).toEqual(['hidden_in', 'position_ids', ...kvNames('past', [1, 2])].sort());
    expect(names(g.output)).toEqual(['hidden_out', ...kvNames('present', [1, 2])].sort());
    expect(shard.io).toMatchObject({ hiddenIn: 'hidden_in', output: 'hidden_out', outputKind: 'hidden' });
    expect(shard.io.tokens).toBeUndefined();
    expect(shard.io.kv.map((k) => k.layer)).toEqual([1, 2]);
    expect(reads.sort()).toEqual(tensorsFor(src.config, [2, 4]).sort());
    expect(
      reads.some((n) => n.includes('embed') || n.includes('model.norm') || /layers\.[034]\./.test(n)),
    ).toBe(false);
    const inits = g.initializer.map((t) => t.name!);
    expect(inits.some((n) => n.startsWith('model.embed_tokens'))).toBe(false);
  });

  it('[0,1) is the embedding alone (no positions, no KV); [6,7) is the head alone', async () => {
    const { src } = await source();
    const embed = decode((await compileShard(src, opts([0, 1]))).model);
    expect(names(embed.input)).toEqual(['input_ids']);
    expect(names(embed.output)).toEqual(['hidden_out']);
    const head = decode((await compileShard(src, opts([6, 7], { logits: 'all' }))).model);
    expect(names(head.input)).toEqual(['hidden_in']);
    expect(names(head.output)).toEqual(['logits']);
    const dims = head.output[0]!.type!.tensorType!.shape!.dim!;
    expect(dims[1]!.dimParam).toBe('seq');
  });

  it('q8 / q4 use com.microsoft MatMulNBits for every projection and need fewer weight bytes than f32', async () => {
    const { src } = await source();
    const bytes: Record<string, number> = {};
    for (const weightFormat of ['f32', 'q8', 'q4'] as const) {
      const shard = await compileShard(src, opts([0, 7], { weightFormat }));
      bytes[weightFormat] = shard.weightBytes;
      const m = decode(shard.model);
      const nbits = m.node.filter((n) => n.opType === 'MatMulNBits');
      if (weightFormat === 'f32') {
        expect(nbits).toHaveLength(0);
        continue;
      }
      // 4 matmuls per block (fused q|k|v, o, fused gate|up, down) x 5 blocks + the output head.
      expect(nbits).toHaveLength(4 * 5 + 1);
      const bits = weightFormat === 'q4' ? 4 : 8;
      for (const n of nbits) {
        expect(n.domain).toBe('com.microsoft');
        const a = Object.fromEntries(n.attribute!.map((x) => [x.name, Number(x.i)]));
        expect(a.bits).toBe(bits);
        expect(a.block_size).toBe(32);
        // N: q|k|v = 64+32+32, o/down = 64, gate|up = 2*172, head = 512.
        expect([128, 64, 344, 512]).toContain(a.N);
        expect([64, 172]).toContain(a.K);
      }
      expect(m.opsets.some((o) => o.domain === 'com.microsoft')).toBe(true);
    }
    expect(bytes.q8!).toBeLessThan(bytes.f32!);
    expect(bytes.q4!).toBeLessThan(bytes.q8!);
  });
});

/** Dequantises MatMulNBits blocks back to `[n, k]`, and returns each element's scale. */
function dequantize(q: ReturnType<typeof quantizeBlockwise>): {
  w: Float32Array;
  scale: Float32Array;
  pad: number[];
} {
  const { n, k, bits, blockSize, data, scales } = q;
  const nBlocks = Math.ceil(k / blockSize);
  const blob = (blockSize * bits) / 8;
  const zero = bits === 4 ? 8 : 128;
  const w = new Float32Array(n * k);
  const scale = new Float32Array(n * k);
  const pad: number[] = [];
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < nBlocks; b++) {
      const base = (r * nBlocks + b) * blob;
      for (let j = 0; j < blockSize; j++) {
        const code = bits === 8 ? data[base + j]! : (data[base + (j >> 1)]! >> ((j & 1) * 4)) & 15;
        const i = b * blockSize + j;
        if (i >= k) {
          pad.push(code - zero);
          continue;
        }
        w[r * k + i] = (code - zero) * scales[r * nBlocks + b]!;
        scale[r * k + i] = scales[r * nBlocks + b]!;
      }
    }
  }
  return { w, scale, pad };
}

describe('quantizeBlockwise', () => {
  // Finite float32 values; magnitudes below 1e-20 become 0 so scales stay normal float32 numbers.
  const value = fc.float({ min: -1000, max: 1000, noNaN: true }).map((x) => (Math.abs(x) < 1e-20 ? 0 : x));
  const matrix = fc
    .record({
      n: fc.integer({ min: 1, max: 4 }),
      k: fc.integer({ min: 1, max: 100 }),
      bits: fc.constantFrom(4 as const, 8 as const),
      blockSize: fc.constantFrom(16, 32, 64),
    })
    .chain((s) =>
      fc.record({
        s: fc.constant(s),
        values: fc.array(value, { minLength: s.n * s.k, maxLength: s.n * s.k }),
      }),
    );

  it('round-trip error is at most scale/2 per element, for any K (block padding included)', () => {
    fc.assert(
      fc.property(matrix, ({ s, values }) => {
        const w = Float32Array.from(values);
        const q = quantizeBlockwise(w, s.n, s.k, s.bits, s.blockSize);
        const nBlocks = Math.ceil(s.k / s.blockSize);
        expect(q.data.byteLength).toBe((s.n * nBlocks * s.blockSize * s.bits) / 8);
        expect(q.scales.length).toBe(s.n * nBlocks);
        const { w: back, scale, pad } = dequantize(q);
        for (let i = 0; i < w.length; i++) {
          const err = Math.abs(back[i]! - w[i]!);
          expect(err, `element ${i}: ${w[i]} -> ${back[i]} (scale ${scale[i]})`).toBeLessThanOrEqual(
            scale[i]! * (0.5 + 1e-5),
          );
        }
        // Padding past K quantises zeros.
        expect(pad.every((c) => c === 0)).toBe(true);
        // The scale is the block's max magnitude over the largest code (not a loose, oversized one).
        const qmax = s.bits === 4 ? 7 : 127;
        for (let r = 0; r < s.n; r++) {
          for (let b = 0; b < nBlocks; b++) {
            let amax = 0;
            for (let i = b * s.blockSize; i < Math.min(s.k, (b + 1) * s.blockSize); i++) {
              amax = Math.max(amax, Math.abs(w[r * s.k + i]!));
            }
            const want = amax === 0 ? 1 : Math.fround(amax / qmax);
            expect(q.scales[r * nBlocks + b]).toBe(want);
          }
        }
      }),
      { seed: 1234, numRuns: 300 },
    );
  });

  it('packs 4-bit codes low nibble first, with zero point 8', () => {
    const w = Float32Array.from([7, -7, 0, 1, ...new Array<number>(28).fill(0)]);
    const q = quantizeBlockwise(w, 1, 32, 4, 32);
    expect(q.scales[0]).toBe(1);
    expect(q.data[0]).toBe((8 + 7) | ((8 - 7) << 4));
    expect(q.data[1]).toBe(8 | ((8 + 1) << 4));
  });
});
