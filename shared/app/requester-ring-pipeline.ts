/**
 * A k = 1 answer on a remote ring with failover: connects to the ring's first stage (which embeds the
 * token ids) and its head (which samples), follows the coordinator's ring for the model (a new epoch
 * ends this ring's sessions: fail over at once), and on a lost peer replays the answer on the
 * re-planned ring (shared/ring/failover-pipeline.ts). What the chat shows of each failover is
 * {@link AnswerFailover}, in wall-clock times.
 */
import type { StoreApi } from 'zustand/vanilla';
import { RingworkError } from '../errors.js';
import type { ServerMessageOf } from '../protocol/signaling.js';
import {
  createFailoverPipeline,
  type FailoverEvent,
  type FailoverPhases,
  type FailoverPipeline,
  type RingTarget,
} from '../ring/failover-pipeline.js';
import { createLossDetector } from '../ring/loss-detector.js';
import { openRemoteSession } from '../ring/remote-pipeline.js';
import { MAX_LOOP_STOP_TOKENS, type RingLoop } from '../ring/ring-protocol.js';
import type { PeerLink } from '../transport/types.js';
import type { AnswerFailover } from './chat-history.js';
import type { AppClock, Logger, NetworkHandle } from './network-port.js';
import type { RingFollower } from './requester-rings.js';
import type { ChatState, RingAnswer } from './requester-types.js';

/** Options of {@link openRingPipeline}. */
export interface RingPipelineOptions {
  answer: ServerMessageOf<'ring'>;
  net: NetworkHandle;
  /** The model id the answer is for (the store's `rings` key). */
  model: string;
  temperature: number;
  topP: number;
  seed: number;
  linkTo: (peer: string) => Promise<PeerLink>;
  rings: RingFollower;
  store: StoreApi<ChatState>;
  clock: AppClock;
  log: Logger;
  signal: AbortSignal;
  /** Per-step timeout before the ring's laps are known, ms (default 60 s). */
  stepTimeoutMs?: number;
  recoveryWindowMs?: number;
  /** Called with every failover so far, at each loss and recovery. */
  onFailover?: (f: AnswerFailover[]) => void;
  /**
   * Loop mode of each session (read when it opens: the answer's length is known by then, and a
   * failover's new session loops again); undefined: every step is sent from this tab.
   */
  loop?: () => RingLoop | undefined;
}

/** The answer's pipeline, its failovers as the chat shows them, and the ring's peers now. */
export interface RingPipeline {
  pipeline: FailoverPipeline;
  failovers: () => AnswerFailover[];
  peersNow: () => string[];
}

/**
 * The loop mode of a k = 1 answer of `steps` positions that generate() ends on `stopTokens` (BOS
 * included): the head feeds up to the last position generate() sends and never a stop token.
 * Undefined when the stop tokens do not fit an `open` (every step is then sent from the tab).
 */
export function ringLoopFor(steps: number, stopTokens: readonly number[]): RingLoop | undefined {
  const stop = [...new Set(stopTokens)];
  return steps >= 1 && stop.length <= MAX_LOOP_STOP_TOKENS ? { until: steps - 1, stop } : undefined;
}

/** Builds the failover pipeline of one k = 1 answer on `o.answer`'s ring. */
export function openRingPipeline(o: RingPipelineOptions): RingPipeline {
  const net = o.net;
  const detector = createLossDetector({ coldMs: o.stepTimeoutMs ?? 60_000 });
  // The head holds the session's one sampler (seed + draws travel with `open`).
  const sampler = { temperature: o.temperature, topP: o.topP, topK: 0, seed: o.seed };
  const targetOf = (ring: ServerMessageOf<'ring'>): RingTarget => ({
    ringId: ring.ringId,
    epoch: ring.epoch,
    peers: ring.stages.map((s) => s.peer),
    async open(resume, progress) {
      const stages = ring.stages;
      // Both links at once: after a failover either end may be a page this tab never linked to.
      const [first, head] = await Promise.all([
        o.linkTo(stages[0]!.peer),
        stages.length === 1 ? undefined : o.linkTo(stages[stages.length - 1]!.peer),
      ]).then(([f, h]) => [f, h ?? f] as const);
      progress?.linked?.();
      const loop = o.loop?.();
      const session = await openRemoteSession(
        {
          requesterId: net.peerId,
          epoch: ring.epoch,
          first,
          head,
          sampler,
          stepDeadlineMs: (n) => detector.deadlineMs(n),
          now: o.clock.now,
          ...(loop ? { loop } : {}),
        },
        resume,
      );
      // A new epoch of this model's ring ends this one's sessions on every stage (they restart
      // for the new epoch): the coordinator saw a peer go (its socket closed) or re-planned, so
      // fail over now instead of waiting for the step deadline.
      const key = `${ring.ringId}@${ring.epoch}`;
      const onRing = (r: RingAnswer | undefined) => {
        if (!r || (r.type === 'ring' && `${r.ringId}@${r.epoch}` === key)) return;
        session.abandon(
          new RingworkError('RING_STALE_EPOCH', 'The coordinator re-planned the ring mid-answer.', {
            details: { replanned: true, ringId: ring.ringId, epoch: ring.epoch },
          }),
        );
      };
      const off = o.store.subscribe((st) => onRing(st.rings[o.model]));
      onRing(o.store.getState().rings[o.model]);
      return {
        id: session.id,
        get draws() {
          return session.draws;
        },
        abandon: (e) => session.abandon(e),
        forward: (t, p, opts) => session.forward(t, p, opts),
        close: () => (off(), session.close()),
      };
    },
  });
  const events: FailoverEvent[] = [];
  // Monotonic clock times of the pipeline, as wall-clock times for the chat (and the swarm tool).
  const wall = (t: number) => o.clock.wallNow() - (o.clock.now() - t);
  const shown = (): AnswerFailover[] =>
    events.map((e) => ({
      cause: e.cause,
      ...(e.lostPeer ? { lostPeer: e.lostPeer } : {}),
      position: e.position,
      detectedAt: wall(e.detectedAt),
      ...(e.recoveredAt !== undefined ? { recoveredAt: wall(e.recoveredAt) } : {}),
      ...(e.recoveryMs !== undefined ? { recoveryMs: e.recoveryMs } : {}),
      replayed: e.replayed,
      ...(e.phases ? { phases: wallPhases(e.phases) } : {}),
    }));
  const wallPhases = (p: FailoverPhases): NonNullable<AnswerFailover['phases']> => {
    const out: NonNullable<AnswerFailover['phases']> = {
      attempts: p.attempts,
      ...(p.retriedOn ? { retriedOn: [...p.retriedOn] } : {}),
    };
    for (const k of ['firstRingAt', 'ringAt', 'linkedAt', 'openedAt'] as const) {
      const t = p[k];
      if (t !== undefined) out[k] = wall(t);
    }
    return out;
  };
  const failover = createFailoverPipeline({
    initial: targetOf(o.answer),
    replace: (loss) => o.rings.replaceRing(net, o.model, loss, o.signal, targetOf),
    detector,
    ...(o.recoveryWindowMs ? { recoveryWindowMs: o.recoveryWindowMs } : {}),
    now: o.clock.now,
    onLoss: (e) => {
      events.push(e);
      o.log.warn({ cause: e.cause, peer: e.lostPeer, position: e.position }, 'ring peer lost; failing over');
      o.onFailover?.(shown());
    },
    onRecovered: (e) => {
      o.log.info({ recoveryMs: e.recoveryMs, ring: e.toRing }, 'failover done');
      o.onFailover?.(shown());
    },
  });
  return { pipeline: failover, failovers: shown, peersNow: () => failover.ring.peers };
}
