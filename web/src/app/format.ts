/** Human-readable figures for the UI. */
import type { ContributePhase } from '../../../shared/app/contributor';

export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '—';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < u.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${u[i]}`;
}

export function num(n: number | undefined, digits = 1): string {
  return n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(digits);
}

export function duration(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return '—';
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function shortId(id: string | null | undefined): string {
  return id ? id.slice(2, 8) : '—';
}

/** A full peer id (`p_` + 16 characters) inside free text, not part of a longer token. */
const PEER_ID_IN_TEXT = /(?<![A-Za-z0-9_-])p_[A-Za-z0-9_-]{16}(?![A-Za-z0-9_-])/g;

/**
 * Text for people with every full peer id in it written as the UI shows peers ({@link shortId}), so
 * an error about a peer names it the way the Network table and the ring drawing do.
 */
export function withShortPeerIds(text: string): string;
export function withShortPeerIds(text: string | undefined): string | undefined;
export function withShortPeerIds(text: string | undefined): string | undefined {
  return text?.replace(PEER_ID_IN_TEXT, (id) => shortId(id));
}

/** The unit numbers of [a, b): "units 0–2", or "unit 3" for a one-unit stage (not "units 3–3"). */
export function unitSpan([a, b]: [number, number]): string {
  return b - a === 1 ? `unit ${a}` : `units ${a}–${b - 1}`;
}

/** Units [a, b) as people read them: "embedding, blocks 0–2". */
export function unitsLabel(range: [number, number], units: number): string {
  const parts: string[] = [];
  const [a, b] = range;
  if (a === 0) parts.push('embedding');
  const firstBlock = Math.max(a, 1) - 1;
  const lastBlock = Math.min(b, units - 1) - 2;
  if (lastBlock >= firstBlock)
    parts.push(firstBlock === lastBlock ? `block ${firstBlock}` : `blocks ${firstBlock}–${lastBlock}`);
  if (b === units) parts.push('head');
  return parts.join(', ');
}

/** Compute rates from TFLOPS down to MFLOP/s (declared test capabilities are tiny). */
export function flops(tflops: number | undefined): string {
  if (tflops === undefined || !Number.isFinite(tflops)) return '—';
  // No contributors: "0 FLOPS", not "0.0 MFLOPS".
  if (tflops === 0) return '0 FLOPS';
  if (tflops >= 0.1) return `${tflops.toFixed(1)} TFLOPS`;
  if (tflops >= 1e-4) return `${(tflops * 1e3).toFixed(1)} GFLOPS`;
  return `${(tflops * 1e6).toFixed(1)} MFLOPS`;
}

/**
 * The speed one request gets on a model's ring, tokens/s: what recent requests measured when any
 * did, else the planner's single-request estimate (1 / per-token latency). Undefined when neither.
 */
export function singleRequest(m: {
  predictedTokensPerSecond: number | null;
  observedTokensPerSecond?: number | null;
}): number | undefined {
  return m.observedTokensPerSecond ?? m.predictedTokensPerSecond ?? undefined;
}

/**
 * The contributor's phases in the app's one vocabulary: the header, the Contribute badge and the
 * Network page use these words (plain words first; details go in the page itself).
 */
export const PHASE_TEXT: Record<ContributePhase, string> = {
  idle: 'not contributing',
  connecting: 'connecting…',
  profiling: 'measuring this device…',
  waiting: 'waiting for an assignment',
  loading: 'downloading its shard…',
  serving: 'serving',
  standby: 'standby replica: holds a ring stage’s units, ready to take over if its peer goes',
  unassigned: 'not needed now',
  draining: 'finishing its open answers before it goes…',
  paused: 'paused: the ring is planned without this tab until you resume',
  error: 'error',
};
