import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { RingworkError, type ErrorCode } from '../../shared/errors';
import { llama2cTensorIndex, openLlama2cModel, parseLlama2cHeader } from '../../shared/model/llama2c';
import { createMemoryFileOpener } from '../../shared/model/memory-source';
import type { ModelSource } from '../../shared/model/types';
import { mulberry32 } from '../../shared/util/prng';
import { repoPath } from '../helpers/golden';

const bin = new Uint8Array(readFileSync(repoPath('public/models/stories260K/stories260K.bin')));
const MAGIC_AK42 = 0x616b3432;
const LAYERS = 5;

function open(bytes: Uint8Array, file = 'model.bin') {
  const opener = createMemoryFileOpener({ [file]: bytes });
  return { opener, model: openLlama2cModel(opener, file) };
}

async function expectError(
  p: Promise<unknown>,
  code: ErrorCode,
  ...mentions: string[]
): Promise<RingworkError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeInstanceOf(RingworkError);
  const re = err as RingworkError;
  expect(re.code, re.message).toBe(code);
  for (const m of mentions) expect(re.message).toContain(m);
  return re;
}

/** Bitwise equality of two float arrays. */
function expectSameFloats(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  const bad = a.findIndex((v, i) => v !== b[i]);
  expect(bad, `${what}: first mismatch at index ${bad}`).toBe(-1);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

const f32Bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Deterministic pseudo-random bytes (the low byte of each mulberry32 value). */
function randomBytes(n: number, seed: number): Uint8Array {
  const next = mulberry32(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = next() & 0xff;
  return out;
}

/** The legacy header's seven int32s. */
function legacyInts(): number[] {
  const v = new DataView(bin.buffer, bin.byteOffset, 28);
  return Array.from({ length: 7 }, (_, i) => v.getInt32(i * 4, true));
}

/** A 256-byte "ak42" header as llama2.c's export.py `version1_export` writes it. */
function v1Header(ints: number[], shared: boolean, version = 1): Uint8Array {
  const h = new Uint8Array(256);
  const v = new DataView(h.buffer);
  v.setUint32(0, MAGIC_AK42, true);
  v.setInt32(4, version, true);
  ints.forEach((x, i) => v.setInt32(8 + i * 4, x, true));
  h[36] = shared ? 1 : 0;
  return h;
}

/** export.py version1_export's weight order, written out independently of the loader. */
function v1Order(): string[] {
  const per = (suffix: string) => Array.from({ length: LAYERS }, (_, l) => `model.layers.${l}.${suffix}`);
  return [
    ...per('input_layernorm.weight'), // attention_norm
    ...per('post_attention_layernorm.weight'), // ffn_norm
    'model.norm.weight',
    'model.embed_tokens.weight', // tok_embeddings
    ...per('self_attn.q_proj.weight'), // wq
    ...per('self_attn.k_proj.weight'), // wk
    ...per('self_attn.v_proj.weight'), // wv
    ...per('self_attn.o_proj.weight'), // wo
    ...per('mlp.gate_proj.weight'), // w1
    ...per('mlp.down_proj.weight'), // w2
    ...per('mlp.up_proj.weight'), // w3
  ];
}

/** Re-exports the legacy stories260K checkpoint as a version-1 file. */
async function buildV1(
  legacy: ModelSource,
  opts: { lmHead?: Float32Array; version?: number } = {},
): Promise<Uint8Array> {
  const ints = legacyInts();
  ints[5] = Math.abs(ints[5]!); // version 1 stores a positive vocab size and a separate flag
  const chunks = [v1Header(ints, !opts.lmHead, opts.version)];
  for (const name of v1Order()) chunks.push(f32Bytes(await legacy.readTensor(name)));
  if (opts.lmHead) chunks.push(f32Bytes(opts.lmHead));
  return concat(chunks);
}

describe('llama2.c header and config', () => {
  it('parses the stories260K header', () => {
    const h = parseLlama2cHeader(bin.subarray(0, 256), 'stories260K.bin');
    expect(h).toEqual({
      dim: 64,
      hiddenDim: 172,
      nLayers: 5,
      nHeads: 8,
      nKvHeads: 4,
      vocabSize: 512,
      seqLen: 512,
      sharedClassifier: true,
      version: 0,
    });
  });

  it('opens stories260K with the normalised config, reading only the header', async () => {
    const { opener, model } = open(bin, 'stories260K.bin');
    const m = await model;
    expect(m.format).toBe('llama2c');
    expect(m.config).toMatchObject({
      architecture: 'llama',
      hiddenSize: 64,
      intermediateSize: 172,
      numLayers: 5,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 8,
      vocabSize: 512,
      maxPositions: 512,
      tiedEmbeddings: true,
      ropeLayout: 'interleaved',
      attentionBias: false,
    });
    expect(opener.bytesRead).toBeLessThanOrEqual(256);
    const before = opener.bytesRead;
    const emb = await m.readTensor('model.embed_tokens.weight');
    expect(emb.length).toBe(512 * 64);
    expect(opener.bytesRead - before).toBe(512 * 64 * 4);
  });

  it('the tensor index accounts for every byte of the legacy file (RoPE tables skipped, no lm_head)', async () => {
    const h = parseLlama2cHeader(bin.subarray(0, 256), 'stories260K.bin');
    const { tensors, end } = llama2cTensorIndex(h, 'stories260K.bin');
    expect(end).toBe(bin.byteLength);
    expect(tensors.size).toBe(1 + 9 * LAYERS + 1);
    expect(tensors.has('lm_head.weight')).toBe(false);
    expect(tensors.get('model.embed_tokens.weight')).toMatchObject({ offset: 28, shape: [512, 64] });
    expect(tensors.get('model.layers.0.self_attn.k_proj.weight')!.shape).toEqual([32, 64]);
    expect(tensors.get('model.layers.4.mlp.down_proj.weight')!.shape).toEqual([64, 172]);
    // Tensors tile the file without gaps or overlaps up to the final norm.
    const sorted = [...tensors.values()].sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < sorted.length; i++) {
      expect(sorted[i]!.offset, sorted[i]!.name).toBe(sorted[i - 1]!.offset + sorted[i - 1]!.byteLength);
    }
  });

  it('reads a legacy untied checkpoint (negative vocab) with lm_head after the RoPE tables', async () => {
    const head = Float32Array.from({ length: 512 * 64 }, (_, i) => Math.sin(i));
    const untied = concat([bin, f32Bytes(head)]);
    new DataView(untied.buffer).setInt32(20, -512, true);
    const m = await open(untied).model;
    expect(m.config.tiedEmbeddings).toBe(false);
    expect(m.config.vocabSize).toBe(512);
    expectSameFloats(await m.readTensor('lm_head.weight'), head, 'lm_head.weight');
    const ref = await open(bin).model;
    expectSameFloats(
      await m.readTensor('model.norm.weight'),
      await ref.readTensor('model.norm.weight'),
      'model.norm.weight',
    );
  });
});

describe('llama2.c typed errors', () => {
  it('random bytes: MODEL_BAD_MAGIC naming the file', async () => {
    for (let seed = 1; seed <= 8; seed++) {
      const e = await expectError(
        open(randomBytes(4096, seed), 'noise.bin').model,
        'MODEL_BAD_MAGIC',
        'noise.bin',
      );
      expect(e.details.file).toContain('noise.bin');
    }
  });

  it('a text file: MODEL_BAD_MAGIC naming the file', async () => {
    const text = new TextEncoder().encode(
      '# stories260K\n\nThis is a README, not a checkpoint.\n'.repeat(20),
    );
    await expectError(open(text, 'README.md').model, 'MODEL_BAD_MAGIC', 'README.md');
  });

  it('a header whose heads do not divide dim: MODEL_BAD_HEADER', async () => {
    const bad = bin.slice();
    new DataView(bad.buffer).setInt32(12, 7, true); // n_heads = 7 does not divide dim 64
    await expectError(open(bad, 'heads.bin').model, 'MODEL_BAD_HEADER', 'heads.bin');
  });

  it('a file shorter than the header: MODEL_TRUNCATED', async () => {
    const e = await expectError(open(bin.slice(0, 20), 'short.bin').model, 'MODEL_TRUNCATED', 'short.bin');
    expect(e.details.size).toBe(20);
    await expectError(open(new Uint8Array(0), 'empty.bin').model, 'MODEL_TRUNCATED', 'empty.bin');
    // An "ak42" file cut inside its 256-byte header.
    const v1 = v1Header(legacyInts().map(Math.abs), true).slice(0, 30);
    await expectError(open(v1, 'v1-short.bin').model, 'MODEL_TRUNCATED', 'v1-short.bin');
  });

  it('a file truncated in the middle of the weights: MODEL_TRUNCATED with expected and actual size', async () => {
    const e = await expectError(open(bin.slice(0, 500_000), 'cut.bin').model, 'MODEL_TRUNCATED', 'cut.bin');
    expect(e.details).toMatchObject({ expected: bin.byteLength, size: 500_000 });
    expect(e.message).toContain(String(bin.byteLength));
    const e4 = await expectError(open(bin.slice(0, bin.byteLength - 4), 'cut4.bin').model, 'MODEL_TRUNCATED');
    expect(e4.details).toMatchObject({ expected: bin.byteLength, size: bin.byteLength - 4 });
  });

  it('an "ak42" file of an unknown export version: MODEL_UNSUPPORTED_ARCHITECTURE', async () => {
    for (const version of [2, 3, 0]) {
      const file = concat([v1Header(legacyInts().map(Math.abs), true, version), bin.subarray(28)]);
      const e = await expectError(open(file, 'q80.bin').model, 'MODEL_UNSUPPORTED_ARCHITECTURE', 'q80.bin');
      expect(e.details.version).toBe(version);
    }
  });

  it('a tensor the checkpoint does not have: MODEL_MISSING_TENSOR', async () => {
    const m = await open(bin, 'stories260K.bin').model;
    const e = await expectError(
      m.readTensor('model.layers.5.input_layernorm.weight'),
      'MODEL_MISSING_TENSOR',
      'stories260K.bin',
      'model.layers.5.input_layernorm.weight',
    );
    expect(e.details.tensor).toBe('model.layers.5.input_layernorm.weight');
    // A tied checkpoint has no separate classifier.
    await expectError(m.readTensor('lm_head.weight'), 'MODEL_MISSING_TENSOR', 'lm_head.weight');
  });
});

describe('llama2.c version 1 ("ak42", 256-byte header)', () => {
  it('a version-1 re-export of stories260K loads with the same config and the same tensors', async () => {
    const legacy = await open(bin).model;
    const v1 = await buildV1(legacy);
    expect(v1.byteLength).toBe(256 + (bin.byteLength - 28) - 512 * 4 * 2 * 4); // minus the RoPE tables
    const { opener, model } = open(v1, 'v1.bin');
    const m = await model;
    expect(opener.bytesRead).toBeLessThanOrEqual(256);
    expect(m.config).toEqual(legacy.config);
    expect([...m.tensors.keys()].sort()).toEqual([...legacy.tensors.keys()].sort());
    for (const name of legacy.tensors.keys()) {
      expectSameFloats(await m.readTensor(name), await legacy.readTensor(name), name);
    }
  });

  it('a version-1 file with an unshared classifier reads lm_head from the end', async () => {
    const legacy = await open(bin).model;
    const head = Float32Array.from({ length: 512 * 64 }, (_, i) => Math.cos(i) * 0.1);
    const m = await open(await buildV1(legacy, { lmHead: head }), 'v1-untied.bin').model;
    expect(m.config.tiedEmbeddings).toBe(false);
    expectSameFloats(await m.readTensor('lm_head.weight'), head, 'lm_head.weight');
    expectSameFloats(
      await m.readTensor('model.layers.4.mlp.up_proj.weight'),
      await legacy.readTensor('model.layers.4.mlp.up_proj.weight'),
      'model.layers.4.mlp.up_proj.weight',
    );
  });

  it('a version-1 file truncated in the weights: MODEL_TRUNCATED with the version-1 size', async () => {
    const v1 = await buildV1(await open(bin).model);
    const e = await expectError(
      open(v1.slice(0, v1.byteLength - 100), 'v1-cut.bin').model,
      'MODEL_TRUNCATED',
      'v1-cut.bin',
    );
    expect(e.details).toMatchObject({ expected: v1.byteLength, size: v1.byteLength - 100 });
  });
});
