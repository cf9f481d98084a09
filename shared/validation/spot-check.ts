/**
 * Spot-check mode with BOINC-style adaptive replication: each step of a ring is re-executed by a
 * referee with probability f, the largest f of the ring's peers. A peer's f halves with every
 * `halfLife` clean checks (trusted peers are checked less) but never drops below `fMin`; a peer
 * found deviant is excluded.
 */
import { RingworkError } from '../errors.js';

/** Options of {@link createSpotCheckPolicy}. */
export interface SpotCheckOptions {
  /** f of a peer with no record. */
  fMax: number;
  /** The floor: a peer is never checked less often than this. */
  fMin: number;
  /** Clean checks that halve a peer's f (Infinity: a fixed f). */
  halfLife: number;
  /** Uniform [0, 1) source (seeded in tests and benchmarks). */
  random: () => number;
}

/** The per-peer record and the sampling decision. */
export interface SpotCheckPolicy {
  /** The peer's current check probability. */
  fOf(peerId: string): number;
  /** Decides whether this step of a ring with these peers is re-executed. */
  shouldCheck(peerIds: readonly string[]): boolean;
  /** Records a clean check of these peers. */
  recordClean(peerIds: readonly string[]): void;
  /** Records a located deviation: the peer is excluded from now on. */
  recordDeviant(peerId: string): void;
  isExcluded(peerId: string): boolean;
  record(peerId: string): { clean: number; flags: number };
}

/** Creates an adaptive spot-check policy. */
export function createSpotCheckPolicy(o: SpotCheckOptions): SpotCheckPolicy {
  if (!(o.fMin > 0 && o.fMin <= o.fMax && o.fMax <= 1) || !(o.halfLife > 0)) {
    throw new RingworkError('INVALID_ARGUMENT', 'Spot checks need 0 < fMin <= fMax <= 1 and halfLife > 0.', {
      details: { fMin: o.fMin, fMax: o.fMax, halfLife: o.halfLife },
    });
  }
  const records = new Map<string, { clean: number; flags: number }>();
  const rec = (id: string) => {
    let r = records.get(id);
    if (!r) records.set(id, (r = { clean: 0, flags: 0 }));
    return r;
  };
  const fOf = (id: string) => spotRate(rec(id), o);
  return {
    fOf,
    shouldCheck(ids) {
      const f = Math.max(0, ...ids.map(fOf));
      return o.random() < f;
    },
    recordClean(ids) {
      for (const id of ids) rec(id).clean++;
    },
    recordDeviant(id) {
      rec(id).flags++;
    },
    isExcluded: (id) => rec(id).flags > 0,
    record: (id) => ({ ...rec(id) }),
  };
}

/** The rate parameters of adaptive spot checks (the coordinator's, see {@link DEFAULT_SPOT_RATE}). */
export type SpotRateParams = Pick<SpotCheckOptions, 'fMax' | 'fMin' | 'halfLife'>;

/**
 * The coordinator's defaults: a peer with no record is checked on a quarter of its steps, f halves
 * per 120 clean validated steps (two k = 2 answers of 64 tokens), and never drops below 1 in 20.
 */
export const DEFAULT_SPOT_RATE: Readonly<SpotRateParams> = Object.freeze({
  fMax: 0.25,
  fMin: 0.05,
  halfLife: 120,
});

/**
 * A peer's check probability from its record: `fMax` halved per `halfLife` clean checks, never below
 * `fMin`; 1 once it was flagged. The one formula of the policy and of the coordinator's answers.
 */
export function spotRate(record: { clean: number; flags: number }, p: SpotRateParams): number {
  if (record.flags > 0) return 1;
  const clean = Number.isFinite(record.clean) && record.clean > 0 ? record.clean : 0;
  return Math.max(p.fMin, p.fMax * 0.5 ** Math.floor(clean / p.halfLife));
}

/** The chance that a peer cheating on a fraction q of n steps is caught when each step is checked with probability f. */
export function spotCheckDetectionProbability(f: number, q: number, n: number): number {
  return 1 - (1 - f * q) ** n;
}
