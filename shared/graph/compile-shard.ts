import { RingworkError, throwIfAborted } from '../errors.js';
import { requiredTensorNames } from '../model/tensor-names.js';
import type { ModelSource } from '../model/types.js';
import { causalMask, gqaLengths, rowsCausalMask } from './attention-masks.js';
import { GraphBuilder, type ExternalBlob } from './onnx-builder.js';
import { quantizeBlockwise, transpose2d } from './quantize.js';
import { ropeTables } from './rope.js';
import { blocksIn, checkUnitRange, type UnitRange } from './units.js';

/**
 * Weight formats a shard can be compiled to. `f32` is exact; `q8` / `q4` use ONNX Runtime's
 * `MatMulNBits` (8- or 4-bit symmetric blocks of 32) for every projection matrix, while the
 * embedding table and norms stay float32.
 */
export type WeightFormat = 'f32' | 'q8' | 'q4';
export const WEIGHT_FORMATS: readonly WeightFormat[] = ['f32', 'q8', 'q4'];

/** Options of {@link compileShard}. */
export interface CompileOptions {
  range: UnitRange;
  weightFormat: WeightFormat;
  /**
   * `last`: logits of the final position only (generation); `all`: every position (tests, scoring);
   * `rows`: the last `logits_rows` positions (an int64 [1] input: 1 to decode, k+1 to verify k
   * drafted tokens in one pass).
   */
  logits: 'last' | 'all' | 'rows';
  /** Positions to build RoPE tables for: the longest context this shard will serve. */
  contextLength: number;
  /** Quantisation block size (default 32). */
  blockSize?: number;
  /**
   * How attention is built (default `ops`): `ops` is the maths in ~20 standard ops per block
   * (Concat, MatMul, Softmax, a causal mask...); `fused` one `GroupQueryAttention` contrib node per
   * block (RoPE, cache append, causal mask, softmax and the weighted sum in one kernel). Same I/O
   * and KV layout either way. `fused` has fewer nodes but measured slower on wasm (more CPU per
   * decode step on the stories15M shape: `npm run bench:engine` runs both side by side), so it is
   * opt-in.
   * The fused kernel needs a head size that is a multiple of 16: other models (stories260K's 8) get
   * `ops` whatever is asked, and {@link ShardIo.attention} says which graph was built.
   */
  attention?: AttentionMode;
  /**
   * How the KV cache crosses the graph (default `concat`); see {@link KvCacheMode}. `rows` applies
   * to the `ops` attention graph only: the fused graph keeps `concat` whatever is asked, and
   * {@link ShardIo.kvCache} says which was built.
   */
  kvCache?: KvCacheMode;
}

/** See {@link CompileOptions.attention}. */
export type AttentionMode = 'fused' | 'ops';
export const ATTENTION_MODES: readonly AttentionMode[] = ['fused', 'ops'];

/**
 * The KV-cache contract of a block. `concat`: `past_*` is the cache `[1, kvHeads, len, headDim]`
 * and `present_*` the whole cache with the step's rows appended (`Concat(past, new)`), so the
 * cache enters and leaves the graph whole on every step: on the wasm backend, which copies every
 * input into its heap and every output out of it, that is three passes over the cache per step
 * besides attention's own. `rows`: `past_*` is a buffer `[1, kvHeads, capacity, headDim]` whose
 * first `position_ids[0]` rows are the cache (the rows after it, spare capacity or positions a
 * rewind dropped, are masked, never read as keys), and the outputs `new_key.*` / `new_value.*`
 * are only the step's rows `[1, kvHeads, S, headDim]`: the runner writes them into its buffer in
 * place (O(new)), a rewind is a length change, and attention runs over the past and the new rows
 * side by side (no Concat copy of the cache). Used on wasm, where it measured faster
 * (`npm run bench:engine`); WebGPU keeps `concat`, whose cache stays on the GPU.
 */
export type KvCacheMode = 'concat' | 'rows';
export const KV_CACHE_MODES: readonly KvCacheMode[] = ['concat', 'rows'];

/** Names of one block's KV-cache inputs and outputs. */
export interface KvIo {
  layer: number;
  pastKey: string;
  pastValue: string;
  /** The whole cache after the step (`concat`), or only the step's rows (`rows`). */
  presentKey: string;
  presentValue: string;
}

/** What the runner needs to know to feed and read a compiled shard. */
export interface ShardIo {
  /** `input_ids` (int64 [1, S]) when the shard starts at the embedding. */
  tokens?: string;
  /** `hidden_in` (float32 [1, S, D]) otherwise. */
  hiddenIn?: string;
  /** `position_ids` (int64 [1, S]) when the shard has blocks. */
  positions?: string;
  kv: KvIo[];
  /** `logits_rows` (int64 [1]): how many final positions get logits (heads compiled with `rows`). */
  logitsRows?: string;
  /** `logits` (float32 [1, S or 1, V]) when the shard ends with the head, else `hidden_out`. */
  output: string;
  outputKind: 'logits' | 'hidden';
  kvHeads: number;
  headDim: number;
  hiddenSize: number;
  vocabSize: number;
  /** The attention graph built (see {@link CompileOptions.attention}); absent without blocks. */
  attention?: AttentionMode;
  /** The KV-cache contract built (see {@link KvCacheMode}); absent without blocks. */
  kvCache?: KvCacheMode;
}

/** A compiled shard: the ONNX model bytes, its external weights and its I/O contract. */
export interface CompiledShard {
  model: Uint8Array;
  externalData: ExternalBlob[];
  io: ShardIo;
  weightBytes: number;
}

/** Progress while reading and converting a shard's tensors. */
export interface CompileProgress {
  tensor: string;
  done: number;
  total: number;
  /** Stored bytes of the tensors read so far, and of all tensors this shard reads. */
  bytesDone: number;
  bytesTotal: number;
}

const MS = 'com.microsoft';

/**
 * Emits the ONNX graph of units `[start, end)` of a Llama-family model, reading only the tensors
 * those units use from `source`. Uses ORT contrib operators that the WebGPU and wasm execution
 * providers implement natively (SimplifiedLayerNormalization, RotaryEmbedding, MatMulNBits);
 * attention is written in standard ops with a grouped-query layout (no KV head replication). The
 * same graph serves prefill (S > 1) and decode (S = 1): a causal mask is computed from
 * `position_ids` and the cache length, so chunked prefill works too.
 */
export async function compileShard(
  source: ModelSource,
  options: CompileOptions,
  opts: { signal?: AbortSignal; onProgress?: (p: CompileProgress) => void } = {},
): Promise<CompiledShard> {
  const c = source.config;
  checkUnitRange(c, options.range);
  if (!Number.isInteger(options.contextLength) || options.contextLength < 1) {
    throw new RingworkError(
      'GRAPH_BAD_OPTION',
      `contextLength must be a positive integer, got ${options.contextLength}.`,
      {
        details: { contextLength: options.contextLength },
      },
    );
  }
  if (!['f32', 'q8', 'q4'].includes(options.weightFormat)) {
    throw new RingworkError(
      'GRAPH_BAD_OPTION',
      `Unknown weight format "${options.weightFormat}": use f32, q8 or q4.`,
      {
        details: { weightFormat: options.weightFormat },
      },
    );
  }
  const [start, end] = options.range;
  const L = c.numLayers;
  const hasEmbed = start === 0;
  const hasHead = end === L + 2;
  const blocks = blocksIn(c, options.range);
  const blockSize = options.blockSize ?? 32;
  const asked = options.attention ?? 'ops';
  if (!ATTENTION_MODES.includes(asked)) {
    throw new RingworkError(
      'GRAPH_BAD_OPTION',
      `Unknown attention mode "${String(asked)}": use fused or ops.`,
      { details: { attention: asked } },
    );
  }
  const attention: AttentionMode = asked === 'fused' && fusedAttentionFits(c.headDim) ? 'fused' : 'ops';
  const askedKv = options.kvCache ?? 'concat';
  if (!KV_CACHE_MODES.includes(askedKv)) {
    throw new RingworkError(
      'GRAPH_BAD_OPTION',
      `Unknown KV cache mode "${String(askedKv)}": use concat or rows.`,
      { details: { kvCache: askedKv } },
    );
  }
  const kvCache: KvCacheMode = attention === 'ops' ? askedKv : 'concat';
  const g = new GraphBuilder();
  const D = c.hiddenSize;
  const qD = c.numHeads * c.headDim;
  const kvD = c.numKvHeads * c.headDim;

  const needed = requiredTensorNames(c, options.range);
  let done = 0;
  let bytesDone = 0;
  const bytesTotal = needed.reduce((a, n) => a + (source.tensors.get(n)?.byteLength ?? 0), 0);
  // A tied embedding is used by both ends of a whole-model shard: fetch it once.
  const reused = new Map<string, Float32Array>();
  const read = async (name: string): Promise<Float32Array> => {
    throwIfAborted(opts.signal, 'Compiling the shard');
    const hit = reused.get(name);
    if (hit) return hit;
    const t = await source.readTensor(name, opts.signal);
    if (name === 'model.embed_tokens.weight' && hasEmbed && hasHead) reused.set(name, t);
    bytesDone += source.tensors.get(name)?.byteLength ?? 0;
    opts.onProgress?.({ tensor: name, done: ++done, total: needed.length, bytesDone, bytesTotal });
    return t;
  };
  const f32 = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

  /**
   * x[..., K] @ [W1; W2; ...]^T for projections that share an input (q/k/v, gate/up), each `[Ni, K]`
   * as stored: one MatMul instead of several, then a Split. Fewer, larger kernels matter on every
   * backend (per-op overhead dominates small models, and WebGPU dispatches are not free).
   */
  const linear = async (
    x: string,
    parts: { name: string; n: number; bias?: string }[],
    k: number,
  ): Promise<string[]> => {
    const n = parts.reduce((a, p) => a + p.n, 0);
    const base = parts.length === 1 ? parts[0]!.name : `${parts[0]!.name}+${parts.length - 1}`;
    const w = new Float32Array(n * k);
    let row = 0;
    for (const part of parts) {
      w.set(await read(part.name), row * k);
      row += part.n;
    }
    let y: string;
    if (options.weightFormat === 'f32') {
      const wt = g.weight(`${base}.T`, 'float32', [k, n], f32(transpose2d(w, n, k)));
      y = g.node('MatMul', [x, wt]);
    } else {
      const bits = options.weightFormat === 'q4' ? 4 : 8;
      const q = quantizeBlockwise(w, n, k, bits, blockSize);
      const nBlocks = Math.ceil(k / blockSize);
      const qb = g.weight(`${base}.q`, 'uint8', [n, nBlocks, (blockSize * bits) / 8], q.data);
      const qs = g.weight(`${base}.scales`, 'float32', [n * nBlocks], f32(q.scales));
      y = g.node('MatMulNBits', [x, qb, qs], {
        domain: MS,
        attrs: { K: k, N: n, bits, block_size: blockSize },
      });
    }
    if (parts.some((p) => p.bias)) {
      const b = new Float32Array(n);
      let off = 0;
      for (const part of parts) {
        if (part.bias) b.set(await read(part.bias), off);
        off += part.n;
      }
      y = g.node('Add', [y, g.weight(`${base}.bias`, 'float32', [n], f32(b))]);
    }
    if (parts.length === 1) return [y];
    const outs = parts.map((_, i) => `${y}.part${i}`);
    g.node('Split', [y, g.constInt64(parts.map((p) => p.n))], { outputs: outs, attrs: { axis: -1 } });
    return outs;
  };
  const linear1 = async (x: string, name: string, n: number, k: number): Promise<string> =>
    (await linear(x, [{ name, n }], k))[0]!;
  const rmsNorm = async (x: string, name: string): Promise<string> =>
    g.node('SimplifiedLayerNormalization', [x, g.weight(name, 'float32', [D], f32(await read(name)))], {
      attrs: { axis: -1, epsilon: { float: c.rmsNormEps }, stash_type: 1 },
    });

  // ---- inputs
  let x: string;
  const io: ShardIo = {
    kv: [],
    output: hasHead ? 'logits' : 'hidden_out',
    outputKind: hasHead ? 'logits' : 'hidden',
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    hiddenSize: D,
    vocabSize: c.vocabSize,
  };
  if (hasEmbed) {
    io.tokens = g.input('input_ids', 'int64', [1, 'seq']);
    const emb = g.weight(
      'model.embed_tokens.weight',
      'float32',
      [c.vocabSize, D],
      f32(await read('model.embed_tokens.weight')),
    );
    x = g.node('Gather', [emb, io.tokens], { attrs: { axis: 0 } });
  } else {
    io.hiddenIn = g.input('hidden_in', 'float32', [1, 'seq', D]);
    x = io.hiddenIn;
  }

  // ---- blocks
  if (blocks.length > 0) {
    io.attention = attention;
    io.kvCache = kvCache;
    const positions = g.input('position_ids', 'int64', [1, 'seq']);
    io.positions = positions;
    const { cos, sin } = ropeTables(c, options.contextLength);
    const cosT = g.weight('rope.cos', 'float32', [options.contextLength, c.headDim / 2], f32(cos));
    const sinT = g.weight('rope.sin', 'float32', [options.contextLength, c.headDim / 2], f32(sin));
    const interleaved = c.ropeLayout === 'interleaved' ? 1 : 0;
    const G = c.numHeads / c.numKvHeads;
    /** Queries and keys rotated to their positions (the ops graphs; the fused node rotates itself). */
    const rotate = (q0: string, k0: string) => ({
      q: g.node('RotaryEmbedding', [q0, positions, cosT, sinT], {
        domain: MS,
        attrs: { interleaved, num_heads: c.numHeads },
      }),
      k: g.node('RotaryEmbedding', [k0, positions, cosT, sinT], {
        domain: MS,
        attrs: { interleaved, num_heads: c.numKvHeads },
      }),
    });
    // Constants are made on first use: the fused graph needs none of them, and ORT warns about
    // an unused initializer.
    const lazy = <T>(make: () => T): (() => T) => {
      let v: T | undefined;
      return () => (v ??= make());
    };
    const shapeKv = lazy(() => g.constInt64([0, 0, c.numKvHeads, c.headDim]));
    const shapeQ = lazy(() => g.constInt64([0, 0, c.numKvHeads, G, c.headDim]));
    const shapeOut = lazy(() => g.constInt64([0, 0, qD]));
    const shapesG = lazy(() => ({
      q: g.constInt64([0, c.numKvHeads, -1, c.headDim]),
      ctx: g.constInt64([0, c.numKvHeads, G, -1, c.headDim]),
    }));
    const ax2 = lazy(() => g.constInt64([2]));
    const scale = lazy(() => g.constFloat([1 / Math.sqrt(c.headDim)], []));

    // Causal mask [1, 1, 1, S, T] from absolute positions: key j is visible to query i iff j <= pos_i.
    let mask = '';
    let rowsMask: { bias: string; split: string } | undefined;
    let lengths: { seqlensK: string; total: string } | undefined;
    const first = blocks[0]!;
    const present = kvCache === 'rows' ? 'new' : 'present';
    for (const l of blocks) {
      const kv: KvIo = {
        layer: l,
        pastKey: `past_key.${l}`,
        pastValue: `past_value.${l}`,
        presentKey: `${present}_key.${l}`,
        presentValue: `${present}_value.${l}`,
      };
      io.kv.push(kv);
      g.input(kv.pastKey, 'float32', [1, c.numKvHeads, 'past', c.headDim]);
      g.input(kv.pastValue, 'float32', [1, c.numKvHeads, 'past', c.headDim]);
      const p = `model.layers.${l}`;
      const h = await rmsNorm(x, `${p}.input_layernorm.weight`);
      const bias = c.attentionBias;
      const proj = (m: string, n: number) => ({
        name: `${p}.self_attn.${m}_proj.weight`,
        n,
        bias: bias ? `${p}.self_attn.${m}_proj.bias` : undefined,
      });
      const [q0, k0, v] = (await linear(h, [proj('q', qD), proj('k', kvD), proj('v', kvD)], D)) as [
        string,
        string,
        string,
      ];
      let merged: string;
      if (attention === 'fused') {
        // GroupQueryAttention appends to the cache (present = past ++ new, the same BNSH layout and
        // names as the `ops` graph), applies RoPE at positions cached + i, masks causally and
        // never replicates KV heads. Its lengths come from the positions, computed once below.
        lengths ??= gqaLengths(g, io.positions);
        merged = g.node(
          'GroupQueryAttention',
          [q0, k0, v, kv.pastKey, kv.pastValue, lengths.seqlensK, lengths.total, cosT, sinT],
          {
            domain: MS,
            outputs: [g.fresh('gqa'), kv.presentKey, kv.presentValue],
            attrs: {
              num_heads: c.numHeads,
              kv_num_heads: c.numKvHeads,
              do_rotary: 1,
              rotary_interleaved: interleaved,
              scale: { float: 1 / Math.sqrt(c.headDim) },
            },
          },
        );
        g.output(kv.presentKey, 'float32', [1, c.numKvHeads, 'total', c.headDim]);
        g.output(kv.presentValue, 'float32', [1, c.numKvHeads, 'total', c.headDim]);
      } else if (kvCache === 'rows') {
        const { q, k } = rotate(q0, k0);
        // Only the step's rows leave the graph: the runner appends them to its buffer.
        const newK = g.node('Transpose', [g.node('Reshape', [k, shapeKv()])], {
          outputs: [kv.presentKey],
          attrs: { perm: [0, 2, 1, 3] },
        });
        const newV = g.node('Transpose', [g.node('Reshape', [v, shapeKv()])], {
          outputs: [kv.presentValue],
          attrs: { perm: [0, 2, 1, 3] },
        });
        g.output(kv.presentKey, 'float32', [1, c.numKvHeads, 'seq', c.headDim]);
        g.output(kv.presentValue, 'float32', [1, c.numKvHeads, 'seq', c.headDim]);
        rowsMask ??= rowsCausalMask(g, io.positions, kv.pastKey, G);
        // Queries grouped by their KV head, the group and position axes merged: [1, kvH, G*S, hd],
        // so keys and values [1, kvH, len, hd] take part in MatMul as they are (no Unsqueeze).
        const qG = g.node('Reshape', [
          g.node('Transpose', [g.node('Reshape', [q, shapeQ()])], { attrs: { perm: [0, 2, 3, 1, 4] } }),
          shapesG().q,
        ]);
        // Scores against the buffer's rows and the step's own rows, side by side: [.., G*S, cap + S].
        // ORT folds each Transpose + MatMul + constant scale into one MatMul that reads K
        // transposed in place (no copy of the cache).
        const keysT = (t: string) => g.node('Transpose', [t], { attrs: { perm: [0, 1, 3, 2] } });
        const scoresPast = g.node('Mul', [g.node('MatMul', [qG, keysT(kv.pastKey)]), scale()]);
        const scoresNew = g.node('Mul', [g.node('MatMul', [qG, keysT(newK)]), scale()]);
        const scores = g.node('Add', [
          g.node('Concat', [scoresPast, scoresNew], { attrs: { axis: -1 } }),
          rowsMask.bias,
        ]);
        const probs = g.node('Softmax', [scores], { attrs: { axis: -1 } });
        const probsPast = g.fresh('probs_past');
        const probsNew = g.fresh('probs_new');
        g.node('Split', [probs, rowsMask.split], { outputs: [probsPast, probsNew], attrs: { axis: -1 } });
        const ctx = g.node('Add', [
          g.node('MatMul', [probsPast, kv.pastValue]),
          g.node('MatMul', [probsNew, newV]),
        ]);
        merged = g.node('Reshape', [
          g.node('Transpose', [g.node('Reshape', [ctx, shapesG().ctx])], {
            attrs: { perm: [0, 3, 1, 2, 4] },
          }),
          shapeOut(),
        ]);
      } else {
        const { q, k } = rotate(q0, k0);
        const k4 = g.node('Transpose', [g.node('Reshape', [k, shapeKv()])], {
          attrs: { perm: [0, 2, 1, 3] },
        });
        const v4 = g.node('Transpose', [g.node('Reshape', [v, shapeKv()])], {
          attrs: { perm: [0, 2, 1, 3] },
        });
        const presentK = g.node('Concat', [kv.pastKey, k4], { outputs: [kv.presentKey], attrs: { axis: 2 } });
        const presentV = g.node('Concat', [kv.pastValue, v4], {
          outputs: [kv.presentValue],
          attrs: { axis: 2 },
        });
        g.output(kv.presentKey, 'float32', [1, c.numKvHeads, 'total', c.headDim]);
        g.output(kv.presentValue, 'float32', [1, c.numKvHeads, 'total', c.headDim]);
        if (l === first) mask = causalMask(g, io.positions, presentK);
        // Queries grouped by their KV head: [1, kvH, G, S, hd]; keys broadcast over G.
        const q5 = g.node('Transpose', [g.node('Reshape', [q, shapeQ()])], {
          attrs: { perm: [0, 2, 3, 1, 4] },
        });
        const kT = g.node('Unsqueeze', [
          g.node('Transpose', [presentK], { attrs: { perm: [0, 1, 3, 2] } }),
          ax2(),
        ]);
        let scores = g.node('MatMul', [q5, kT]);
        scores = g.node('Add', [g.node('Mul', [scores, scale()]), mask]);
        const probs = g.node('Softmax', [scores], { attrs: { axis: -1 } });
        const ctx = g.node('MatMul', [probs, g.node('Unsqueeze', [presentV, ax2()])]);
        merged = g.node('Reshape', [
          g.node('Transpose', [ctx], { attrs: { perm: [0, 3, 1, 2, 4] } }),
          shapeOut(),
        ]);
      }
      const attnOut = await linear1(merged, `${p}.self_attn.o_proj.weight`, D, qD);
      x = g.node('Add', [x, attnOut]);
      const h2 = await rmsNorm(x, `${p}.post_attention_layernorm.weight`);
      const [gate, up] = (await linear(
        h2,
        [
          { name: `${p}.mlp.gate_proj.weight`, n: c.intermediateSize },
          { name: `${p}.mlp.up_proj.weight`, n: c.intermediateSize },
        ],
        D,
      )) as [string, string];
      const act = g.node('Mul', [g.node('Mul', [gate, g.node('Sigmoid', [gate])]), up]);
      const down = await linear1(act, `${p}.mlp.down_proj.weight`, D, c.intermediateSize);
      x = g.node('Add', [x, down]);
    }
  }

  // ---- head or hand-off
  if (hasHead) {
    let h = await rmsNorm(x, 'model.norm.weight');
    if (options.logits === 'last') {
      h = g.node('Slice', [
        h,
        g.constInt64([-1]),
        g.constInt64([Number.MAX_SAFE_INTEGER]),
        g.constInt64([1]),
      ]);
    } else if (options.logits === 'rows') {
      // Slice the last `logits_rows` positions before the (vocab-wide) projection: a verify pass
      // pays the head for the rows it checks, never for a whole prefill chunk.
      g.input('logits_rows', 'int64', [1]);
      io.logitsRows = 'logits_rows';
      h = g.node('Slice', [
        h,
        g.node('Neg', ['logits_rows']),
        g.constInt64([Number.MAX_SAFE_INTEGER]),
        g.constInt64([1]),
      ]);
    }
    const headName = c.tiedEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    // A tied head is stored again in transposed (or quantised) form: a peer that runs only the
    // head needs the matrix anyway, and MatMul wants [D, V].
    const logits = await linear1(h, headName, c.vocabSize, D);
    g.node('Identity', [logits], { outputs: ['logits'] });
    const rows = options.logits === 'last' ? 1 : options.logits === 'rows' ? 'rows' : 'seq';
    g.output('logits', 'float32', [1, rows, c.vocabSize]);
  } else {
    g.node('Identity', [x], { outputs: ['hidden_out'] });
    g.output('hidden_out', 'float32', [1, 'seq', D]);
  }

  const model = g.build(`ringwork_${start}_${end}`, { '': 17, [MS]: 1 });
  return { model, externalData: g.external, io, weightBytes: g.weightBytes };
}

/** Whether ONNX Runtime's GroupQueryAttention takes this head size (it checks `head_size % 16`). */
export function fusedAttentionFits(headDim: number): boolean {
  return headDim % 16 === 0;
}

/** Canonical names of every tensor units `[start, end)` read (each once). */
export const tensorsFor = requiredTensorNames;
