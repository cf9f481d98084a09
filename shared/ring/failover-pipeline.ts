/**
 * A ring session that survives losing ring peers mid-answer. It wraps one {@link RemoteSession} at a
 * time and keeps what a replacement ring needs to carry on exactly where the lost one stopped: the
 * session's token history (every token fed, by position) and the head sampler's random draws.
 *
 * On a loss (a link close, a missed step deadline, a stage saying its neighbour left, a stage that
 * restarted) it asks `replace` for a ring — the requester reports the stall to the coordinator and
 * waits for its re-planned ring — opens a session there with the draws and the history (replayed
 * as a no-sample chunked prefill) and re-sends the step that was lost. So greedy and seeded
 * sampling give the tokens an undisturbed run gives; so does a drafted (speculative) answer, whose
 * verify passes rewind the history past rejected drafts before they run. Losses are survived one at a time; when
 * `replace` finds no ring, or a loss cannot be recovered within `recoveryWindowMs`, the answer
 * fails with a typed error saying why.
 */
import { RingworkError, isRingworkError, throwIfAborted, type ErrorCode } from '../errors.js';
import type { ForwardResult, Pipeline, PipelineSession } from '../runtime/pipeline.js';
import type { LossDetector } from './loss-detector.js';
import type { RemoteResume, RemoteSession } from './remote-pipeline.js';
import { RETRYABLE_RING_CODES } from './retry.js';

/** How a loss was noticed. */
export type LossCause = 'link-close' | 'deadline' | 'stage-error' | 'replanned';

/** One ring a session can run on. */
export interface RingTarget {
  ringId: string;
  epoch: number;
  /** Stage peers in ring order. */
  peers: string[];
  /**
   * Opens a session on this ring (resuming one when `resume` is given); `progress.linked` is called
   * once the links to the ring's first stage and head are open (a failover's breakdown).
   */
  open(resume?: RemoteResume, progress?: { linked?(): void }): Promise<RemoteSession>;
}

/** A loss, as `replace` is told about it. */
export interface RingLoss {
  /** The ring that failed. */
  ring: RingTarget;
  error: RingworkError;
  cause: LossCause;
  /** The peer known to be gone, when the error names it. */
  lostPeer?: string;
  /** Position of the step that did not complete. */
  position: number;
  /** Attempts already made to recover from this loss (0 on the first call). */
  attempt: number;
}

/** One loss survived (or being survived). */
export interface FailoverEvent {
  /** 1-based number of this failover in the answer. */
  index: number;
  cause: LossCause;
  code: ErrorCode;
  lostPeer?: string;
  /** Position of the step that was lost and re-sent. */
  position: number;
  fromRing: string;
  toRing?: string;
  /** Clock times (the injected `now`). */
  detectedAt: number;
  recoveredAt?: number;
  /** From detection to the first token of the replacement ring, ms. */
  recoveryMs?: number;
  /** Positions replayed to rebuild the new ring's KV caches. */
  replayed: number;
  /**
   * Where the recovery's time went (clock times): the first replacement ring `replace` returned, the
   * one the session finally opened on (later when opening a ring still loading had to be retried),
   * its links open, and its `open` (with the replay) sent. The rest, to `recoveredAt`, is the
   * replay and the re-sent step on the new ring.
   */
  phases?: FailoverPhases;
}

/** Clock times of a failover's steps (see {@link FailoverEvent.phases}). */
export interface FailoverPhases {
  firstRingAt?: number;
  ringAt?: number;
  linkedAt?: number;
  openedAt?: number;
  /** Rings tried (each an `open` that failed but the last). */
  attempts: number;
  /** The error codes that made it try again (a ring still loading, a link not open yet...). */
  retriedOn?: ErrorCode[];
}

export interface FailoverPipelineOptions {
  /** The ring to start on. */
  initial: RingTarget;
  /**
   * The ring to continue on after `loss`: reports it and waits for a replacement (maybe the same
   * ring, when the coordinator's own check found everyone alive). Throws a typed error when no
   * ring can be formed (`RING_FAILOVER_FAILED`, saying what is missing).
   */
  replace(loss: RingLoss, signal?: AbortSignal): Promise<RingTarget>;
  /** Learns the decode laps (the step deadline follows them); shared with the ring targets. */
  detector?: LossDetector;
  /** Losses survived per answer before giving up (default 8). */
  maxFailovers?: number;
  /**
   * How long recovering from one loss may take, ms (default 90 s: without a standby the re-planned
   * stages download and compile their new shards first, which on a loaded device takes a while).
   */
  recoveryWindowMs?: number;
  now?: () => number;
  /** A loss was detected (recovery starts). */
  onLoss?(e: FailoverEvent): void;
  /** The replacement ring answered its first token. */
  onRecovered?(e: FailoverEvent): void;
}

/** Codes that mean "this ring cannot carry the session on" (a retryable ring failure, or a stalled next stage). */
export function isRingLoss(e: unknown): e is RingworkError {
  return isRingworkError(e) && (RETRYABLE_RING_CODES.has(e.code) || e.code === 'STAGE_NEXT_TIMEOUT');
}

/** How the loss behind `e` was noticed, and which peer it names. */
export function lossCause(e: RingworkError): { cause: LossCause; lostPeer?: string } {
  const peer = typeof e.details.peer === 'string' ? e.details.peer : undefined;
  if (e.code === 'RING_STEP_TIMEOUT') return { cause: 'deadline' };
  if (e.details.replanned === true) return { cause: 'replanned' };
  if (e.code === 'RING_PEER_LOST') return { cause: 'link-close', ...(peer ? { lostPeer: peer } : {}) };
  return { cause: 'stage-error', ...(peer ? { lostPeer: peer } : {}) };
}

export interface FailoverPipeline extends Pipeline {
  /** Every failover of the sessions opened so far, in order. */
  readonly failovers: readonly FailoverEvent[];
  /** The ring the latest session runs on. */
  readonly ring: RingTarget;
}

/** Creates a pipeline whose sessions fail over to a replacement ring (see the module comment). */
export function createFailoverPipeline(o: FailoverPipelineOptions): FailoverPipeline {
  const now = o.now ?? (() => performance.now());
  const maxFailovers = o.maxFailovers ?? 8;
  const windowMs = o.recoveryWindowMs ?? 90_000;
  const failovers: FailoverEvent[] = [];
  let ring = o.initial;
  return {
    get failovers() {
      return failovers;
    },
    get ring() {
      return ring;
    },
    async open(): Promise<PipelineSession> {
      let inner = await ring.open();
      /** Tokens fed at positions 0..n-1 that the current ring has computed. */
      const history: number[] = [];
      let draws = 0;
      /** The failover in progress (until the new ring's first token). */
      let pending: FailoverEvent | undefined;
      let attempt = 0;
      let first = true;

      const recover = async (e: RingworkError, position: number, signal?: AbortSignal) => {
        const { cause, lostPeer } = lossCause(e);
        if (!pending) {
          if (failovers.length >= maxFailovers) {
            throw new RingworkError(
              'RING_FAILOVER_FAILED',
              `The ring lost peers ${failovers.length + 1} times in one answer; giving up.`,
              { details: { failovers: failovers.length, maxFailovers }, cause: e },
            );
          }
          pending = {
            index: failovers.length + 1,
            cause,
            code: e.code,
            ...(lostPeer ? { lostPeer } : {}),
            position,
            fromRing: ring.ringId,
            detectedAt: now(),
            replayed: history.length,
          };
          failovers.push(pending);
          attempt = 0;
          o.onLoss?.(pending);
        } else {
          // A ring that took over failed its first step: another try (within the window).
          if (pending.phases) (pending.phases.retriedOn ??= []).push(e.code);
          if (now() - pending.detectedAt > windowMs)
            throw new RingworkError(
              'RING_FAILOVER_FAILED',
              `No ring could take the answer over within ${Math.round(windowMs / 1000)} s of losing a peer (last: ${e.code}: ${e.message}).`,
              { details: { position, lostPeer: pending.lostPeer, lastCode: e.code }, cause: e },
            );
        }
        await inner.close().catch(() => undefined);
        let error = e;
        for (;;) {
          throwIfAborted(signal, 'Generation');
          ring = await o.replace(
            { ring, error, cause, ...(lostPeer ? { lostPeer } : {}), position, attempt: attempt++ },
            signal,
          );
          pending.toRing = ring.ringId;
          const phases: FailoverPhases = (pending.phases ??= { attempts: 0 });
          phases.attempts++;
          phases.ringAt = now();
          phases.firstRingAt ??= phases.ringAt;
          delete phases.linkedAt;
          delete phases.openedAt;
          try {
            inner = await ring.open(
              { history: [...history], draws },
              { linked: () => (phases.linkedAt = now()) },
            );
            phases.openedAt = now();
            return;
          } catch (e2) {
            // Links to a ring still forming may not open yet: try again (or a newer ring) in the window.
            if (!isRingLoss(e2) || now() - pending.detectedAt > windowMs) throw e2;
            error = e2;
            if (pending.phases) (pending.phases.retriedOn ??= []).push(e2.code);
          }
        }
      };

      return {
        async forward(tokens, position, opts = {}): Promise<ForwardResult> {
          // A verify pass of speculative decoding rewinds past drafted tokens the ring rejected: they
          // leave the history too, so a replacement ring replays only the kept ones.
          if (opts.rewind && position < history.length) history.length = position;
          if (position !== history.length) {
            throw new RingworkError(
              'INVALID_ARGUMENT',
              `A failover session runs positions in order: expected ${history.length}, got ${position}.`,
            );
          }
          for (;;) {
            let r: ForwardResult;
            const resumed = pending !== undefined;
            try {
              r = await inner.forward(tokens, position, opts);
            } catch (e) {
              // Before the first token nothing was shown yet: the requester's own retry starts over.
              if (!isRingLoss(e) || opts.signal?.aborted || (history.length === 0 && !pending)) throw e;
              await recover(e, position, opts.signal);
              continue;
            }
            for (const t of tokens) history.push(t);
            draws = inner.draws;
            // The first step of a session carries a cold compile, a resumed one a replay: neither is a
            // lap. A verify pass (a few drafted rows as one chunk) is a drafted answer's lap.
            if ((tokens.length === 1 || opts.rewind) && !resumed && !first)
              o.detector?.observe(r.timing.totalMs);
            first = false;
            if (pending) {
              pending.recoveredAt = now();
              pending.recoveryMs = pending.recoveredAt - pending.detectedAt;
              o.onRecovered?.(pending);
              pending = undefined;
              first = true;
            }
            return r;
          }
        },
        close: () => inner.close(),
      };
    },
  };
}
