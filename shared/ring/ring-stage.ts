/**
 * One stage of a generation ring on a contributor: receives the session's input (token ids on the
 * first stage, hidden states elsewhere), runs its shard, and hands the result on — hidden states to
 * the next stage, or (on the head) a sampled token id back to the requester. Transport- and
 * runtime-agnostic: the same code runs in a browser tab (WebRTC + Web Worker runner) and in Node
 * tests (in-memory links + in-process runner).
 */
import { RingworkError, toRingworkError } from '../errors.js';
import { createSampler, type Sampler } from '../runtime/sampler.js';
import type { ShardRunner } from '../runtime/shard-runner.js';
import type { TensorMessage } from '../transport/tensor-frame.js';
import type { PeerLink } from '../transport/types.js';
import {
  RING_PROTOCOL_VERSION,
  parseRingControl,
  ringErrorControl,
  type RingControl,
  type RingControlOf,
} from './ring-protocol.js';

/** Live counters a contributor shows ("steps served, ms per step"). */
export interface RingStageStats {
  stepsServed: number;
  tokensServed: number;
  computeMs: number;
  openSessions: number;
  lastError?: string;
}

export interface RingStageOptions {
  peerId: string;
  runner: ShardRunner;
  epoch: number;
  isFirst: boolean;
  isHead: boolean;
  /** The link to the next stage (unused on the head). */
  next: () => PeerLink | undefined;
  /** The link to a requester, by its peer id (used by the head, and to report errors). */
  linkTo: (peerId: string) => PeerLink | undefined;
  /** Idle sessions are released after this long (a requester that vanished). Default 5 min. */
  idleMs?: number;
  now?: () => number;
  onStats?: (s: RingStageStats) => void;
  /**
   * Fraction of wall time this stage may compute (0 < d <= 1). After a step of t ms the stage
   * rests t·(1/d − 1) ms before the next, so a contributor can cap how hard its device works.
   */
  dutyCycle?: () => number;
}

interface StageSession {
  runnerSession: string;
  requester: string;
  sampler?: Sampler;
  lastUsed: number;
}

export interface RingStage {
  /** Handles control and tensors arriving on a link (from the previous stage or a requester). */
  attach(link: PeerLink): () => void;
  readonly stats: RingStageStats;
  /** Releases every session; safe twice. */
  stop(): Promise<void>;
}

export function createRingStage(o: RingStageOptions): RingStage {
  const now = o.now ?? (() => performance.now());
  const sessions = new Map<string, StageSession>();
  const stats: RingStageStats = { stepsServed: 0, tokensServed: 0, computeMs: 0, openSessions: 0 };
  const publish = () => {
    stats.openSessions = sessions.size;
    o.onStats?.({ ...stats });
  };
  // Steps of one session must run in order; different sessions interleave freely in the runner.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = (fn: () => Promise<void>) => {
    chain = chain.then(fn, fn);
  };

  /** Sends `e` (its code, details and cause intact) as a ring `error` message. */
  const sendError = (link: PeerLink | undefined, session: string, e: RingworkError) => {
    try {
      link?.sendControl(ringErrorControl(session, o.peerId, e));
    } catch {
      /* link gone */
    }
  };

  const report = (session: string, requester: string | undefined, e: unknown) => {
    const err = toRingworkError(e, 'RUNNER_BACKEND_FAILED');
    stats.lastError = `${err.code}: ${err.message}`;
    publish();
    sendError(requester ? o.linkTo(requester) : undefined, session, err);
  };

  const end = async (session: string, reason: string, forward: boolean) => {
    const s = sessions.get(session);
    sessions.delete(session);
    if (s) await o.runner.closeSession(s.runnerSession);
    if (forward && !o.isHead) {
      try {
        o.next()?.sendControl({ type: 'end', v: RING_PROTOCOL_VERSION, session, reason });
      } catch {
        /* next stage gone: its sessions die with its link */
      }
    }
    publish();
  };

  const onOpen = async (m: RingControlOf<'open'>, from: PeerLink) => {
    if (m.epoch !== o.epoch) {
      const stale = new RingworkError(
        'RING_STALE_EPOCH',
        `ring epoch ${m.epoch} is stale; this stage serves epoch ${o.epoch}`,
        { details: { requested: m.epoch, serving: o.epoch } },
      );
      if (o.linkTo(m.requester)) report(m.session, m.requester, stale);
      else sendError(from, m.session, stale);
      return;
    }
    if (!sessions.has(m.session)) {
      sessions.set(m.session, {
        runnerSession: await o.runner.openSession(),
        requester: m.requester,
        sampler: o.isHead ? createSampler(m.sampler) : undefined,
        lastUsed: now(),
      });
    }
    if (!o.isHead) o.next()?.sendControl(m);
    publish();
  };

  const onTensor = async (t: TensorMessage, from: PeerLink) => {
    const s = sessions.get(t.session);
    if (!s) {
      // Never opened here (this stage restarted with a new shard, or the open went astray): say so
      // back along the link, so the requester fails fast and retries instead of waiting.
      sendError(
        from,
        t.session,
        new RingworkError('RING_UNKNOWN_SESSION', 'this stage has no such session (it restarted)', {
          details: { session: t.session },
        }),
      );
      return;
    }
    s.lastUsed = now();
    try {
      const input =
        o.isFirst && t.kind === 'tokens'
          ? { tokens: t.data as Int32Array, position: t.position }
          : { hidden: t.data as Float32Array, position: t.position };
      const out = await o.runner.step(s.runnerSession, input);
      stats.stepsServed++;
      stats.computeMs += out.ms;
      const trace = [...(t.trace ?? []), out.ms];
      if (o.isHead) {
        // The head is loaded with `logits: 'last'`: one row of vocab logits per step.
        const token = s.sampler!.sample(out.data);
        stats.tokensServed++;
        const link = o.linkTo(s.requester);
        link?.sendControl({
          type: 'token',
          v: RING_PROTOCOL_VERSION,
          session: t.session,
          step: t.step,
          position: t.position + out.seqLen - 1,
          token,
          stageMs: trace,
        });
      } else {
        const next = o.next();
        if (!next?.isOpen)
          throw new RingworkError('RING_PEER_LOST', 'the link to the next stage is down', {
            details: { stage: o.peerId },
          });
        await next.sendTensor({
          session: t.session,
          step: t.step,
          position: t.position,
          kind: 'hidden',
          dtype: 'float32',
          shape: [out.seqLen, out.data.length / out.seqLen],
          data: out.data,
          trace,
        });
      }
      publish();
      const d = Math.min(1, Math.max(0.05, o.dutyCycle?.() ?? 1));
      if (d < 1) await new Promise<void>((r) => setTimeout(r, out.ms * (1 / d - 1)));
    } catch (e) {
      report(t.session, s.requester, e);
      await end(t.session, 'error', true);
    }
  };

  const sweep = setInterval(() => {
    const cutoff = now() - (o.idleMs ?? 300_000);
    for (const [id, s] of sessions) if (s.lastUsed < cutoff) serial(() => end(id, 'idle', true));
  }, 10_000);

  const detachers = new Set<() => void>();
  let stopped = false;
  return {
    stats,
    attach(link) {
      if (stopped) return () => undefined;
      const offs = [
        link.onControl((raw) => {
          let m: RingControl;
          try {
            m = parseRingControl(raw);
          } catch {
            return; // a malformed control message from a peer is ignored, not fatal to the stage
          }
          if (m.type === 'open') serial(() => onOpen(m, link));
          else if (m.type === 'end') serial(() => end(m.session, m.reason, true));
          else if (m.type === 'error') {
            // A later stage failed: pass it back towards the requester, and drop the session.
            const s = sessions.get(m.session);
            if (s) {
              const back = o.linkTo(s.requester);
              if (back && back !== link) {
                try {
                  back.sendControl(m);
                } catch {
                  /* requester gone */
                }
              }
              serial(() => end(m.session, 'error', true));
            }
          }
        }),
        link.onTensor((t) => serial(() => onTensor(t, link))),
      ];
      const detach = () => {
        offs.forEach((f) => f());
        detachers.delete(detach);
      };
      detachers.add(detach);
      return detach;
    },
    async stop() {
      // A stopped stage hears nothing more: the next stage (new epoch) attaches to the same links.
      stopped = true;
      for (const d of [...detachers]) d();
      clearInterval(sweep);
      const ids = [...sessions.keys()];
      await Promise.all(ids.map((id) => end(id, 'stage stopped', false)));
    },
  };
}
