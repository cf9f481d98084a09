/**
 * One stage of a generation ring on a contributor: receives the session's input (token ids on the
 * first stage, hidden states elsewhere), runs its shard, and hands the result on — hidden states to
 * the next stage, or (on the head) a sampled token id back to the requester. Transport- and
 * runtime-agnostic: the same code runs in a browser tab (WebRTC + Web Worker runner) and in Node
 * tests (in-memory links + in-process runner).
 *
 * Requesters and neighbours are strangers' tabs, so the stage bounds what each can take:
 * - who runs when, how many sessions and how much KV cache a requester may hold: {@link createStageScheduler};
 * - loop mode (an `open` with `loop`, plain k = 1 sessions): the head also sends each token it
 *   answers on to stage 0 as the next step; stage 0 takes from its ring predecessor (the head) only
 *   such one-token steps of loop sessions, at exactly the next step and position;
 * - a step is computed in chunks of at most `maxChunkPositions` positions, each one scheduler turn,
 *   and forwarded chunk by chunk (`hidden-part` tensors, the last one `hidden`), so a long prompt
 *   never holds the runner for long and the next stage can bound the tensors it accepts;
 * - a session is bound to the link that opened it: steps and `end` for it are taken only from
 *   that link (errors only from the next stage), and it ends when that link closes;
 * - every incoming tensor is bounded by the shape this stage expects, before anything is allocated;
 * - a send to a stalled next stage gives up after `sendDeadlineMs` instead of freezing the stage.
 *
 * One stage's message handling and chunked step loop share its session table; scheduling and limits
 * live in `stage-scheduler.ts`, the public shapes in `ring-stage-types.ts`.
 */
import { RingworkError, toRingworkError } from '../errors.js';
import { createSampler, type Sampler } from '../runtime/sampler.js';
import type { StepInput } from '../runtime/shard-runner.js';
import type { TensorMessage } from '../transport/tensor-frame.js';
import type { PeerLink } from '../transport/types.js';
import {
  RING_PROTOCOL_VERSION,
  loopFeeds,
  parseRingControl,
  ringErrorControl,
  ringErrorFromControl,
  type RingControl,
  type RingControlOf,
} from './ring-protocol.js';
import {
  DEFAULT_STAGE_LIMITS,
  type RingStage,
  type RingStageLimits,
  type RingStageOptions,
  type RingStageStats,
} from './ring-stage-types.js';
import { createStageScheduler } from './stage-scheduler.js';
import { loopFeedRefusal, loopStep, type LoopState } from './ring-loop.js';
import { createStageCommitter } from './stage-commitments.js';
import { argmax } from '../validation/stage.js';
import { perfSample } from '../util/perf-trace.js';

export * from './ring-stage-types.js';

/** A session on this stage (`loop`, `nextStep`, `nextPosition`: loop mode, see ring-loop.ts). */
interface StageSession extends LoopState {
  /** Resolves once the runner opened it (a Web Worker runner answers asynchronously). */
  runnerSession: Promise<string>;
  /** The requester the head answers (as the open claimed it; the first stage checks the claim). */
  requester: string;
  /** The link that opened the session: the only one whose steps and `end` it accepts. */
  link: PeerLink;
  sampler?: Sampler;
  /** Positions below this are a failover replay: the head does not sample or answer them. */
  replayThrough: number;
  /** Compute ms of the step in progress so far (a chunked step reports its total once). */
  stepMs: number;
  /** Announced verify steps (speculative decoding), by step. */
  verify: Map<number, { position: number; rows: number }>;
  /** The head's greedy picks of the verify step in progress so far (a chunked step adds per chunk). */
  picks: number[];
}

/** Verify steps announced ahead of their tensors that one session may have outstanding. */
const MAX_PENDING_VERIFY = 4;

const defaultTimer = (fn: () => void, ms: number) => {
  const t = setTimeout(fn, ms);
  return () => clearTimeout(t);
};

export function createRingStage(o: RingStageOptions): RingStage {
  const now = o.now ?? (() => performance.now());
  const setTimer = o.setTimer ?? defaultTimer;
  const limits: RingStageLimits = { ...DEFAULT_STAGE_LIMITS, ...o.limits };
  const chunk = Math.max(1, Math.floor(limits.maxChunkPositions));
  const H = o.shard.hiddenSize;
  // Chunk length under contention, adapted so a chunk costs about what a decode step costs.
  let decodeEma: number | undefined;
  let contendedChunk = Math.min(8, chunk);
  const learn = (positions: number, ms: number, contended: boolean) => {
    if (positions === 1) {
      decodeEma = decodeEma === undefined ? ms : 0.8 * decodeEma + 0.2 * ms;
      return;
    }
    if (!contended) return;
    const target = Math.max(1, decodeEma ?? ms);
    if (ms > target) contendedChunk = Math.max(1, Math.floor(contendedChunk / 2));
    else if (ms < target / 2) contendedChunk = Math.min(chunk, contendedChunk * 2);
  };
  const sessions = new Map<string, StageSession>();
  const committer = o.validation ? createStageCommitter(o.validation) : undefined;
  const stats: RingStageStats = {
    stepsServed: 0,
    tokensServed: 0,
    computeMs: 0,
    openSessions: 0,
    refusedOpens: 0,
    reservedKvBytes: 0,
  };
  const scheduler = createStageScheduler({
    maxSessionsPerRequester: limits.maxSessionsPerRequester,
    kvBudgetBytes: limits.kvBudgetBytes,
    kvBytesPerSession: o.shard.kvBytesPerPosition * o.shard.contextLength,
    idleMs: limits.idleMs,
    now,
    setInterval: o.setInterval,
    ...(o.computeQueue ? { computeQueue: o.computeQueue } : {}),
    onIdle: (session) => void end(session, 'idle', true),
  });
  /** Set by {@link RingStage.drain}: no new sessions; resolvers waiting for the last one to end. */
  let draining = false;
  const drained: Array<() => void> = [];
  const publish = () => {
    stats.openSessions = sessions.size;
    if (draining && sessions.size === 0) drained.splice(0).forEach((f) => f());
    stats.reservedKvBytes = scheduler.stats().reservedKvBytes;
    o.onStats?.({ ...stats });
  };
  // What this stage can be sent: token ids (first stage; a whole prompt at most) or one chunk of
  // hidden states. Anything declaring more is refused from its first frame, before allocation.
  const tensorLimit = o.isFirst ? o.shard.contextLength * 4 : chunk * H * 4;

  /** Sends `e` (its code, details and cause intact) as a ring `error` message. */
  const sendError = (link: PeerLink | undefined, session: string, e: RingworkError) => {
    try {
      link?.sendControl(ringErrorControl(session, o.peerId, e));
    } catch {
      /* link gone */
    }
  };

  /** Reports a session's failure back towards its requester (and straight to it from the head). */
  const report = (session: string, s: StageSession, e: unknown) => {
    const err = toRingworkError(e, 'RUNNER_BACKEND_FAILED');
    stats.lastError = `${err.code}: ${err.message}`;
    sendError(s.link, session, err);
    const direct = o.isHead ? o.linkTo(s.requester) : undefined;
    if (direct && direct !== s.link) sendError(direct, session, err);
    publish();
  };

  const refuse = (from: PeerLink, session: string, e: RingworkError) => {
    stats.refusedOpens = (stats.refusedOpens ?? 0) + 1;
    stats.lastError = `${e.code}: ${e.message}`;
    sendError(from, session, e);
    publish();
  };

  const end = async (session: string, reason: string, forward: boolean) => {
    const s = sessions.get(session);
    if (!s) return;
    sessions.delete(session);
    committer?.close(session);
    scheduler.release(session);
    publish();
    try {
      await o.runner.closeSession(await s.runnerSession);
    } catch {
      /* never opened, or the runner is gone: nothing to free */
    }
    if (forward && !o.isHead) {
      try {
        o.next()?.sendControl({ type: 'end', v: RING_PROTOCOL_VERSION, session, reason });
      } catch {
        /* next stage gone: its sessions die with its link */
      }
    }
  };

  const fail = async (session: string, e: unknown) => {
    const s = sessions.get(session);
    if (!s) return;
    report(session, s, e);
    await end(session, 'error', true);
  };

  const sendOn = async (link: PeerLink, m: TensorMessage) => {
    const ac = new AbortController();
    const cancel = setTimer(() => ac.abort(), limits.sendDeadlineMs);
    try {
      await link.sendTensor(m, { signal: ac.signal });
    } catch (e) {
      if (!ac.signal.aborted) throw e;
      throw new RingworkError(
        'STAGE_NEXT_TIMEOUT',
        `The next stage (${link.remoteId}) took no data for ${limits.sendDeadlineMs} ms; giving up on this step.`,
        { details: { next: link.remoteId, deadlineMs: limits.sendDeadlineMs }, cause: e },
      );
    } finally {
      cancel();
    }
  };

  /** The link to the next stage, waiting (bounded) for one still connecting. */
  const nextLink = async (): Promise<PeerLink> => {
    const ready = o.next();
    if (ready?.isOpen) return ready;
    const later = await o.whenNext?.(limits.nextLinkWaitMs);
    if (later?.isOpen) return later;
    throw new RingworkError('RING_PEER_LOST', 'this stage has no link to the next stage', {
      details: { stage: o.peerId },
    });
  };

  /**
   * Loop mode on the head: sends `token` to stage 0 as the session's step `step` at `position` (a
   * 1-stage ring queues it here: no wire hop). False when there is no open link to stage 0 now (the
   * requester then sends the step itself, as without loop mode).
   */
  const feed = async (
    session: string,
    s: StageSession,
    step: number,
    position: number,
    token: number,
  ): Promise<boolean> => {
    const m = loopStep(session, step, position, token);
    if (o.isFirst) {
      runStep(m, s, now());
      return true;
    }
    const first = o.next();
    if (!first?.isOpen) return false;
    const f0 = now();
    await sendOn(first, m);
    // Debug timings: how long the head's hand-off to stage 0 takes (its count: the steps fed).
    perfSample('stage.feedMs', now() - f0);
    return true;
  };

  const onOpen = (m: RingControlOf<'open'>, from: PeerLink) => {
    if (m.epoch !== o.epoch) {
      const stale = new RingworkError(
        'RING_STALE_EPOCH',
        `ring epoch ${m.epoch} is stale; this stage serves epoch ${o.epoch}`,
        { details: { requested: m.epoch, serving: o.epoch } },
      );
      return refuse(from, m.session, stale);
    }
    const existing = sessions.get(m.session);
    if (existing) {
      if (existing.link !== from) {
        refuse(from, m.session, new RingworkError('STAGE_WRONG_LINK', 'session id already in use'));
      }
      return; // a repeated open on the same link changes nothing
    }
    if (draining) {
      // Its tab is leaving or pausing: open sessions finish here, new ones go to the next ring.
      return refuse(
        from,
        m.session,
        new RingworkError('RING_STAGE_DRAINING', 'this stage is draining (its peer leaves or pauses)', {
          details: { stage: o.peerId },
        }),
      );
    }
    if (m.loop && m.validation) {
      // A validated session's requester checks every step's commitments before the next one is
      // sent: the head must not start the next lap on its own.
      return refuse(
        from,
        m.session,
        new RingworkError('INVALID_ARGUMENT', 'loop mode is for plain sessions, not validated ones'),
      );
    }
    if (o.isFirst && m.requester !== from.remoteId) {
      return refuse(
        from,
        m.session,
        new RingworkError('STAGE_WRONG_LINK', 'the first stage takes opens only from the requester itself'),
      );
    }
    const prev = o.isFirst ? undefined : o.prev?.();
    if (o.prev && !o.isFirst && from !== prev) {
      return refuse(
        from,
        m.session,
        new RingworkError('STAGE_WRONG_LINK', 'this stage takes opens only from the previous stage'),
      );
    }
    // A requester is the peer that opened the session; further down the ring, the neighbour that
    // forwarded it vouches for the requester it names (the first stage checked that claim).
    const requester = o.isFirst ? from.remoteId : `${from.remoteId}>${m.requester}`;
    try {
      // Compute is charged to the requester the ring serves, the same name at every stage.
      scheduler.admit(m.session, requester, m.requester);
    } catch (e) {
      return refuse(from, m.session, e as RingworkError);
    }
    const runnerSession = o.runner.openSession();
    const s: StageSession = {
      runnerSession,
      requester: m.requester,
      link: from,
      sampler: o.isHead ? createSampler(m.sampler) : undefined,
      replayThrough: m.replayThrough ?? 0,
      stepMs: 0,
      verify: new Map(),
      picks: [],
      ...(m.loop ? { loop: m.loop } : {}),
      nextStep: 0,
      nextPosition: 0,
    };
    sessions.set(m.session, s);
    if (m.validation) committer?.open(m.session, m.validation);
    runnerSession.catch((e: unknown) => void fail(m.session, e));
    publish();
    if (!o.isHead) {
      // In order with the session's chunks: they wait for the same link (nextLink), and the
      // open's wait started first.
      nextLink()
        .then((next) => next.sendControl(m))
        .catch((e: unknown) => void fail(m.session, e));
    }
  };

  /** Checks a tensor against what this stage takes; returns the number of positions it carries. */
  const positionsOf = (t: TensorMessage): number => {
    if (o.isFirst) {
      if (t.kind !== 'tokens' || t.dtype !== 'int32' || t.shape.length !== 1) {
        throw new RingworkError('RUNNER_BAD_INPUT', 'the first stage takes token ids: int32 [S]');
      }
      return t.shape[0]!;
    }
    if (
      (t.kind !== 'hidden' && t.kind !== 'hidden-part') ||
      t.dtype !== 'float32' ||
      t.shape.length !== 2 ||
      t.shape[1] !== H
    ) {
      throw new RingworkError('RUNNER_BAD_INPUT', `this stage takes hidden states: float32 [S, ${H}]`);
    }
    return t.shape[0]!;
  };

  const onTensor = (t: TensorMessage, from: PeerLink) => {
    // Debug timings (perf-trace.ts; recorded only when tracing is on): arrival to sent, by part.
    const arrived = now();
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
    if (s.link !== from) {
      const head = o.isFirst ? o.prev?.() : undefined;
      const refused = loopFeedRefusal(t, s, head !== undefined && from === head);
      if (refused) {
        // Someone else's session, or not the step the head may feed: refuse it, leave the session alone.
        sendError(from, t.session, refused);
        return;
      }
    }
    runStep(t, s, arrived);
  };

  /** Queues the compute of step `t` of session `s` (checked: from its link, or fed by the head). */
  const runStep = (t: TensorMessage, s: StageSession, arrived: number) => {
    let S: number;
    try {
      S = positionsOf(t);
    } catch (e) {
      void fail(t.session, e);
      return;
    }
    if (t.kind !== 'hidden-part') {
      s.nextStep = t.step + 1;
      s.nextPosition = t.position + S;
    }
    scheduler.touch(t.session);
    const commits = committer?.has(t.session) === true;
    if (commits) {
      const d = t.data as Int32Array | Float32Array;
      committer.received(t.session, t.step, t.position, new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    }
    // A `hidden-part` is followed by more of the same step; only a step's last chunk finishes it.
    const finishesStep = t.kind !== 'hidden-part';
    // A verify step (announced by `verify`): rewind before its first position, picks from the head.
    const verify = s.verify.get(t.step);
    let done = 0;
    scheduler.enqueue(t.session, async () => {
      if (sessions.get(t.session) !== s) return true; // ended while queued
      const started = now();
      if (done === 0) perfSample('stage.queueMs', started - arrived);
      const contended = scheduler.contended(t.session);
      const n = Math.min(contended ? contendedChunk : chunk, S - done);
      const lastChunk = done + n >= S;
      const stepDone = finishesStep && lastChunk;
      const position = t.position + done;
      try {
        // Copies: a runner may keep the view, and the chunk must not pin the whole step.
        const input: StepInput =
          t.data instanceof Int32Array
            ? { tokens: n === S ? t.data : t.data.slice(done, done + n), position }
            : {
                hidden:
                  n === S
                    ? (t.data as Float32Array)
                    : (t.data as Float32Array).slice(done * H, (done + n) * H),
                position,
              };
        if (verify) {
          // The step's first position drops what the cache holds past it; its later chunks (and
          // `hidden-part` frames) follow on. On the head, every position of the step gets a row.
          if (position === verify.position) input.rewind = true;
          if (o.isHead) input.logitsRows = n;
        }
        const r0 = now();
        const out = await o.runner.step(await s.runnerSession, input);
        const r1 = now();
        perfSample('stage.runnerMs', r1 - r0);
        // What the runner call costs beyond the model's own run: the worker round trip and copies.
        perfSample('stage.runnerOverheadMs', r1 - r0 - out.ms);
        perfSample('stage.modelMs', out.ms);
        // The overhead by part, where the runner measures it (the worker runner does).
        for (const [k, v] of Object.entries(out.phases ?? {})) perfSample(`stage.runner.${k}`, v);
        stats.stepsServed++;
        stats.computeMs += out.ms;
        s.stepMs += out.ms;
        learn(n, out.ms, contended);
        if (o.isHead && verify) {
          const V = o.shard.vocabSize ?? out.data.length / n;
          if (out.data.length !== n * V) {
            throw new RingworkError(
              'SPECULATIVE_UNSUPPORTED',
              'this head answers one logits row per step (loaded with logits: last), not a verify pass',
              { details: { rows: n } },
            );
          }
          for (let r = 0; r < n; r++) s.picks.push(argmax(out.data.subarray(r * V, (r + 1) * V)));
          if (stepDone) {
            s.verify.delete(t.step);
            const tokens = s.picks;
            s.picks = [];
            if (tokens.length !== verify.rows) {
              throw new RingworkError(
                'RUNNER_BAD_INPUT',
                `the verify step announced ${verify.rows} positions and carried ${tokens.length}`,
                { details: { rows: verify.rows, got: tokens.length } },
              );
            }
            stats.tokensServed += tokens.length;
            o.linkTo(s.requester)?.sendControl({
              type: 'picks',
              v: RING_PROTOCOL_VERSION,
              session: t.session,
              step: t.step,
              position: verify.position,
              tokens,
              stageMs: [...(t.trace ?? []), s.stepMs],
            });
          }
        } else if (o.isHead) {
          // A replayed step only rebuilds KV caches: no token, no random draw, no answer.
          if (stepDone && t.position + S > s.replayThrough) {
            // The head is loaded with `logits: 'last'`: one row of vocab logits per step.
            const ctx = { step: t.step, position: t.position + S - 1, range: o.range ?? [0, 0] };
            const logits = commits ? committer.headLogits(t.session, out.data, ctx) : out.data;
            const token = s.sampler!.sample(logits);
            stats.tokensServed++;
            // Loop mode: the next step leaves for stage 0 before the answer, so the next lap starts
            // without waiting for the requester (the answer says whether it did).
            const fed = loopFeeds(s.loop, t.position + S - 1, token)
              ? await feed(t.session, s, t.step + 1, t.position + S, token)
              : false;
            const answer = o.linkTo(s.requester);
            if (commits) {
              // Signed before the token leaves: the requester holds the head to both.
              const honest = logits === out.data ? undefined : { logits: out.data, token: argmax(out.data) };
              for (const c of await committer.finishHead(t.session, t.step, logits, token, honest))
                answer?.sendControl(c);
            }
            answer?.sendControl({
              type: 'token',
              v: RING_PROTOCOL_VERSION,
              session: t.session,
              step: t.step,
              position: t.position + S - 1,
              token,
              stageMs: [...(t.trace ?? []), s.stepMs],
              draws: s.sampler!.draws,
              ...(fed ? { fed } : {}),
            });
            perfSample('stage.afterRunnerMs', now() - r1);
            perfSample('stage.arrivedToSentMs', now() - arrived);
          } else if (stepDone && commits) committer.skip(t.session, t.step);
        } else {
          const next = await nextLink();
          const rowLen = out.data.length / out.seqLen;
          const data = commits
            ? committer.output(t.session, out.data, {
                step: t.step,
                position,
                rowLen,
                range: o.range ?? [0, 0],
                input: 'hidden' in input ? input.hidden : undefined,
              })
            : out.data;
          if (commits && stepDone) {
            // The step's commits go first: on one ordered link they reach the next stage before
            // the step's last chunk, so it can sign its own commitment when that chunk is done.
            for (const c of await committer.finishHidden(t.session, t.step, rowLen)) next.sendControl(c);
          }
          const s0 = now();
          await sendOn(next, {
            session: t.session,
            step: t.step,
            position,
            kind: stepDone ? 'hidden' : 'hidden-part',
            dtype: 'float32',
            shape: [out.seqLen, rowLen],
            data,
            trace: stepDone ? [...(t.trace ?? []), s.stepMs] : [],
          });
          perfSample('stage.sendMs', now() - s0);
          perfSample('stage.afterRunnerMs', now() - r1);
          if (stepDone) perfSample('stage.arrivedToSentMs', now() - arrived);
        }
        if (stepDone) {
          s.stepMs = 0;
          s.verify.delete(t.step);
        }
        done += n;
        publish();
        const d = Math.min(1, Math.max(0.05, o.dutyCycle?.() ?? 1));
        if (d < 1) await new Promise<void>((r) => setTimer(r, out.ms * (1 / d - 1)));
        return lastChunk;
      } catch (e) {
        await fail(t.session, e);
        return true;
      }
    });
  };

  /** A verify step is announced: check it is one this stage can serve, pass it on ahead of the step. */
  const onVerify = async (m: RingControlOf<'verify'>, s: StageSession) => {
    const refuse = (why: string) =>
      fail(m.session, new RingworkError('SPECULATIVE_UNSUPPORTED', why, { details: { stage: o.peerId } }));
    if (committer?.has(m.session)) return refuse('validated sessions are not verified speculatively');
    // The head feeds a loop session's steps itself; a verify pass is the requester's to build.
    if (s.loop) return refuse('loop-mode sessions are not verified speculatively');
    if (o.isHead && s.sampler && s.sampler.greedy === false)
      return refuse('speculative verification is greedy only (this session samples)');
    if (o.isHead && m.rows > 1 && o.shard.verifyRows === false)
      return refuse('this head answers one logits row per step (loaded with logits: last)');
    if (s.verify.size >= MAX_PENDING_VERIFY) return refuse('too many verify steps announced ahead');
    s.verify.set(m.step, { position: m.position, rows: m.rows });
    if (!o.isHead) {
      try {
        o.next()?.sendControl(m);
      } catch (e) {
        await fail(m.session, e);
      }
    }
  };

  const onControl = (m: RingControl, link: PeerLink) => {
    if (m.type === 'open') return onOpen(m, link);
    const s = sessions.get(m.session);
    if (!s) return;
    if (m.type === 'end') {
      if (s.link === link) void end(m.session, m.reason, true);
    } else if (m.type === 'verify') {
      if (s.link !== link) return;
      void onVerify(m, s);
    } else if (m.type === 'commit') {
      // Upstream commitments come only on the session's own link (from the previous stage).
      if (s.link === link && !o.isFirst) committer?.upstream(m.session, m);
    } else if (m.type === 'picks' || m.type === 'token') {
      // Answers travel from the head to the requester only; a stage has nothing to do with them.
    } else if (m.type === 'error') {
      if (o.isHead && s.loop && link === o.next()) {
        // Stage 0 refused a step this head fed: the requester waits for it, so tell it now. (On a
        // 2-stage ring that link also brought the session; stage 0 sends nothing else this way.)
        report(m.session, s, ringErrorFromControl(m));
        void end(m.session, 'error', false);
        return;
      }
      // A later stage failed (or refused the open): pass it back towards the requester, drop the session.
      if (o.isHead || link !== o.next()) return;
      try {
        s.link.sendControl(m);
      } catch {
        /* requester gone */
      }
      void end(m.session, 'error', true);
    }
  };

  const detachers = new Set<() => void>();
  let stopped = false;
  return {
    stats,
    attach(link) {
      if (stopped) return () => undefined;
      link.setTensorLimit(tensorLimit);
      const offs = [
        link.onControl((raw) => {
          let m: RingControl;
          try {
            m = parseRingControl(raw);
          } catch {
            return; // a malformed control message from a peer is ignored, not fatal to the stage
          }
          onControl(m, link);
        }),
        link.onTensor((t) => onTensor(t, link)),
        // Sessions live no longer than the link that opened them: a tab that left frees its KV now.
        link.onClose(() => {
          for (const [id, s] of [...sessions]) if (s.link === link) void end(id, 'link closed', true);
          // The next stage is gone: every session through it is lost, tell their requesters now.
          if (!o.isHead && o.nextPeer && link.remoteId === o.nextPeer) {
            const lost = new RingworkError('RING_PEER_LOST', `the next stage (${o.nextPeer}) left the ring`, {
              details: { peer: o.nextPeer, stage: o.peerId },
            });
            for (const id of [...sessions.keys()]) void fail(id, lost);
          }
        }),
      ];
      const detach = () => {
        offs.forEach((f) => f());
        detachers.delete(detach);
      };
      detachers.add(detach);
      return detach;
    },
    drain() {
      draining = true;
      if (sessions.size === 0 || stopped) return Promise.resolve();
      return new Promise<void>((resolve) => drained.push(resolve));
    },
    async stop() {
      // A stopped stage hears nothing more: the next stage (new epoch) attaches to the same links.
      if (stopped) return;
      stopped = true;
      for (const d of [...detachers]) d();
      scheduler.stop();
      // A stage stops when its ring is re-planned (or its tab leaves): its open sessions can never
      // answer again, so their requesters hear it now with a typed error — not after their step
      // deadline (a validated answer, which follows no epoch, waited a whole minute in silence).
      const gone = new RingworkError(
        'RING_STALE_EPOCH',
        `this stage stopped serving epoch ${o.epoch} (the ring was re-planned)`,
        { details: { replanned: true, stage: o.peerId, serving: o.epoch } },
      );
      for (const [id, s] of sessions) {
        sendError(s.link, id, gone);
        const direct = o.isHead ? o.linkTo(s.requester) : undefined;
        if (direct && direct !== s.link) sendError(direct, id, gone);
      }
      const ids = [...sessions.keys()];
      await Promise.all(ids.map((id) => end(id, 'stage stopped', false)));
      drained.splice(0).forEach((f) => f());
    },
  };
}
