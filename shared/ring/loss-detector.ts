/**
 * When a ring step is late enough to call the ring stalled. A lost stage that nobody saw go (a
 * middle stage whose tab froze or whose link died without a close) shows only as a missing token,
 * so the requester gives every decode step a deadline derived from the laps it has observed:
 *
 *   deadline = max(factor × p50 lap, floorMs)    (defaults: 4 × p50, 1.5 s)
 *
 * Why these numbers:
 * - p50, not the mean or max: one slow lap (a GC pause, a cold shape compile, another requester's
 *   chunk on a shared stage) must not stretch the deadline for the rest of the answer.
 * - 4×: a stage serving other requesters round-robin delays an honest step by at most one chunk of
 *   each (sized to about one decode step), so a healthy lap stays well within a few p50s; 4× leaves
 *   room for that without waiting much longer than needed on a slow ring.
 * - 1.5 s floor: small models lap in milliseconds, where 4× p50 would fire on a browser's ordinary
 *   hiccups (tab throttling, a WebRTC retransmit, a worker GC). 1.5 s is above those and still lets
 *   the loss be known within the 2 s the product promises, with the report to the coordinator.
 * Until `minSamples` decode laps are seen (the first steps include a cold compile) a step gets the
 * cold timeout. A multi-position step on a ring whose laps are known (a failover replay) gets one
 * decode deadline per 16 positions, and at least 8 s: the replacement stages may run a freshly
 * loaded shard for the first time (a compile), and a replay that hangs must not cost the full
 * cold timeout before the next attempt.
 */

/** Options of {@link createLossDetector}. */
export interface LossDetectorOptions {
  /** Deadline as a multiple of the median lap (default 4). */
  factor?: number;
  /** The deadline never goes below this, ms (default 1500). */
  floorMs?: number;
  /** Deadline before enough laps are known, and of multi-position steps, ms (default 60 s). */
  coldMs?: number;
  /** Laps needed before the lap-derived deadline applies (default 3). */
  minSamples?: number;
  /** How many recent laps the median is taken over (default 32). */
  window?: number;
  /** Least deadline of a multi-position step once laps are known, ms (default 8 s). */
  replayFloorMs?: number;
  /** Positions per decode deadline in a multi-position step (default 16). */
  chunk?: number;
}

export interface LossDetector {
  /** Records one decode lap (ms from sending a one-token step to its token). */
  observe(lapMs: number): void;
  /** The deadline of a step of `positions` positions, ms. */
  deadlineMs(positions: number): number;
  /** The median of the recent laps, ms (undefined before any). */
  p50(): number | undefined;
  /** Number of laps kept. */
  readonly samples: number;
}

export const DEFAULT_LOSS_DETECTION = {
  factor: 4,
  floorMs: 1500,
  coldMs: 60_000,
  minSamples: 3,
  window: 32,
  replayFloorMs: 8000,
  chunk: 16,
} as const satisfies Required<LossDetectorOptions>;

/** Creates a lap-based step deadline (see the module comment for the rule and its reasons). */
export function createLossDetector(o: LossDetectorOptions = {}): LossDetector {
  const c = { ...DEFAULT_LOSS_DETECTION, ...o };
  const laps: number[] = [];
  const p50 = (): number | undefined => {
    if (laps.length === 0) return undefined;
    const s = [...laps].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  return {
    observe(lapMs) {
      if (!Number.isFinite(lapMs) || lapMs < 0) return;
      laps.push(lapMs);
      if (laps.length > c.window) laps.shift();
    },
    deadlineMs(positions) {
      const m = p50();
      if (m === undefined || laps.length < c.minSamples) return c.coldMs;
      const decode = Math.max(c.factor * m, c.floorMs);
      if (positions === 1) return Math.min(c.coldMs, decode);
      // A failover replay on a ring whose laps are known: one decode deadline per chunk of
      // positions, and at least `replayFloorMs` for a freshly loaded shard's first run.
      return Math.min(c.coldMs, Math.max(c.replayFloorMs, decode * Math.ceil(positions / c.chunk)));
    },
    p50,
    get samples() {
      return laps.length;
    },
  };
}
