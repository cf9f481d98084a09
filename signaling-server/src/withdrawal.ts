/**
 * Graceful leave and pause on the coordinator's side: a contributor says `withdraw` (leave or
 * pause) before it goes, keeps serving its open sessions while it drains (its ring is not
 * re-planned under them; its stage refuses new sessions with RING_STAGE_DRAINING), and is planned
 * out when it says `withdrawn` or its drain time is up. A paused peer stays connected and comes
 * back with `resume`. What people are shown names the pause.
 */
import type { TimerHandle } from './clock.js';
import type { NoRing } from './coordinator-types.js';

/** A contributor's withdrawal in progress (or done, for a pause). */
export interface Withdrawal {
  mode: 'leave' | 'pause';
  /** `draining`: still planned (open sessions finish); `out`: planned without it. */
  state: 'draining' | 'out';
  /** The drain deadline (null once out). */
  timer: TimerHandle | null;
}

/** How a withdrawal shows in the network view and in the peer's `unassigned` reason. */
export interface WithdrawalView {
  mode: 'leave' | 'pause';
  state: 'draining' | 'out';
  reason: string;
}

/** The view of `w` (undefined when the peer is not withdrawing). */
export function withdrawalView(w: Withdrawal | null): WithdrawalView | undefined {
  if (!w) return undefined;
  const what = w.mode === 'pause' ? 'paused by its owner' : 'leaving the network';
  return {
    mode: w.mode,
    state: w.state,
    reason:
      w.state === 'draining'
        ? `${what}: finishing its open sessions, taking no new ones`
        : w.mode === 'pause'
          ? 'paused by its owner: the ring is planned without this peer until it resumes'
          : 'left the network',
  };
}

/** A model's `no-ring` reason that names paused contributors, so people know why capacity is missing. */
export function noRingWithPauses(noRing: NoRing | null, paused: number): NoRing | null {
  if (!noRing || paused === 0) return noRing;
  const who = paused === 1 ? '1 contributor is paused' : `${paused} contributors are paused`;
  return { ...noRing, reason: `${noRing.reason} (${who})`.slice(0, 500) };
}
