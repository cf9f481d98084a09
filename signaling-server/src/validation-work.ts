/**
 * Validated work is not the requester's word (issue 10): the coordinator credits a step only when it
 * checks the step itself from the stages' signed commitments of every ring — each commitment verifies
 * under its stage's registered key, each ring's boundaries hold exactly (the receiver's input hash is
 * the sender's output hash, under the sender's receipt), every ring was fed exactly the same token
 * bytes, and the rings' sketches agree stage by stage within the calibrated tolerance with the same
 * token out of every head. A requester can neither credit a ring that did not do the work (it cannot
 * forge the stages' signatures) nor credit one step twice (steps are remembered by session and step).
 *
 * A spot-checked step (the proof step's `spot`) proves work too: the validator ring caught up with
 * every token since its last check as one chunk, so the rings ran other bytes at this step. The
 * proof carries the chunk's token ids; the server hashes them itself against the validator's first
 * stage's signed input hash, and their last `rows` against the primary's, checks that both end at
 * the same position, and compares the last row of every stage's sketch (the sampled position) and
 * the head's token. It credits that one sampled step.
 */
import { RingworkError } from '../../shared/errors.js';
import { fromBase64 } from '../../shared/ring/stage-commitments.js';
import type { WorkProofStep } from '../../shared/protocol/signaling.js';
import {
  compareRings,
  DEFAULT_TOLERANCE,
  tokenBytes,
  type Tolerance,
} from '../../shared/validation/checks.js';
import {
  decodeCommitment,
  verifyCommitment,
  verifyReceipt,
  type Commitment,
} from '../../shared/validation/commitment.js';
import { bytesEqual, sha256, toHex, type CryptoKeyLike } from '../../shared/validation/crypto.js';
import { sampledView } from '../../shared/validation/spot-settle.js';

/** One ring a proof covers, as the coordinator planned it. */
export interface WorkRing {
  ringId: string;
  peers: readonly string[];
}

/** What a checked proof credits. */
export interface WorkCredit {
  /** Steps checked and not credited before. */
  steps: number;
  /** Largest sketch distance between rings seen in the proof. */
  maxDistance: number;
  /** Steps of the proof already credited earlier (ignored). */
  repeated: number;
}

/** Options of {@link createWorkVerifier}. */
export interface WorkVerifierOptions {
  /** A peer's registered key; throws `VALIDATION_UNKNOWN_SIGNER` when it has none. */
  keyOf: (peer: string) => CryptoKeyLike;
  tolerance?: Tolerance;
  /** Credited steps remembered against replays (oldest forgotten first; default 200,000). */
  remember?: number;
}

/** Checks `validated-work` proofs. */
export interface WorkVerifier {
  /** Verifies every step of `proof` over `rings` (ring 0 the primary); throws when any step fails. */
  verify(rings: readonly WorkRing[], proof: readonly WorkProofStep[]): Promise<WorkCredit>;
}

const unproven = (message: string, details: Record<string, unknown> = {}): RingworkError =>
  new RingworkError('VALIDATION_UNPROVEN_WORK', message, { details });

/** Creates a verifier with its replay memory. */
export function createWorkVerifier(o: WorkVerifierOptions): WorkVerifier {
  const tol = o.tolerance ?? DEFAULT_TOLERANCE;
  const limit = o.remember ?? 200_000;
  const credited = new Set<string>();
  const remember = (key: string) => {
    credited.add(key);
    // A Set iterates in insertion order: the first key is the oldest.
    if (credited.size > limit) credited.delete(credited.values().next().value!);
  };
  return {
    async verify(rings, proof) {
      if (rings.length < 2) throw unproven('A work proof needs at least two rings to compare.');
      let maxDistance = 0;
      const fresh: string[] = [];
      let repeated = 0;
      for (let n = 0; n < proof.length; n++) {
        const step = proof[n]!;
        if (step.rings.length !== rings.length) {
          throw unproven('Every proof step carries one commitment list per ring.', { step: n });
        }
        const cs = step.rings.map((list, j) => {
          try {
            return list.map((b64) => decodeCommitment(fromBase64(b64)));
          } catch (e) {
            throw new RingworkError('VALIDATION_UNPROVEN_WORK', 'A proof commitment does not decode.', {
              details: { step: n, ring: j },
              cause: e,
            });
          }
        });
        for (let j = 0; j < rings.length; j++) await checkRing(cs[j]!, rings[j]!, o.keyOf, n);
        const distances = step.spot ? await checkSpotStep(cs, step.spot, tol, n) : checkFullStep(cs, tol, n);
        maxDistance = Math.max(maxDistance, ...distances);
        // Each ring's (session, step) is credited once, whichever proof (full or spot) it came in:
        // a step already credited in any pairing is not credited again.
        const keys = [...new Set(cs.map((r) => `${toHex(r[0]!.session)}:${r[0]!.step}`))];
        if (keys.some((k) => credited.has(k) || fresh.includes(k))) repeated++;
        else fresh.push(...keys);
      }
      for (const k of fresh) remember(k);
      return { steps: proof.length - repeated, maxDistance, repeated };
    },
  };
}

/**
 * A signed majority (k >= 3): one step of every ring of a request, checked like a work proof
 * (signatures, exact boundaries, the same tokens into every ring), then compared stage by stage.
 * Returns the ring and stage that the other rings outvote — at the first stage where the rings do
 * not all agree, every other ring agrees with each other within the tolerance (and on the head's
 * token) while this one is beyond it from each of them — or undefined when the records show no such
 * outvoted ring (all agree, or no majority). Every earlier stage agrees on all rings, so the
 * outvoted stage had an input as good as the majority's: its own output is what deviated.
 */
export async function outvotedStage(
  rings: readonly WorkRing[],
  step: WorkProofStep,
  keyOf: (peer: string) => CryptoKeyLike,
  tol: Tolerance = DEFAULT_TOLERANCE,
): Promise<{ ring: number; stage: number; distance: number } | undefined> {
  if (rings.length < 3 || step.rings.length !== rings.length) return undefined;
  let cs: Commitment[][];
  try {
    cs = step.rings.map((list) => list.map((b64) => decodeCommitment(fromBase64(b64))));
  } catch {
    return undefined;
  }
  for (let j = 0; j < rings.length; j++) await checkRing(cs[j]!, rings[j]!, keyOf, 0);
  const first = cs[0]![0]!;
  for (const other of cs) {
    if (other[0]!.step !== first.step || other[0]!.position !== first.position) return undefined;
    if (!bytesEqual(other[0]!.inHash, first.inHash)) return undefined;
  }
  const agree = (a: number, b: number, stage: number): { ok: boolean; d: number } => {
    const cmp = compareRings(cs[a]!.slice(stage, stage + 1), cs[b]!.slice(stage, stage + 1), tol);
    return { ok: cmp.firstDivergent === undefined, d: cmp.distances[0]! };
  };
  const n = cs[0]!.length;
  for (let stage = 0; stage < n; stage++) {
    let allAgree = true;
    for (let a = 0; a < cs.length && allAgree; a++)
      for (let b = a + 1; b < cs.length && allAgree; b++) allAgree = agree(a, b, stage).ok;
    if (allAgree) continue;
    for (let d = 0; d < cs.length; d++) {
      const others = cs.map((_, j) => j).filter((j) => j !== d);
      const majority = others.every((a) => others.every((b) => a >= b || agree(a, b, stage).ok));
      const apart = others.map((a) => agree(d, a, stage));
      if (majority && apart.every((x) => !x.ok)) {
        return { ring: d, stage, distance: Math.min(...apart.map((x) => x.d)) };
      }
    }
    return undefined;
  }
  return undefined;
}

/** A full step (every ring ran the same step): same coordinates, same token bytes, sketches agree. */
function checkFullStep(cs: Commitment[][], tol: Tolerance, n: number): number[] {
  const first = cs[0]![0]!;
  const distances: number[] = [];
  for (let j = 1; j < cs.length; j++) {
    const other = cs[j]!;
    if (other[0]!.step !== first.step || other[0]!.position !== first.position) {
      throw unproven('The rings of a proof step are at different steps.', { step: n, ring: j });
    }
    // Every ring was fed exactly the same token ids: their first stages hashed the same bytes.
    if (!bytesEqual(other[0]!.inHash, first.inHash)) {
      throw unproven('The rings of a proof step were fed different tokens.', { step: n, ring: j });
    }
    distances.push(...agreed(cs[0]!, other, tol, n, j));
  }
  return distances;
}

/**
 * A spot-checked step: the primary (ring 0) ran `rows` tokens at this step; the validator (ring 1)
 * caught up with every token since its last check as one chunk, `spot.tokens`, ending at the same
 * position. Both first stages' signed input hashes must be exactly those token bytes (the chunk; its
 * last `rows`), so both rings were fed the same tokens at the sampled position, and their sketches'
 * last rows (the sampled position) must agree stage by stage with the same head token. The chunk's
 * earlier rows are bound only to the validator's own signed input, not to what the primary ran
 * there: see README "Spot-check mode on real requests" for why crediting the one sampled step is safe.
 */
async function checkSpotStep(
  cs: Commitment[][],
  spot: { tokens: readonly number[]; rows: number },
  tol: Tolerance,
  n: number,
): Promise<number[]> {
  if (cs.length !== 2) throw unproven('A spot-checked proof step compares exactly two rings.', { step: n });
  const [primary, validator] = [cs[0]![0]!, cs[1]![0]!];
  const rows = spot.rows;
  if (rows > spot.tokens.length || validator.position + spot.tokens.length !== primary.position + rows) {
    throw unproven('The rings of a spot-checked proof step end at different positions.', { step: n });
  }
  const chunk = tokenBytes(spot.tokens);
  if (
    !bytesEqual(validator.inHash, await sha256(chunk)) ||
    !bytesEqual(primary.inHash, await sha256(tokenBytes(spot.tokens.slice(-rows))))
  ) {
    throw unproven('The rings of a spot-checked proof step were fed other tokens than it says.', {
      step: n,
    });
  }
  return agreed(sampledView(cs[0]!, true), sampledView(cs[1]!, true), tol, n, 1);
}

/** The rings' sketches agree stage by stage (and on the head's token); their distances. */
function agreed(a: Commitment[], b: Commitment[], tol: Tolerance, n: number, ring: number): number[] {
  const cmp = compareRings(a, b, tol);
  if (cmp.firstDivergent !== undefined) {
    throw unproven('The rings disagree: this step is not validated work.', {
      step: n,
      ring,
      stage: cmp.firstDivergent,
      distance: cmp.distances[cmp.firstDivergent],
    });
  }
  return cmp.distances;
}

/** One ring's step: coordinates, signatures and exact boundaries. */
async function checkRing(
  cs: Commitment[],
  ring: WorkRing,
  keyOf: (peer: string) => CryptoKeyLike,
  n: number,
): Promise<void> {
  if (cs.length !== ring.peers.length) {
    throw unproven('A proof ring has one commitment per stage.', { step: n, ring: ring.ringId });
  }
  const c0 = cs[0]!;
  for (let i = 0; i < cs.length; i++) {
    const c = cs[i]!;
    const coords =
      c.stage === i &&
      c.ring === c0.ring &&
      c.step === c0.step &&
      c.position === c0.position &&
      // Every stage sketches at least the step's last row: empty sketches would compare as equal.
      c.sketch.rows.length > 0 &&
      bytesEqual(c.session, c0.session) &&
      (c.kind === 'logits') === (i === cs.length - 1);
    if (!coords)
      throw unproven('A proof commitment is out of place.', { step: n, ring: ring.ringId, stage: i });
    if (!(await verifyCommitment(keyOf(ring.peers[i]!), c))) {
      throw new RingworkError('VALIDATION_BAD_SIGNATURE', 'A proof commitment does not verify.', {
        details: { step: n, ring: ring.ringId, stage: i },
      });
    }
  }
  for (let i = 0; i + 1 < cs.length; i++) {
    const sender = cs[i]!;
    const receiver = cs[i + 1]!;
    const exact =
      bytesEqual(sender.outHash, receiver.inHash) &&
      (await verifyReceipt(keyOf(ring.peers[i]!), sender, receiver.inHash, receiver.inReceipt));
    if (!exact)
      throw unproven('A proof ring breaks at a boundary.', { step: n, ring: ring.ringId, stage: i });
  }
}
