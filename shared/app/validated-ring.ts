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
import type { Pipeline } from '../runtime/pipeline.js';
import type { SamplerSettings } from '../ring/ring-protocol.js';
import type { ShardRunner } from '../runtime/shard-runner.js';
import type { PeerLink } from '../transport/types.js';
import { DEFAULT_TOLERANCE } from '../validation/checks.js';
import { encodeCommitment } from '../validation/commitment.js';
import { createKeyRegistry } from '../validation/key-registry.js';
import { createReferee } from '../validation/referee.js';
import { createValidatedPipeline } from '../validation/validated-pipeline.js';
import { createWorkProofBuilder } from '../validation/work-proof.js';
import type { Logger, NetworkHandle } from './network-port.js';

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
  /** Steps checked on every live ring. */
  stepsChecked: number;
  /** Stage-by-stage comparisons between rings. */
  comparisons: number;
  /** Peers located as deviant (their rings were dropped; the answer went on on an honest one). */
  deviants: string[];
}

/** An opened validated answer. */
export interface ValidatedAnswer {
  pipeline: Pipeline;
  verification(): AnswerVerification;
  /** Sends the proof of the agreed steps to the coordinator (after the answer). */
  reportWork(): void;
  /** Frees the referee's runners. */
  release(): Promise<void>;
}

/** Options of {@link openValidatedAnswer}. */
export interface ValidatedAnswerOptions {
  answer: ServerMessageOf<'ring'>;
  net: NetworkHandle;
  linkTo: (peer: string) => Promise<PeerLink>;
  createRunner: () => ShardRunner;
  sampler: SamplerSettings;
  signal: AbortSignal;
  now: () => number;
  log: Logger;
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
  const ranges = answer.stages.map((s) => [s.range[0], s.range[1]] as [number, number]);
  const runners: ShardRunner[] = [];
  const release = async () => void (await Promise.all(runners.map((r) => r.dispose())));
  const rowLens: number[] = [];
  try {
    for (const range of ranges) {
      const runner = o.createRunner();
      runners.push(runner);
      const loaded = await runner.load(
        {
          model: { url: answer.model.url, tokenizerUrl: answer.model.tokenizerUrl },
          range,
          weightFormat: answer.model.weightFormat,
          contextLength: answer.model.contextLength,
          logits: 'last',
          backend: 'wasm',
        },
        { signal: o.signal },
      );
      const head = range[1] === answer.model.units;
      rowLens.push(head ? loaded.config.vocabSize : loaded.config.hiddenSize);
    }
  } catch (e) {
    await release();
    throw e;
  }
  const specs = [];
  for (const r of rings) {
    const first = await o.linkTo(r.stages[0]!.peer);
    const head = r.stages.length === 1 ? first : await o.linkTo(r.stages[r.stages.length - 1]!.peer);
    specs.push({
      remote: { requesterId: net.peerId, epoch: r.epoch, first, head, sampler: o.sampler, now: o.now },
      verifier: { peers: r.stages.map((s) => s.peer), ranges, registry, model: answer.model.id },
    });
  }
  const proof = createWorkProofBuilder({ model: answer.model.id, ringIds: rings.map((r) => r.ringId) });
  const deviants: string[] = [];
  const pipeline = createValidatedPipeline({
    rings: specs,
    referee: createReferee({ runners, rowLens }),
    tolerance: DEFAULT_TOLERANCE,
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
    onComparedStep: (rs, agreed) => {
      // Only steps every ring of the request agreed on prove work (a dropped ring proves none).
      if (agreed && rs.length === rings.length) proof.add(rs.map((r) => r.commitments));
    },
  });
  return {
    pipeline,
    verification() {
      const r = pipeline.report;
      const dropped = new Set(r.evidence.map((e) => e.ring));
      return {
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
    release,
  };
}

function send(o: ValidatedAnswerOptions, m: Parameters<NetworkHandle['signaling']['send']>[0]): void {
  try {
    o.net.signaling.send(m);
  } catch (e) {
    o.log.debug({ err: e, type: m.type }, 'validation message not sent');
  }
}
