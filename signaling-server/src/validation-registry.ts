/**
 * The coordinator's side of result validation (issue 10): the per-session public keys peers
 * register (`validation-key`), handed to requesters with each ring; the evidence requesters send
 * (`validation-evidence`), which the server checks itself — every commitment must verify under the
 * registered key of the peer it names, and only a deviation the signed records prove on their own
 * (equivocation: a stage that signed one output hash and a receipt for other bytes) excludes a peer.
 * A requester's word alone never penalises anyone: unprovable reasons are kept as reports.
 * Reputation and flags are what /api/network shows; `onValidatedWork` / `onDeviant` are the hooks
 * the ledger (issue 11) subscribes to.
 */
import { isRingworkError, RingworkError } from '../../shared/errors.js';
import { fromBase64 } from '../../shared/ring/stage-commitments.js';
import {
  decodeCommitment,
  verifyCommitment,
  verifyReceipt,
  type Commitment,
} from '../../shared/validation/commitment.js';
import { bytesEqual, importPublicKey, type CryptoKeyLike } from '../../shared/validation/crypto.js';
import type { EvidenceRecord } from '../../shared/validation/evidence.js';
import type { WorkProofStep } from '../../shared/protocol/signaling.js';
import { createWorkVerifier, outvotedStage, type WorkCredit, type WorkRing } from './validation-work.js';

/** A peer's validation standing. */
export interface ValidationStanding {
  /** 0..1; starts at {@link INITIAL_REPUTATION}, grows with validated work, drops on proven deviations. */
  reputation: number;
  /** A proven deviant: excluded from rings. */
  flagged: boolean;
  /** Steps of this peer's work that requesters validated. */
  validatedSteps: number;
  /** Evidence records naming this peer that the server could not prove on its own. */
  reports: number;
}

/** What {@link ValidationRegistry.submitEvidence} decided. */
export type EvidenceVerdict =
  /** The signed records prove the deviation: the peer is flagged and excluded. */
  | 'proven'
  /** Signatures hold but the records alone do not prove who deviated: kept as a report. */
  | 'reported';

/** One stage's share of validated work: its peer, how many units it ran and (when known) which. */
export interface StageWork {
  peer: string;
  units: number;
  range?: readonly [number, number];
}

/** Who validated a piece of work, on which model and ring, and the stage's unit range (for the ledger's hook). */
export interface WorkContext {
  requester?: string;
  model?: string;
  ringId?: string;
  range?: readonly [number, number];
}

/** A proven deviation, as the ledger sees it. */
export interface DeviantEvent {
  peer: string;
  reporter: string;
  evidence: EvidenceRecord;
}

/**
 * A signed majority behind an evidence record (k >= 3): the disputed step's commitments of every
 * ring of the request; `ring` is the evidence's own ring among `rings`.
 */
export interface MajorityProof {
  rings: readonly WorkRing[];
  ring: number;
  step: WorkProofStep;
}

export const INITIAL_REPUTATION = 0.5;
const PROVEN_PENALTY = 0.5;
const REPORT_PENALTY = 0.02;
/** Reputation gained per validated step (slow: trust is earned over many answers). */
const STEP_GAIN = 0.0005;

/** The coordinator's validation state. */
export interface ValidationRegistry {
  /** Registers (or replaces) a peer's raw P-256 public key, base64; refuses anything else. */
  setKey(peer: string, keyB64: string): Promise<void>;
  /** The key a peer registered (base64), for the `ring` message. */
  keyOf(peer: string): string | undefined;
  /** Forgets a departed peer's key (its standing stays: the ledger may still need it). */
  forgetKey(peer: string): void;
  /** True for a flagged peer: planning leaves it out. */
  isExcluded(peer: string): boolean;
  standing(peer: string): ValidationStanding;
  /** Checks a requester's evidence; throws `VALIDATION_BAD_SIGNATURE`/`VALIDATION_BAD_COMMITMENT`/`VALIDATION_UNKNOWN_SIGNER` when it proves nothing. */
  submitEvidence(
    reporter: string,
    evidence: EvidenceRecord,
    ringPeers: readonly string[],
    majority?: MajorityProof,
  ): Promise<EvidenceVerdict>;
  /**
   * A requester's proof of validated work (validation-work.ts): every ring's signed commitments per
   * step, checked and compared here; the steps that hold (and were not credited before) are credited
   * to every ring's peers, with `context` (who validated, the model; each ring's id and each stage's
   * range are added) for the hooks. Throws `VALIDATION_UNPROVEN_WORK` (or a signature error)
   * crediting nobody.
   */
  creditWork(
    rings: ReadonlyArray<{ ringId: string; stages: ReadonlyArray<StageWork> }>,
    proof: readonly WorkProofStep[],
    context?: WorkContext,
  ): Promise<WorkCredit>;
  /**
   * Credits validated steps on a ring's peers (units each covered); only after the server checked
   * them. `context` (who validated, model, ring) goes to the hooks so the ledger can refuse a
   * requester's own identities.
   */
  validatedWork(peers: ReadonlyArray<StageWork>, steps: number, context?: WorkContext): void;
  onValidatedWork(
    fn: (peer: string, units: number, steps: number, context?: WorkContext) => void,
  ): () => void;
  onDeviant(fn: (e: DeviantEvent) => void): () => void;
}

/** Creates the registry (in memory, one per server run). */
export function createValidationRegistry(
  o: { logger?: { warn(obj: object, msg: string): void } } = {},
): ValidationRegistry {
  const keys = new Map<string, { b64: string; key: CryptoKeyLike }>();
  const standings = new Map<string, ValidationStanding>();
  const workFns = new Set<(peer: string, units: number, steps: number, context?: WorkContext) => void>();
  const deviantFns = new Set<(e: DeviantEvent) => void>();
  const work = createWorkVerifier({ keyOf: (peer) => keyFor(peer) });
  const standingOf = (peer: string): ValidationStanding => {
    let s = standings.get(peer);
    if (!s) {
      s = { reputation: INITIAL_REPUTATION, flagged: false, validatedSteps: 0, reports: 0 };
      standings.set(peer, s);
    }
    return s;
  };
  const keyFor = (peer: string): CryptoKeyLike => {
    const k = keys.get(peer);
    if (!k) {
      throw new RingworkError('VALIDATION_UNKNOWN_SIGNER', `Peer ${peer} registered no validation key.`, {
        details: { peer },
      });
    }
    return k.key;
  };
  const registry: ValidationRegistry = {
    async setKey(peer, b64) {
      const key = await importPublicKey(fromBase64(b64));
      keys.set(peer, { b64, key });
    },
    keyOf: (peer) => keys.get(peer)?.b64,
    forgetKey: (peer) => void keys.delete(peer),
    isExcluded: (peer) => standings.get(peer)?.flagged === true,
    standing: (peer) => ({ ...standingOf(peer) }),
    async submitEvidence(reporter, ev, ringPeers, majority) {
      const stage = ev.stage;
      if (ringPeers[stage] !== ev.peerId) {
        throw new RingworkError(
          'VALIDATION_BAD_COMMITMENT',
          'The evidence names a peer that is not at that stage.',
          {
            details: { stage, peer: ev.peerId },
          },
        );
      }
      const cs: Commitment[] = ev.commitments.map((hex) => decodeCommitment(hexBytes(hex)));
      // Every record must verify under the key of the stage it claims to be from (in this ring).
      for (const c of cs) {
        const signer = ringPeers[c.stage];
        if (!signer || !(await verifyCommitment(keyFor(signer), c))) {
          throw new RingworkError('VALIDATION_BAD_SIGNATURE', 'An evidence commitment does not verify.', {
            details: { stage: c.stage },
          });
        }
      }
      const proven =
        ev.reason === 'equivocation'
          ? await provesEquivocation(cs, stage, keyFor(ev.peerId), ev.receipt && receiptOf(ev.receipt))
          : majority !== undefined && (await provesMajority(ev, majority, keyFor));
      const s = standingOf(ev.peerId);
      if (proven) {
        s.flagged = true;
        s.reputation = Math.max(0, s.reputation - PROVEN_PENALTY);
        for (const f of deviantFns) f({ peer: ev.peerId, reporter, evidence: ev });
        return 'proven';
      }
      s.reports++;
      s.reputation = Math.max(0, s.reputation - REPORT_PENALTY);
      o.logger?.warn({ reporter, peer: ev.peerId, reason: ev.reason }, 'unproven validation report');
      return 'reported';
    },
    async creditWork(rings, proof, context) {
      const credit = await work.verify(
        rings.map((r) => ({ ringId: r.ringId, peers: r.stages.map((s) => s.peer) })),
        proof,
      );
      if (credit.steps > 0)
        for (const r of rings)
          registry.validatedWork(r.stages, credit.steps, { ...context, ringId: r.ringId });
      return credit;
    },
    validatedWork(peers, steps, context) {
      for (const { peer, units, range } of peers) {
        const s = standingOf(peer);
        s.validatedSteps += steps;
        s.reputation = Math.min(1, s.reputation + STEP_GAIN * steps);
        for (const f of workFns) f(peer, units, steps, range ? { ...context, range } : context);
      }
    },
    onValidatedWork(fn) {
      workFns.add(fn);
      return () => void workFns.delete(fn);
    },
    onDeviant(fn) {
      deviantFns.add(fn);
      return () => void deviantFns.delete(fn);
    },
  };
  return registry;
}

/**
 * True when the other rings' signed commitments outvote exactly the evidence's stage: the deviant is
 * then decided by the majority of disjoint rings, not by the requester's word.
 */
async function provesMajority(
  ev: EvidenceRecord,
  m: MajorityProof,
  keyOf: (peer: string) => CryptoKeyLike,
): Promise<boolean> {
  if (m.rings[m.ring]?.peers[ev.stage] !== ev.peerId) return false;
  try {
    const out = await outvotedStage(m.rings, m.step, keyOf);
    return out !== undefined && out.ring === m.ring && out.stage === ev.stage;
  } catch (e) {
    // Records that do not hold together prove nothing (a report), unless a signature is forged.
    if (isRingworkError(e, 'VALIDATION_UNPROVEN_WORK')) return false;
    throw e;
  }
}

function receiptOf(r: { hash: string; signature: string }): { hash: Uint8Array; signature: Uint8Array } {
  return { hash: hexBytes(r.hash), signature: hexBytes(r.signature) };
}

function hexBytes(hex: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})+$/.test(hex)) throw new RingworkError('VALIDATION_BAD_COMMITMENT', 'Not hex.');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * True when the records prove, on their own, that stage `stage` equivocated: its signed commitment
 * names one output hash while the next stage's signed commitment carries `stage`'s valid receipt
 * over a different input hash for the same step — or, for the head (no next stage), its own signed
 * receipt in the evidence covers a hash other than its committed output hash.
 */
async function provesEquivocation(
  cs: Commitment[],
  stage: number,
  key: CryptoKeyLike,
  receipt?: { hash: Uint8Array; signature: Uint8Array },
): Promise<boolean> {
  const sender = cs.find((c) => c.stage === stage);
  const receiver = cs.find((c) => c.stage === stage + 1);
  if (sender && !receiver && receipt) {
    // The head's case: its own receipt (for what the requester got) covers other bytes than its commitment.
    return (
      !bytesEqual(sender.outHash, receipt.hash) && verifyReceipt(key, sender, receipt.hash, receipt.signature)
    );
  }
  if (!sender || !receiver) return false;
  const same =
    sender.ring === receiver.ring &&
    sender.step === receiver.step &&
    sender.position === receiver.position &&
    bytesEqual(sender.session, receiver.session);
  if (!same || bytesEqual(sender.outHash, receiver.inHash)) return false;
  return verifyReceipt(key, sender, receiver.inHash, receiver.inReceipt);
}
