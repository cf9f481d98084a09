/**
 * A validated answer (k >= 2) after a deviant was located goes on on the honest ring alone: it is a
 * ring answer like any other from then on. When that ring is then re-planned away (the deviant's
 * exclusion re-plans the network, and fewer peers may no longer make up the level asked for), the
 * answer fails over like a k = 1 answer: the coordinator is asked for the model's ring at whatever
 * level it can serve now (`degrade: true`), the answer's history is replayed on it, and the answer
 * continues where it stopped — with the same tokens an undisturbed run gives. Before any deviant
 * was located a lost ring fails the answer (its level can no longer be checked); see
 * validated-pipeline.ts.
 */
import { isRingworkError } from '../errors.js';
import type { ServerMessageOf } from '../protocol/signaling.js';
import { openRemoteSession, type RemoteSession } from '../ring/remote-pipeline.js';
import { isRetryableRingError } from '../ring/retry.js';
import type { SamplerSettings } from '../ring/ring-protocol.js';
import type { ForwardResult, Pipeline, PipelineSession } from '../runtime/pipeline.js';
import type { ValidatedPipeline } from '../validation/validated-pipeline.js';
import type { PeerLink } from '../transport/types.js';
import type { Logger, NetworkHandle } from './network-port.js';

/** Options of {@link withValidatedFailover}. */
export interface ValidatedFailoverOptions {
  inner: ValidatedPipeline;
  net: NetworkHandle;
  model: string;
  /** The level the answer asked for (re-asked with `degrade: true`). */
  k: number;
  /** Resolves with the coordinator's next ring answer for the model (bounded; rejects on timeout). */
  nextRing: (signal: AbortSignal | undefined) => Promise<ServerMessageOf<'ring'>>;
  linkTo: (peer: string) => Promise<PeerLink>;
  sampler: SamplerSettings;
  now: () => number;
  log: Logger;
  /** Called when the answer moved to a re-planned ring (its position). */
  onFailover?: (e: { position: number; ringId: string }) => void;
}

/** Where a validated answer failed over: nothing was checked from then on. */
export interface ValidatedFailoverReport {
  /** Steps the validated rings answered before the failover (the first unchecked step's index). */
  step: number;
  /** Position of the first step run on the new ring. */
  position: number;
  /** Steps the new ring ran. */
  stepsAfter: number;
}

/** A validated pipeline that can fail over; `failover` is set once the latest session did. */
export interface ValidatedFailoverPipeline extends Pipeline {
  readonly failover: ValidatedFailoverReport | undefined;
}

/** Wraps a validated pipeline so that its honest ring, once alone, can fail over. */
export function withValidatedFailover(o: ValidatedFailoverOptions): ValidatedFailoverPipeline {
  let failover: ValidatedFailoverReport | undefined;
  return {
    get failover() {
      return failover;
    },
    async open(): Promise<PipelineSession> {
      const inner = await o.inner.open();
      failover = undefined;
      const history: number[] = [];
      let replacement: RemoteSession | undefined;
      return {
        async forward(tokens, position, opts = {}): Promise<ForwardResult> {
          if (replacement) {
            const r = await replacement.forward(tokens, position, opts);
            history.push(...tokens);
            if (failover) failover.stepsAfter++;
            return r;
          }
          try {
            const r = await inner.forward(tokens, position, opts);
            history.push(...tokens);
            return r;
          } catch (e) {
            // Only an answer already down to its honest ring (a deviant was dropped) fails over.
            if (o.inner.report.evidence.length === 0 || !isRetryableRingError(e)) throw e;
            o.log.warn(
              { position, code: isRingworkError(e) ? e.code : undefined },
              'honest ring lost after a deviant; failing over',
            );
            try {
              o.net.signaling.send({
                type: 'ring-request',
                model: o.model,
                security: { v: 1, k: o.k, degrade: true },
              });
            } catch {
              throw e;
            }
            const ring = await o.nextRing(opts.signal);
            const stages = ring.stages;
            const first = await o.linkTo(stages[0]!.peer);
            const head = stages.length === 1 ? first : await o.linkTo(stages[stages.length - 1]!.peer);
            replacement = await openRemoteSession(
              { requesterId: o.net.peerId, epoch: ring.epoch, first, head, sampler: o.sampler, now: o.now },
              // The new head fast-forwards its sampler past the draws the honest ring's head made.
              { history: [...history], draws: inner.draws },
            );
            o.onFailover?.({ position, ringId: ring.ringId });
            failover = { step: o.inner.report.steps, position, stepsAfter: 0 };
            const r = await replacement.forward(tokens, position, opts);
            history.push(...tokens);
            failover.stepsAfter++;
            return r;
          }
        },
        async close() {
          await inner.close();
          await replacement?.close();
        },
      };
    },
  };
}
