import type { ModelConfig } from '../model/types.js';

/**
 * cos/sin tables `[positions, headDim/2]` for RoPE, with Llama-3 / linear frequency scaling.
 * Computed in float32 arithmetic like llama2.c so tables match the reference bit for bit where
 * possible.
 */
export function ropeTables(config: ModelConfig, positions: number): { cos: Float32Array; sin: Float32Array } {
  const half = config.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    inv[i] = Math.fround(1 / Math.fround(Math.pow(config.ropeTheta, Math.fround((2 * i) / config.headDim))));
  }
  const s = config.ropeScaling;
  if (s?.type === 'linear') for (let i = 0; i < half; i++) inv[i] = inv[i]! / s.factor;
  if (s?.type === 'llama3') {
    const low = s.lowFreqFactor ?? 1;
    const high = s.highFreqFactor ?? 4;
    const orig = s.originalMaxPositionEmbeddings ?? 8192;
    const lowWavelen = orig / low;
    const highWavelen = orig / high;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) inv[i] = f / s.factor;
      else {
        const smooth = (orig / wavelen - low) / (high - low);
        inv[i] = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
  }
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const v = Math.fround(p * inv[i]!);
      cos[p * half + i] = Math.cos(v);
      sin[p * half + i] = Math.sin(v);
    }
  }
  return { cos, sin };
}
