import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RingworkError } from '../../shared/errors';
import { argmax, createSampler, type SamplerOptions } from '../../shared/runtime/sampler';

/** Softmax in float64 (the reference the sampler's float32 arithmetic is checked against). */
function softmax(logits: ArrayLike<number>, temperature = 1): number[] {
  const x = Array.from(logits, (v) => v / temperature);
  const max = Math.max(...x);
  const e = x.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/** Index of the first maximum, written independently of the sampler's argmax. */
function firstMax(x: ArrayLike<number>): number {
  const arr = Array.from(x);
  return arr.indexOf(Math.max(...arr));
}

function draw(opts: SamplerOptions, logits: number[], n: number): number[] {
  const s = createSampler(opts);
  const row = Float32Array.from(logits);
  return Array.from({ length: n }, () => s.sample(row));
}

function histogram(xs: number[], size: number): number[] {
  const h = new Array<number>(size).fill(0);
  for (const x of xs) h[x]!++;
  return h;
}

/** |observed frequency - p| within 5 binomial standard deviations (plus a hair for p near 0). */
function expectFrequencies(counts: number[], probs: number[], n: number): void {
  probs.forEach((p, i) => {
    const tol = 5 * Math.sqrt((p * (1 - p)) / n) + 2e-3;
    expect(Math.abs(counts[i]! / n - p), `token ${i}: ${counts[i]}/${n} vs p=${p.toFixed(4)}`).toBeLessThan(
      tol,
    );
  });
}

function expectInvalid(opts: SamplerOptions, mention: string): void {
  let err: unknown;
  try {
    createSampler(opts);
  } catch (e) {
    err = e;
  }
  expect(err, JSON.stringify(opts)).toBeInstanceOf(RingworkError);
  expect((err as RingworkError).code).toBe('INVALID_ARGUMENT');
  expect((err as RingworkError).message).toContain(mention);
}

/** Logits as float32 values in a range where softmax neither overflows nor flattens to one-hot. */
const logitsArb = (minLength = 1, maxLength = 40) =>
  fc.array(fc.float({ min: -8, max: 8, noNaN: true }), { minLength, maxLength });
/** Small integer logits: many exact ties, the hard case for top-k and argmax. */
const tiedLogitsArb = fc.array(fc.integer({ min: -3, max: 3 }), { minLength: 1, maxLength: 24 });

describe('greedy (temperature 0)', () => {
  it('is argmax, first index on ties', () => {
    const s = createSampler({ temperature: 0 });
    expect(s.sample(Float32Array.from([1, 3, 3, 2]))).toBe(1);
    expect(s.sample(Float32Array.from([-5, -1, -7]))).toBe(1);
    expect(s.sample(Float32Array.from([4, 4, 4]))).toBe(0);
    expect(s.sample(Float32Array.from([0, 0, 0, 9]))).toBe(3);
    expect(argmax(Float32Array.from([2, 9, 9]))).toBe(1);
  });

  it('property: equals the first maximum for any logits, ignoring topK / topP / seed', () => {
    fc.assert(
      fc.property(fc.oneof(logitsArb(), tiedLogitsArb), fc.integer({ min: 0, max: 5 }), (logits, topK) => {
        const s = createSampler({ temperature: 0, topK, topP: 0.5, seed: 3 });
        expect(s.sample(Float32Array.from(logits))).toBe(firstMax(logits));
      }),
      { seed: 20240601, numRuns: 300 },
    );
  });
});

describe('seeded sampling', () => {
  const logits = [0.3, 1.2, -0.4, 0.9, 0.0, 2.0, -1.5, 0.7];

  it('is deterministic: the same seed gives the same sequence', () => {
    for (const opts of [
      { temperature: 1, seed: 42 },
      { temperature: 0.7, topP: 0.9, seed: 42 },
      { temperature: 1.3, topK: 4, seed: 7 },
    ]) {
      expect(draw(opts, logits, 500)).toEqual(draw(opts, logits, 500));
    }
  });

  it('different seeds give different sequences over many draws', () => {
    const a = draw({ temperature: 1, seed: 42 }, logits, 200);
    const b = draw({ temperature: 1, seed: 43 }, logits, 200);
    const differing = a.filter((t, i) => t !== b[i]).length;
    // Independent draws from this distribution disagree about 80% of the time.
    expect(differing).toBeGreaterThan(100);
  });

  it("follows llama2.c's xorshift* generator (uniform over 256 tokens picks the top 8 bits of random_u32)", () => {
    // Reference: llama2.c run.c random_u32 / random_f32, written out independently.
    const mask = (1n << 64n) - 1n;
    let state = 1234n;
    const u32 = () => {
      state ^= state >> 12n;
      state = (state ^ (state << 25n)) & mask;
      state ^= state >> 27n;
      return Number(((state * 0x2545f4914f6cdd1dn) & mask) >> 32n);
    };
    // All probabilities are exactly 1/256, so the multinomial pick is floor(coin * 256) = u32 >>> 24.
    const expected = Array.from({ length: 64 }, () => u32() >>> 24);
    expect(draw({ temperature: 1, seed: 1234 }, new Array<number>(256).fill(0), 64)).toEqual(expected);
  });

  it('seed 0 seeds from the clock as llama2.c does, instead of a stuck all-zero xorshift state', () => {
    // A zero state stays zero: every coin would be 0 and every draw token 0.
    const tokens = draw({ temperature: 1, seed: 0 }, new Array<number>(16).fill(0), 200);
    expect(new Set(tokens).size).toBeGreaterThan(4);
  });
});

describe('distribution', () => {
  const N = 20000;

  it('temperature sampling matches softmax(logits / T) (fixed seed, 5-sigma bounds)', () => {
    const logits = [1.0, 2.0, 0.5, 3.0, -1.0];
    for (const temperature of [0.8, 1.5]) {
      const counts = histogram(draw({ temperature, seed: 99 }, logits, N), logits.length);
      expectFrequencies(counts, softmax(logits, temperature), N);
    }
  });

  it('top-k renormalises over the k most likely tokens and never returns another', () => {
    const logits = [1.0, 2.0, 0.5, 3.0, -1.0, 2.5];
    const counts = histogram(draw({ temperature: 1, topK: 3, seed: 5 }, logits, N), logits.length);
    // Top 3: indices 3 (3.0), 5 (2.5), 1 (2.0).
    const p = softmax([2.0, 3.0, 2.5]);
    expectFrequencies(counts, [0, p[0]!, 0, p[1]!, 0, p[2]!], N);
    expect(counts[0]! + counts[2]! + counts[4]!).toBe(0);
  });

  it('top-k keeps the most likely token when ties sit at the k-th place', () => {
    // Probabilities ~[0.047, 0.047, 0.905]; with k = 2 the kept set is {2, 0}, never {0, 1}.
    const counts = histogram(draw({ temperature: 1, topK: 2, seed: 11 }, [0, 0, 3], 2000), 3);
    expect(counts[1]).toBe(0);
    expect(counts[2]! / 2000).toBeGreaterThan(0.9);
  });

  it('top-p samples from the smallest nucleus with mass >= p, renormalised', () => {
    const logits = Array.from([0.5, 0.3, 0.15, 0.05], Math.log);
    // Nucleus for 0.7 is {0, 1} (0.5 < 0.7 <= 0.8); for 0.85 it is {0, 1, 2} (0.8 < 0.85 <= 0.95).
    const c70 = histogram(draw({ temperature: 1, topP: 0.7, seed: 8 }, logits, N), 4);
    expectFrequencies(c70, [0.5 / 0.8, 0.3 / 0.8, 0, 0], N);
    expect(c70[2]! + c70[3]!).toBe(0);
    const c85 = histogram(draw({ temperature: 1, topP: 0.85, seed: 8 }, logits, N), 4);
    expectFrequencies(c85, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], N);
    expect(c85[3]).toBe(0);
  });

  it("top-p works when every probability is below llama2.c's cutoff (near-uniform, small p) and on one token", () => {
    // cutoff = (1 - 0.1) / (n - 1) exceeds 1/n: llama2.c's pre-filter keeps no candidate at all.
    const tokens = draw({ temperature: 1, topP: 0.1, seed: 2 }, [0, 0, 0, 0], 100);
    for (const t of tokens) expect(t).toBe(0);
    expect(draw({ temperature: 1, topP: 0.1, seed: 2 }, [0.1, 0, 0, 0], 20)).toEqual(new Array(20).fill(0));
    expect(draw({ temperature: 0.9, topP: 0.5, seed: 2 }, [1.5], 5)).toEqual([0, 0, 0, 0, 0]);
  });
});

describe('properties (fast-check)', () => {
  const settings = {
    temperature: fc.double({ min: 0.05, max: 4, noNaN: true }),
    seed: fc.integer({ min: 1, max: 2 ** 31 }),
  };

  it('the sampled index is always within bounds and within the top k (ties included)', () => {
    fc.assert(
      fc.property(
        fc.oneof(logitsArb(), tiedLogitsArb),
        fc.integer({ min: 0, max: 30 }),
        settings.temperature,
        settings.seed,
        (logits, topK, temperature, seed) => {
          const s = createSampler({ temperature, topK, seed });
          const row = Float32Array.from(logits);
          // The k-th largest logit; with ties, any token at that value may fill the last places. Top-k
          // is applied to float32 probabilities, where logits closer than ~1e-7 * T can tie: allow that.
          const kth =
            Array.from(row).sort((a, b) => b - a)[Math.min(topK || row.length, row.length) - 1]! - 1e-5;
          for (let d = 0; d < 10; d++) {
            const t = s.sample(row);
            expect(Number.isInteger(t)).toBe(true);
            expect(t).toBeGreaterThanOrEqual(0);
            expect(t).toBeLessThan(row.length);
            expect(row[t]!).toBeGreaterThanOrEqual(kth);
          }
        },
      ),
      { seed: 424242, numRuns: 400 },
    );
  });

  it('top-k never drops a clearly most likely token, whatever ties sit at the k-th place', () => {
    fc.assert(
      fc.property(
        tiedLogitsArb,
        fc.nat(),
        fc.integer({ min: 1, max: 30 }),
        settings.seed,
        (logits, at, topK, seed) => {
          // One token ~e^6 times likelier than any other: >= 94% of the mass at T = 1 with <= 24 tokens.
          const j = at % logits.length;
          const row = Float32Array.from(logits);
          row[j] = Math.max(...logits) + 6;
          const s = createSampler({ temperature: 1, topK, seed });
          const tokens = Array.from({ length: 30 }, () => s.sample(row));
          expect(tokens, `logits ${Array.from(row)} topK ${topK}`).toContain(j);
        },
      ),
      { seed: 9001, numRuns: 300 },
    );
  });

  it('top-k = 1 is greedy (first index on exact ties) at any temperature', () => {
    fc.assert(
      fc.property(tiedLogitsArb, settings.temperature, settings.seed, (logits, temperature, seed) => {
        const s = createSampler({ temperature, topK: 1, seed });
        expect(s.sample(Float32Array.from(logits))).toBe(firstMax(logits));
      }),
      { seed: 77, numRuns: 300 },
    );
  });

  it('top-p never returns a token outside the smallest nucleus with mass >= p', () => {
    fc.assert(
      fc.property(
        fc.oneof(logitsArb(2), tiedLogitsArb),
        fc.double({ min: 0.01, max: 0.99, noNaN: true }),
        settings.temperature,
        settings.seed,
        (logits, topP, temperature, seed) => {
          const row = Float32Array.from(logits);
          const probs = softmax(row, temperature);
          const sorted = [...probs].sort((a, b) => b - a);
          // Smallest prefix reaching p. The sampler works in float32 and, like llama2.c, stops once
          // the mass exceeds p strictly: allow 1e-6 of slack at the boundary.
          let cum = 0;
          let m = 0;
          while (m < sorted.length - 1 && cum + sorted[m]! < topP + 1e-6) cum += sorted[m++]!;
          const floor = sorted[m]! * (1 - 1e-4);
          const s = createSampler({ temperature, topP, seed });
          for (let d = 0; d < 10; d++) {
            const t = s.sample(row);
            expect(t).toBeGreaterThanOrEqual(0);
            expect(t).toBeLessThan(row.length);
            expect(probs[t]!, `token ${t} of ${JSON.stringify(logits)} at p=${topP}`).toBeGreaterThanOrEqual(
              floor,
            );
          }
        },
      ),
      { seed: 31337, numRuns: 400 },
    );
  });
});

describe('option validation', () => {
  it('rejects a negative, NaN or infinite temperature', () => {
    expectInvalid({ temperature: -0.1 }, 'temperature');
    expectInvalid({ temperature: Number.NaN }, 'temperature');
    expectInvalid({ temperature: Number.POSITIVE_INFINITY }, 'temperature');
  });

  it('rejects topP outside (0, 1]', () => {
    expectInvalid({ temperature: 1, topP: 0 }, 'topP');
    expectInvalid({ temperature: 1, topP: -0.5 }, 'topP');
    expectInvalid({ temperature: 1, topP: 1.01 }, 'topP');
    expectInvalid({ temperature: 1, topP: Number.NaN }, 'topP');
  });

  it('rejects a negative or non-integer topK', () => {
    expectInvalid({ temperature: 1, topK: -1 }, 'topK');
    expectInvalid({ temperature: 1, topK: 2.5 }, 'topK');
    expectInvalid({ temperature: 1, topK: Number.NaN }, 'topK');
  });

  it('rejects a non-integer seed with a typed error', () => {
    expectInvalid({ temperature: 1, seed: 1.5 }, 'seed');
    expectInvalid({ temperature: 1, seed: Number.NaN }, 'seed');
  });

  it('accepts the boundary values', () => {
    expect(() => createSampler({ temperature: 0, topP: 1, topK: 0 })).not.toThrow();
    expect(() => createSampler({ temperature: 2, topP: 1e-9, topK: 1, seed: -5 })).not.toThrow();
  });
});

describe('handing a sampler on (seed + draws)', () => {
  it('counts draws: greedy steps draw nothing, each random step draws one', () => {
    const row = Float32Array.from([0.1, 2, -1, 0.5]);
    const greedy = createSampler({ temperature: 0, seed: 9 });
    greedy.sample(row);
    expect(greedy.draws).toBe(0);
    const s = createSampler({ temperature: 0.8, topP: 0.9, seed: 9 });
    for (let i = 0; i < 5; i++) s.sample(row);
    expect(s.draws).toBe(5);
  });

  it('a sampler fast-forwarded n draws continues exactly where one that drew n left off', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 31 }),
        fc.integer({ min: 0, max: 40 }),
        fc.array(fc.float({ min: -5, max: 5, noNaN: true }), { minLength: 2, maxLength: 16 }),
        fc.constantFrom(1, 0.9, 0.5),
        (seed, n, logits, topP) => {
          const row = Float32Array.from(logits);
          const first = createSampler({ temperature: 1, topP, seed });
          for (let i = 0; i < n; i++) first.sample(row);
          const second = createSampler({ temperature: 1, topP, seed, draws: n });
          expect(second.draws).toBe(n);
          const a = Array.from({ length: 20 }, () => first.sample(row));
          const b = Array.from({ length: 20 }, () => second.sample(row));
          expect(b).toEqual(a);
          expect(second.draws).toBe(first.draws);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('rejects a negative or fractional draw count', () => {
    expect(() => createSampler({ temperature: 1, seed: 1, draws: -1 })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => createSampler({ temperature: 1, seed: 1, draws: 1.5 })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});
