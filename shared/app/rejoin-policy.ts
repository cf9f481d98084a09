/**
 * When and how often a peer whose connection to the network ended comes back: exponential back-off
 * with jitter (so a restarted server is not hit by every tab in the same millisecond), and the few
 * server verdicts after which coming back is pointless or unwelcome (a ban, a protocol version this
 * build does not speak) — those stop the loop with a typed error shown to the person instead.
 */
import { isRingworkError, type ErrorCode } from '../errors.js';

/** Back-off of automatic rejoins. */
export interface RejoinOptions {
  /** First delay, ms (default 500); doubles each failed attempt. */
  baseMs?: number;
  /** Longest delay, ms (default 30 s). */
  maxMs?: number;
}

/**
 * The delay before rejoin attempt `attempt` (0-based): `baseMs · 2^attempt`, capped at `maxMs`, then
 * scaled by a jitter factor in [0.5, 1] drawn from `random` (injected so tests are exact).
 */
export function rejoinDelay(
  attempt: number,
  o: RejoinOptions = {},
  random: () => number = Math.random,
): number {
  const base = o.baseMs ?? 500;
  const max = o.maxMs ?? 30_000;
  return Math.round(Math.min(max, base * 2 ** Math.min(attempt, 30)) * (0.5 + random() / 2));
}

/**
 * Server verdicts that mean "do not come back": retrying cannot succeed (this build speaks another
 * protocol version: a reload gets the current client) or is refused on purpose (a ban).
 */
export const FINAL_ERROR_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'PROTOCOL_BAD_VERSION',
  'PEER_BANNED',
]);

/** True for an error after which a peer must stop trying to rejoin (decided by code only). */
export function isFinalError(e: unknown): boolean {
  return isRingworkError(e) && FINAL_ERROR_CODES.has(e.code);
}
