/**
 * Chatting: follow the coordinator's ring for a model (one `ring-request` subscribes; changes are
 * pushed), connect to the ring's first stage (which embeds the token ids) and its head (which
 * samples), and drive the same `generate` loop the CLI uses — so the ring's tokens equal a single
 * device's. The requester tokenizes and detokenizes; with no ring it runs the whole model itself
 * when it fits. A plain object with a zustand vanilla store; the browser injects its WebRTC network,
 * Web Worker runner, tokenizer loader and sessionStorage.
 *
 * Around one concept each: following the coordinator's rings (requester-rings.ts), links to ring
 * stages (requester-links.ts), a k = 1 answer's failover pipeline (requester-ring-pipeline.ts), a
 * validated answer (validated-ring.ts, validated-failover.ts), the draft runner
 * (requester-draft.ts); this file answers (`ask`) and keeps the chat (`send`).
 */
import { createStore, type StoreApi } from 'zustand/vanilla';
import { persist, type PersistStorage } from 'zustand/middleware';
import { HISTORY_KEY, historyStorage, type AnswerFailover, type ChatMessage } from './chat-history.js';
import { RingworkError, isRingworkError } from '../errors.js';
import { isLlama2cLocation } from '../model/open-model.js';
import type { ModelDescriptor } from '../protocol/signaling.js';
import { isRetryableRingError } from '../ring/retry.js';
import { generate } from '../runtime/generate.js';
import { createPipeline, type Pipeline } from '../runtime/pipeline.js';
import { createSampler, type Sampler } from '../runtime/sampler.js';
import { createDecodeStream } from '../tokenizer/decode-stream.js';
import type { Tokenizer } from '../tokenizer/types.js';
import type {
  AskOptions,
  AskResult,
  ChatState,
  Requester,
  RequesterOptions,
  RingChatClient,
} from './requester-types.js';
import { silentLogger, systemAppClock } from './network-port.js';
import { createDraftRunnerCache } from './requester-draft.js';
import { createStageLinks } from './requester-links.js';
import { openRingPipeline, ringLoopFor } from './requester-ring-pipeline.js';
import type { RingLoop } from '../ring/ring-protocol.js';
import { createRingFollower } from './requester-rings.js';
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

  /** The referee of validated answers (k >= 2): its runners are kept across answers and retries. */
  const referee = createRefereeCache(o.createRunner);
  const rings = createRingFollower({
    store,
    ...(o.ringTimeoutMs !== undefined ? { ringTimeoutMs: o.ringTimeoutMs } : {}),
    ...(o.stallGraceMs !== undefined ? { stallGraceMs: o.stallGraceMs } : {}),
  });
  const { subscribe, ringFor, ringChange } = rings;
  const links = createStageLinks(o);
  const linkTo = links.linkTo;
  const drafts = createDraftRunnerCache(o.createRunner);

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
    const answer = await ringFor(a.settings.model, a.signal, a.settings.security);
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
    /** A plain k = 1 ring answer's loop mode, set once its length is known (sessions open later). */
    let loop: RingLoop | undefined;
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
      const ring = openRingPipeline({
        answer,
        net,
        model: a.settings.model,
        temperature: a.settings.temperature,
        topP: a.settings.topP,
        seed,
        linkTo: (peer) => linkTo(net, peer, a.signal),
        rings,
        store,
        clock,
        log,
        signal: a.signal,
        ...(o.stepTimeoutMs !== undefined ? { stepTimeoutMs: o.stepTimeoutMs } : {}),
        ...(o.recoveryWindowMs ? { recoveryWindowMs: o.recoveryWindowMs } : {}),
        ...(a.onFailover ? { onFailover: a.onFailover } : {}),
        loop: () => loop,
      });
      failovers = ring.failovers;
      pipeline = ring.pipeline;
      peers = answer.stages.map((s) => s.peer);
      peersNow = ring.peersNow;
      if (want) {
        assertDraftAvailable({
          model: a.settings.model,
          temperature: a.settings.temperature,
          modelBytes: answer.totalBytes,
          budgetBytes: o.localMemoryBytes(),
          ...(a.settings.security !== undefined ? { security: a.settings.security } : {}),
        });
        draft = {
          pipeline: createPipeline([await drafts.get(model, want, a.signal)], clock.now),
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
      const stopTokens = isLlama2cLocation(model.url) ? [] : undefined;
      // Loop mode (the head feeds stage 0) only where nothing needs this tab between laps: not a
      // validated answer (it checks every step first), not a drafted one (it builds verify steps).
      if (answer.type === 'ring' && !answer.validators?.length && !draft && o.loop !== false)
        loop = ringLoopFor(steps, [tokenizer.bosId, ...(stopTokens ?? tokenizer.eosIds)]);
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
        stopTokens,
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
      if (answer.type === 'ring') {
        // One report per answer on a ring (a local run has none): the tokens it generated, the
        // requester's usage, the same count as the text's tokens and the API's completion_tokens.
        // It names the ring the coordinator sent last (after a failover, the one that finished).
        const now = get().rings[a.settings.model];
        const ringId = now?.type === 'ring' ? now.ringId : answer.ringId;
        // With it, what this request measured for the coordinator's speed figures: the per-token
        // wall time of its decode steps (one request's speed). An answer that failed over timed two
        // rings and a recovery, and a drafted answer's laps verify several tokens each: no timing.
        const timed =
          !draft && decodeSteps > 0 && wall > 0 && !failovers?.().length && !failoverPipeline?.failover;
        try {
          net.signaling.send({
            type: 'ring-lap',
            ringId,
            ...(timed && ringId === answer.ringId
              ? { msPerToken: wall / decodeSteps, tokens: decodeSteps }
              : {}),
            generated: { v: 1, tokens: generated },
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
      rings.stop();
      links.close();
      await drafts.dispose();
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
      if (p.model) rings.follow(p.model);
    },
    ask,
  };
}
