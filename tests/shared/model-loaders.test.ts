import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RingworkError, type ErrorCode } from '../../shared/errors';
import {
  bf16BitsToF32,
  decodeToFloat32,
  encodeFromFloat32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
} from '../../shared/model/dtype';
import { parseHfConfig, toHfConfig } from '../../shared/model/hf-config';
import { createMemoryFileOpener } from '../../shared/model/memory-source';
import { openSafetensorsModel, parseSafetensorsPrefix } from '../../shared/model/safetensors';
import { requiredTensorNames, tensorNamesForUnit } from '../../shared/model/tensor-names';
import {
  buildSafetensorsHeader,
  planSafetensorsShards,
  writeSafetensors,
  writeShardedSafetensors,
  type SafetensorsTensor,
} from '../../shared/model/safetensors-writer';
import type { ModelConfig, StoredDType } from '../../shared/model/types';
import { SYNTH_PRESETS, synthTensor, synthTensorSpecs } from '../../tools/model/synth';

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

/** Bitwise equality of two float arrays (vitest's deep equality is slow on large typed arrays). */
function expectSameFloats(actual: Float32Array, expected: Float32Array, what = 'tensor'): void {
  expect(actual.length, what).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  const bad = a.findIndex((v, i) => v !== b[i]);
  expect(bad, `${what}: first mismatch at index ${bad}`).toBe(-1);
}

function json(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
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

const TINY = SYNTH_PRESETS['test-tiny'];

/** A synthetic test-tiny model as in-memory safetensors tensors. */
function tinyTensors(config: ModelConfig, dtype: StoredDType = 'F32', seed = 7): SafetensorsTensor[] {
  return synthTensorSpecs(config, dtype).map((s) => ({
    ...s,
    data: synthTensor(config, s.name, seed, dtype),
  }));
}

describe('dtype conversions', () => {
  it('decodes f16 special values exactly (zero, subnormals, max, inf, NaN)', () => {
    expect(f16BitsToF32(0x0000)).toBe(0);
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24); // smallest subnormal
    expect(f16BitsToF32(0x03ff)).toBe(1023 * 2 ** -24); // largest subnormal
    expect(f16BitsToF32(0x0400)).toBe(2 ** -14); // smallest normal
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0xc000)).toBe(-2);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(f16BitsToF32(0x7e00)).toBeNaN();
    expect(f16BitsToF32(0xfc01)).toBeNaN();
  });

  it('decodes bf16 special values exactly', () => {
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0xc040)).toBe(-3);
    expect(bf16BitsToF32(0x0001)).toBe(2 ** -133); // subnormal
    expect(bf16BitsToF32(0x7f80)).toBe(Infinity);
    expect(bf16BitsToF32(0xff80)).toBe(-Infinity);
    expect(bf16BitsToF32(0x7fc0)).toBeNaN();
  });

  it('encodes to f16 with round-half-to-even, overflow to inf, underflow to subnormal/zero', () => {
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even (down)
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65519)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds to inf
    expect(f32ToF16Bits(1e9)).toBe(0x7c00);
    expect(f32ToF16Bits(-Infinity)).toBe(0xfc00);
    expect(f16BitsToF32(f32ToF16Bits(NaN))).toBeNaN();
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie with zero -> even (zero)
    expect(f32ToF16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 ulp tie -> even (2)
    expect(f32ToF16Bits(1023.5 * 2 ** -24)).toBe(0x0400); // carries into the smallest normal
    expect(f32ToF16Bits(-0)).toBe(0x8000);
  });

  it('encodes to bf16 with round-half-to-even and keeps NaN', () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(bf16BitsToF32(f32ToBf16Bits(NaN))).toBeNaN();
    expect(f32ToBf16Bits(Infinity)).toBe(0x7f80);
    expect(f32ToBf16Bits(3.4028234663852886e38)).toBe(0x7f80); // max float rounds up to inf
  });

  it('round-trips every non-NaN f16 and bf16 bit pattern (property)', () => {
    const failures: string[] = [];
    for (let b = 0; b < 65536; b++) {
      const h = f16BitsToF32(b);
      if (!Number.isNaN(h) && f32ToF16Bits(h) !== b) failures.push(`f16 ${b}`);
      const bf = bf16BitsToF32(b);
      if (!Number.isNaN(bf) && f32ToBf16Bits(bf) !== b) failures.push(`bf16 ${b}`);
    }
    expect(failures).toEqual([]);
  });

  it('f16 rounding picks the nearest representable value (property)', () => {
    fc.assert(
      fc.property(fc.float({ min: -60000, max: 60000, noNaN: true }), (x) => {
        const y = f16BitsToF32(f32ToF16Bits(x));
        const ulp = Math.abs(y) < 2 ** -14 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(Math.abs(y))) - 10);
        expect(Math.abs(y - Math.fround(x))).toBeLessThanOrEqual(ulp / 2 + 1e-30);
      }),
    );
  });

  it('decodes unaligned little-endian buffers of every dtype', () => {
    const values = new Float32Array([0, -1.5, 3.25, 65504, -(2 ** -24), 1e-3]);
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const enc = encodeFromFloat32(values, dtype);
      const shifted = new Uint8Array(enc.byteLength + 1);
      shifted.set(enc, 1);
      const dec = decodeToFloat32(shifted.subarray(1), dtype);
      const ref = decodeToFloat32(enc, dtype);
      expect(Array.from(dec)).toEqual(Array.from(ref));
      if (dtype === 'F32') expect(Array.from(dec)).toEqual(Array.from(values));
      else
        for (let i = 0; i < values.length; i++)
          expect(Math.abs(dec[i]! - values[i]!)).toBeLessThanOrEqual(Math.abs(values[i]!) / 128 + 2 ** -24);
    }
  });
});

describe('parseHfConfig', () => {
  const smollm = {
    architectures: ['LlamaForCausalLM'],
    attention_bias: false,
    bos_token_id: 0,
    eos_token_id: 0,
    head_dim: 64,
    hidden_act: 'silu',
    hidden_size: 576,
    intermediate_size: 1536,
    is_llama_config: true,
    max_position_embeddings: 8192,
    mlp_bias: false,
    model_type: 'llama',
    num_attention_heads: 9,
    num_hidden_layers: 30,
    num_key_value_heads: 3,
    rms_norm_eps: 1e-5,
    rope_interleaved: false,
    rope_scaling: null,
    rope_theta: 100000,
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    vocab_size: 49152,
  };

  it('parses a SmolLM2-135M config (model_type llama, recognised by its repo URL)', () => {
    const url = 'https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/config.json';
    expect(parseHfConfig(smollm, url)).toEqual({
      architecture: 'smollm',
      hiddenSize: 576,
      intermediateSize: 1536,
      numLayers: 30,
      numHeads: 9,
      numKvHeads: 3,
      headDim: 64,
      vocabSize: 49152,
      maxPositions: 8192,
      rmsNormEps: 1e-5,
      ropeTheta: 100000,
      ropeLayout: 'half',
      tiedEmbeddings: true,
      attentionBias: false,
      bosTokenId: 0,
      eosTokenIds: [0],
    });
    expect(parseHfConfig(smollm, 'local/config.json').architecture).toBe('llama');
  });

  it('applies LlamaConfig defaults to a TinyLlama config', () => {
    const c = parseHfConfig(
      {
        architectures: ['LlamaForCausalLM'],
        hidden_size: 2048,
        intermediate_size: 5632,
        max_position_embeddings: 2048,
        model_type: 'llama',
        num_attention_heads: 32,
        num_hidden_layers: 22,
        num_key_value_heads: 4,
        rms_norm_eps: 1e-5,
        rope_scaling: null,
        tie_word_embeddings: false,
        vocab_size: 32000,
      },
      'tinyllama/config.json',
    );
    expect(c).toMatchObject({
      headDim: 64,
      ropeTheta: 10000,
      bosTokenId: 1,
      eosTokenIds: [2],
      tiedEmbeddings: false,
    });
    expect(c.ropeScaling).toBeUndefined();
  });

  it('parses Qwen2 (biases on), Mistral (sliding window caps the context) and Llama 3.2 (llama3 RoPE, eos list)', () => {
    const qwen = parseHfConfig(
      {
        architectures: ['Qwen2ForCausalLM'],
        bos_token_id: 151643,
        eos_token_id: 151643,
        hidden_size: 896,
        intermediate_size: 4864,
        max_position_embeddings: 32768,
        model_type: 'qwen2',
        num_attention_heads: 14,
        num_hidden_layers: 24,
        num_key_value_heads: 2,
        rms_norm_eps: 1e-6,
        rope_theta: 1000000.0,
        sliding_window: 32768,
        tie_word_embeddings: true,
        use_sliding_window: false,
        vocab_size: 151936,
      },
      'qwen/config.json',
    );
    expect(qwen).toMatchObject({
      architecture: 'qwen2',
      attentionBias: true,
      headDim: 64,
      maxPositions: 32768,
    });

    const mistral = parseHfConfig(
      {
        architectures: ['MistralForCausalLM'],
        hidden_size: 4096,
        intermediate_size: 14336,
        max_position_embeddings: 32768,
        model_type: 'mistral',
        num_attention_heads: 32,
        num_hidden_layers: 32,
        num_key_value_heads: 8,
        sliding_window: 4096,
        vocab_size: 32000,
      },
      'mistral/config.json',
    );
    expect(mistral).toMatchObject({ architecture: 'mistral', maxPositions: 4096, numKvHeads: 8 });

    const llama3 = parseHfConfig(
      {
        architectures: ['LlamaForCausalLM'],
        bos_token_id: 128000,
        eos_token_id: [128001, 128008, 128009],
        head_dim: 64,
        hidden_size: 2048,
        intermediate_size: 8192,
        max_position_embeddings: 131072,
        model_type: 'llama',
        num_attention_heads: 32,
        num_hidden_layers: 16,
        num_key_value_heads: 8,
        rope_scaling: {
          factor: 32.0,
          high_freq_factor: 4.0,
          low_freq_factor: 1.0,
          original_max_position_embeddings: 8192,
          rope_type: 'llama3',
        },
        rope_theta: 500000.0,
        tie_word_embeddings: true,
        vocab_size: 128256,
      },
      'llama3/config.json',
    );
    expect(llama3.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(llama3.ropeScaling).toEqual({
      type: 'llama3',
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
  });

  it('honours ringwork_rope_layout and defaults to half', () => {
    expect(parseHfConfig({ ...smollm, ringwork_rope_layout: 'interleaved' }, 'c.json').ropeLayout).toBe(
      'interleaved',
    );
    expect(parseHfConfig(smollm, 'c.json').ropeLayout).toBe('half');
  });

  it('refuses other architectures and RoPE scalings, naming the file and the supported families', async () => {
    const gpt2 = await expectError(
      () => parseHfConfig({ model_type: 'gpt2', n_embd: 768 }, 'gpt2/config.json'),
      'MODEL_UNSUPPORTED_ARCHITECTURE',
      'gpt2/config.json',
      'gpt2',
      'llama',
      'mistral',
      'qwen2',
    );
    expect(gpt2.details.supported).toEqual(expect.arrayContaining(['llama', 'mistral', 'qwen2']));
    await expectError(
      () =>
        parseHfConfig({ ...smollm, model_type: 'mixtral', architectures: ['MixtralForCausalLM'] }, 'mx.json'),
      'MODEL_UNSUPPORTED_ARCHITECTURE',
      'mixtral',
    );
    await expectError(
      () => parseHfConfig({ architectures: ['GPT2LMHeadModel'], n_embd: 768 }, 'noType.json'),
      'MODEL_UNSUPPORTED_ARCHITECTURE',
      'GPT2LMHeadModel',
    );
    await expectError(
      () => parseHfConfig({ ...smollm, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'y.json'),
      'MODEL_UNSUPPORTED_ARCHITECTURE',
      'yarn',
    );
    await expectError(
      () => parseHfConfig({ ...smollm, hidden_act: 'gelu' }, 'g.json'),
      'MODEL_UNSUPPORTED_ARCHITECTURE',
      'gelu',
    );
    await expectError(
      () => parseHfConfig({ ...smollm, architectures: ['LlamaForSequenceClassification'] }, 's.json'),
      'MODEL_UNSUPPORTED_ARCHITECTURE',
      'LlamaForSequenceClassification',
    );
  });

  it('reports missing and inconsistent fields as MODEL_BAD_CONFIG', async () => {
    const { hidden_size: _h, ...noHidden } = smollm;
    const e = await expectError(
      () => parseHfConfig(noHidden, 'nh/config.json'),
      'MODEL_BAD_CONFIG',
      'nh/config.json',
      'hidden_size',
    );
    expect(e.details.issues).toBeDefined();
    await expectError(
      () => parseHfConfig({ ...smollm, num_key_value_heads: 4 }, 'kv.json'),
      'MODEL_BAD_CONFIG',
      'num_key_value_heads',
    );
    await expectError(() => parseHfConfig([1, 2], 'arr.json'), 'MODEL_BAD_CONFIG', 'arr.json');
  });

  it('toHfConfig is the inverse of parseHfConfig for every preset and variant', () => {
    const variants: ModelConfig[] = [
      ...Object.values(SYNTH_PRESETS),
      { ...TINY, architecture: 'qwen2', attentionBias: true, eosTokenIds: [2, 5] },
      { ...TINY, architecture: 'mistral', ropeLayout: 'interleaved' },
      { ...TINY, ropeScaling: { type: 'linear', factor: 2 } },
      {
        ...TINY,
        ropeScaling: {
          type: 'llama3',
          factor: 8,
          lowFreqFactor: 1,
          highFreqFactor: 4,
          originalMaxPositionEmbeddings: 128,
        },
      },
    ];
    for (const c of variants) {
      const hf = JSON.parse(JSON.stringify(toHfConfig(c))) as Record<string, unknown>;
      expect(hf.torch_dtype).toBe('float32');
      expect(parseHfConfig(hf, 'roundtrip/config.json')).toEqual(c);
    }
    expect(toHfConfig(SYNTH_PRESETS['smollm2-135m'])).toMatchObject({
      model_type: 'llama',
      architectures: ['LlamaForCausalLM'],
    });
  });
});

describe('requiredTensorNames', () => {
  it('maps units to tensors: embedding, blocks, head (tied head reuses the embedding)', () => {
    const untied = TINY;
    const tied = { ...TINY, tiedEmbeddings: true };
    expect(tensorNamesForUnit(untied, 0)).toEqual(['model.embed_tokens.weight']);
    expect(tensorNamesForUnit(untied, 4)).toEqual(['model.norm.weight', 'lm_head.weight']);
    expect(tensorNamesForUnit(tied, 4)).toEqual(['model.norm.weight', 'model.embed_tokens.weight']);
    expect(tensorNamesForUnit(untied, 2)).toEqual([
      'model.layers.1.input_layernorm.weight',
      'model.layers.1.self_attn.q_proj.weight',
      'model.layers.1.self_attn.k_proj.weight',
      'model.layers.1.self_attn.v_proj.weight',
      'model.layers.1.self_attn.o_proj.weight',
      'model.layers.1.post_attention_layernorm.weight',
      'model.layers.1.mlp.gate_proj.weight',
      'model.layers.1.mlp.up_proj.weight',
      'model.layers.1.mlp.down_proj.weight',
    ]);
    expect(tensorNamesForUnit({ ...TINY, attentionBias: true }, 1)).toContain(
      'model.layers.0.self_attn.k_proj.bias',
    );
    expect(requiredTensorNames(untied)).toHaveLength(1 + 3 * 9 + 2);
    expect(requiredTensorNames(tied)).toHaveLength(1 + 3 * 9 + 1);
    expect(requiredTensorNames(untied, [1, 3])).toHaveLength(18);
    expect(requiredTensorNames(tied, [4, 5])).toEqual(['model.norm.weight', 'model.embed_tokens.weight']);
  });

  it('rejects empty or out-of-bounds ranges', async () => {
    await expectError(() => requiredTensorNames(TINY, [2, 2]), 'GRAPH_BAD_RANGE', '[2, 2)');
    await expectError(() => requiredTensorNames(TINY, [0, 6]), 'GRAPH_BAD_RANGE', '[0, 6)');
  });
});

describe('safetensors writer and reader (in memory)', () => {
  it('pads the header so data starts 8-byte aligned and records offsets', () => {
    const layout = buildSafetensorsHeader([
      { name: 'a', dtype: 'F16', shape: [3] },
      { name: 'b', dtype: 'F32', shape: [2, 2] },
    ]);
    const n = Number(new DataView(layout.header.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    expect(layout.header.byteLength).toBe(8 + n);
    expect(layout.offsets).toEqual([8 + n, 8 + n + 6]);
    expect(layout.fileBytes).toBe(8 + n + 6 + 16);
  });

  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`round-trips a test-tiny model stored as ${dtype}`, async () => {
      const tensors = tinyTensors(TINY, dtype);
      const opener = createMemoryFileOpener({
        'config.json': json(toHfConfig(TINY)),
        'model.safetensors': concat(writeSafetensors(tensors, { note: 'x' })),
      });
      const model = await openSafetensorsModel(opener);
      expect(model.config).toEqual(TINY);
      expect(model.metadata.get('model.safetensors')).toEqual({ format: 'pt', note: 'x' });
      expect(model.tensors.size).toBe(tensors.length);
      for (const t of tensors) {
        expect(model.tensors.get(t.name)).toMatchObject({ dtype, shape: t.shape, file: 'model.safetensors' });
        // synthTensor already rounds to the dtype, so decoding must reproduce it bit for bit.
        expectSameFloats(await model.readTensor(t.name), t.data, t.name);
      }
    });
  }

  it('plans shards like save_pretrained and reads them back through the index', async () => {
    const tensors = tinyTensors(TINY);
    const plan = planSafetensorsShards(tensors, 100_000);
    expect(plan.files.length).toBeGreaterThan(1);
    expect(plan.files[0]!.file).toBe(`model-00001-of-0000${plan.files.length}.safetensors`);
    expect(planSafetensorsShards(tensors, 1e12).index).toBeNull();
    const { files, index } = writeShardedSafetensors(tensors, 100_000);
    const mem: Record<string, Uint8Array> = {
      'config.json': json(toHfConfig(TINY)),
      'model.safetensors.index.json': json(index),
    };
    for (const f of files) mem[f.file] = concat(f.chunks);
    const model = await openSafetensorsModel(createMemoryFileOpener(mem));
    expect(model.files).toEqual(files.map((f) => f.file));
    for (const t of tensors) expectSameFloats(await model.readTensor(t.name), t.data, t.name);
  });

  it('rejects unusable dtypes, wrong extents, wrong shapes and an absurd header length', async () => {
    const base = tinyTensors(TINY);
    const bytes = concat(writeSafetensors(base));
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<
      string,
      { dtype: string; shape: number[]; data_offsets: number[] }
    >;
    const data = bytes.subarray(8 + n);
    const rebuild = (h: typeof header, tail: Uint8Array = data) => {
      const text = new TextEncoder().encode(JSON.stringify(h));
      const out = new Uint8Array(8 + text.byteLength + tail.byteLength);
      new DataView(out.buffer).setUint32(0, text.byteLength, true);
      out.set(text, 8);
      out.set(tail, 8 + text.byteLength);
      return createMemoryFileOpener({ 'config.json': json(toHfConfig(TINY)), 'model.safetensors': out });
    };
    const rewrite = (mutate: (h: typeof header) => void) => {
      const h = structuredClone(header);
      mutate(h);
      return rebuild(h);
    };
    const name = 'model.layers.0.mlp.up_proj.weight';
    await expectError(
      openSafetensorsModel(rewrite((h) => (h[name]!.dtype = 'I32'))),
      'MODEL_BAD_TENSOR',
      name,
      'I32',
    );
    await expectError(
      openSafetensorsModel(rewrite((h) => (h[name]!.dtype = 'F16'))),
      'MODEL_BAD_TENSOR',
      name,
    );
    await expectError(
      openSafetensorsModel(rewrite((h) => (h[name]!.shape = [TINY.hiddenSize, TINY.intermediateSize]))),
      'MODEL_BAD_TENSOR',
      name,
      'config.json implies',
    );
    // Extra tensors of an unusable dtype (e.g. int64 buffers) are skipped, not fatal.
    const withExtra = structuredClone(header);
    withExtra['model.position_ids'] = {
      dtype: 'I64',
      shape: [2],
      data_offsets: [data.byteLength, data.byteLength + 16],
    };
    const tail = new Uint8Array(data.byteLength + 16);
    tail.set(data);
    const extraModel = await openSafetensorsModel(rebuild(withExtra, tail));
    expect(extraModel.tensors.size).toBe(base.length);
    expect(extraModel.tensors.has('model.position_ids')).toBe(false);
    expect(() =>
      parseSafetensorsPrefix(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), 'x.safetensors', 1000),
    ).toThrow(/not a safetensors file/);
  });
});
