/**
 * Chatting: follow the coordinator's ring for a model (one `ring-request` subscribes; changes are
 * pushed), connect to the ring's first stage (which embeds the token ids) and its head (which
 * samples), and drive the same `generate` loop the CLI uses — so the ring's tokens equal a single
 * device's. The requester tokenizes and detokenizes; with no ring it runs the whole model itself
 * when it fits. A plain object with a zustand vanilla store; the browser injects its WebRTC network,
 * Web Worker runner, tokenizer loader and sessionStorage.
 */
import { createStore, type StoreApi } from 'zustand/vanilla';
import { persist, type PersistStorage } from 'zustand/middleware';
import { HISTORY_KEY, historyStorage, type AnswerFailover, type ChatMessage } from './chat-history.js';
import { RingworkError, isRingworkError } from '../errors.js';
import { isLlama2cLocation } from '../model/open-model.js';
import type { ModelDescriptor, ServerMessageOf } from '../protocol/signaling.js';
import {
  createFailoverPipeline,
  type FailoverEvent,
  type FailoverPhases,
  type RingLoss,
  type RingTarget,
} from '../ring/failover-pipeline.js';
import { createLossDetector } from '../ring/loss-detector.js';
import { openRemoteSession } from '../ring/remote-pipeline.js';
import { isRetryableRingError } from '../ring/retry.js';
import { generate } from '../runtime/generate.js';
import { createPipeline, type Pipeline } from '../runtime/pipeline.js';
import { createSampler, type Sampler } from '../runtime/sampler.js';
import type { ShardRunner } from '../runtime/shard-runner.js';
import { createDecodeStream } from '../tokenizer/decode-stream.js';
import type { Tokenizer } from '../tokenizer/types.js';
import type { PeerLink } from '../transport/types.js';
import type {
  AskOptions,
  AskResult,
  ChatState,
  Requester,
  RequesterOptions,
  RingAnswer,
  RingChatClient,
} from './requester-types.js';
import { silentLogger, systemAppClock, type NetworkHandle } from './network-port.js';
import { createRefereeCache, openValidatedAnswer, type ValidatedAnswer } from './validated-ring.js';
import { withValidatedFailover, type ValidatedFailoverPipeline } from './validated-failover.js';
import { assertDraftAvailable, type DraftSetting } from './draft-setting.js';
import type { RingworkChunkInfo } from '../api/openai-wire.js';
import { createRingTransportClient } from '../api/ring-transport.js';

export {
  HISTORY_KEY,
  type AnswerFailover,
  type AnswerSpeculative,
  type ChatMessage,
  type ChatSettings,
  type HistoryStorage,
} from './chat-history.js';

export type * from './requester-types.js';

/** The chat message's figures, from the `ringwork` field of the answer's last chunk. */
function metaOf(info: RingworkChunkInfo | undefined): Partial<NonNullable<ChatMessage['meta']>> {
  if (!info) return {};
  return {
    ...(info.stats ?? {}),
    ...(info.peers ? { peers: info.peers } : {}),
    local: info.path === 'local',
    failovers: info.failovers ?? [],
    ...(info.verification ? { verification: info.verification } : {}),
  };
}

/** Creates a requester. */
export function createRequester(o: RequesterOptions): Requester {
  const clock = o.clock ?? systemAppClock;
  const log = o.logger ?? silentLogger;
  const seedOf = o.seed ?? (() => Math.floor(Math.random() * 2 ** 31) + 1);
  const init = (): ChatState => ({
    messages: [],
    busy: false,
    settings: { model: 'stories260K', temperature: 0.8, topP: 0.9, maxTokens: 200 },
    rings: {},
  });
  const store: StoreApi<ChatState> = o.storage
    ? createStore<ChatState>()(
        persist(init, {
          name: HISTORY_KEY,
          storage: historyStorage(o.storage) as unknown as PersistStorage<ChatState>,
          partialize: (s) => ({ messages: s.messages }) as ChatState,
        }),
      )
    : createStore<ChatState>()(init);
  const set = (p: Partial<ChatState>) => store.setState(p);
  const get = () => store.getState();

  const tokenizers = new Map<string, Promise<Tokenizer>>();
  const tokenizerFor = (m: ModelDescriptor): Promise<Tokenizer> => {
    let t = tokenizers.get(m.url);
    if (!t) {
      t = o.openTokenizer(m);
      t.catch(() => tokenizers.delete(m.url));
      tokenizers.set(m.url, t);
    }
    return t;
  };

  /** Per connection: the models subscribed to, and the unsubscribe functions. */
  let subscribed: { net: NetworkHandle; models: Set<string>; offs: (() => void)[] } | undefined;
  const subscribe = (net: NetworkHandle, model: string, k?: number, spot?: { f?: number }): void => {
    if (subscribed?.net !== net) {
      subscribed?.offs.forEach((f) => f());
      // A new connection (a reconnect): what the old one heard may be stale.
      set({ rings: {} });
      const put = (id: string, m: RingAnswer) => set({ rings: { ...get().rings, [id]: m } });
      subscribed = {
        net,
        models: new Set(),
        offs: [
          net.signaling.on('ring', (m) => put(m.model.id, m)),
          net.signaling.on('no-ring', (m) => put(m.model, m)),
        ],
      };
    }
    // A new security level is a new request (the coordinator answers with its validator rings).
    // Spot checks are a mode of k = 2 only (the wire refuses them with any other level).
    const spotAsked = k === 2 ? spot : undefined;
    const key = k === undefined ? model : `${model}@${k}${spotAsked ? `s${spotAsked.f ?? ''}` : ''}`;
    if (subscribed.models.has(key)) return;
    subscribed.models.add(key);
    if (k !== undefined)
      set({ rings: Object.fromEntries(Object.entries(get().rings).filter(([m]) => m !== model)) });
    // One request subscribes: the coordinator pushes every later change of this model's ring.
    net.signaling.send({
      type: 'ring-request',
      model,
      ...(k !== undefined
        ? { security: { v: 1 as const, k, degrade: false, ...(spotAsked ? { spot: spotAsked } : {}) } }
        : {}),
    });
  };

  const ringFor = (model: string, signal: AbortSignal): Promise<RingAnswer> => {
    const now = get().rings[model];
    if (now) return Promise.resolve(now);
    const ms = o.ringTimeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const finish = (f: () => void) => {
        clearTimeout(timer);
        off();
        signal.removeEventListener('abort', onAbort);
        f();
      };
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new RingworkError(
                'SIGNALING_COORDINATOR_TIMEOUT',
                `The coordinator did not answer the ring request within ${ms / 1000} s.`,
              ),
            ),
          ),
        ms,
      );
      const onAbort = () => finish(() => reject(new RingworkError('ABORTED', 'Generation was stopped.')));
      signal.addEventListener('abort', onAbort, { once: true });
      const off = store.subscribe((s) => {
        const r = s.rings[model];
        if (r) finish(() => resolve(r));
      });
    });
  };

  /** The referee of validated answers (k >= 2): its runners are kept across answers and retries. */
  const referee = createRefereeCache(o.createRunner);

  /** Links to ring stages, reused across requests while open. */
  const stageLinks = new Map<string, PeerLink>();
  const linkTo = async (net: NetworkHandle, peer: string, signal: AbortSignal): Promise<PeerLink> => {
    if (peer === net.peerId) {
      const self = o.localStageLink?.();
      if (!self)
        throw new RingworkError(
          'NO_RING',
          'This tab is in the ring but is not serving its stage yet; try again in a moment.',
        );
      return self;
    }
    const shared = o.existingLink?.(peer);
    if (shared?.isOpen) return shared;
    const open = stageLinks.get(peer);
    if (open?.isOpen) return open;
    const link = await net.transport.connect(peer, { timeoutMs: 15_000, signal });
    stageLinks.set(peer, link);
    link.onClose(() => stageLinks.get(peer) === link && stageLinks.delete(peer));
    return link;
  };

  /** Resolves once the model's ring answer differs from `key`, or after `ms` (never rejects but on abort). */
  const ringChange = (model: string, key: string, ms: number, signal: AbortSignal): Promise<void> =>
    new Promise((resolve, reject) => {
      const keyOf = (r: RingAnswer | undefined) =>
        r?.type === 'ring' ? `${r.ringId}@${r.epoch}` : r ? `none:${r.reason}` : '';
      if (keyOf(get().rings[model]) !== key) return resolve();
      const finish = (f: () => void) => {
        clearTimeout(timer);
        off();
        signal.removeEventListener('abort', onAbort);
        f();
      };
      const timer = setTimeout(() => finish(resolve), ms);
      const onAbort = () => finish(() => reject(new RingworkError('ABORTED', 'Generation was stopped.')));
      signal.addEventListener('abort', onAbort, { once: true });
      const off = store.subscribe((s) => {
        if (keyOf(s.rings[model]) !== key) finish(resolve);
      });
    });

  /**
   * After a loss: tells the coordinator the ring stalled (it checks the peers itself; nobody is
   * evicted on this tab's word), waits for its re-planned ring — or, when none comes within the
   * grace, tries the same ring again — and fails with what is missing when no ring can be formed.
   */
  const replaceRing = async (
    net: NetworkHandle,
    model: string,
    loss: RingLoss,
    signal: AbortSignal,
    targetOf: (r: ServerMessageOf<'ring'>) => RingTarget,
  ): Promise<RingTarget> => {
    const key = `${loss.ring.ringId}@${loss.ring.epoch}`;
    const notReady =
      loss.cause === 'replanned' ||
      loss.error.code === 'RING_STALE_EPOCH' ||
      loss.error.code === 'RING_STAGE_NOT_SERVING';
    // A re-plan the coordinator made itself needs no report.
    if (loss.attempt === 0 && loss.cause !== 'replanned') {
      try {
        net.signaling.send({
          type: 'ring-stalled',
          ringId: loss.ring.ringId,
          epoch: loss.ring.epoch,
          position: loss.position,
          cause: loss.cause,
          ...(loss.lostPeer ? { peer: loss.lostPeer } : {}),
        });
      } catch {
        /* signaling down: the coordinator learns of the loss on its own */
      }
    }
    // A ring still loading its shards answers "not serving" at once: poll it with a short backoff,
    // capped at 250 ms (a 1 s cap added 0.5 s on average to every recovery; an attempt is one
    // `open` answered at once by the first stage).
    const waitMs =
      loss.attempt === 0 && !notReady ? (o.stallGraceMs ?? 4000) : Math.min(250, 100 * 2 ** loss.attempt);
    await ringChange(model, key, waitMs, signal);
    const now = get().rings[model];
    if (now?.type !== 'ring') {
      const missing = now?.missingBytes;
      throw new RingworkError(
        'RING_FAILOVER_FAILED',
        `The ring lost a peer and no ring can take the answer over: ${
          missing !== undefined && missing > 0
            ? `${(missing / 1e9).toFixed(2)} GB more peer memory is needed`
            : (now?.reason ?? 'the coordinator has no ring for this model')
        }.`,
        {
          details: { model, lostPeer: loss.lostPeer, missingBytes: missing, reason: now?.reason },
          cause: loss.error,
        },
      );
    }
    return targetOf(now);
  };

  /**
   * The draft runner (the whole model at the draft's format, in this tab), kept across answers for
   * the model it was loaded for: a second answer downloads and compiles nothing.
   */
  let draftHeld: { key: string; runner: Promise<ShardRunner> } | undefined;
  const draftRunner = async (
    m: ModelDescriptor,
    d: DraftSetting,
    signal: AbortSignal,
  ): Promise<ShardRunner> => {
    const key = `${m.url}|${d.format}|${m.contextLength}`;
    if (draftHeld?.key !== key) {
      const old = draftHeld;
      draftHeld = undefined;
      if (old) void old.runner.then((r) => r.dispose()).catch(() => undefined);
      const runner = o.createRunner();
      const loading = runner
        .load(
          {
            model: { url: m.url, tokenizerUrl: m.tokenizerUrl },
            range: [0, m.units],
            weightFormat: d.format,
            contextLength: m.contextLength,
            logits: 'last',
            backend: 'auto',
          },
          { signal },
        )
        .then(() => runner);
      const held = { key, runner: loading };
      draftHeld = held;
      loading.catch(() => {
        if (draftHeld === held) draftHeld = undefined;
        void runner.dispose().catch(() => undefined);
      });
    }
    return draftHeld.runner;
  };

  const askOnce = async (a: AskOptions): Promise<AskResult> => {
    const want = a.settings.draft;
    if (want && a.settings.temperature !== 0) {
      // Before anything is loaded or sent: drafting is greedy only.
      assertDraftAvailable({
        model: a.settings.model,
        temperature: a.settings.temperature,
        modelBytes: undefined,
        budgetBytes: 0,
      });
    }
    const net = await o.network();
    subscribe(net, a.settings.model, a.settings.security, a.settings.spot);
    const answer = await ringFor(a.settings.model, a.signal);
    log.debug(
      answer.type === 'ring'
        ? {
            ring: answer.ringId,
            validators: answer.validators?.map((r) => r.ringId) ?? [],
            security: answer.security,
          }
        : { noRing: answer.reason, security: answer.security },
      'ring answer',
    );
    if (answer.type === 'no-ring' && answer.security) {
      // A ring exists, but not the security level asked for: never fall back to running it here.
      throw new RingworkError(answer.security.code ?? 'VALIDATION_NOT_ENOUGH_PEERS', answer.reason, {
        details: { model: a.settings.model, ...answer.security },
      });
    }
    let model: ModelDescriptor;
    let pipeline: Pipeline;
    let sampler: Sampler | undefined;
    let peers: string[];
    let peersNow: (() => string[]) | undefined;
    let local = false;
    let release = async () => {};
    const seed = a.settings.seed ?? seedOf();
    let failovers: (() => AnswerFailover[]) | undefined;
    let validated: ValidatedAnswer | undefined;
    let failoverPipeline: ValidatedFailoverPipeline | undefined;
    /** With `settings.draft` on a ring: the local draft that proposes tokens for the ring to verify. */
    let draft: { pipeline: Pipeline; setting: DraftSetting } | undefined;
    if (answer.type === 'ring' && answer.validators?.length) {
      // Security level k >= 2: every ring runs every step; no failover (a lost ring fails the answer).
      if (want)
        assertDraftAvailable({
          model: a.settings.model,
          temperature: a.settings.temperature,
          modelBytes: answer.totalBytes,
          budgetBytes: o.localMemoryBytes(),
          security: answer.validators.length + 1,
        });
      model = answer.model;
      validated = await openValidatedAnswer({
        answer,
        net,
        linkTo: (peer) => linkTo(net, peer, a.signal),
        referee,
        sampler: { temperature: a.settings.temperature, topP: a.settings.topP, topK: 0, seed },
        signal: a.signal,
        now: clock.now,
        log,
        ...(a.settings.security === 2 && a.settings.spot
          ? { spot: { askedF: a.settings.spot.f, random: o.spotRandom ?? Math.random } }
          : {}),
      });
      const k = answer.security?.requested ?? 1 + answer.validators.length;
      const gone = new Set([answer, ...answer.validators].map((r) => `${r.ringId}@${r.epoch}`));
      pipeline = failoverPipeline = withValidatedFailover({
        inner: validated.pipeline,
        net,
        model: a.settings.model,
        k,
        // The coordinator's next ring for the model, other than the ones this answer ran on.
        nextRing: async (signal) => {
          const until = clock.now() + (o.stallGraceMs ?? 4000) * 5;
          for (;;) {
            const r = get().rings[a.settings.model];
            if (r?.type === 'ring' && !gone.has(`${r.ringId}@${r.epoch}`)) return r;
            const left = until - clock.now();
            if (left <= 0)
              throw new RingworkError(
                'RING_FAILOVER_FAILED',
                `The honest ring was lost and no ring can take the answer over: ${
                  r?.type === 'no-ring' ? r.reason : 'the coordinator sent no new ring'
                }.`,
                { details: { model: a.settings.model } },
              );
            const key = r?.type === 'ring' ? `${r.ringId}@${r.epoch}` : r ? `none:${r.reason}` : '';
            await ringChange(a.settings.model, key, left, signal ?? a.signal);
          }
        },
        linkTo: (peer) => linkTo(net, peer, a.signal),
        sampler: { temperature: a.settings.temperature, topP: a.settings.topP, topK: 0, seed },
        now: clock.now,
        log,
      });
      peers = [answer, ...answer.validators].flatMap((r) => r.stages.map((s) => s.peer));
    } else if (answer.type === 'ring') {
      model = answer.model;
      const detector = createLossDetector({ coldMs: o.stepTimeoutMs ?? 60_000 });
      // The head holds the session's one sampler (seed + draws travel with `open`).
      const sampler = { temperature: a.settings.temperature, topP: a.settings.topP, topK: 0, seed };
      const targetOf = (ring: ServerMessageOf<'ring'>): RingTarget => ({
        ringId: ring.ringId,
        epoch: ring.epoch,
        peers: ring.stages.map((s) => s.peer),
        async open(resume, progress) {
          const stages = ring.stages;
          // Both links at once: after a failover either end may be a page this tab never linked to.
          const [first, head] = await Promise.all([
            linkTo(net, stages[0]!.peer, a.signal),
            stages.length === 1 ? undefined : linkTo(net, stages[stages.length - 1]!.peer, a.signal),
          ]).then(([f, h]) => [f, h ?? f] as const);
          progress?.linked?.();
          const session = await openRemoteSession(
            {
              requesterId: net.peerId,
              epoch: ring.epoch,
              first,
              head,
              sampler,
              stepDeadlineMs: (n) => detector.deadlineMs(n),
              now: clock.now,
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
          const off = store.subscribe((st) => onRing(st.rings[a.settings.model]));
          onRing(get().rings[a.settings.model]);
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
      const wall = (t: number) => clock.wallNow() - (clock.now() - t);
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
      failovers = shown;
      const failover = createFailoverPipeline({
        initial: targetOf(answer),
        replace: (loss) => replaceRing(net, a.settings.model, loss, a.signal, targetOf),
        detector,
        ...(o.recoveryWindowMs ? { recoveryWindowMs: o.recoveryWindowMs } : {}),
        now: clock.now,
        onLoss: (e) => {
          events.push(e);
          log.warn(
            { cause: e.cause, peer: e.lostPeer, position: e.position },
            'ring peer lost; failing over',
          );
          a.onFailover?.(shown());
        },
        onRecovered: (e) => {
          log.info({ recoveryMs: e.recoveryMs, ring: e.toRing }, 'failover done');
          a.onFailover?.(shown());
        },
      });
      pipeline = failover;
      peers = answer.stages.map((s) => s.peer);
      const latestPeers = () => failover.ring.peers;
      peersNow = latestPeers;
      if (want) {
        assertDraftAvailable({
          model: a.settings.model,
          temperature: a.settings.temperature,
          modelBytes: answer.totalBytes,
          budgetBytes: o.localMemoryBytes(),
          ...(a.settings.security !== undefined ? { security: a.settings.security } : {}),
        });
        draft = {
          pipeline: createPipeline([await draftRunner(model, want, a.signal)], clock.now),
          setting: want,
        };
      }
    } else {
      // No ring: run the whole model here when it fits.
      const budget = o.localMemoryBytes();
      if (!answer.descriptor || answer.totalBytes === undefined || answer.totalBytes > budget) {
        const missing =
          answer.missingBytes ?? (answer.totalBytes !== undefined ? answer.totalBytes - budget : undefined);
        throw new RingworkError(
          'NO_RING',
          missing !== undefined && missing > 0
            ? `No ring can serve ${a.settings.model} yet: ${(missing / 1e9).toFixed(2)} GB more peer memory is needed. Open more contributor tabs or invite peers.`
            : `No ring can serve ${a.settings.model} yet: ${answer.reason}`,
          { details: { model: a.settings.model, missingBytes: missing } },
        );
      }
      model = answer.descriptor;
      const runner = o.createRunner();
      release = () => runner.dispose();
      try {
        await runner.load(
          {
            model: { url: model.url, tokenizerUrl: model.tokenizerUrl },
            range: [0, model.units],
            weightFormat: model.weightFormat,
            contextLength: model.contextLength,
            logits: 'last',
            backend: 'auto',
          },
          { signal: a.signal },
        );
      } catch (e) {
        await release();
        throw e;
      }
      pipeline = createPipeline([runner], clock.now);
      sampler = createSampler({ temperature: a.settings.temperature, topP: a.settings.topP, seed });
      peers = [net.peerId];
      local = true;
    }
    try {
      const tokenizer = await tokenizerFor(model);
      const last = a.history[a.history.length - 1]!;
      const chat = !a.raw && tokenizer.applyChatTemplate !== undefined && !isLlama2cLocation(model.url);
      const prompt = a.prompt
        ? [...a.prompt]
        : chat
          ? tokenizer.encode(
              tokenizer.applyChatTemplate!(
                a.history.filter((m) => !m.meta?.error).map((m) => ({ role: m.role, content: m.text })),
                { addGenerationPrompt: true },
              ),
            )
          : tokenizer.encode(last.text, { bos: true });
      const steps = Math.min(model.contextLength, prompt.length - 1 + a.settings.maxTokens);
      a.onStarted?.(prompt.length);
      // The chat shows characters: byte-fallback tokens are assembled as UTF-8 (emoji, CJK), unlike
      // the CLI, which keeps llama2.c's safe_printf output (generate's pieces).
      const stream = createDecodeStream(tokenizer, chat ? prompt.slice(-1) : prompt.slice(0, 1));
      let text = '';
      let generated = 0;
      let compute = 0;
      let wall = 0;
      let decodeSteps = 0;
      const result = await generate({
        pipeline,
        tokenizer,
        prompt,
        steps,
        ...(sampler ? { sampler } : {}),
        ...(draft ? { draft: { pipeline: draft.pipeline, k: draft.setting.k } } : {}),
        stopTokens: isLlama2cLocation(model.url) ? [] : undefined,
        signal: a.signal,
        now: clock.now,
        onToken: (e) => {
          // Chat models show only the answer; completion models show the story as printed.
          if (e.position >= prompt.length) generated++;
          if (chat && e.position < prompt.length) return;
          const piece = stream.push(e.token);
          if (!piece) return;
          text += piece;
          a.onText?.(text, generated);
        },
        onStep: (e) => {
          // Decode steps: one token each; drafted, every verify lap after the prefill (position 0).
          if (draft ? e.position === 0 : e.tokens !== 1) return;
          decodeSteps++;
          compute += e.timing.stageMs.reduce((x, y) => x + y, 0);
          wall += e.timing.totalMs;
        },
      });
      text += stream.flush();
      validated?.reportWork();
      // What this request measured, for the coordinator's speed figures: the per-token wall time of
      // its decode steps (one request's speed), reported only for a ring (a local run has no ring).
      // An answer that failed over timed two rings and a recovery: no lap of either.
      // A drafted answer's laps verify several tokens each: no per-token figure of the ring.
      if (answer.type === 'ring' && !draft && decodeSteps > 0 && wall > 0 && !failovers?.().length) {
        try {
          net.signaling.send({
            type: 'ring-lap',
            ringId: answer.ringId,
            msPerToken: wall / decodeSteps,
            tokens: decodeSteps,
          });
        } catch (e) {
          log.debug({ err: e }, 'ring-lap not sent');
        }
      }
      const spec = result.speculative;
      // Per generated token (a drafted lap yields several), so the figures compare with undrafted ones.
      const perToken = draft ? result.timings.decodeTokens : decodeSteps;
      return {
        text,
        result,
        stats: {
          prefillTokPerS: result.timings.prefillTokPerS,
          decodeTokPerS: result.timings.decodeTokPerS,
          peers: peersNow?.() ?? peers,
          local,
          computeMsPerToken: perToken ? compute / perToken : 0,
          hopMsPerToken: perToken ? Math.max(0, wall - compute) / perToken : 0,
          failovers: failovers?.() ?? [],
          end:
            result.stop !== 'steps'
              ? 'end'
              : steps >= model.contextLength && prompt.length - 1 + a.settings.maxTokens > steps
                ? 'context'
                : 'max-tokens',
          contextLength: model.contextLength,
          ...(validated ? { verification: validated.verification(failoverPipeline?.failover) } : {}),
          ...(draft && spec
            ? {
                speculative: {
                  format: draft.setting.format,
                  k: draft.setting.k,
                  accepted: spec.accepted,
                  drafted: spec.drafted,
                  laps: spec.laps,
                  tokensPerLap: spec.tokensPerLap,
                },
              }
            : {}),
        },
      };
    } finally {
      await release();
    }
  };

  const ask = async (a: AskOptions): Promise<AskResult> => {
    // Right after a re-plan the coordinator may announce a ring whose stages are still loading their
    // shards (they refuse the new epoch until then), or a link may still be connecting. Until the
    // first token has streamed, such a request is retried for a while (the coordinator pushes the
    // re-planned ring meanwhile); after that a failure is the person's to see.
    // A validated request (k >= 2) makes the coordinator plan its validator rings now: their peers
    // load their shards first (18–50 s measured on a busy 2-core machine), so it waits longer — but
    // still a bounded time, then fails with the last typed error.
    const validated = (a.settings.security ?? 1) >= 2;
    const deadline =
      clock.now() + (validated ? (o.validatedRetryWindowMs ?? 60_000) : (o.retryWindowMs ?? 20_000));
    for (let attempt = 0; ; attempt++) {
      let streamed = false;
      try {
        return await askOnce({ ...a, onText: (t, n) => ((streamed = true), a.onText?.(t, n)) });
      } catch (e) {
        const retry = !streamed && !a.signal.aborted && clock.now() < deadline && isRetryableRingError(e);
        log.info({ attempt, retry, code: isRingworkError(e) ? e.code : undefined }, 'request failed');
        if (!retry) throw e;
        await clock.sleep(Math.min(2000, 250 * 2 ** attempt), a.signal);
      }
    }
  };

  /** The client the chat sends through (made at the first send: the SDK's may load lazily). */
  let client: RingChatClient | undefined;
  const chatClient = (): RingChatClient =>
    (client ??= (o.client ?? ((requester) => createRingTransportClient({ requester })))({ ask, store }));

  let current: AbortController | undefined;
  const patchMessage = (index: number, m: Partial<ChatMessage>) => {
    const messages = get().messages.slice();
    const old = messages[index];
    if (!old) return;
    messages[index] = { ...old, ...m, meta: { ...old.meta!, ...m.meta } };
    set({ messages });
  };

  return {
    store,
    async start() {
      const net = await o.network();
      subscribe(net, get().settings.model);
    },
    async stop() {
      current?.abort();
      subscribed?.offs.forEach((f) => f());
      subscribed = undefined;
      for (const l of stageLinks.values()) l.close();
      stageLinks.clear();
      const held = draftHeld;
      draftHeld = undefined;
      await held?.runner.then((r) => r.dispose()).catch(() => undefined);
      await referee.dispose();
    },
    async send(raw) {
      const text = raw.trim();
      const s = get();
      if (!text || s.busy) return;
      const history = [...s.messages, { role: 'user' as const, text }];
      const index = history.length;
      const model = s.settings.model;
      set({
        messages: [...history, { role: 'assistant', text: '', meta: { model } }],
        busy: true,
        status: 'finding a ring…',
        streaming: { index, text: '' },
      });
      const ac = new AbortController();
      current = ac;
      try {
        // Through the SDK's ring transport, as third-party pages send: one code path for both.
        const { settings } = s;
        const stream = await chatClient().chat.completions.create({
          model,
          messages: history.filter((m) => !m.meta?.error).map((m) => ({ role: m.role, content: m.text })),
          temperature: settings.temperature,
          top_p: settings.topP,
          max_tokens: settings.maxTokens,
          ...(settings.seed !== undefined ? { seed: settings.seed } : {}),
          // Stories are shown from their prompt on, as the model prints them.
          ringwork: {
            echoPrompt: true,
            ...(settings.security !== undefined ? { security: settings.security } : {}),
            ...(settings.security === 2 && settings.spot ? { spot: settings.spot } : {}),
            // The page shows the setting off (and why) while the temperature is above 0.
            ...(settings.draft && settings.temperature === 0 ? { draft: settings.draft } : {}),
          },
          stream: true,
          signal: ac.signal,
        });
        let text = '';
        let info: RingworkChunkInfo | undefined;
        for await (const c of stream) {
          const choice = c.choices[0];
          if (c.ringwork?.failovers && !choice?.finish_reason) {
            const f = c.ringwork.failovers;
            const recovering = f.some((x) => x.recoveredAt === undefined);
            set({
              streaming: { text: '', ...get().streaming, index, failovers: f },
              status: recovering
                ? 'a ring peer left mid-answer; re-forming the ring and replaying…'
                : undefined,
            });
          }
          if (choice?.delta.content) {
            text += choice.delta.content;
            const tokens = c.ringwork?.generated ?? get().streaming?.tokens;
            set({ streaming: { ...get().streaming, index, text, tokens }, status: undefined });
          }
          if (choice?.finish_reason) info = c.ringwork;
        }
        patchMessage(index, { text, meta: { model, ...metaOf(info), done: true } });
      } catch (e) {
        patchMessage(index, {
          text: get().streaming?.text ?? '',
          meta: {
            model,
            error: e instanceof Error ? e.message : String(e),
            done: true,
            ...(get().streaming?.failovers ? { failovers: get().streaming!.failovers } : {}),
          },
        });
      } finally {
        if (current === ac) current = undefined;
        set({ busy: false, status: undefined, streaming: undefined });
      }
    },
    abort: () => current?.abort(),
    clear: () => set({ messages: [] }),
    setSettings(p) {
      set({ settings: { ...get().settings, ...p } });
      if (p.model && subscribed) subscribe(subscribed.net, p.model);
    },
    ask,
  };
}
