/**
 * The sketch and its distance: deterministic, zero on identical data, below the tolerance for
 * rounding-sized differences, above it for the smallest tamper (noise 1e-3) and for one flipped
 * sign anywhere; and the spot-check policy's adaptive f.
 */
import { describe, expect, it } from 'vitest';
import { mulberry32Float } from '../../../shared/util/prng';
import { DEFAULT_TOLERANCE } from '../../../shared/validation/checks';
import { sketchDistance, sketchesEqual, sketchOf, tensorDistance } from '../../../shared/validation/sketch';
import { createSpotCheckPolicy, spotCheckDetectionProbability } from '../../../shared/validation/spot-check';
import { runs } from '../../helpers/tier';

function hidden(seed: number, n = 64): Float32Array {
  const r = mulberry32Float(seed);
  return Float32Array.from({ length: n }, () => (r() - 0.5) * 4);
}

describe('sketch', () => {
  it('is a deterministic function of the values', () => {
    const x = hidden(1);
    expect(sketchesEqual(sketchOf(x, 64), sketchOf(x.slice(), 64))).toBe(true);
    expect(sketchDistance(sketchOf(x, 64), sketchOf(x, 64))).toBe(0);
    const s = sketchOf(x, 64);
    const mags = s.rows[0]!.val.map(Math.abs);
    expect(mags).toEqual([...mags].sort((a, b) => b - a));
    expect(Math.max(...Array.from(x, Math.abs))).toBe(mags[0]);
  });

  it('keeps rounding-sized differences under the tolerance and moves past it for noise 1e-3 or one flipped sign', () => {
    const n = runs(500);
    for (let t = 0; t < n; t++) {
      const x = hidden(100 + t);
      const r = mulberry32Float(t);
      const ulp = x.map((v) => v * (1 + (r() - 0.5) * 2e-6));
      expect(sketchDistance(sketchOf(x, 64), sketchOf(ulp, 64))).toBeLessThan(DEFAULT_TOLERANCE.sketch);
      const noisy = x.map((v) => v + 1e-3 * Math.abs(v) * (r() < 0.5 ? -1 : 1));
      expect(sketchDistance(sketchOf(x, 64), sketchOf(noisy, 64))).toBeGreaterThan(DEFAULT_TOLERANCE.sketch);
      const flipped = x.slice();
      const d = Math.floor(r() * 64);
      flipped[d] = -flipped[d]!;
      if (Math.abs(x[d]!) > 1e-3)
        expect(sketchDistance(sketchOf(x, 64), sketchOf(flipped, 64))).toBeGreaterThan(
          DEFAULT_TOLERANCE.sketch,
        );
    }
  });

  it('compares every row of a prefill and refuses shape mismatches', () => {
    const x = hidden(3, 128);
    const y = x.slice();
    y[3] = y[3]! + 1;
    expect(sketchOf(x, 64).rows).toHaveLength(2);
    expect(sketchDistance(sketchOf(x, 64), sketchOf(y, 64))).toBeGreaterThan(1e-3);
    expect(sketchDistance(sketchOf(x, 64), sketchOf(x.subarray(0, 64), 64))).toBe(Infinity);
    expect(tensorDistance(x, y)).toBeGreaterThan(0.1);
    expect(sketchDistance(sketchOf(x, 64), sketchOf(new Float32Array(128).fill(NaN), 64))).toBe(Infinity);
  });
});

describe('spot-check policy', () => {
  it('halves f per clean half-life down to the floor and excludes a deviant', () => {
    const p = createSpotCheckPolicy({ fMax: 0.4, fMin: 0.05, halfLife: 10, random: mulberry32Float(1) });
    expect(p.fOf('a')).toBe(0.4);
    for (let i = 0; i < 10; i++) p.recordClean(['a']);
    expect(p.fOf('a')).toBe(0.2);
    for (let i = 0; i < 100; i++) p.recordClean(['a']);
    expect(p.fOf('a')).toBe(0.05);
    p.recordDeviant('a');
    expect(p.isExcluded('a')).toBe(true);
    expect(p.fOf('a')).toBe(1);
    expect(() => createSpotCheckPolicy({ fMax: 0.1, fMin: 0, halfLife: 1, random: Math.random })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });

  it('samples steps at the ring peers largest f', () => {
    const p = createSpotCheckPolicy({ fMax: 0.3, fMin: 0.3, halfLife: Infinity, random: mulberry32Float(9) });
    const n = runs(20_000);
    let hits = 0;
    for (let i = 0; i < n; i++) if (p.shouldCheck(['a', 'b'])) hits++;
    expect(Math.abs(hits / n - 0.3)).toBeLessThan(0.03);
    expect(spotCheckDetectionProbability(0.1, 0.1, 60)).toBeCloseTo(1 - 0.99 ** 60, 12);
  });
});
