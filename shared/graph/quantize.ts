/**
 * Block quantisation in the layout of ONNX Runtime's `com.microsoft.MatMulNBits`: the weight
 * `[N, K]` (rows = output features, as stored by Hugging Face and llama2.c) is cut into blocks of
 * `blockSize` along K; each block stores unsigned codes with an implicit zero point of
 * 2^(bits-1) and one float scale. K is zero-padded up to a whole number of blocks.
 */
export interface QuantizedWeight {
  bits: 4 | 8;
  blockSize: number;
  n: number;
  k: number;
  /** `[N, nBlocks, blockSize * bits / 8]` bytes. */
  data: Uint8Array;
  /** `[N * nBlocks]` scales. */
  scales: Float32Array;
}

/** Symmetric per-block quantisation (zero point 8 for 4-bit, 128 for 8-bit). */
export function quantizeBlockwise(
  w: Float32Array,
  n: number,
  k: number,
  bits: 4 | 8,
  blockSize: number,
): QuantizedWeight {
  const nBlocks = Math.ceil(k / blockSize);
  const blob = (blockSize * bits) / 8;
  const data = new Uint8Array(n * nBlocks * blob);
  const scales = new Float32Array(n * nBlocks);
  const zero = bits === 4 ? 8 : 128;
  const qmax = bits === 4 ? 7 : 127;
  const qmin = -zero;
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < nBlocks; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(k, k0 + blockSize);
      let amax = 0;
      for (let i = k0; i < k1; i++) amax = Math.max(amax, Math.abs(w[r * k + i]!));
      const scale = amax / qmax || 1;
      scales[r * nBlocks + b] = scale;
      const base = (r * nBlocks + b) * blob;
      for (let i = 0; i < blockSize; i++) {
        const x = k0 + i < k1 ? w[r * k + k0 + i]! : 0;
        const q = Math.max(qmin, Math.min(qmax, Math.round(x / scale))) + zero;
        if (bits === 8) data[base + i] = q;
        else if ((i & 1) === 0) data[base + (i >> 1)] = q;
        else data[base + (i >> 1)]! |= q << 4;
      }
    }
  }
  return { bits, blockSize, n, k, data, scales };
}

/** Transposes a row-major `[rows, cols]` matrix to `[cols, rows]`. */
export function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  // Blocked to stay cache-friendly on the multi-hundred-MB matrices of real models.
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    for (let c0 = 0; c0 < cols; c0 += B) {
      const r1 = Math.min(rows, r0 + B);
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = w[r * cols + c]!;
    }
  }
  return out;
}
