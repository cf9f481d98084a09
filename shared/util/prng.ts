/**
 * The one seeded pseudo-random generator of the project: mulberry32 (Tommy Ettinger's 32-bit
 * generator). Tiny, fast, identical on every platform, and good enough for what it is used for —
 * synthetic weights, seeded benchmark fleets, the planner's search restarts and test data — where
 * the point is that a seed replays the same numbers, not cryptographic quality.
 */

/**
 * A mulberry32 stream seeded with `seed` (taken as an unsigned 32-bit integer): each call returns
 * the next unsigned 32-bit integer, in `[0, 2^32)`.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The same stream as {@link mulberry32} scaled to floats in `[0, 1)` (each value ÷ 2^32). */
export function mulberry32Float(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}
