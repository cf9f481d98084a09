/**
 * The coordinator's proximity matrix: what peers measured of their links (`link-report`), kept per
 * reporter and turned into the planner's link input (hop = rtt/2 + bytes/bandwidth).
 *
 * Hostile-tabs rules:
 * - a report counts only for a link its reporter is part of (reporter ↔ peer), and only for a peer
 *   the caller says it may be linked to (introduced neighbours);
 * - a pair's figure combines both ends' latest reports by taking the worse (higher RTT, lower
 *   bandwidth): one end cannot make a link look better than the other end saw it, only worse — and
 *   a link it makes look worse is its own;
 * - bounded per reporter: at most `maxPeersPerReporter` entries (the oldest goes), reports older
 *   than `maxAgeMs` no longer count, and a reporter's rate is limited by the caller.
 */
import { DEFAULT_LINK, type LinkInput } from '../../shared/planner/index.js';

/** One stored measurement: the reporter's view of its link to a peer. */
interface Entry {
  rttMs: number;
  mbps: number;
  at: number;
}

/** A pair's figure as planned (both ends combined). */
export interface MatrixEdge {
  a: string;
  b: string;
  rttMs: number;
  mbps: number;
  /** How many ends reported (1 or 2). */
  reports: number;
}

/** Options of {@link createLinkMatrix}. */
export interface LinkMatrixOptions {
  now: () => number;
  /** Reports older than this no longer count (default 5 min: probes refresh every 30 s). */
  maxAgeMs?: number;
  /** Entries kept per reporter (default 64). */
  maxPeersPerReporter?: number;
  /** An RTT must change by this factor (bandwidth: twice it) to count as a change (default 1.5). */
  changeFactor?: number;
  /** ... and by at least this many ms (default 10). */
  minRttDeltaMs?: number;
}

/** The proximity matrix. */
export interface LinkMatrix {
  /**
   * Records `reporter`'s measurements; entries about itself or peers `mayLink` refuses are dropped.
   * Returns how many counted and whether the planned figures changed materially.
   */
  report(
    reporter: string,
    entries: ReadonlyArray<{ peer: string; rttMs: number; mbps: number }>,
    mayLink: (peer: string) => boolean,
  ): { accepted: number; changed: boolean };
  /** Drops everything reported by or about `peer` (it left). */
  forget(peer: string): void;
  /** The planner's links among `peers` (only pairs with a fresh report; both directions the same). */
  links(peers: readonly string[]): LinkInput[];
  /** Every fresh pair, for the network view. */
  edges(): MatrixEdge[];
}

const pairKey = (a: string, b: string) => (a < b ? `${a}|${b}` : `${b}|${a}`);

/** Creates an empty matrix. */
export function createLinkMatrix(o: LinkMatrixOptions): LinkMatrix {
  const maxAgeMs = o.maxAgeMs ?? 5 * 60_000;
  const maxPeers = o.maxPeersPerReporter ?? 64;
  const changeFactor = o.changeFactor ?? 1.5;
  const minRttDeltaMs = o.minRttDeltaMs ?? 10;
  /** reporter -> peer -> entry (Map keeps insertion order: the first is the oldest). */
  const byReporter = new Map<string, Map<string, Entry>>();

  const fresh = (e: Entry | undefined, now: number): Entry | undefined =>
    e && now - e.at <= maxAgeMs ? e : undefined;

  const pair = (a: string, b: string, now: number): MatrixEdge | undefined => {
    const ab = fresh(byReporter.get(a)?.get(b), now);
    const ba = fresh(byReporter.get(b)?.get(a), now);
    if (!ab && !ba) return undefined;
    const both = [ab, ba].filter((e): e is Entry => e !== undefined);
    const [x, y] = a < b ? [a, b] : [b, a];
    return {
      a: x,
      b: y,
      rttMs: Math.max(...both.map((e) => e.rttMs)),
      mbps: Math.min(...both.map((e) => e.mbps)),
      reports: both.length,
    };
  };

  /**
   * A material change: what a re-plan (and maybe a re-download) is worth. Measurements jitter,
   * above all on a loaded machine, so an RTT must move by at least `minRttDeltaMs` and by the change
   * factor, a bandwidth by twice that factor. A first report is compared with the planner's default
   * link, so a pair measured about as the planner already assumed re-plans nothing.
   */
  const differs = (before: MatrixEdge | undefined, after: MatrixEdge | undefined): boolean => {
    if (!after) return before !== undefined;
    const b = before ?? { rttMs: DEFAULT_LINK.rttMs, mbps: DEFAULT_LINK.mbps };
    const ratio = (x: number, y: number) => Math.max(x, y) / Math.max(Math.min(x, y), 1e-9);
    const rttMoved =
      Math.abs(b.rttMs - after.rttMs) >= minRttDeltaMs && ratio(b.rttMs, after.rttMs) >= changeFactor;
    return rttMoved || ratio(b.mbps, after.mbps) >= changeFactor * 2;
  };

  return {
    report(reporter, entries, mayLink) {
      const now = o.now();
      let accepted = 0;
      let changed = false;
      let mine = byReporter.get(reporter);
      for (const e of entries) {
        if (e.peer === reporter || !mayLink(e.peer)) continue;
        if (!Number.isFinite(e.rttMs) || !Number.isFinite(e.mbps) || e.rttMs < 0 || e.mbps <= 0) continue;
        const before = pair(reporter, e.peer, now);
        if (!mine) {
          mine = new Map();
          byReporter.set(reporter, mine);
        }
        mine.delete(e.peer); // re-inserted last: newest
        mine.set(e.peer, { rttMs: e.rttMs, mbps: e.mbps, at: now });
        while (mine.size > maxPeers) mine.delete(mine.keys().next().value!);
        accepted++;
        if (differs(before, pair(reporter, e.peer, now))) changed = true;
      }
      return { accepted, changed };
    },
    forget(peer) {
      byReporter.delete(peer);
      for (const m of byReporter.values()) m.delete(peer);
    },
    links(peers) {
      // Only pairs someone reported can have a figure: walk the reports (at most maxPeers per
      // reporter), not every pair of peers — O(peers²) per re-plan was most of a 15,000-peer
      // server's CPU. The order is the one a walk over sorted pairs would give.
      const now = o.now();
      const wanted = new Set(peers);
      const seen = new Set<string>();
      const found: MatrixEdge[] = [];
      for (const [r, m] of byReporter) {
        if (!wanted.has(r)) continue;
        for (const p of m.keys()) {
          if (!wanted.has(p) || p === r) continue;
          const k = pairKey(r, p);
          if (seen.has(k)) continue;
          seen.add(k);
          const e = pair(r, p, now);
          if (e) found.push(e);
        }
      }
      found.sort((x, y) => (x.a !== y.a ? (x.a < y.a ? -1 : 1) : x.b < y.b ? -1 : x.b > y.b ? 1 : 0));
      return found.map((e) => ({ from: e.a, to: e.b, rttMs: e.rttMs, mbps: e.mbps }));
    },
    edges() {
      const now = o.now();
      const seen = new Set<string>();
      const out: MatrixEdge[] = [];
      for (const [r, m] of byReporter)
        for (const p of m.keys()) {
          const k = pairKey(r, p);
          if (seen.has(k)) continue;
          seen.add(k);
          const e = pair(r, p, now);
          if (e) out.push(e);
        }
      return out.sort((x, y) => (x.a + x.b < y.a + y.b ? -1 : 1));
    },
  };
}
