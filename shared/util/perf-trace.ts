/**
 * Debug-only timings of the ring's hot path (where a token's time goes between "tensor arrived"
 * and "next tensor sent"). Off unless {@link enablePerfTrace} ran in this JS realm — a page does
 * that for `perf=1` in its URL (web/src/app/tooling.ts; `npm run bench:swarm -- --perf`) — and
 * then each named duration is kept (at most {@link MAX_SAMPLES} per name) for
 * {@link perfSummary}. Off, a sample costs one property read. The registry lives on `globalThis`
 * so that a tool can read it from outside (Playwright's `page.evaluate`).
 */

/** Samples kept per name; later ones are dropped (a bench reads a few hundred tokens). */
export const MAX_SAMPLES = 10_000;

const KEY = '__ringworkPerf';

interface Registry {
  samples: Record<string, number[]>;
}

const registry = (): Registry | undefined =>
  (globalThis as Record<string, unknown>)[KEY] as Registry | undefined;

/** Starts keeping samples in this realm (safe twice). */
export function enablePerfTrace(): void {
  const g = globalThis as Record<string, unknown>;
  g[KEY] ??= { samples: {} } satisfies Registry;
}

/** True when samples are kept. */
export function perfTraceOn(): boolean {
  return registry() !== undefined;
}

/** Keeps one duration (ms) under `name` when tracing is on. */
export function perfSample(name: string, ms: number): void {
  const r = registry();
  if (!r || !Number.isFinite(ms)) return;
  const list = (r.samples[name] ??= []);
  if (list.length < MAX_SAMPLES) list.push(ms);
}

/** One name's samples, summarised (ms). */
export interface PerfStat {
  n: number;
  median: number;
  mean: number;
  p90: number;
}

/** Summarises `samples` (ms) as n, median, mean, p90. */
export function summarise(samples: readonly number[]): PerfStat {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return {
    n: s.length,
    median: at(0.5),
    mean: s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN,
    p90: at(0.9),
  };
}

/** Every name's summary so far (empty when tracing is off). */
export function perfSummary(): Record<string, PerfStat> {
  const out: Record<string, PerfStat> = {};
  for (const [name, list] of Object.entries(registry()?.samples ?? {})) out[name] = summarise(list);
  return out;
}

/** Forgets every sample (tracing stays on). */
export function resetPerfTrace(): void {
  const r = registry();
  if (r) r.samples = {};
}
