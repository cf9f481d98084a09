/**
 * Capabilities are earned: what the planner is told about a contributor is the least of what it
 * claims and what the coordinator has reason to believe. Pure functions over a peer's claim, the
 * evidence gathered about it and the rest of the fleet, so the policy is testable on its own.
 *
 * - Speed (TFLOPS, bandwidth) is capped at max(class default, median of the other peers' claims)
 *   until observed; lap times reported by requesters of its ring raise the observed figure
 *   (planned × measured speed-up × margin), never above the claim.
 * - Memory is trusted by use: a peer is believed to hold max(initial, proven × growth), where proven
 *   is the largest range it reported `ready` for; a failed load lowers the ceiling.
 * - The category follows the capped figure and the device class: a mobile device is always C, a
 *   claimed category counts only when it is lower than the measured one.
 */
import { categorize, type CategoryThresholds, type PeerCategory } from '../../shared/planner/index.js';
import type { PeerCapability } from '../../shared/protocol/signaling.js';

/** The trust policy's numbers. */
export interface TrustPolicy {
  /** TFLOPS believed of an unobserved desktop / mobile peer when the fleet says nothing higher. */
  classTflops: { desktop: number; mobile: number };
  classBandwidthGBps: { desktop: number; mobile: number };
  /** Memory believed before a peer has held anything. */
  initialMemoryBytes: number;
  /** Each served range lets the next assignment be this many times bigger. */
  memoryGrowth: number;
  /** Observed speed counts at this fraction (a margin against noise and lucky laps). */
  observedMargin: number;
}

/** Defaults: a class default inside category B, so an unobserved desktop is an ordinary shard holder. */
export const DEFAULT_TRUST_POLICY: Readonly<TrustPolicy> = Object.freeze({
  classTflops: { desktop: 10, mobile: 1 },
  classBandwidthGBps: { desktop: 100, mobile: 20 },
  initialMemoryBytes: 4 * 1024 ** 3,
  memoryGrowth: 2,
  observedMargin: 0.8,
});

/** What the coordinator has seen of a peer itself (or from other parties). */
export interface PeerEvidence {
  /** The largest range (weights + KV) the peer reported `ready` for, bytes. */
  provenBytes: number;
  /** Lowered when a load fails: the peer is never believed to hold this much or more. */
  memoryCeiling: number;
  /** TFLOPS derived from requesters' lap times (null until a lap was reported). */
  observedTflops: number | null;
  /** When the current assignment became ready (null: not serving). */
  readySince: number | null;
  /** True once the peer served a ready assignment for the verification time. */
  verified: boolean;
}

/** Evidence of a peer nothing is known about yet. */
export function newEvidence(): PeerEvidence {
  return {
    provenBytes: 0,
    memoryCeiling: Number.POSITIVE_INFINITY,
    observedTflops: null,
    readySince: null,
    verified: false,
  };
}

/** The median of a list (0 for an empty one). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The fleet's median claims a peer's claim is compared with (its own claim excluded). */
export interface FleetMedians {
  /** How many other claims the medians are over (below two they do not count). */
  count: number;
  tflops: number;
  bandwidthGBps: number;
}

/** The median of a sorted list with one occurrence of `v` left out (`v` must be in it). */
function medianWithout(sorted: readonly number[], v: number): number {
  const n = sorted.length - 1;
  if (n <= 0) return 0;
  // The first occurrence of v, by binary search: a re-plan asks this for every peer, and a linear
  // indexOf made that O(peers²) per re-plan (seconds at 30,000 peers).
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (sorted[m]! < v) lo = m + 1;
    else hi = m;
  }
  const skip = lo;
  const at = (i: number): number => sorted[i >= skip ? i + 1 : i]!;
  const mid = n >> 1;
  return n % 2 ? at(mid) : (at(mid - 1) + at(mid)) / 2;
}

/**
 * The contributors' claims, sorted once, so every peer's fleet medians (the others' claims) cost
 * O(n) together instead of O(n log n) each: re-computing n peers' caps on every profile was O(n^3)
 * over a join wave and stalled the event loop at a few hundred peers.
 */
export function createFleet(claims: readonly PeerCapability[]): {
  /** The medians of the fleet without `self` (a claim in the list), or of the whole fleet for null. */
  without(self: PeerCapability | null): FleetMedians;
} {
  const tf = claims.map((c) => c.tflops).sort((a, b) => a - b);
  const bw = claims.map((c) => c.bandwidthGBps).sort((a, b) => a - b);
  // The whole fleet's medians, computed once: a join wave asks for them once per newcomer.
  let whole: FleetMedians | null = null;
  const at = (xs: readonly number[]): number => {
    const mid = xs.length >> 1;
    return xs.length === 0 ? 0 : xs.length % 2 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
  };
  return {
    without(self) {
      if (!self) return (whole ??= { count: claims.length, tflops: at(tf), bandwidthGBps: at(bw) });
      return {
        count: claims.length - 1,
        tflops: medianWithout(tf, self.tflops),
        bandwidthGBps: medianWithout(bw, self.bandwidthGBps),
      };
    },
  };
}

/**
 * The capability the planner may use for a peer: its claim, capped by evidence. `others` are the
 * claims of the other contributors (the fleet a claim is compared with; the peer's own is excluded
 * so it cannot raise its own cap).
 */
export function effectiveCapability(
  claimed: PeerCapability,
  evidence: PeerEvidence,
  others: readonly PeerCapability[] | FleetMedians,
  policy: TrustPolicy = DEFAULT_TRUST_POLICY,
): PeerCapability {
  const cls = claimed.mobile ? 'mobile' : 'desktop';
  const medians = Array.isArray(others) ? createFleet(others).without(null) : (others as FleetMedians);
  // The fleet median only counts with at least two others: one other peer is not a fleet.
  const fleet = (pick: (m: FleetMedians) => number): number => (medians.count >= 2 ? pick(medians) : 0);
  const observed = evidence.observedTflops !== null ? evidence.observedTflops * policy.observedMargin : 0;
  const tflopsCap = Math.max(
    policy.classTflops[cls],
    fleet((m) => m.tflops),
    observed,
  );
  const bandwidthCap = Math.max(
    policy.classBandwidthGBps[cls],
    fleet((m) => m.bandwidthGBps),
  );
  const memoryCap = Math.min(
    evidence.memoryCeiling,
    Math.max(policy.initialMemoryBytes, evidence.provenBytes * policy.memoryGrowth),
  );
  const { category: _claimedCategory, ...rest } = claimed;
  return {
    ...rest,
    tflops: Math.min(claimed.tflops, tflopsCap),
    bandwidthGBps: Math.min(claimed.bandwidthGBps, bandwidthCap),
    memoryBytes: Math.floor(Math.min(claimed.memoryBytes, memoryCap)),
  };
}

const RANK: Record<PeerCategory, number> = { A: 2, B: 1, C: 0 };

/**
 * The category of a peer from its effective figure: a claimed category only ever lowers it (a user
 * may keep their device out of sharding), and a mobile device is always C.
 */
export function trustedCategory(
  effective: PeerCapability,
  claimedCategory: PeerCategory | undefined,
  thresholds?: CategoryThresholds,
): PeerCategory {
  let c = categorize({ tflops: effective.tflops }, thresholds);
  // Phones serve lightweight models whole (category C), whatever a short benchmark measured on them.
  if (effective.mobile) c = 'C';
  if (claimedCategory && RANK[claimedCategory] < RANK[c]) c = claimedCategory;
  return c;
}
