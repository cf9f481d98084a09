/**
 * Which ring failures a requester retries. Right after a re-plan the coordinator may announce a
 * ring whose stages still load their shards or still serve the old epoch, and links may still be
 * connecting; those failures pass in a moment, so a request that has not streamed a token yet is
 * sent again. Decided by code only — never by message text.
 */
import { isRingworkError, type ErrorCode } from '../errors.js';

/** Codes on which a ring request that has not streamed a token yet is retried. */
export const RETRYABLE_RING_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  // the ring is being re-formed
  'RING_STALE_EPOCH',
  'RING_STAGE_NOT_SERVING',
  'RING_STAGE_DRAINING',
  'RING_UNKNOWN_SESSION',
  'RING_PEER_LOST',
  'RING_STEP_TIMEOUT',
  // links and the signaling channel
  'TRANSPORT_CLOSED',
  'TRANSPORT_CONNECT_TIMEOUT',
  'TRANSPORT_PEER_UNREACHABLE',
  'SIGNALING_CLOSED',
  'SIGNALING_COORDINATOR_TIMEOUT',
]);

/** True when `e` is a {@link RingworkError} whose code is in {@link RETRYABLE_RING_CODES}. */
export function isRetryableRingError(e: unknown): boolean {
  return isRingworkError(e) && RETRYABLE_RING_CODES.has(e.code);
}
