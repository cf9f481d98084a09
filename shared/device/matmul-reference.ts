/**
 * CPU reference for the WebGPU matmul check: a plain triple loop in f64, deterministic random
 * inputs, and the error measures the profiler reports.
 */

import { mulberry32Float } from '../util/prng.js';

/** Deterministic pseudo-random numbers in [-1, 1) (mulberry32), so a failed check can be replayed. */
export function randomMatrix(length: number, seed: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(length);
  const next = mulberry32Float(seed);
  for (let i = 0; i < length; i++) out[i] = next() * 2 - 1;
  return out;
}

/** `C = A·B` for row-major `A` (m×k) and `B` (k×n), accumulated in f64. */
export function referenceMatmul(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p]!;
      const row = p * n;
      for (let j = 0; j < n; j++) c[i * n + j]! += av * b[row + j]!;
    }
  }
  return c;
}

/** How far a computed matrix is from the reference. */
export interface MatmulError {
  /** Largest `|got - want|` over all elements. */
  maxAbsError: number;
  /**
   * `maxAbsError / max|want|`: a norm-wise relative error. Element-wise ratios blow up on outputs
   * that happen to be near zero, which says nothing about the kernel.
   */
  relError: number;
}

/** Compares `got` with `want` element by element; NaN anywhere makes both errors Infinity. */
export function compareMatmul(got: ArrayLike<number>, want: ArrayLike<number>): MatmulError {
  if (got.length !== want.length) return { maxAbsError: Infinity, relError: Infinity };
  let maxAbs = 0;
  let maxRef = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (!(d <= maxAbs)) maxAbs = Number.isNaN(d) ? Infinity : d;
    maxRef = Math.max(maxRef, Math.abs(want[i]!));
  }
  return { maxAbsError: maxAbs, relError: maxRef > 0 ? maxAbs / maxRef : maxAbs };
}
