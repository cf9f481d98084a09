/**
 * One validated generation, driven by the requester: every step goes through k rings with the
 * same unit boundaries (security level k), or through one ring with spot checks. Each step the
 * requester checks every ring's signed commitments and boundary hashes, compares the rings stage
 * by stage, and on a disagreement (or a sampled spot check) asks the referee, which recomputes
 * the disputed stage from token ids; the majority locates the deviant stage, whose ring is
 * dropped, and the answer continues on the honest ring with the token an undisturbed run gives.
 * Greedy sampling (the referee checks the head's token as the argmax).
 */
import { isRingworkError, RingworkError, throwIfAborted } from '../errors.js';
import { encodeCommitment, SESSION_ID_BYTES, verifyCommitment, type Commitment } from './commitment.js';
import {
  checkRing,
  compareRings,
  refereeVerdict,
  tokenBytes,
  type Located,
  type RingStep,
  type Tolerance,
} from './checks.js';
import { evidenceOf, type EvidenceRecord } from './evidence.js';
import type { KeyRegistry } from './key-registry.js';
import type { Referee } from './referee.js';
import type { SketchParams } from './sketch.js';
import type { SpotCheckPolicy } from './spot-check.js';
import type { StageFrame, ValidatingStage } from './stage.js';

/** The stages of one ring, in order (the last is the head). */
export interface ValidatedRing {
  ring: number;
  stages: ValidatingStage[];
}

/** A step at which a deviation was located. */
export interface Detection {
  step: number;
  /** `boundary`: signatures or hashes; `compare`: rings disagreed and the referee decided; `spot-check`. */
  via: 'boundary' | 'compare' | 'spot-check';
  located: { ring: number; stage: number; peerId: string; reason: Located['reason'] }[];
  evidence: EvidenceRecord[];
}

/** Options of {@link runValidatedGeneration}. */
export interface ValidatedGenerationOptions {
  rings: ValidatedRing[];
  registry: KeyRegistry;
  /** Needed for k >= 2 disputes and for spot checks. */
  referee?: Referee;
  /** Output row length per stage (hidden size; the vocabulary for the head). */
  rowLens: number[];
  prompt: number[];
  /** Total positions, prompt included (llama2.c's `steps`). */
  steps: number;
  tolerance: Tolerance;
  sketch?: SketchParams;
  /** With one ring: re-execute sampled steps (adaptive per peer). */
  spotCheck?: SpotCheckPolicy;
  /** End the generation at the first detection (benchmarks); default: continue on the honest ring. */
  stopAtDetection?: boolean;
  model: string;
  modelHash?: string;
  session?: Uint8Array;
  signal?: AbortSignal;
}

/** What one validated generation did. */
export interface ValidatedGenerationResult {
  /** Prompt and generated token ids (from the honest ring after a detection). */
  tokens: number[];
  steps: number;
  detections: Detection[];
  /** Stage-by-stage ring comparisons and referee checks made. */
  comparisons: number;
  /** Comparisons beyond the tolerance (each went to the referee). */
  flags: number;
  /** Flags the referee found no deviant for (honest disagreement or an unresolvable one). */
  unresolved: number;
  /** Steps a referee recomputed (disputes and spot checks). */
  stepsChecked: number;
  /** Largest ring-vs-ring sketch distance seen on agreeing comparisons. */
  maxAgreeingDistance: number;
  /** Largest ring-vs-referee sketch distance where the referee found the stage honest. */
  maxRefereeDistance: number;
  /** Commitment bytes one ring sends the requester per decode step. */
  commitmentBytesPerStep: number;
  computeMs: { rings: number; referee: number };
  validationMs: number;
}

function located(l: Located, peers: readonly string[]) {
  return { ring: l.ring, stage: l.stage, peerId: peers[l.stage]!, reason: l.reason };
}

/** Runs one generation under validation. */
export async function runValidatedGeneration(
  o: ValidatedGenerationOptions,
): Promise<ValidatedGenerationResult> {
  if (o.rings.length === 0)
    throw new RingworkError('INVALID_ARGUMENT', 'A validated generation needs a ring.');
  const nStages = o.rings[0]!.stages.length;
  if (o.rings.some((r) => r.stages.length !== nStages)) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      'Validator rings must cut the model at the same unit boundaries.',
    );
  }
  if ((o.rings.length > 1 || o.spotCheck) && !o.referee) {
    throw new RingworkError('INVALID_ARGUMENT', 'k >= 2 and spot checks need a referee.');
  }
  const session = o.session ?? crypto.getRandomValues(new Uint8Array(SESSION_ID_BYTES));
  let active = [...o.rings];
  const res: ValidatedGenerationResult = {
    tokens: [...o.prompt],
    steps: 0,
    detections: [],
    comparisons: 0,
    flags: 0,
    unresolved: 0,
    stepsChecked: 0,
    maxAgreeingDistance: 0,
    maxRefereeDistance: 0,
    commitmentBytesPerStep: 0,
    computeMs: { rings: 0, referee: 0 },
    validationMs: 0,
  };
  const peersOf = (r: ValidatedRing) => r.stages.map((s) => s.peerId);
  const drop = (ls: Located[], step: number, via: Detection['via']) => {
    const det: Detection = { step, via, located: [], evidence: [] };
    for (const l of ls) {
      const ring = active.find((r) => r.ring === l.ring)!;
      const st = ring.stages[l.stage]!;
      det.located.push(located(l, peersOf(ring)));
      det.evidence.push(
        evidenceOf({
          model: o.model,
          modelHash: o.modelHash,
          range: st.range,
          peerId: st.peerId,
          reason: l.reason,
          commitment: l.proof[0]!,
          others: l.proof.slice(1),
          refereeDistance: l.refereeDistance,
          refereeToken: l.refereeToken,
        }),
      );
      o.spotCheck?.recordDeviant(st.peerId);
    }
    active = active.filter((r) => !ls.some((l) => l.ring === r.ring));
    res.detections.push(det);
  };

  // Every ring's commitments of every step so far (small), for disputes over earlier steps.
  const histories = new Map<number, Commitment[][]>();
  await Promise.all(o.rings.flatMap((r) => r.stages.map((s) => s.begin(session))));
  try {
    let feed = o.prompt.slice(0, Math.max(1, Math.min(o.prompt.length, o.steps)));
    let step = 0;
    for (;;) {
      throwIfAborted(o.signal, 'Validated generation');
      const position = res.tokens.length - feed.length;
      const sent = tokenBytes(feed);
      const views: (RingStep & { token: number })[] = [];
      const refusals: Located[] = [];
      for (const ring of [...active]) {
        let frame: StageFrame = { payload: sent };
        const commitments: Commitment[] = [];
        let token = -1;
        let refusedAt: number | undefined;
        for (const [i, st] of ring.stages.entries()) {
          try {
            const r = await st.step(frame, step, position, { signal: o.signal });
            res.computeMs.rings += r.computeMs;
            res.validationMs += r.validationMs;
            commitments.push(r.commitment);
            frame = r.frame;
            if (r.token !== undefined) token = r.token;
          } catch (e) {
            if (!isRingworkError(e) || e.code !== 'VALIDATION_RECEIPT_MISMATCH') throw e;
            refusedAt = i;
            break;
          }
        }
        if (refusedAt !== undefined) {
          // A receiver refused its sender's frame (the receipt did not verify). The receiver's word
          // alone blames nobody; the sender's own commitment, checked against its registered key, can.
          const sender = commitments[refusedAt - 1]!;
          const ok = await verifyCommitment(o.registry.keyOf(ring.stages[refusedAt - 1]!.peerId), sender);
          if (!ok)
            refusals.push({
              ring: ring.ring,
              stage: refusedAt - 1,
              reason: 'bad-signature',
              proof: [sender],
            });
          else {
            res.unresolved++;
            active = active.filter((r) => r !== ring);
          }
          continue;
        }
        views.push({
          ring: ring.ring,
          peers: peersOf(ring),
          commitments,
          sentTokens: sent,
          receivedToken: frame.payload,
          headReceipt: frame.from!.receipt,
          inputOf: (s, t) => ring.stages[s]!.recordedInput(t),
          history: [...(histories.get(ring.ring) ?? []), commitments],
          token,
        });
        if (step === 1)
          res.commitmentBytesPerStep = commitments.reduce((n, c) => n + encodeCommitment(c).length, 0);
      }
      for (const v of views) histories.set(v.ring, v.history);
      // 1. Signatures and exact boundaries, ring by ring (no referee needed).
      const boundary: Located[] = [...refusals];
      for (const v of views) {
        const l = await checkRing(v, o.registry, { session, step, position });
        if (l) boundary.push(l);
      }
      if (boundary.length) drop(boundary, step, 'boundary');
      let live = views.filter((v) => active.some((r) => r.ring === v.ring));
      // 2. k >= 2: compare stage by stage; the referee settles the first disagreement.
      if (live.length >= 2) {
        let first: number | undefined;
        for (let j = 1; j < live.length; j++) {
          const cmp = compareRings(live[0]!.commitments, live[j]!.commitments, o.tolerance);
          res.comparisons += cmp.distances.length;
          const agreeing =
            cmp.firstDivergent === undefined ? cmp.distances : cmp.distances.slice(0, cmp.firstDivergent);
          res.maxAgreeingDistance = Math.max(res.maxAgreeingDistance, ...agreeing);
          if (cmp.firstDivergent !== undefined) first = Math.min(first ?? Infinity, cmp.firstDivergent);
        }
        if (first !== undefined) {
          res.flags++;
          res.stepsChecked++;
          const ref = await o.referee!.recompute(res.tokens, first, { signal: o.signal });
          res.computeMs.referee += ref.computeMs;
          const verdicts: Located[] = [];
          for (const v of live) {
            const l = await refereeVerdict(v, first, ref, o.tolerance, o.rowLens, o.sketch);
            if (l.ring !== undefined) verdicts.push(l);
            else res.maxRefereeDistance = Math.max(res.maxRefereeDistance, l.distance);
          }
          // The majority decides: the referee and the rings it agrees with outvote the rest.
          if (verdicts.length > 0 && verdicts.length < live.length + 1) drop(verdicts, step, 'compare');
          else res.unresolved++;
        }
      } else if (live.length === 1 && o.spotCheck?.shouldCheck(live[0]!.peers)) {
        // 3. Spot check: the referee recomputes the whole step and checks every stage in order.
        res.stepsChecked++;
        const v = live[0]!;
        const ref = await o.referee!.recompute(res.tokens, nStages - 1, { signal: o.signal });
        res.computeMs.referee += ref.computeMs;
        let found: Located | undefined;
        for (let s = 0; s < nStages && !found; s++) {
          res.comparisons++;
          const l = await refereeVerdict(v, s, ref, o.tolerance, o.rowLens, o.sketch);
          if (l.ring !== undefined) found = l;
          else res.maxRefereeDistance = Math.max(res.maxRefereeDistance, l.distance);
        }
        if (found) drop([found], step, 'spot-check');
        else o.spotCheck.recordClean(v.peers);
      }
      res.steps = step + 1;
      live = views.filter((v) => active.some((r) => r.ring === v.ring));
      if (live.length === 0 || (o.stopAtDetection && res.detections.length > 0)) break;
      const next = live[0]!.token;
      res.tokens.push(next);
      if (res.tokens.length >= o.steps) break;
      feed = [next];
      step++;
    }
  } finally {
    await Promise.all(o.rings.flatMap((r) => r.stages.map((s) => s.end())));
  }
  return res;
}
