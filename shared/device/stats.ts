/**
 * Small statistics for repeated measurements. Benchmarks on shared machines are noisy, so every
 * figure in a device profile is a median of several runs, reported with its spread.
 */

/** Median, extremes and spread of a set of repeated measurements. */
export interface SampleSummary {
  median: number;
  min: number;
  max: number;
  /** `(max - min) / median`: 0 for perfectly stable runs, 0.1 for a ±5% wobble. */
  relSpread: number;
  /** How many samples were summarised. */
  samples: number;
}

/** The median of `values` (the mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Summarises repeated measurements. The relative spread is taken against the median rather than
 * the mean so one outlier (a GC pause, a context switch) moves the centre as little as possible.
 */
export function summarize(values: readonly number[]): SampleSummary {
  if (values.length === 0) return { median: NaN, min: NaN, max: NaN, relSpread: NaN, samples: 0 };
  const m = median(values);
  const min = Math.min(...values);
  const max = Math.max(...values);
  return { median: m, min, max, relSpread: m > 0 ? (max - min) / m : 0, samples: values.length };
}
