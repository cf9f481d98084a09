/**
 * The requester's checks of a real ring's commitments (issue 10), step by step: every stage's
 * `commit` arrived, decodes, names the right session, ring, stage, step and position, carries a
 * valid signature under the key its peer registered with the coordinator, and the boundary hashes
 * and receipts hold exactly (who sent what). A failed check locates the deviant stage and builds
 * an {@link EvidenceRecord} for the coordinator; only signed records go into it, never the
 * requester's word. Across rings (k ≥ 2), {@link compareRingSteps} compares sketches stage by stage.
 */
import { RingworkError } from '../errors.js';
import type { RingControlOf } from '../ring/ring-protocol.js';
import { fromBase64 } from '../ring/stage-commitments.js';
import { checkRing, compareRings, tokenBytes, type Located, type Tolerance } from './checks.js';
import { decodeCommitment, type Commitment } from './commitment.js';
import { evidenceOf, type EvidenceRecord } from './evidence.js';
import type { KeyRegistry } from './key-registry.js';

/** What the requester holds after one step of one ring. */
export interface RingStepCommits {
  /** The ring's index among the request's k rings. */
  ring: number;
  /** The session's nonce (16 bytes), as sent in `open.validation`. */
  nonce: Uint8Array;
  step: number;
  /** First position of the step. */
  position: number;
  /** Exactly the token ids sent to stage 0 for this step. */
  tokens: readonly number[];
  /** The token the head answered. */
  token: number;
  /** The `commit` messages the head passed on for this step, in arrival order. */
  commits: readonly RingControlOf<'commit'>[];
}

/** A step that passed every check. */
export interface VerifiedStep {
  commitments: Commitment[];
  /** Commitment bytes (wire form, before base64) the requester got for the step. */
  bytes: number;
  /** The same as sent on the control channel (base64 inside JSON). */
  wireBytes: number;
}

/** Options of {@link createRingVerifier}. */
export interface RingVerifierOptions {
  /** The ring's peers in stage order. */
  peers: readonly string[];
  /** Stage unit ranges, in order (for evidence records). */
  ranges: readonly (readonly [number, number])[];
  /** Keys the ring's peers registered with the coordinator. */
  registry: KeyRegistry;
  model: string;
  modelHash?: string;
}

/** Checks one ring's steps; throws `VALIDATION_DEVIANT` with `details.evidence` on a located deviant. */
export interface RingVerifier {
  verify(e: RingStepCommits): Promise<VerifiedStep>;
}

/** The typed error of a located deviant (its evidence in `details.evidence`). */
export function deviantError(located: Located, evidence: EvidenceRecord): RingworkError {
  return new RingworkError(
    'VALIDATION_DEVIANT',
    `Stage ${located.stage} of ring ${located.ring} (${evidence.peerId}) deviated at step ${evidence.step}: ${located.reason}.`,
    {
      details: {
        ring: located.ring,
        stage: located.stage,
        peer: evidence.peerId,
        reason: located.reason,
        evidence,
      },
    },
  );
}

/** Creates the verifier of one ring. */
export function createRingVerifier(o: RingVerifierOptions): RingVerifier {
  const n = o.peers.length;
  const evidence = (l: Located, detail?: string) =>
    evidenceOf({
      model: o.model,
      modelHash: o.modelHash,
      range: [...o.ranges[l.stage]!] as [number, number],
      peerId: o.peers[l.stage]!,
      reason: l.reason,
      commitment: l.proof[0]!,
      others: l.proof.slice(1),
      refereeDistance: l.refereeDistance,
      refereeToken: l.refereeToken,
      receipt: l.receipt,
      detail,
    });
  return {
    async verify(e) {
      const byStage: (RingControlOf<'commit'> | undefined)[] = new Array<undefined>(n);
      let wireBytes = 0;
      for (const m of e.commits) {
        if (m.step !== e.step || m.stage >= n || byStage[m.stage]) continue;
        byStage[m.stage] = m;
        wireBytes += JSON.stringify(m).length;
      }
      const missing = byStage.findIndex((m) => m === undefined);
      if (missing >= 0 || byStage.length !== n) {
        // A missing record blames nobody: any stage on the way could have dropped it.
        throw new RingworkError(
          'VALIDATION_MISSING_COMMITMENT',
          `Step ${e.step} came back without stage ${missing}'s commitment (does every stage commit?).`,
          { details: { step: e.step, stage: missing, ring: e.ring, got: e.commits.length, stages: n } },
        );
      }
      const commitments: Commitment[] = [];
      let bytes = 0;
      for (let i = 0; i < n; i++) {
        let raw: Uint8Array;
        let c: Commitment;
        try {
          raw = fromBase64(byStage[i]!.commitment);
          c = decodeCommitment(raw);
        } catch (err) {
          // Undecodable bytes carry no signature to hold anyone to: refuse the step, blame nobody.
          throw new RingworkError('VALIDATION_BAD_COMMITMENT', `Stage ${i}'s commitment does not decode.`, {
            details: { step: e.step, stage: i, ring: e.ring },
            cause: err,
          });
        }
        bytes += raw.length;
        commitments.push(c);
      }
      const headCommit = byStage[n - 1]!;
      if (headCommit.receipt === undefined) {
        throw new RingworkError('VALIDATION_MISSING_COMMITMENT', 'The head sent no receipt for its token.', {
          details: { step: e.step, ring: e.ring },
        });
      }
      const located = await checkRing(
        {
          ring: e.ring,
          peers: o.peers,
          commitments,
          sentTokens: tokenBytes(e.tokens),
          receivedToken: tokenBytes([e.token]),
          headReceipt: fromBase64(headCommit.receipt),
          inputOf: () => undefined,
          history: [],
        },
        o.registry,
        { session: e.nonce, step: e.step, position: e.position },
      );
      if (located) throw deviantError(located, evidence(located));
      return { commitments, bytes, wireBytes };
    },
  };
}

/**
 * Compares k rings' verified commitments of one step stage by stage (same unit boundaries): the
 * first stage where a ring leaves the primary beyond the tolerance, per ring, or undefined when
 * every ring agrees.
 */
export function compareRingSteps(
  rings: readonly Commitment[][],
  tol: Tolerance,
): { firstDivergent?: number; maxDistance: number; comparisons: number } {
  let first: number | undefined;
  let maxDistance = 0;
  let comparisons = 0;
  for (let j = 1; j < rings.length; j++) {
    const cmp = compareRings(rings[0]!, rings[j]!, tol);
    comparisons += cmp.distances.length;
    maxDistance = Math.max(maxDistance, ...cmp.distances);
    if (cmp.firstDivergent !== undefined) first = Math.min(first ?? Infinity, cmp.firstDivergent);
  }
  return { firstDivergent: first, maxDistance, comparisons };
}
