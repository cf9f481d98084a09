/**
 * Security level k on real rings (issue 10): a {@link Pipeline} over k rings with the same unit
 * boundaries, so the ordinary `generate` loop feeds every ring the same chosen token. Each step:
 * every ring's commitments are checked on their own (signatures, exact boundary hashes: a
 * located deviant's ring is dropped with its evidence); the surviving rings are compared stage by
 * stage within the tolerance; on a disagreement the referee (the requester's own runners, when the
 * units fit) recomputes the first disputed stage from token ids and every ring beyond the tolerance
 * from it is dropped as deviant. The answer continues on a ring the referee agrees with.
 *
 * Spot-check mode (`spot`): the validator rings are fed only on a sampled fraction f of steps,
 * catching up with every token since their last check as one chunk; see spot-settle.ts. A sampled
 * step on which both rings agreed is a proof of validated work too (work-proof.ts).
 *
 * Limit: the referee judges the disputed stage by its committed sketch. A sender that commits the
 * honest sketch while sending (and hashing) other bytes moves the blame one stage down; catching
 * that needs the stage's recorded input (see checks.ts `refereeVerdict`), not yet on the wire.
 */
import { isRingworkError, RingworkError, throwIfAborted } from '../errors.js';
import {
  openRemoteSession,
  type RemotePipelineOptions,
  type RemoteSession,
} from '../ring/remote-pipeline.js';
import { RING_SKETCH_ROWS } from '../ring/stage-commitments.js';
import type { ForwardOptions, ForwardResult, Pipeline, PipelineSession } from '../runtime/pipeline.js';
import type { Tolerance } from './checks.js';
import type { Commitment } from './commitment.js';
import { evidenceOf, type EvidenceRecord } from './evidence.js';
import type { Referee } from './referee.js';
import {
  compareRingSteps,
  createRingVerifier,
  type RingVerifierOptions,
  type VerifiedStep,
} from './ring-validator.js';
import { sketchDistance, sketchOf } from './sketch.js';
import { firstHistoryDeviation, sampledView, type RecordedStep } from './spot-settle.js';
import { argmax } from './stage.js';
import type { SpotProof } from './work-proof.js';

/** One of the k rings. */
export interface ValidatedRingSpec {
  /** How to reach the ring (its `validation` is set here). */
  remote: Omit<RemotePipelineOptions, 'validation'>;
  verifier: RingVerifierOptions;
}

/** What the chat shows of an answer's verification. */
export interface VerificationReport {
  /** Security level asked for. */
  k: number;
  /** Rings still agreeing at the end (1 after a detection at k = 2). */
  ringsAgreeing: number;
  /** Steps whose commitments were checked on every live ring. */
  stepsChecked: number;
  /** Stage-by-stage ring comparisons made. */
  comparisons: number;
  /** Steps the referee recomputed. */
  refereeSteps: number;
  /** Largest sketch distance between agreeing rings. */
  maxAgreeingDistance: number;
  /** Located deviants with their evidence (the coordinator gets these). */
  evidence: EvidenceRecord[];
  /** Commitment bytes per decode step, all rings together. */
  commitmentBytesPerStep: number;
  /** Rings lost (not deviant: a peer left, a re-plan) after a deviant was dropped; the answer went on without them. */
  lost: number[];
  /** Steps run (forward calls answered), checked or not. */
  steps: number;
  /** Steps on which two or more rings were compared (spot-check mode: the sampled ones). */
  comparedSteps: number;
  /** Spot-check mode: the check probability per step. */
  spot?: { f: number };
  /**
   * The first step that ran on fewer than two rings, so nothing was compared from then on: after a
   * located deviant's ring was dropped, or a ring was lost after that.
   */
  uncheckedFrom?: { step: number; position: number; reason: 'deviant' | 'lost' };
}

/** Spot-check mode of {@link createValidatedPipeline}. */
export interface SpotOptions {
  /** Probability that a step is re-executed by the validator rings (0 < f <= 1). */
  f: number;
  /** Uniform [0, 1) (seeded in tests). */
  random: () => number;
  /** The answer samples greedily: the head's token is compared too (see spot-settle.ts). */
  greedy: boolean;
}

/** Options of {@link createValidatedPipeline}. */
export interface ValidatedPipelineOptions {
  rings: ValidatedRingSpec[];
  /** Recomputes disputed stages from token ids (needed for k >= 2). */
  referee?: Referee;
  tolerance: Tolerance;
  /**
   * Called once per located deviant (send it to the coordinator as `validation-evidence`). For a
   * deviant the referee found among the rings' disagreement, `step` holds every answering ring's
   * verified commitments of that step (ring index order): at k >= 3 the coordinator can check that
   * the other rings outvote the deviant from the signed records alone.
   */
  onEvidence?: (
    e: EvidenceRecord,
    ring: number,
    step?: { ring: number; commitments: Commitment[] }[],
  ) => void;
  /** Called after every step with the running report. */
  onReport?: (r: VerificationReport) => void;
  /**
   * Called after every step compared across rings with each ring's verified commitments (ring
   * index order) and whether they all agreed: agreed steps are the proof of validated work the
   * coordinator checks itself (work-proof.ts). In spot-check mode only sampled steps on which the
   * primary and the validator ring (0 and 1) both answered are passed.
   */
  onComparedStep?: (
    rings: { ring: number; commitments: Commitment[] }[],
    agreed: boolean,
    /**
     * Spot-check mode: the validator ring's chunk of token ids (everything since its last check)
     * and the rows the primary ran at this step; `agreed` then also means the same head token.
     */
    spot?: SpotProof,
  ) => void;
  /** Where a slow answer waited: each ring's answer to a prefill step or to a step slower than 5 s. */
  log?: { info(o: object, msg?: string): void };
  now?: () => number;
  /**
   * How long a ring that still loads its shards (`RING_STAGE_NOT_SERVING`) is waited for at the
   * first step, when another ring answered it, ms (default 60 s). Then the step fails with its error.
   */
  readyWaitMs?: number;
  /**
   * Spot-check mode: rings after the first are fed only on a sampled fraction `f` of steps, with
   * every token since their last check as one chunk. Absent: every ring runs every step.
   */
  spot?: SpotOptions;
}

/** A session of a {@link ValidatedPipeline}. */
export interface ValidatedSession extends PipelineSession {
  /** Random draws of the (first live) head's sampler so far: what a failover hands on. */
  readonly draws: number;
}

/** A k-ring pipeline; `report` holds the verification of the latest session. */
export interface ValidatedPipeline extends Pipeline {
  readonly report: VerificationReport;
  open(): Promise<ValidatedSession>;
}

/** Creates the k-ring pipeline. */
export function createValidatedPipeline(o: ValidatedPipelineOptions): ValidatedPipeline {
  if (o.rings.length === 0) throw new RingworkError('INVALID_ARGUMENT', 'A validated request needs a ring.');
  if (o.rings.length > 1 && !o.referee) {
    throw new RingworkError('INVALID_ARGUMENT', 'Security level k >= 2 needs a referee.');
  }
  const n = o.rings[0]!.verifier.peers.length;
  if (o.rings.some((r) => r.verifier.peers.length !== n)) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      'Validator rings must cut the model at the same unit boundaries.',
    );
  }
  const spot = o.spot;
  if (spot && (!(spot.f > 0 && spot.f <= 1) || o.rings.length < 2)) {
    throw new RingworkError('INVALID_ARGUMENT', 'Spot checks need 0 < f <= 1 and a validator ring.', {
      details: { f: spot.f, rings: o.rings.length },
    });
  }
  const fresh = () => ({ ...emptyReport(o.rings.length), ...(spot ? { spot: { f: spot.f } } : {}) });
  let report = fresh();
  const now = o.now ?? (() => performance.now());
  return {
    get report() {
      return report;
    },
    async open(): Promise<ValidatedSession> {
      report = fresh();
      const verified = new Map<number, VerifiedStep>();
      const sessions: { ring: number; session: RemoteSession }[] = [];
      const openRing = (j: number): Promise<RemoteSession> => {
        const spec = o.rings[j]!;
        const verifier = createRingVerifier(spec.verifier);
        return openRemoteSession({
          ...spec.remote,
          validation: { ring: j, verify: async (e) => void verified.set(j, await verifier.verify(e)) },
        });
      };
      for (let j = 0; j < o.rings.length; j++) sessions.push({ ring: j, session: await openRing(j) });
      let live = [...sessions];
      /**
       * The first step, answered by another ring, but this one still loads its shards (validator
       * rings are planned when the request arrives): open it again until it serves, for a bounded
       * time. Retrying the whole answer instead would re-ask the coordinator, whose answer may have
       * changed meanwhile (a deviant located in this very step is excluded, and fewer peers may no
       * longer make up the level asked for) — and the located deviant's honest twin would be lost.
       */
      const awaitReady = async (
        ring: number,
        tokens: Int32Array,
        position: number,
        opts: ForwardOptions,
      ): Promise<ForwardResult> => {
        const deadline = now() + (o.readyWaitMs ?? 60_000);
        for (let attempt = 0; ; attempt++) {
          await new Promise<void>((r) => setTimeout(r, Math.min(2000, 250 * 2 ** attempt)));
          throwIfAborted(opts.signal, 'The step');
          const old = sessions.find((s) => s.ring === ring)!;
          void old.session.close();
          old.session = await openRing(ring);
          try {
            return await old.session.forward(tokens, position, opts);
          } catch (e) {
            if (!isRingworkError(e) || e.code !== 'RING_STAGE_NOT_SERVING' || now() > deadline) throw e;
          }
        }
      };
      const history: number[] = [];
      /** Tokens each ring has run (spot-check mode: the validator rings lag between checks). */
      const fed = new Map<number, number>();
      /** Spot-check mode: each ring's verified commitments of every step it answered. */
      const recorded = new Map<number, RecordedStep[]>();
      /** What ring `ring` runs now: every step, or in spot-check mode everything since its last feed. */
      const feedOf = (ring: number, tokens: Int32Array, position: number) => {
        const from = fed.get(ring) ?? 0;
        return spot && from !== position
          ? { tokens: Int32Array.from(history.slice(from)), position: from }
          : { tokens, position };
      };
      const drop = (
        ring: number,
        ev: EvidenceRecord,
        step?: { ring: number; commitments: Commitment[] }[],
      ) => {
        live = live.filter((s) => s.ring !== ring);
        report.evidence.push(ev);
        o.onEvidence?.(ev, ring, step);
      };
      return {
        get draws() {
          return live[0]?.session.draws ?? 0;
        },
        async forward(tokens, position, opts = {}): Promise<ForwardResult> {
          history.push(...tokens);
          verified.clear();
          const stepIndex = report.steps;
          // `drop` shrinks `live` while the results are read: index them by the rings polled. In
          // spot-check mode the validator rings run only on sampled steps (first live ring: always).
          const polled = spot && live.length >= 2 && !(spot.random() < spot.f) ? live.slice(0, 1) : live;
          const t0 = now();
          const results = await Promise.allSettled(
            polled.map(async (s) => {
              const settled = (outcome: string) => {
                const ms = now() - t0;
                if (tokens.length > 1 || ms > 5000)
                  o.log?.info(
                    { ring: s.ring, position, rows: tokens.length, ms: Math.round(ms), outcome },
                    'ring step',
                  );
              };
              try {
                const feed = feedOf(s.ring, tokens, position);
                const r = await s.session.forward(feed.tokens, feed.position, opts);
                settled('answered');
                return r;
              } catch (e) {
                settled(isRingworkError(e) ? e.code : 'failed');
                throw e;
              }
            }),
          );
          const answered: { ring: number; result: ForwardResult; step: VerifiedStep }[] = [];
          const lost: { ring: number; error: unknown }[] = [];
          results.forEach((r, i) => {
            const ring = polled[i]!.ring;
            if (r.status === 'fulfilled') answered.push({ ring, result: r.value, step: verified.get(ring)! });
            else if (isRingworkError(r.reason) && r.reason.code === 'VALIDATION_DEVIANT') {
              drop(ring, (r.reason.details as { evidence: EvidenceRecord }).evidence);
            } else lost.push({ ring, error: r.reason });
          });
          if (answered.length + report.evidence.length > 0) {
            for (const l of [...lost]) {
              if (!isRingworkError(l.error) || l.error.code !== 'RING_STAGE_NOT_SERVING') continue;
              // Only a ring's first feed (it may still load its shards); later, not serving is a loss.
              if ((fed.get(l.ring) ?? 0) !== 0) continue;
              lost.splice(lost.indexOf(l), 1);
              try {
                const feed = feedOf(l.ring, tokens, position);
                const result = await awaitReady(l.ring, feed.tokens, feed.position, opts);
                o.log?.info({ ring: l.ring, ms: Math.round(now() - t0) }, 'ring ready');
                answered.push({ ring: l.ring, result, step: verified.get(l.ring)! });
              } catch (e) {
                if (isRingworkError(e) && e.code === 'VALIDATION_DEVIANT')
                  drop(l.ring, (e.details as { evidence: EvidenceRecord }).evidence);
                else lost.push({ ring: l.ring, error: e });
              }
            }
            answered.sort((a, b) => a.ring - b.ring);
          }
          if (lost.length > 0) {
            // A ring that failed (a lost peer, a re-plan, a deadline) checks nothing from now on. Before
            // any deviant was located that would leave the answer below the level asked for, so the
            // step fails with the ring's own error (a requester retries those by code); once a deviant
            // was dropped the answer already continues on the honest ring(s), which may go on.
            if (report.evidence.length === 0 || answered.length === 0) throw lost[0]!.error;
            live = live.filter((s) => !lost.some((l) => l.ring === s.ring));
            report.lost.push(...lost.map((l) => l.ring));
          }
          if (answered.length === 0) throw new RingworkError('VALIDATION_DEVIANT', 'Every ring deviated.');
          /** What each answering ring ran at this step (spot-check mode: the validator's chunk). */
          const feeds = new Map<number, { tokens: Int32Array; position: number }>();
          for (const a of answered) {
            const feed = feedOf(a.ring, tokens, position);
            feeds.set(a.ring, feed);
            fed.set(a.ring, history.length);
            if (!spot) continue;
            let steps = recorded.get(a.ring);
            if (!steps) recorded.set(a.ring, (steps = []));
            steps.push({
              position: feed.position,
              rows: feed.tokens.length,
              commitments: a.step.commitments,
            });
          }
          report.steps = stepIndex + 1;
          report.stepsChecked++;
          if (tokens.length === 1)
            report.commitmentBytesPerStep = answered.reduce((b, a) => b + a.step.bytes, 0);
          let agreeing = answered;
          if (answered.length >= 2) {
            const cmp = compareRingSteps(
              answered.map((a) => (spot ? sampledView(a.step.commitments, spot.greedy) : a.step.commitments)),
              o.tolerance,
            );
            report.comparisons += cmp.comparisons;
            report.comparedSteps++;
            const rs = answered.map((a) => ({ ring: a.ring, commitments: a.step.commitments }));
            if (!spot) o.onComparedStep?.(rs, cmp.firstDivergent === undefined);
            else if (answered.length === 2 && answered[0]!.ring === 0 && answered[1]!.ring === 1) {
              // A sampled step proves work with the validator's chunk, whose token bytes the
              // coordinator hashes itself (validation-work.ts). It compares the head's token too:
              // without greedy sampling the validator's draw may differ, and that step proves nothing.
              const heads = rs.map((r) => r.commitments.at(-1)!.token);
              o.onComparedStep?.(rs, cmp.firstDivergent === undefined && heads[0] === heads[1], {
                tokens: [...feeds.get(1)!.tokens],
                rows: feeds.get(0)!.tokens.length,
              });
            }
            if (cmp.firstDivergent === undefined) {
              report.maxAgreeingDistance = Math.max(report.maxAgreeingDistance, cmp.maxDistance);
            } else if (spot) {
              agreeing = await settleHistory(answered, cmp.firstDivergent, opts.signal);
            } else {
              agreeing = await settle(answered, cmp.firstDivergent, position, tokens.length, opts.signal);
            }
          }
          report.ringsAgreeing = live.length;
          if (live.length < 2 && o.rings.length >= 2 && !report.uncheckedFrom) {
            report.uncheckedFrom = {
              step: stepIndex + 1,
              position: position + tokens.length,
              reason: report.evidence.length > 0 ? 'deviant' : 'lost',
            };
          }
          o.onReport?.({ ...report, evidence: [...report.evidence], lost: [...report.lost] });
          if (agreeing.length === 0) {
            throw new RingworkError('VALIDATION_DEVIANT', 'No ring agrees with the referee.', {
              details: { position },
            });
          }
          return agreeing[0]!.result;
        },
        async close() {
          await Promise.all(sessions.map((s) => s.session.close()));
        },
      };

      /**
       * Spot-check mode: the referee recomputes stages `0..stage` over every position, and each ring
       * is judged by its whole recorded history (spot-settle.ts): the first stage and step it
       * deviated at is located, which may be an unsampled step upstream of the disagreement.
       */
      async function settleHistory(
        answered: { ring: number; result: ForwardResult; step: VerifiedStep }[],
        stage: number,
        signal?: AbortSignal,
      ) {
        report.refereeSteps++;
        const ref = await o.referee!.recompute(history, stage, { signal });
        const honest: typeof answered = [];
        for (const a of answered) {
          const steps = recorded.get(a.ring) ?? [];
          const dev = firstHistoryDeviation({
            steps,
            ref,
            upTo: stage,
            tolerance: o.tolerance,
            checkToken: spot!.greedy,
          });
          if (!dev) {
            honest.push(a);
            continue;
          }
          const spec = o.rings[a.ring]!.verifier;
          drop(
            a.ring,
            evidenceOf({
              model: spec.model,
              modelHash: spec.modelHash,
              range: [...spec.ranges[dev.stage]!] as [number, number],
              peerId: spec.peers[dev.stage]!,
              reason:
                dev.wrongToken && dev.distance <= o.tolerance.sketch ? 'wrong-token' : 'output-mismatch',
              commitment: steps[dev.stepIndex]!.commitments[dev.stage]!,
              refereeDistance: dev.distance,
              refereeToken: dev.refereeToken,
            }),
          );
        }
        return honest;
      }

      /** The referee recomputes stage `stage` and drops every ring beyond the tolerance from it. */
      async function settle(
        answered: { ring: number; result: ForwardResult; step: VerifiedStep }[],
        stage: number,
        position: number,
        rows: number,
        signal?: AbortSignal,
      ) {
        report.refereeSteps++;
        const ref = await o.referee!.recompute(history, stage, { signal });
        const out = ref.outputs[stage]!;
        const honest: typeof answered = [];
        const step = answered.map((a) => ({ ring: a.ring, commitments: a.step.commitments }));
        for (const a of answered) {
          const c = a.step.commitments[stage]!;
          const rowLen = c.sketch.rowLen;
          const refRows =
            c.kind === 'logits'
              ? out
              : out.subarray(
                  (position + rows - Math.min(rows, RING_SKETCH_ROWS)) * rowLen,
                  (position + rows) * rowLen,
                );
          const d = sketchDistance(c.sketch, sketchOf(refRows, rowLen));
          const wrongToken = c.kind === 'logits' && c.token !== argmax(out);
          if (d <= o.tolerance.sketch && !wrongToken) {
            honest.push(a);
            continue;
          }
          const spec = o.rings[a.ring]!.verifier;
          drop(
            a.ring,
            evidenceOf({
              model: spec.model,
              modelHash: spec.modelHash,
              range: [...spec.ranges[stage]!] as [number, number],
              peerId: spec.peers[stage]!,
              reason: wrongToken && d <= o.tolerance.sketch ? 'wrong-token' : 'output-mismatch',
              commitment: c,
              refereeDistance: d,
              refereeToken: c.kind === 'logits' ? argmax(out) : undefined,
            }),
            step,
          );
        }
        return honest;
      }
    },
  };
}

function emptyReport(k: number): VerificationReport {
  return {
    k,
    ringsAgreeing: k,
    stepsChecked: 0,
    comparisons: 0,
    refereeSteps: 0,
    maxAgreeingDistance: 0,
    evidence: [],
    commitmentBytesPerStep: 0,
    lost: [],
    steps: 0,
    comparedSteps: 0,
  };
}
