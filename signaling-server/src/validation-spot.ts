/**
 * Spot-check rates from the coordinator's records (issue 10): BOINC's adaptive replication. A
 * peer's rate comes only from what the server verified itself — its `validatedSteps` (credited from
 * signed work proofs that every ring agreed, validation-work.ts) and whether it was flagged — never
 * from a requester's word; it halves with clean validated work and never drops below the floor
 * (shared/validation/spot-check.ts has the one formula). A ring's rate is its least trusted peer's,
 * and a requester that has no history of its own is told it with the ring.
 */
import { DEFAULT_SPOT_RATE, spotRate, type SpotRateParams } from '../../shared/validation/spot-check.js';
import type { ValidationStanding } from './validation-registry.js';

/** A peer's spot-check rate from its standing. */
export function peerSpotRate(
  standing: Pick<ValidationStanding, 'validatedSteps' | 'flagged'>,
  params: SpotRateParams = DEFAULT_SPOT_RATE,
): number {
  return spotRate({ clean: standing.validatedSteps, flags: standing.flagged ? 1 : 0 }, params);
}

/**
 * The rate a spot-checked request on a ring gets: the largest of its peers' rates and the request's
 * own `asked` (a requester may ask for more checks, never fewer than the peers' records allow).
 */
export function ringSpotRate(
  peers: readonly string[],
  standingOf: (peer: string) => Pick<ValidationStanding, 'validatedSteps' | 'flagged'>,
  asked = 0,
  params: SpotRateParams = DEFAULT_SPOT_RATE,
): number {
  let f = Math.max(params.fMin, Number.isFinite(asked) ? asked : 0);
  for (const p of peers) f = Math.max(f, peerSpotRate(standingOf(p), params));
  return Math.min(1, f);
}
