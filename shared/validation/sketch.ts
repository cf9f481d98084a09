/**
 * A tolerance-comparable sketch of one step's output (hidden states or logits), TOPLOC-style:
 * per row, the L2 norm, the `k` largest-magnitude entries (index and f32 value) and `m` fixed ±1
 * random projections. Two honest backends agree on it within a small relative tolerance; a
 * tampered output moves it by far more (see the README's measurements). The sketch is a
 * deterministic function of the exact bytes, so anyone holding the bytes can recompute it.
 *
 * Why these three parts: the top-k values catch any change to the dominant directions (noise,
 * another model, q4 weights, skipped units); the norm catches uniform scaling and zeros; the
 * projections see every dimension, so a change outside the top-k (one flipped sign in a small
 * dimension) still moves the sketch instead of surfacing one stage later and being blamed on an
 * honest receiver.
 */
import { RingworkError } from '../errors.js';
import { mulberry32 } from '../util/prng.js';

/** Sketch sizes. */
export interface SketchParams {
  /** Largest-magnitude entries kept per row. */
  k: number;
  /** ±1 random projections per row. */
  m: number;
}

/** The default: 8 entries and 4 projections per row (68 bytes a row). */
export const DEFAULT_SKETCH: SketchParams = { k: 8, m: 4 };

/** One row's sketch. */
export interface RowSketch {
  norm: number;
  /** Indices of the `k` largest |values|, largest first (ties: lower index first). */
  idx: number[];
  /** The values at `idx` (f32, sign kept). */
  val: number[];
  /** `m` projections onto fixed ±1 vectors. */
  proj: number[];
}

/** A step's sketch: one {@link RowSketch} per row (prefill steps have several rows). */
export interface Sketch {
  rowLen: number;
  rows: RowSketch[];
}

const f32 = Math.fround;
const signCache = new Map<string, Int8Array>();

/** The `j`-th fixed ±1 projection vector of length `n` (public and seeded, the same everywhere). */
function signs(n: number, j: number): Int8Array {
  const key = `${n}:${j}`;
  let s = signCache.get(key);
  if (!s) {
    const next = mulberry32(0x5eed0000 + j);
    s = new Int8Array(n);
    for (let i = 0; i < n; i++) s[i] = next() & 1 ? 1 : -1;
    signCache.set(key, s);
  }
  return s;
}

/** Sketches `data` as rows of `rowLen` values. */
export function sketchOf(data: Float32Array, rowLen: number, p: SketchParams = DEFAULT_SKETCH): Sketch {
  if (rowLen <= 0 || data.length % rowLen !== 0) {
    throw new RingworkError('INVALID_ARGUMENT', `Cannot sketch ${data.length} values as rows of ${rowLen}.`);
  }
  const k = Math.min(p.k, rowLen);
  const rows: RowSketch[] = [];
  for (let r = 0; r < data.length / rowLen; r++) {
    const row = data.subarray(r * rowLen, (r + 1) * rowLen);
    let sq = 0;
    for (const v of row) sq += v * v;
    // Partial selection of the k largest |v| (k is small; rowLen is a hidden size or a vocabulary).
    const idx: number[] = [];
    for (let i = 0; i < rowLen; i++) {
      const a = Math.abs(row[i]!);
      if (idx.length === k && a <= Math.abs(row[idx[k - 1]!]!)) continue;
      let at = idx.length === k ? k - 1 : idx.length;
      if (idx.length < k) idx.push(i);
      while (at > 0 && Math.abs(row[idx[at - 1]!]!) < a) {
        idx[at] = idx[at - 1]!;
        at--;
      }
      idx[at] = i;
    }
    const proj: number[] = [];
    for (let j = 0; j < p.m; j++) {
      const s = signs(rowLen, j);
      let acc = 0;
      for (let i = 0; i < rowLen; i++) acc += s[i]! * row[i]!;
      proj.push(f32(acc));
    }
    rows.push({ norm: f32(Math.sqrt(sq)), idx, val: idx.map((i) => row[i]!), proj });
  }
  return { rowLen, rows };
}

/** Exact equality (the same bytes always give the same sketch). */
export function sketchesEqual(a: Sketch, b: Sketch): boolean {
  if (a.rowLen !== b.rowLen || a.rows.length !== b.rows.length) return false;
  return a.rows.every((ra, r) => {
    const rb = b.rows[r]!;
    const same = (x: number[], y: number[]) => x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
    return (
      Object.is(ra.norm, rb.norm) && same(ra.idx, rb.idx) && same(ra.val, rb.val) && same(ra.proj, rb.proj)
    );
  });
}

function rowDistance(a: RowSketch, b: RowSketch): number {
  // Everything is measured relative to the row's size, so one tolerance serves hidden states and logits.
  const scale = Math.max(a.norm, b.norm, 1e-12);
  const peak = Math.max(Math.abs(a.val[0] ?? 0), Math.abs(b.val[0] ?? 0), 1e-12);
  let d = Math.abs(a.norm - b.norm) / scale;
  const inB = new Map(b.idx.map((i, j) => [i, b.val[j]!]));
  const inA = new Map(a.idx.map((i, j) => [i, a.val[j]!]));
  const kthA = Math.abs(a.val[a.val.length - 1] ?? 0);
  const kthB = Math.abs(b.val[b.val.length - 1] ?? 0);
  a.idx.forEach((i, j) => {
    const vb = inB.get(i);
    // An entry only one side kept must be at most the other side's k-th magnitude (a near-tie at the cut).
    d = Math.max(
      d,
      vb === undefined ? Math.max(0, Math.abs(a.val[j]!) - kthB) / peak : Math.abs(a.val[j]! - vb) / peak,
    );
  });
  b.idx.forEach((i, j) => {
    if (!inA.has(i)) d = Math.max(d, Math.max(0, Math.abs(b.val[j]!) - kthA) / peak);
  });
  for (let j = 0; j < Math.min(a.proj.length, b.proj.length); j++) {
    d = Math.max(d, Math.abs(a.proj[j]! - b.proj[j]!) / scale);
  }
  return d;
}

/**
 * The relative distance of two sketches of the same tensor shape: the largest of the relative norm
 * difference, the top-k value differences (relative to the largest entry) and the projection
 * differences (relative to the norm), over every row. Infinite when the shapes differ.
 */
export function sketchDistance(a: Sketch, b: Sketch): number {
  if (a.rowLen !== b.rowLen || a.rows.length !== b.rows.length) return Infinity;
  let d = 0;
  for (let r = 0; r < a.rows.length; r++) d = Math.max(d, rowDistance(a.rows[r]!, b.rows[r]!));
  return Number.isNaN(d) ? Infinity : d;
}

/** The relative max-abs distance of two whole tensors (referee checks of recorded inputs). */
export function tensorDistance(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let peak = 1e-12;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    peak = Math.max(peak, Math.abs(a[i]!), Math.abs(b[i]!));
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
  }
  const r = d / peak;
  return Number.isNaN(r) ? Infinity : r;
}
