/**
 * The OpenAI API's ring path: the server is a requester of the ring, running the very `ask` loop of
 * the Chat page (shared/app/requester.ts) — the ring's tokens equal the Chat page's, failover and
 * retries included. Its network is in-process: one virtual requester peer in the coordinator (ring
 * answers and pushes arrive through {@link RingDriver.deliver}; `ring-stalled` and `ring-lap` go to
 * the coordinator as any requester's), and links to the first stage and the head carried over those
 * stages' signaling sockets ({@link ApiLinkHub}).
 *
 * Each API request is its own requester (its own id, links and sessions), so the stages' per-
 * requester limits count per request, and ending a request closes its links: the stages free its
 * sessions at once.
 *
 * It runs on the event loop, not in a worker thread: per token the server only moves a few bytes of
 * token ids and decodes one piece (the head samples; no model runs here). The tokenizer is opened
 * once per model and encodes each prompt once.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { NetworkHandle, SignalingPort } from '../../../shared/app/network-port.js';
import { createRequester } from '../../../shared/app/requester.js';
import { RingworkError, isRingworkError } from '../../../shared/errors.js';
import type { ServerMessage } from '../../../shared/protocol/signaling.js';
import type { Tokenizer } from '../../../shared/tokenizer/types.js';
import { createListeners, type Listeners } from '../../../shared/transport/emitter.js';
import type { CatalogModel } from '../catalog.js';
import type { Coordinator } from '../coordinator.js';
import { openNodeModel } from '../model/open-node-model.js';
import type { ApiLinkHub } from './api-link-hub.js';
import type { LocalGenerateHandlers, LocalGenerateRequest, LocalGenerateResult } from './local-engine.js';
import type { EngineInput } from './local-engine-protocol.js';

/** What the driver needs from the running server. */
export interface RingDriverDeps {
  coordinator: Pick<Coordinator, 'addPeer' | 'requestRing' | 'reportStall' | 'reportLap' | 'getRing'>;
  hub: ApiLinkHub;
  catalog: readonly CatalogModel[];
  /** The server checks the peers a `ring-stalled` report names (a ping; evicts the silent ones). */
  probe?: (peerId: string) => void;
  /** The virtual requester peer's id (default: a fresh one). */
  peerId?: string;
  logger: Logger;
}

/** Who served a ring answer. */
export interface RingServed {
  peers: string[];
  ringId: string;
  stages: { peer: string; range: [number, number] }[];
}

/** One generation through a ring (the local engine's request and result, plus who served it). */
export interface RingDriver {
  /** The coordinator's peer id of the API requester. */
  readonly peerId: string;
  /** A message the coordinator sends to the API requester (rings, no-rings). */
  deliver(msg: ServerMessage): void;
  /** True when a ring serves the model now. */
  serves(modelId: string): boolean;
  generate(
    req: LocalGenerateRequest & { modelId: string },
    h: LocalGenerateHandlers,
  ): Promise<LocalGenerateResult & { served: RingServed }>;
  /** Ends every running generation; safe twice. */
  stop(): void;
}

/** Renders the API's input as the local engine does: the chat template when the model has one. */
function encodePrompt(tok: Tokenizer, input: EngineInput): number[] {
  if (input.kind === 'chat' && tok.applyChatTemplate)
    return tok.encode(tok.applyChatTemplate(input.messages, { addGenerationPrompt: true }));
  const text = input.kind === 'text' ? input.text : input.messages.map((m) => m.content).join('\n');
  return tok.encode(text, { bos: true });
}

/** Creates the driver and registers its requester peer with the coordinator. */
export function createRingDriver(deps: RingDriverDeps): RingDriver {
  const { coordinator, hub, logger } = deps;
  const peerId = deps.peerId ?? `p_${randomBytes(12).toString('base64url')}`;
  coordinator.addPeer(peerId, ['requester']);
  const listeners = new Map<string, Listeners<unknown>>();
  const running = new Set<AbortController>();
  const tokenizers = new Map<string, Promise<Tokenizer>>();

  const tokenizerFor = (modelId: string): Promise<Tokenizer> => {
    let t = tokenizers.get(modelId);
    if (!t) {
      const m = deps.catalog.find((c) => c.descriptor.id === modelId);
      if (!m) return Promise.reject(new RingworkError('API_MODEL_NOT_FOUND', `No model "${modelId}" here.`));
      const loc = m.location ?? { url: m.descriptor.url, tokenizerUrl: m.descriptor.tokenizerUrl };
      t = openNodeModel(loc).then((o) => o.loadTokenizer());
      t.catch(() => tokenizers.delete(modelId));
      tokenizers.set(modelId, t);
    }
    return t;
  };

  /** The coordinator as a signaling channel, shared by every request's requester. */
  const signaling: SignalingPort = {
    send(m) {
      switch (m.type) {
        case 'ring-request':
          coordinator.requestRing(peerId, m.model);
          return;
        case 'ring-stalled': {
          const { type: _t, ...stall } = m;
          for (const p of coordinator.reportStall(peerId, stall)) deps.probe?.(p);
          return;
        }
        case 'ring-lap':
          // Timing only: the API's usage is counted per key from the answer itself.
          if (m.msPerToken !== undefined && m.tokens !== undefined)
            coordinator.reportLap(peerId, { ringId: m.ringId, msPerToken: m.msPerToken, tokens: m.tokens });
          return;
        default:
          logger.debug({ type: m.type }, 'api requester: message not for the coordinator');
      }
    },
    on(type, h) {
      let l = listeners.get(type);
      if (!l) listeners.set(type, (l = createListeners()));
      return l.add(h as (m: unknown) => void);
    },
  };

  return {
    peerId,
    deliver(msg) {
      listeners.get(msg.type)?.emit(msg);
    },
    serves: (modelId) => coordinator.getRing(modelId) !== null,
    async generate(req, h) {
      const ctl = new AbortController();
      const onAbort = () => ctl.abort(h.signal.reason);
      if (h.signal.aborted) throw new RingworkError('ABORTED', 'The request was aborted.');
      h.signal.addEventListener('abort', onAbort, { once: true });
      running.add(ctl);
      const requesterId = `api-${randomBytes(12).toString('base64url')}`;
      const net: NetworkHandle = { signaling, transport: hub.transportFor(requesterId), peerId: requesterId };
      const requester = createRequester({
        network: async () => net,
        createRunner: () => {
          throw new RingworkError('NO_RING', 'The API does not run models on the ring path.');
        },
        openTokenizer: (m) => tokenizerFor(m.id),
        // No local run: without a ring the API answers 503 (or the local engine serves it).
        localMemoryBytes: () => 0,
        seed: () => req.seed,
        // A ring whose stages are still loading their shards answers "not serving yet": an API
        // client waits for it longer than a person at the Chat page would.
        retryWindowMs: 60_000,
        logger: {
          debug: (o, s) => logger.debug(o, s),
          info: (o, s) => logger.debug(o, s),
          warn: (o, s) => logger.warn(o, s),
          error: (o, s) => logger.error(o, s),
        },
      });
      try {
        const tok = await tokenizerFor(req.modelId);
        const prompt = encodePrompt(tok, req.input);
        // llama2.c's loop: N new tokens need prompt + N - 1 positions.
        const room = req.contextLength - prompt.length + 1;
        if (room < 1 || (req.maxTokens !== null && req.maxTokens > room))
          throw new RingworkError(
            'API_CONTEXT_EXCEEDED',
            `The prompt is ${prompt.length} tokens and this model's context is ${req.contextLength}: ` +
              (room < 1 ? 'shorten the prompt.' : `max_tokens may be at most ${room}.`),
            {
              details: { param: 'max_tokens', promptTokens: prompt.length, contextLength: req.contextLength },
            },
          );
        h.onStarted?.(prompt.length);
        let shown = '';
        let generated = 0;
        const r = await requester.ask({
          settings: {
            model: req.modelId,
            temperature: req.temperature,
            topP: req.topP,
            maxTokens: req.maxTokens ?? room,
            seed: req.seed,
          },
          history: [{ role: 'user', text: '' }],
          prompt,
          signal: ctl.signal,
          onText: (text, n) => {
            // A completion model's text starts with the prompt as printed: only generated pieces count.
            const piece = text.slice(shown.length);
            shown = text;
            if (n > generated) {
              generated = n;
              h.onToken(n, piece);
            }
          },
        });
        const ring = coordinator.getRing(req.modelId);
        return {
          stop: r.result.stop,
          promptTokens: prompt.length,
          completionTokens: generated,
          served: {
            peers: r.stats.peers,
            ringId: ring?.ringId ?? '',
            stages: (ring?.stages ?? []).map((s) => ({ peer: s.peer, range: [s.range[0], s.range[1]] })),
          },
        };
      } catch (e) {
        if (ctl.signal.aborted) throw new RingworkError('ABORTED', 'The request was aborted.', { cause: e });
        // No ring after all (it went away between the check and the request): 503, saying what is missing.
        if (isRingworkError(e) && e.code === 'NO_RING')
          throw new RingworkError('API_NO_CAPACITY', e.message, { details: e.details, cause: e });
        throw e;
      } finally {
        h.signal.removeEventListener('abort', onAbort);
        running.delete(ctl);
        // Closing its links frees the request's sessions on every stage at once.
        await requester.stop();
      }
    },
    stop() {
      for (const c of [...running]) c.abort(new RingworkError('ABORTED', 'The server is stopping.'));
    },
  };
}
