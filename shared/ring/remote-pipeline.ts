/**
 * The requester's view of a ring as a {@link Pipeline}: `forward` sends token ids to the first stage
 * and resolves with the token the head sampled, so the same {@link generate} loop drives a local
 * chain of runners and a ring of browsers — and gives the same tokens.
 */
import { RingworkError, throwIfAborted } from '../errors.js';
import type { ForwardResult, Pipeline, PipelineSession } from '../runtime/pipeline.js';
import type { PeerLink } from '../transport/types.js';
import { SESSION_ID_BYTES } from '../validation/commitment.js';
import { toHex } from '../validation/crypto.js';
import { perfSample } from '../util/perf-trace.js';
import type { RingStepCommits } from '../validation/ring-validator.js';
import {
  MAX_RING_COMMIT_STAGE,
  RING_PROTOCOL_VERSION,
  parseRingControl,
  ringErrorFromControl,
  type RingControlOf,
  type RingLoop,
  type SamplerSettings,
} from './ring-protocol.js';

export interface RemotePipelineOptions {
  requesterId: string;
  epoch: number;
  /** Link to the stage holding unit 0 (it receives token ids). */
  first: PeerLink;
  /** Link to the stage holding the head (it answers with tokens). May be `first` for a 1-stage ring. */
  head: PeerLink;
  sampler: SamplerSettings;
  /** Per-step timeout, ms (default 60 s: a first step may include a cold GPU pipeline compile). */
  stepTimeoutMs?: number;
  /**
   * Per-step deadline by the step's number of positions, ms (overrides `stepTimeoutMs`): the
   * requester's loss detector (see loss-detector.ts) makes a decode step's deadline follow the laps.
   */
  stepDeadlineMs?: (positions: number) => number;
  newSessionId?: () => string;
  now?: () => number;
  /**
   * Result validation: the `open` asks every stage for signed per-step commitments, and each step's
   * `commit` messages (from the head link) go to `verify` with the token before `forward` returns;
   * a throw fails the step (e.g. `VALIDATION_DEVIANT`). See shared/validation/ring-validator.ts.
   */
  validation?: RemoteValidation;
  /**
   * Loop mode: the head feeds each answered token to stage 0 as the next step (one wire hop fewer
   * per token, and this tab off the lap), up to position `until` and except for `stop` tokens. For
   * a caller whose every step after an answer is that answer at the next position (generate()
   * with its batched prefill) — a forced token there fails with `INVALID_ARGUMENT`. Ignored with
   * `validation` (the requester checks each step before the next is sent); verify steps of
   * speculative decoding are refused on a loop session (`SPECULATIVE_UNSUPPORTED`).
   */
  loop?: RingLoop;
}

/** How a remote session is validated. */
export interface RemoteValidation {
  /** The ring's index among the request's k rings (0 = primary). */
  ring: number;
  /** The session's 16-byte nonce (default: random per session). */
  nonce?: () => Uint8Array;
  verify(e: RingStepCommits): Promise<void>;
}

/** A head's answer to a step: one sampled token, or greedy picks for a verify step. */
type Answer = RingControlOf<'token'> | RingControlOf<'picks'>;

type Waiter = {
  step: number;
  commits: RingControlOf<'commit'>[];
  resolve: (m: Answer) => void;
  reject: (e: unknown) => void;
};

/** Where a session taken over after a failover starts from. */
export interface RemoteResume {
  /** The session's history: every token already fed at positions 0..n-1, replayed as a no-sample prefill. */
  history: readonly number[];
  /** Random numbers the session's sampler already drew (the new head fast-forwards past them). */
  draws: number;
}

/** A ring session: a {@link PipelineSession} that also says how far its sampler has drawn. */
export interface RemoteSession extends PipelineSession {
  readonly id: string;
  /** Random draws of the head's sampler after the latest token (what a failover hands on). */
  readonly draws: number;
  /** Fails the session (a step waiting now, and every later one) with `e`: the ring is known gone. */
  abandon(e: unknown): void;
}

/** A ring as a {@link Pipeline}. */
export function createRemotePipeline(o: RemotePipelineOptions): Pipeline {
  return { open: () => openRemoteSession(o) };
}

/**
 * Opens one session on the ring. With `resume`, the `open` carries the draws already made and the
 * history is sent at once as step 0 (positions 0..n-1, chunked by the stages, marked by
 * `replayThrough` so the head neither samples nor answers it); the caller's next `forward` at
 * position n then continues exactly where the lost ring stopped.
 */
export async function openRemoteSession(
  o: RemotePipelineOptions,
  resume?: RemoteResume,
): Promise<RemoteSession> {
  const now = o.now ?? (() => performance.now());
  const newId = o.newSessionId ?? (() => crypto.randomUUID());
  const session = newId();
  let draws = resume?.draws ?? o.sampler.draws ?? 0;
  const nonce = o.validation
    ? (o.validation.nonce?.() ?? crypto.getRandomValues(new Uint8Array(SESSION_ID_BYTES)))
    : undefined;
  let waiter: Waiter | undefined;
  /** The answered step's `commit` messages (validated sessions). */
  let stepCommits: RingControlOf<'commit'>[] = [];
  const loop = o.validation ? undefined : o.loop;
  /** The latest answer consumed by `forward` (loop mode: did the head feed the next step?). */
  let answered: RingControlOf<'token'> | undefined;
  /**
   * Loop mode: answers to steps the head fed that arrived before their `forward` (this tab was
   * busy), by step; at most one per position up to `until`.
   */
  const early = new Map<number, { m: Answer; at: number }>();
  /** When the answer last handed to a `forward` arrived (a fed step's lap starts about then). */
  let arrivedAt = 0;
  let failure: unknown;
  const fail = (e: unknown) => {
    failure ??= e;
    waiter?.reject(e);
    waiter = undefined;
  };
  const lost = (who: string) => () =>
    fail(
      new RingworkError(
        'RING_PEER_LOST',
        `The ring lost a peer (${who}) mid-generation. The network is re-planning; send the request again in a moment.`,
        { details: { peer: who, session } },
      ),
    );
  const offs = [
    o.first.onClose(lost(o.first.remoteId)),
    o.head.onClose(lost(o.head.remoteId)),
    o.head.onControl((raw) => onControl(raw, true)),
  ];
  if (o.first !== o.head) offs.push(o.first.onControl((raw) => onControl(raw, false)));
  // Only the head samples: a token from any other link is not an answer (a stage must not be
  // able to answer for the ring). Errors come back along the ring, so from either link.
  function onControl(raw: unknown, fromHead: boolean) {
    let m;
    try {
      m = parseRingControl(raw);
    } catch {
      return;
    }
    if (m.session !== session) return;
    if (m.type === 'commit') {
      // Commitments are the head's to relay (each is signed by its stage; nobody can rewrite one).
      if (fromHead && waiter && m.step === waiter.step && waiter.commits.length <= MAX_RING_COMMIT_STAGE)
        waiter.commits.push(m);
    } else if (m.type === 'token' || m.type === 'picks') {
      if (!fromHead) return;
      // Matched by session and step: a late token of an earlier (timed-out) step must not
      // answer the step now waiting.
      if (!waiter || m.step !== waiter.step) {
        // Loop mode: the head runs ahead of this tab; keep the answer for its `forward`.
        if (loop && m.type === 'token' && m.step >= step && early.size <= loop.until)
          early.set(m.step, { m, at: now() });
        return;
      }
      arrivedAt = now();
      stepCommits = waiter.commits;
      waiter.resolve(m);
      waiter = undefined;
    } else if (m.type === 'error') {
      // The stage's own code (stale epoch, not serving, a runner failure...) reaches the caller.
      fail(ringErrorFromControl(m));
    }
  }
  if (!o.first.isOpen || !o.head.isOpen) lost(!o.first.isOpen ? o.first.remoteId : o.head.remoteId)();
  if (failure) throw failure;
  o.first.sendControl({
    type: 'open',
    v: RING_PROTOCOL_VERSION,
    session,
    epoch: o.epoch,
    requester: o.requesterId,
    sampler: { ...o.sampler, ...(resume ? { draws } : {}) },
    ...(resume ? { replayThrough: resume.history.length } : {}),
    ...(o.validation && nonce ? { validation: { nonce: toHex(nonce), ring: o.validation.ring } } : {}),
    ...(loop ? { loop } : {}),
  });
  let step = 0;
  let replayed = 0;
  if (resume && resume.history.length > 0) {
    replayed = resume.history.length;
    await o.first.sendTensor({
      session,
      step: step++,
      position: 0,
      kind: 'tokens',
      dtype: 'int32',
      shape: [resume.history.length],
      data: Int32Array.from(resume.history),
      trace: [],
    });
  }
  return {
    id: session,
    get draws() {
      return draws;
    },
    abandon: (e) => fail(e),
    async forward(tokens, position, opts = {}): Promise<ForwardResult> {
      if (failure) throw failure;
      throwIfAborted(opts.signal, 'The step');
      const t0 = now();
      const thisStep = step;
      // A rewinding or several-row step is a verify pass of speculative decoding (greedy only).
      const verify = opts.rewind === true || (opts.logitsRows ?? 1) > 1;
      // The first step after a replay waits for the replay too: it gets the deadline of both. A
      // verify pass is a drafted answer's lap (its few rows run as one chunk): a decode deadline.
      const positions = (verify ? 1 : tokens.length) + replayed;
      replayed = 0;
      const timeoutMs = o.stepDeadlineMs?.(positions) ?? o.stepTimeoutMs ?? 60_000;
      if (verify) {
        const unsupported = (why: string) =>
          new RingworkError('SPECULATIVE_UNSUPPORTED', why, { details: { session } });
        if (o.sampler.temperature !== 0)
          throw unsupported('Speculative decoding is greedy only (temperature 0).');
        if (o.validation) throw unsupported('Validated rings do not verify drafted tokens.');
        if ((opts.logitsRows ?? tokens.length) !== tokens.length)
          throw unsupported('A ring verifies every position of a verify step (logitsRows = tokens).');
        if (loop) throw unsupported('A loop-mode session does not verify drafted tokens.');
      }
      // Loop mode: the head already sent this step to stage 0 when it answered the last one.
      const fed = answered?.fed === true;
      // A fed step's lap: from the previous answer's arrival (when the head sent this step on) to
      // this one's, whenever this tab gets to call `forward`.
      const lapStart = arrivedAt;
      if (
        fed &&
        (verify ||
          tokens.length !== 1 ||
          tokens[0] !== answered!.token ||
          position !== answered!.position + 1)
      ) {
        throw new RingworkError(
          'INVALID_ARGUMENT',
          `In loop mode the step after an answer is that answer at the next position (the head fed token ${answered!.token} at ${answered!.position + 1}).`,
          { details: { session, step: thisStep, position } },
        );
      }
      const reply = new Promise<Answer>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            fail(
              new RingworkError(
                'RING_STEP_TIMEOUT',
                `The ring did not answer step ${thisStep} within ${timeoutMs} ms.`,
                { details: { step: thisStep, session, timeoutMs } },
              ),
            ),
          timeoutMs,
        );
        const onAbort = () => fail(new RingworkError('ABORTED', 'Generation was stopped.'));
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        const ready = early.get(thisStep);
        early.delete(thisStep);
        waiter = {
          step: thisStep,
          commits: [],
          resolve: (m) => {
            clearTimeout(timer);
            opts.signal?.removeEventListener('abort', onAbort);
            resolve(m);
          },
          reject: (e) => {
            clearTimeout(timer);
            opts.signal?.removeEventListener('abort', onAbort);
            reject(e);
          },
        };
        if (ready) {
          arrivedAt = ready.at;
          waiter.resolve(ready.m);
          waiter = undefined;
        }
      });
      if (verify) {
        o.first.sendControl({
          type: 'verify',
          v: RING_PROTOCOL_VERSION,
          session,
          step: thisStep,
          position,
          rows: tokens.length,
        });
      }
      step++;
      if (!fed)
        await o.first.sendTensor({
          session,
          step: thisStep,
          position,
          kind: 'tokens',
          dtype: 'int32',
          shape: [tokens.length],
          data: Int32Array.from(tokens),
          trace: [],
        });
      const m = await reply;
      if ((m.type === 'picks') !== verify) {
        throw new RingworkError(
          'PROTOCOL_BAD_FRAME',
          `The ring's head answered a ${verify ? 'verify' : 'decode'} step with \`${m.type}\`.`,
          { details: { session, step: thisStep } },
        );
      }
      if (m.type === 'picks') {
        const totalMs = now() - t0;
        perfSample('requester.verifyLapMs', totalMs);
        return { picks: m.tokens, timing: { stageMs: m.stageMs, totalMs } };
      }
      if (m.draws !== undefined) draws = m.draws;
      answered = m;
      if (o.validation && nonce) {
        const commits = stepCommits;
        stepCommits = [];
        await o.validation.verify({
          ring: o.validation.ring,
          nonce,
          step: thisStep,
          position,
          tokens: Array.from(tokens),
          token: m.token,
          commits,
        });
      }
      const totalMs = fed ? arrivedAt - lapStart : now() - t0;
      if (tokens.length === 1) {
        // Debug timings (perf-trace.ts): a decode step's lap, and the part no stage computed.
        perfSample('requester.lapMs', totalMs);
        // Loop mode: the steps the head fed (their count), timed from this `forward`.
        if (fed) perfSample('requester.fedMs', now() - t0);
        perfSample('requester.hopsMs', totalMs - m.stageMs.reduce((a, b) => a + b, 0));
      }
      return { token: m.token, timing: { stageMs: m.stageMs, totalMs } };
    },
    async close() {
      offs.forEach((f) => f());
      try {
        if (o.first.isOpen)
          o.first.sendControl({ type: 'end', v: RING_PROTOCOL_VERSION, session, reason: 'done' });
      } catch {
        /* ring gone: stages free the session on their own */
      }
    },
  };
}
