import { z } from 'zod';
import type { WeightFormat } from '../graph/compile-shard.js';
import { unitCount, unitName } from '../graph/units.js';
import type { ModelConfig } from './types.js';

/** One plannable unit of a model (embedding, a block, or the head). */
export const layerProfileSchema = z
  .object({
    name: z.string().min(1),
    /** FLOPs per decoded token at the profile's context length (what the planner's cost model uses). */
    flopsPerToken: z.number().nonnegative().finite(),
    /** Bytes of this unit's weights in the profile's weight format. */
    weightBytes: z.number().nonnegative().finite(),
    /** KV-cache bytes this unit adds per token of context. */
    kvBytesPerToken: z.number().nonnegative().finite(),
    /** Bytes of the activation this unit hands on, per token (hidden state; a sampled token id for the head). */
    outBytesPerToken: z.number().nonnegative().finite(),
    /** FLOPs per token of a prefill of `prefillTokens` tokens (attention averaged over the prompt). */
    prefillFlopsPerToken: z.number().nonnegative().finite().optional(),
    /** Same as flopsPerToken; kept explicit next to prefillFlopsPerToken. */
    decodeFlopsPerToken: z.number().nonnegative().finite().optional(),
  })
  .strict();

/** The model profile `npm run model-profile` prints and the planner consumes. */
export const modelProfileSchema = z
  .object({
    name: z.string().min(1),
    layers: z.array(layerProfileSchema).min(1),
    weightFormat: z.enum(['f32', 'q8', 'q4']).optional(),
    contextTokens: z.number().int().positive().optional(),
    prefillTokens: z.number().int().positive().optional(),
    config: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

export type LayerProfile = z.infer<typeof layerProfileSchema>;
export type ModelProfile = z.infer<typeof modelProfileSchema>;

/** Bytes of a `[n, k]` projection in a weight format (MatMulNBits blocks of 32 + f32 scales). */
export function matrixBytes(n: number, k: number, format: WeightFormat, blockSize = 32): number {
  if (format === 'f32') return n * k * 4;
  const blocks = Math.ceil(k / blockSize);
  const codes = format === 'q8' ? blockSize : blockSize / 2;
  return n * blocks * (codes + 4);
}

/**
 * Per-unit costs of a model: FLOPs (decode at `contextTokens`, prefill of `prefillTokens`), weight
 * bytes in `format`, KV bytes per token and hand-off bytes. Matches what {@link compileShard}
 * emits: the embedding stays f32, a tied head is counted as its own matrix (a head-only peer holds it).
 */
export function profileModel(
  name: string,
  c: ModelConfig,
  opts: { format?: WeightFormat; contextTokens?: number; prefillTokens?: number } = {},
): ModelProfile {
  const format = opts.format ?? 'f32';
  const ctx = opts.contextTokens ?? Math.min(c.maxPositions, 2048);
  const prefill = opts.prefillTokens ?? Math.min(512, ctx);
  const D = c.hiddenSize;
  const F = c.intermediateSize;
  const qD = c.numHeads * c.headDim;
  const kvD = c.numKvHeads * c.headDim;
  const V = c.vocabSize;
  const layers: LayerProfile[] = [];
  const n = unitCount(c);
  for (let u = 0; u < n; u++) {
    const name = unitName(c, u);
    if (u === 0) {
      layers.push({
        name,
        flopsPerToken: 0,
        weightBytes: V * D * 4,
        kvBytesPerToken: 0,
        outBytesPerToken: D * 4,
        prefillFlopsPerToken: 0,
        decodeFlopsPerToken: 0,
      });
    } else if (u === n - 1) {
      const flops = 2 * D * V + 4 * D;
      layers.push({
        name,
        flopsPerToken: flops,
        weightBytes: matrixBytes(V, D, format) + D * 4,
        kvBytesPerToken: 0,
        // The head stage samples the next token itself (sampler settings travel with the request), so
        // only a 4-byte token id leaves it — never the vocab-sized logits.
        outBytesPerToken: 4,
        prefillFlopsPerToken: flops,
        decodeFlopsPerToken: flops,
      });
    } else {
      const proj =
        2 * (D * qD + 2 * D * kvD + qD * D) + 2 * 3 * D * F + (c.attentionBias ? 2 * (qD + 2 * kvD) : 0);
      // Element-wise work: two norms, RoPE, SwiGLU, residual adds (small next to the matmuls).
      const pointwise = 8 * D + 6 * (qD + kvD) + 4 * F;
      const attn = (t: number) => 4 * qD * t;
      const decode = proj + pointwise + attn(ctx);
      const bias = c.attentionBias ? (qD + 2 * kvD) * 4 : 0;
      layers.push({
        name,
        flopsPerToken: decode,
        weightBytes:
          matrixBytes(qD, D, format) +
          2 * matrixBytes(kvD, D, format) +
          matrixBytes(D, qD, format) +
          2 * matrixBytes(F, D, format) +
          matrixBytes(D, F, format) +
          2 * D * 4 +
          bias,
        kvBytesPerToken: 2 * kvD * 4,
        outBytesPerToken: D * 4,
        prefillFlopsPerToken: proj + pointwise + attn((prefill + 1) / 2),
        decodeFlopsPerToken: decode,
      });
    }
  }
  return {
    name,
    layers,
    weightFormat: format,
    contextTokens: ctx,
    prefillTokens: prefill,
    config: { ...c },
  };
}
