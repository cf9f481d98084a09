/**
 * A chat answer at security level k >= 2 (issue 10): the coordinator's `ring` carries k − 1
 * validator rings with the primary's unit boundaries; this runs the validated pipeline
 * (shared/validation/validated-pipeline.ts) over all of them, with this tab's own runners as the
 * referee (the model's units cut like the rings, on wasm: the tolerance is calibrated there). Each
 * located deviant's evidence goes to the coordinator (`validation-evidence`), and the steps every
 * ring agreed on go as the proof of validated work (`validated-work`), which the coordinator checks
 * itself before crediting anyone. What the chat shows is {@link AnswerVerification}.
 */
import { RingworkError } from '../errors.js';
import type { ServerMessageOf } from '../protocol/signaling.js';
import { fromBase64, toBase64 } from '../ring/stage-commitments.js';
import type { SamplerSettings } from '../ring/ring-protocol.js';
import type { ShardRunner } from '../runtime/shard-runner.js';
import type { PeerLink } from '../transport/types.js';
import { DEFAULT_TOLERANCE } from '../validation/checks.js';
import { encodeCommitment } from '../validation/commitment.js';
import { createKeyRegistry } from '../validation/key-registry.js';
import { createReferee, type Referee } from '../validation/referee.js';
import { DEFAULT_SPOT_RATE } from '../validation/spot-check.js';
import { createValidatedPipeline, type ValidatedPipeline } from '../validation/validated-pipeline.js';
import { createWorkProofBuilder } from '../validation/work-proof.js';
import type { Logger, NetworkHandle } from './network-port.js';
import type { ValidatedFailoverReport } from './validated-failover.js';

/** An answer's verification, as the chat shows it under the answer. */
export interface AnswerVerification {
  /** Security level served (rings run side by side). */
  k: number;
  /** The level asked for (higher than `k` when the coordinator degraded the request). */
  requested: number;
  /** Rings that agreed to the end. */
  ringsAgreeing: number;
  /** Peers of the rings that agreed to the end. */
  peersAgreeing: number;
  /** Steps whose signed commitments were checked on every ring that ran them. */
  stepsChecked: number;
  /** Stage-by-stage comparisons between rings. */
  comparisons: number;
  /** Peers located as deviant (their rings were dropped; the answer went on on an honest one). */
  deviants: string[];
  /** Steps the answer ran (the prompt's prefill is the first), checked or not (absent: older records). */
  steps?: number;
  /** Steps on which two or more rings were compared (spot-check mode: the sampled ones). */
  comparedSteps?: number;
  /** Spot-check mode: each step was re-executed on the validator ring with probability `f`. */
  spot?: { f: number };
  /**
   * From this step (0-based, the prefill is 0) on, nothing was compared: a located deviant's ring
   * was dropped and the answer went on on the honest ring alone, a ring was lost after that, or the
   * answer failed over to a new, unvalidated ring.
   */
  uncheckedFrom?: { step: number; reason: 'deviant' | 'lost' | 'failover' };
  /** The step at which the answer failed over to a new ring (planned at whatever level was left). */
  failoverAt?: number;
}

/**
 * The line the chat shows under a validated answer (also what the API's `ringwork.verification`
 * says in words): what was compared, on how many steps, and from which step nothing was.
 */
export function verificationLine(v: AnswerVerification): string {
  const level = `security level ${v.k}${v.requested > v.k ? ` (asked ${v.requested})` : ''}`;
  const steps = v.steps ?? v.stepsChecked;
  const compared = v.comparedSteps ?? v.stepsChecked;
  const what = v.spot
    ? `spot-checked ${compared} of ${steps} steps (f = ${+v.spot.f.toFixed(3)}) on a validator ring`
    : v.uncheckedFrom
      ? `rings compared on ${compared} of ${steps} steps (${v.comparisons} stage comparisons)`
      : `${v.ringsAgreeing} of ${v.k} rings (${v.peersAgreeing} peers) agreed on ${compared} of ${steps} steps (${v.comparisons} stage comparisons)`;
  const why = {
    deviant: 'the deviant’s ring was dropped',
    lost: 'a ring was lost',
    failover: 'failed over to a new ring',
  };
  const unchecked = v.uncheckedFrom
    ? v.uncheckedFrom.step >= steps
      ? ''
      : ` · unchecked from step ${v.uncheckedFrom.step} on (${why[v.uncheckedFrom.reason]}${
          v.failoverAt !== undefined && v.uncheckedFrom.reason !== 'failover'
            ? `; failed over to a new ring at step ${v.failoverAt}`
            : ''
        }): ${steps - v.uncheckedFrom.step} steps ran on one ring`
    : '';
  const deviants = v.deviants.length
    ? ` · ${v.deviants.map((d) => d.slice(2, 8)).join(', ')} deviated and was dropped`
    : '';
  return `${level}: ${what}${unchecked}${deviants}`;
}

/** An opened validated answer. */
export interface ValidatedAnswer {
  pipeline: ValidatedPipeline;
  /** What was checked; `failover`: where the answer failed over to an unvalidated ring, if it did. */
  verification(failover?: ValidatedFailoverReport): AnswerVerification;
  /** Sends the proof of the agreed steps to the coordinator (after the answer). */
  reportWork(): void;
}

/** The referee's runners: the model cut like the rings, on wasm. */
interface RefereeRunners {
  runners: ShardRunner[];
  rowLens: number[];
}

/**
 * The requester's referee runners, kept across answers and retries while the rings' cut stays the
 * same: loading them takes seconds (half a minute on a busy machine), and a retry that reloaded
 * them spent its whole retry window on it. Loads in the background: only a disagreement waits.
 */
export interface RefereeCache {
  /** The runners for this answer's model and cut (started now, or the ones loading or loaded). */
  get(answer: ServerMessageOf<'ring'>, signal: AbortSignal): Promise<RefereeRunners>;
  /** Frees the runners. */
  dispose(): Promise<void>;
}

/** Creates a {@link RefereeCache} over a runner factory. */
export function createRefereeCache(createRunner: () => ShardRunner): RefereeCache {
  let held: { key: string; ready: Promise<RefereeRunners>; runners: ShardRunner[] } | undefined;
  const free = async (h: typeof held) => {
    if (h) await Promise.all(h.runners.map((r) => r.dispose().catch(() => undefined)));
  };
  return {
    get(answer, signal) {
      const m = answer.model;
      const ranges = answer.stages.map((s) => [s.range[0], s.range[1]] as [number, number]);
      const key = JSON.stringify([m.url, m.weightFormat, m.contextLength, ranges]);
      if (held?.key === key) return held.ready;
      void free(held);
      const runners: ShardRunner[] = [];
      const load = async (): Promise<RefereeRunners> => {
        const rowLens: number[] = [];
        for (const range of ranges) {
          const runner = createRunner();
          runners.push(runner);
          const loaded = await runner.load(
            {
              model: { url: m.url, tokenizerUrl: m.tokenizerUrl },
              range,
              weightFormat: m.weightFormat,
              contextLength: m.contextLength,
              logits: 'last',
              backend: 'wasm',
            },
            { signal },
          );
          rowLens.push(range[1] === m.units ? loaded.config.vocabSize : loaded.config.hiddenSize);
        }
        return { runners, rowLens };
      };
      const entry = { key, ready: load(), runners };
      held = entry;
      // A failed load is not kept: the next answer loads again.
      entry.ready.catch(() => {
        if (held === entry) held = undefined;
        void free(entry);
      });
      return entry.ready;
    },
    async dispose() {
      const h = held;
      held = undefined;
      await free(h);
    },
  };
}

/** Options of {@link openValidatedAnswer}. */
export interface ValidatedAnswerOptions {
  answer: ServerMessageOf<'ring'>;
  net: NetworkHandle;
  linkTo: (peer: string) => Promise<PeerLink>;
  /** The referee's runners (shared across answers; see {@link createRefereeCache}). */
  referee: RefereeCache;
  sampler: SamplerSettings;
  signal: AbortSignal;
  now: () => number;
  log: Logger;
  /**
   * Spot-check mode, when the request asked for it and the coordinator granted it
   * (`answer.security.spot`): the rate is the larger of the coordinator's and `askedF`. Absent
   * (or not granted): every ring runs every step.
   */
  spot?: { askedF?: number; random: () => number };
}

/** Connects to every ring's first stage and head and loads the referee. */
export async function openValidatedAnswer(o: ValidatedAnswerOptions): Promise<ValidatedAnswer> {
  const { answer, net } = o;
  const rings = [
    { ringId: answer.ringId, epoch: answer.epoch, stages: answer.stages },
    ...(answer.validators ?? []),
  ];
  const registry = createKeyRegistry();
  for (const r of rings) {
    for (const s of r.stages) {
      if (s.key === undefined) {
        throw new RingworkError(
          'VALIDATION_UNKNOWN_SIGNER',
          `Peer ${s.peer} of ring ${r.ringId} registered no validation key; this ring cannot be validated.`,
          { details: { peer: s.peer, ringId: r.ringId } },
        );
      }
      await registry.register(s.peer, fromBase64(s.key));
    }
  }
  const t0 = o.now();
  const ranges = answer.stages.map((s) => [s.range[0], s.range[1]] as [number, number]);
  // The referee loads while the rings run: it is needed only when they disagree.
  const refereeReady = o.referee.get(answer, o.signal);
  refereeReady.then(
    () => o.log.info({ ms: Math.round(o.now() - t0), stages: ranges.length }, 'referee loaded'),
    (e: unknown) => o.log.warn({ err: e }, 'referee failed to load'),
  );
  const referee: Referee = {
    async recompute(tokens, upTo, opts) {
      return createReferee(await refereeReady).recompute(tokens, upTo, opts);
    },
  };
  const specs = [];
  for (const r of rings) {
    const first = await o.linkTo(r.stages[0]!.peer);
    const head = r.stages.length === 1 ? first : await o.linkTo(r.stages[r.stages.length - 1]!.peer);
    specs.push({
      remote: { requesterId: net.peerId, epoch: r.epoch, first, head, sampler: o.sampler, now: o.now },
      verifier: { peers: r.stages.map((s) => s.peer), ranges, registry, model: answer.model.id },
    });
  }
  o.log.info({ ms: Math.round(o.now() - t0), rings: rings.map((r) => r.ringId) }, 'linked to every ring');
  const proof = createWorkProofBuilder({ model: answer.model.id, ringIds: rings.map((r) => r.ringId) });
  const deviants: string[] = [];
  // Only what this tab asked for lowers its checks: a coordinator's `spot` on a full request is ignored.
  const granted = o.spot && answer.security?.spot && rings.length === 2 ? answer.security.spot.f : undefined;
  const spot =
    granted !== undefined
      ? {
          // Never below the floor, whatever a coordinator says: trusted peers are checked less, never not at all.
          f: Math.min(1, Math.max(granted, o.spot!.askedF ?? 0, DEFAULT_SPOT_RATE.fMin)),
          random: o.spot!.random,
          greedy: o.sampler.temperature === 0,
        }
      : undefined;
  if (spot) o.log.info({ f: spot.f }, 'spot-check mode');
  const pipeline = createValidatedPipeline({
    ...(spot ? { spot } : {}),
    rings: specs,
    referee,
    tolerance: DEFAULT_TOLERANCE,
    log: o.log,
    now: o.now,
    onEvidence: (evidence, ring, step) => {
      deviants.push(evidence.peerId);
      o.log.warn({ peer: evidence.peerId, reason: evidence.reason, ring }, 'deviant located');
      // k >= 3 and every ring answered the disputed step: the signed majority goes with the evidence.
      const all = step && step.length === rings.length && rings.length >= 3 ? step : undefined;
      send(o, {
        type: 'validation-evidence',
        ringId: rings[ring]!.ringId,
        evidence,
        ...(all
          ? {
              majority: {
                ringIds: rings.map((r) => r.ringId),
                step: {
                  rings: [...all]
                    .sort((a, b) => a.ring - b.ring)
                    .map((r) => r.commitments.map((c) => toBase64(encodeCommitment(c)))),
                },
              },
            }
          : {}),
      });
    },
    onComparedStep: (rs, agreed, spotProof) => {
      // Only steps every ring of the request agreed on prove work (a dropped ring proves none); a
      // spot-checked step goes with the validator's chunk of token ids, which the server hashes.
      if (agreed && rs.length === rings.length)
        proof.add(
          rs.map((r) => r.commitments),
          spotProof,
        );
    },
  });
  return {
    pipeline,
    verification(failover) {
      const r = pipeline.report;
      const dropped = new Set([...r.evidence.map((e) => e.ring), ...r.lost]);
      const uncheckedFrom = r.uncheckedFrom
        ? { step: r.uncheckedFrom.step, reason: r.uncheckedFrom.reason }
        : failover
          ? { step: failover.step, reason: 'failover' as const }
          : undefined;
      return {
        steps: r.steps + (failover?.stepsAfter ?? 0),
        comparedSteps: r.comparedSteps,
        ...(r.spot ? { spot: { f: r.spot.f } } : {}),
        ...(uncheckedFrom ? { uncheckedFrom } : {}),
        ...(failover ? { failoverAt: failover.step } : {}),
        k: rings.length,
        requested: answer.security?.requested ?? rings.length,
        ringsAgreeing: r.ringsAgreeing,
        peersAgreeing: rings.filter((_, j) => !dropped.has(j)).reduce((n, ring) => n + ring.stages.length, 0),
        stepsChecked: r.stepsChecked,
        comparisons: r.comparisons,
        deviants: [...deviants],
      };
    },
    reportWork() {
      for (const m of proof.drain()) send(o, m);
    },
  };
}

function send(o: ValidatedAnswerOptions, m: Parameters<NetworkHandle['signaling']['send']>[0]): void {
  try {
    o.net.signaling.send(m);
  } catch (e) {
    o.log.debug({ err: e, type: m.type }, 'validation message not sent');
  }
}
