/**
 * Small statistics and formatting helpers for the transport bench (`npm run bench:transport`).
 * Kept apart from the CLI so the numbers it prints are computed in one place.
 */

/** Order statistics of a sample set, in the sample's unit. */
export interface Summary {
  n: number;
  min: number;
  p50: number;
  p95: number;
  max: number;
  mean: number;
}

/**
 * Nearest-rank quantile (no interpolation): every figure reported is a value that was actually
 * measured, which matters with the small sample counts a browser bench can afford.
 */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

/** Summarises samples; NaN everywhere for an empty set, so a missing phase prints as "-". */
export function summarize(xs: readonly number[]): Summary {
  const n = xs.length;
  return {
    n,
    min: n ? Math.min(...xs) : NaN,
    p50: quantile(xs, 0.5),
    p95: quantile(xs, 0.95),
    max: n ? Math.max(...xs) : NaN,
    mean: n ? xs.reduce((a, b) => a + b, 0) / n : NaN,
  };
}

/** Human-readable byte size: 16 B, 4 KiB, 1 MiB. */
export function formatBytes(b: number): string {
  if (b >= 1 << 20 && b % (1 << 20) === 0) return `${b / (1 << 20)} MiB`;
  if (b >= 1024 && b % 1024 === 0) return `${b / 1024} KiB`;
  return `${b} B`;
}

/** A number with `digits` decimals, or "-" when it is not finite. */
export function fmt(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

/** Renders rows as a left-aligned text table with a header rule. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
