/**
 * What a located deviation leaves behind: a self-contained record for the ledger and stake
 * slashing (identity issue) — which model and shard, which step, the input hash, the signed
 * commitments (wire bytes, verifiable by anyone with the registered keys) and the referee's result.
 */
import { toHex } from './crypto.js';
import { encodeCommitment, type Commitment } from './commitment.js';

/** Why a stage was located as the deviant. */
export type DeviationReason =
  /** Its commitment's signature does not verify (forged or rewritten on the way). */
  | 'bad-signature'
  /** It signed a receipt for bytes other than those it committed to (committed honestly, sent something else). */
  | 'equivocation'
  /** Its commitment's input hash is backed by no valid receipt from its sender (it lied about its input). */
  | 'false-input'
  /** The token it sent differs from the token it committed to, or from the referee's. */
  | 'wrong-token'
  /** Its committed sketch is not the sketch of the bytes it provably sent. */
  | 'false-sketch'
  /** Its output is beyond the tolerance from the referee's recomputation. */
  | 'output-mismatch';

/** A located deviant with its proof. */
export interface EvidenceRecord {
  v: 1;
  model: string;
  /** SHA-256 of the model's weights file (hex), when the caller knows it. */
  modelHash?: string;
  range: [number, number];
  peerId: string;
  ring: number;
  stage: number;
  step: number;
  position: number;
  reason: DeviationReason;
  /** Hex of the deviant's input hash for the step. */
  inHash: string;
  /** Hex wire bytes of the signed commitments involved (the deviant's first). */
  commitments: string[];
  /** The referee's relative distance to the deviant's output, when a referee ran. */
  refereeDistance?: number;
  /** The referee's token, when the head was disputed. */
  refereeToken?: number;
  /**
   * Hex of the deviant's signed receipt and of the hash it covers, when the receipt is in no
   * commitment of the record (the head's receipt for the token it sent the requester): with the
   * deviant's commitment it proves equivocation on its own.
   */
  receipt?: { hash: string; signature: string };
  detail?: string;
}

/** Builds an evidence record from the deviant's commitment and the others involved. */
export function evidenceOf(o: {
  model: string;
  modelHash?: string;
  range: [number, number];
  peerId: string;
  reason: DeviationReason;
  commitment: Commitment;
  others?: Commitment[];
  refereeDistance?: number;
  refereeToken?: number;
  receipt?: { hash: Uint8Array; signature: Uint8Array };
  detail?: string;
}): EvidenceRecord {
  const c = o.commitment;
  return {
    v: 1,
    model: o.model,
    modelHash: o.modelHash,
    range: o.range,
    peerId: o.peerId,
    ring: c.ring,
    stage: c.stage,
    step: c.step,
    position: c.position,
    reason: o.reason,
    inHash: toHex(c.inHash),
    commitments: [c, ...(o.others ?? [])].map((x) => toHex(encodeCommitment(x))),
    refereeDistance: o.refereeDistance,
    refereeToken: o.refereeToken,
    ...(o.receipt ? { receipt: { hash: toHex(o.receipt.hash), signature: toHex(o.receipt.signature) } } : {}),
    detail: o.detail,
  };
}
