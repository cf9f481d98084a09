/**
 * The SDK's ring transport (`createRingworkClient({ via: 'ring' })`): the same OpenAI-shaped
 * surface as the HTTP client (shared/api/ringwork-client.ts), answered by a requester of the ring
 * in this page rather than by the server. The requester (shared/app/requester.ts) asks the
 * coordinator for a ring, links to its first stage and head over WebRTC, runs the `ask` loop, fails
 * over and validates at security level k; this module turns its callbacks into OpenAI chunks and
 * answers. The server is on no token's path. The Chat page sends through it too, so the page and
 * third-party code share one code path.
 *
 * What the ring transport adds to OpenAI's shape is in the `ringwork` field (openai-wire.ts):
 * tokens generated so far on every content chunk, failovers as they happen, and the whole
 * {@link RingworkAnswerInfo} (security level, verification, peers and ranges, speed, why it ended)
 * on the chunk that carries `finish_reason`. `max_tokens` beyond the context is clamped (the answer
 * then ends with `stats.end === 'context'`), unlike the HTTP API, which refuses it.
 */
import { z } from 'zod';
import type { AnswerFailover, ChatSettings } from '../app/chat-history.js';
import type { AskOptions, AskResult, AskTurn, ChatState } from '../app/requester-types.js';
import { MAX_DRAFT_K } from '../app/draft-setting.js';
import { isRingworkError, RingworkError } from '../errors.js';
import type {
  ApiUsage,
  ChatCompletion,
  ChatCompletionChunk,
  Completion,
  FinishReason,
  RingworkAnswerInfo,
  RingworkChunkInfo,
} from './openai-wire.js';
import type {
  ApiStream,
  ChatCreateParams,
  CompletionCreateParams,
  RingworkClient,
} from './ringwork-client.js';
import { createStopMatcher } from './stop-matcher.js';

/** What the ring transport needs of a requester (shared/app/requester.ts's `Requester` has it). */
export interface RingRequesterPort {
  /** Answers the last turn of a conversation on the ring (retrying before the first token). */
  ask(o: AskOptions): Promise<AskResult>;
  /** The coordinator's latest ring per model: the layer ranges of the peers that served. */
  readonly store: { getState(): Pick<ChatState, 'rings'> };
}

/** Options of {@link createRingTransportClient}. */
export interface RingTransportOptions {
  requester: RingRequesterPort;
  /**
   * `models.list()`: the ring has no catalogue of its own, so the SDK passes its HTTP client's
   * (`GET /v1/models`). Absent: `models.list()` fails with `API_UNSUPPORTED`.
   */
  models?: RingworkClient['models'];
  /** Wall clock, ms since the epoch (answers' `created`). */
  now?: () => number;
  /** A fresh answer id (default: random). */
  newId?: () => string;
}

const MAX_TOKENS_UNSET = 1_000_000;

const stopSchema = z.union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).max(4)]);
/** The request fields both endpoints share; other fields are ignored, as the HTTP API ignores them. */
const common = {
  model: z.string().min(1).max(200),
  stream: z.boolean().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).loose().nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullish(),
  stop: stopSchema.nullish(),
  n: z.literal(1).nullish(),
  ringwork: z
    .object({
      security: z.number().int().min(1).max(3).optional(),
      /** Spot-check mode of security level 2 (see `securityRequestSchema.spot`); needs `security: 2`. */
      spot: z
        .object({ f: z.number().gt(0).max(1).optional() })
        .strict()
        .optional(),
      echoPrompt: z.boolean().optional(),
      /** Speculative decoding: draft locally with a copy of the model (greedy, small models only). */
      draft: z
        .object({ format: z.enum(['f32', 'q8', 'q4']), k: z.number().int().min(1).max(MAX_DRAFT_K) })
        .strict()
        .optional(),
    })
    .strict()
    .refine((w) => w.spot === undefined || w.security === 2, {
      message: 'ringwork.spot is a mode of security level 2: send it with ringwork.security 2',
      path: ['spot'],
    })
    .optional(),
};
const chatSchema = z
  .object({
    ...common,
    messages: z
      .array(
        z
          .object({
            role: z.enum(['system', 'developer', 'user', 'assistant']),
            content: z.string().max(1_000_000),
          })
          .loose(),
      )
      .min(1, 'messages must hold at least one message')
      .max(1024),
  })
  .loose()
  .refine((r) => r.messages.length === 0 || r.messages[r.messages.length - 1]!.role === 'user', {
    path: ['messages'],
    message: 'the last message must be the user’s',
  });
const completionSchema = z.object({ ...common, prompt: z.string().min(1).max(1_000_000) }).loose();

type ChatRequest = z.infer<typeof chatSchema>;
type CompletionRequest = z.infer<typeof completionSchema>;

/** One request, as the ask loop takes it. */
interface Job {
  kind: 'chat' | 'text';
  model: string;
  settings: ChatSettings;
  history: AskTurn[];
  raw: boolean;
  echo: boolean;
  stops: string[];
  stream: boolean;
  includeUsage: boolean;
}

/** What a running answer reports, in order. */
type AnswerEvent =
  | { type: 'started' }
  | { type: 'text'; text: string; generated: number }
  | { type: 'failover'; failovers: AnswerFailover[] };

/** How an answer ended. */
interface AnswerEnd {
  text: string;
  finish: FinishReason;
  usage: ApiUsage;
  ringwork: RingworkAnswerInfo;
}

/** The request checked at the boundary; a bad one is `INVALID_ARGUMENT` (`n` > 1: `API_UNSUPPORTED`). */
function parse<T>(schema: z.ZodType<T>, p: unknown): T {
  const r = schema.safeParse(p);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const param = issue.path.map(String).join('.') || undefined;
  throw new RingworkError(
    param === 'n' ? 'API_UNSUPPORTED' : 'INVALID_ARGUMENT',
    param === 'n' ? 'n must be 1: Ringwork returns one choice per request.' : `${param}: ${issue.message}`,
    { details: { param: param ?? null } },
  );
}

function jobOf(kind: 'chat', r: ChatRequest): Job;
function jobOf(kind: 'text', r: CompletionRequest): Job;
function jobOf(kind: 'chat' | 'text', r: ChatRequest | CompletionRequest): Job {
  const history: AskTurn[] =
    kind === 'chat'
      ? (r as ChatRequest).messages.map((m) => ({
          role: m.role === 'developer' ? 'system' : m.role,
          text: m.content,
        }))
      : [{ role: 'user', text: (r as CompletionRequest).prompt }];
  return {
    kind,
    model: r.model,
    settings: {
      model: r.model,
      // OpenAI's defaults, as the HTTP API has them.
      temperature: r.temperature ?? 1,
      topP: r.top_p ?? 1,
      maxTokens: r.max_tokens ?? MAX_TOKENS_UNSET,
      ...(r.seed != null ? { seed: r.seed } : {}),
      ...(r.ringwork?.security !== undefined ? { security: r.ringwork.security } : {}),
      ...(r.ringwork?.spot ? { spot: r.ringwork.spot } : {}),
      ...(r.ringwork?.draft ? { draft: r.ringwork.draft } : {}),
    },
    history,
    raw: kind === 'text',
    echo: r.ringwork?.echoPrompt === true,
    stops: r.stop == null ? [] : typeof r.stop === 'string' ? [r.stop] : r.stop,
    stream: r.stream === true,
    includeUsage: r.stream_options?.include_usage === true,
  };
}

interface AbortControllerLike {
  readonly signal: AbortSignal;
  abort(reason?: unknown): void;
}

/** A controller chained to the caller's signal, so `ApiStream.abort` works without one. */
function controller(signal: AbortSignal | undefined): AbortControllerLike {
  const Ctor = (globalThis as unknown as { AbortController: new () => AbortControllerLike }).AbortController;
  const ctl = new Ctor();
  if (signal?.aborted) ctl.abort(signal.reason);
  else signal?.addEventListener('abort', () => ctl.abort(signal.reason), { once: true });
  return ctl;
}

const abortedError = (cause: unknown): RingworkError =>
  isRingworkError(cause) && cause.code === 'ABORTED'
    ? cause
    : new RingworkError('ABORTED', 'The answer was aborted.', { cause });

/** Creates a client whose answers come from `o.requester`'s ring. */
export function createRingTransportClient(o: RingTransportOptions): RingworkClient {
  const now = o.now ?? (() => Date.now());
  const newId = o.newId ?? (() => Math.random().toString(36).slice(2, 14));

  /** Where the peers that served sit: their layer ranges in the latest ring (validators included). */
  const infoOf = (model: string, r: AskResult): RingworkAnswerInfo => {
    const known = o.requester.store.getState().rings[model];
    const ranges = new Map<string, [number, number]>();
    if (known?.type === 'ring')
      for (const ring of [known, ...(known.validators ?? [])])
        for (const s of ring.stages) ranges.set(s.peer, [s.range[0], s.range[1]]);
    const units = known?.type === 'ring' ? known.model.units : known?.descriptor?.units;
    const v = r.stats.verification;
    return {
      securityLevel: v?.k ?? 1,
      validated: (v?.k ?? 1) >= 2,
      path: r.stats.local ? 'local' : 'ring',
      servedBy: r.stats.peers.flatMap((peer) => {
        const range = r.stats.local
          ? units !== undefined
            ? ([0, units] as [number, number])
            : undefined
          : ranges.get(peer);
        return range ? [{ peer, range }] : [];
      }),
      ...(known?.type === 'ring' && !r.stats.local ? { ringId: known.ringId } : {}),
      peers: r.stats.peers,
      failovers: r.stats.failovers,
      ...(v ? { verification: v } : {}),
      stats: {
        prefillTokPerS: r.stats.prefillTokPerS,
        decodeTokPerS: r.stats.decodeTokPerS,
        computeMsPerToken: r.stats.computeMsPerToken,
        hopMsPerToken: r.stats.hopMsPerToken,
        end: r.stats.end,
        contextLength: r.stats.contextLength,
        ...(r.stats.speculative ? { speculative: r.stats.speculative } : {}),
      },
    };
  };

  /**
   * Runs one answer on the ring: pieces as they stream (the prompt as printed only with `echo`; stop
   * strings held back and cut), failovers as they happen. A stop string ends the answer normally.
   */
  const answer = async (
    job: Job,
    ctl: AbortControllerLike,
    on: (e: AnswerEvent) => void,
  ): Promise<AnswerEnd> => {
    const matcher = createStopMatcher(job.stops);
    // A stop string ends the ask loop, not the caller's stream: its own controller.
    const run = controller(ctl.signal);
    let shown = '';
    let text = '';
    let generated = 0;
    let promptTokens = 0;
    let started = false;
    let hitStop = false;
    const emit = (piece: string, n: number) => {
      if (!piece) return;
      text += piece;
      on({ type: 'text', text: piece, generated: n });
    };
    /** A new piece of the printed text; generated text goes through the stop strings. */
    const push = (piece: string, n: number) => {
      // Before the first generated token the text is the prompt as printed (completion models).
      if (n === 0) return job.echo ? emit(piece, 0) : undefined;
      if (hitStop) return;
      const r = matcher.push(piece);
      emit(r.emit, n);
      if (r.stopped) {
        hitStop = true;
        run.abort(new RingworkError('ABORTED', 'A stop string ended the answer.'));
      }
    };
    let r: AskResult | undefined;
    try {
      r = await o.requester.ask({
        settings: job.settings,
        history: job.history,
        raw: job.raw,
        signal: run.signal,
        onStarted: (n) => {
          promptTokens = n;
          if (!started) on({ type: 'started' });
          started = true;
        },
        onText: (full, n) => {
          const piece = full.slice(shown.length);
          shown = full;
          generated = n;
          push(piece, n);
        },
        onFailover: (failovers) => on({ type: 'failover', failovers }),
      });
    } catch (e) {
      if (!hitStop) {
        if (ctl.signal.aborted) throw abortedError(ctl.signal.reason ?? e);
        if (isRingworkError(e)) throw e;
        throw new RingworkError('RUNNER_BACKEND_FAILED', 'The answer failed in this page.', { cause: e });
      }
    }
    if (r && !hitStop) {
      // The decoder's held-back bytes, then what the stop strings held back.
      push(r.text.slice(shown.length), Math.max(generated, 1));
      if (!hitStop) emit(matcher.flush(), generated);
    }
    const completion = r ? r.result.tokens.length - r.result.promptTokens : generated;
    const prompt = r?.result.promptTokens ?? promptTokens;
    return {
      text,
      finish: hitStop || (r && r.result.stop !== 'steps') ? 'stop' : 'length',
      usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
      ringwork: r
        ? infoOf(job.model, r)
        : { securityLevel: job.settings.security ?? 1, validated: false, path: 'ring', servedBy: [] },
    };
  };

  /** A streamed answer: events queue as they come; `create` resolves once the ring has started it. */
  const stream = async <T>(
    job: Job,
    ctl: AbortControllerLike,
    chunk: (event: AnswerEvent | null, info?: RingworkChunkInfo, finish?: FinishReason) => T | undefined,
    usageChunk: (end: AnswerEnd) => T,
  ): Promise<ApiStream<T>> => {
    const queue: T[] = [];
    let done = false;
    let error: unknown;
    let wake: (() => void) | undefined;
    const notify = () => {
      wake?.();
      wake = undefined;
    };
    ctl.signal.addEventListener('abort', notify, { once: true });
    let onFirst!: () => void;
    const first = new Promise<void>((resolve) => (onFirst = resolve));
    const put = (c: T | undefined) => {
      if (c === undefined) return;
      queue.push(c);
      notify();
    };
    answer(job, ctl, (e) => {
      if (e.type === 'started') onFirst();
      const info =
        e.type === 'text'
          ? { generated: e.generated }
          : e.type === 'failover'
            ? { failovers: e.failovers }
            : undefined;
      put(chunk(e, info));
    }).then(
      (end) => {
        put(chunk(null, end.ringwork, end.finish));
        if (job.includeUsage) put(usageChunk(end));
        done = true;
        notify();
        onFirst();
      },
      (e: unknown) => {
        error = e;
        done = true;
        notify();
        onFirst();
      },
    );
    await first;
    // Failed before it started (no ring, bad settings): `create` fails, as the HTTP API's does.
    if (error !== undefined && queue.length === 0) throw error;
    let iterated = false;
    async function* chunks(): AsyncGenerator<T> {
      try {
        for (;;) {
          // Chunks already queued when the caller aborted are not handed out: an abort ends the stream.
          if (ctl.signal.aborted && !done) throw abortedError(ctl.signal.reason);
          const next = queue.shift();
          if (next !== undefined) {
            yield next;
            continue;
          }
          if (done) {
            if (error !== undefined) throw error;
            return;
          }
          await new Promise<void>((resolve) => (wake = resolve));
        }
      } finally {
        // Leaving the loop early releases the ring session.
        if (!done) ctl.abort(new RingworkError('ABORTED', 'The stream was left before its end.'));
      }
    }
    return {
      abort: (reason?: unknown) => ctl.abort(reason),
      [Symbol.asyncIterator]: () => {
        if (iterated)
          throw new RingworkError('INVALID_ARGUMENT', 'A streamed answer can be iterated only once.');
        iterated = true;
        return chunks();
      },
    };
  };

  const chatCreate = async (
    p: ChatCreateParams,
  ): Promise<ApiStream<ChatCompletionChunk> | ChatCompletion> => {
    const { signal, ...body } = p;
    const job = jobOf('chat', parse(chatSchema, body));
    const ctl = controller(signal);
    const id = `chatcmpl-${newId()}`;
    const created = Math.floor(now() / 1000);
    if (job.stream)
      return stream<ChatCompletionChunk>(
        job,
        ctl,
        (e, info, finish) => {
          // The first chunk names the role, as OpenAI's (and the HTTP API's) does.
          const delta: ChatCompletionChunk['choices'][number]['delta'] =
            e?.type === 'started'
              ? { role: 'assistant', content: '' }
              : e?.type === 'text'
                ? { content: e.text }
                : {};
          return {
            id,
            object: 'chat.completion.chunk',
            created,
            model: job.model,
            choices: [{ index: 0, delta, logprobs: null, finish_reason: finish ?? null }],
            ...(info ? { ringwork: info } : {}),
          };
        },
        (end) => ({
          id,
          object: 'chat.completion.chunk',
          created,
          model: job.model,
          choices: [],
          usage: end.usage,
          ringwork: end.ringwork,
        }),
      );
    const end = await answer(job, ctl, () => {});
    return {
      id,
      object: 'chat.completion',
      created,
      model: job.model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: end.text, refusal: null },
          logprobs: null,
          finish_reason: end.finish,
        },
      ],
      usage: end.usage,
      ringwork: end.ringwork,
    };
  };

  const completionCreate = async (p: CompletionCreateParams): Promise<ApiStream<Completion> | Completion> => {
    const { signal, ...body } = p;
    const job = jobOf('text', parse(completionSchema, body));
    const ctl = controller(signal);
    const id = `cmpl-${newId()}`;
    const created = Math.floor(now() / 1000);
    const of = (text: string, finish: FinishReason | null, info?: RingworkChunkInfo): Completion => ({
      id,
      object: 'text_completion',
      created,
      model: job.model,
      choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
      ...(info ? { ringwork: info } : {}),
    });
    if (job.stream)
      return stream<Completion>(
        job,
        ctl,
        // A completion has no role chunk: its stream starts with text (or a failover).
        (e, info, finish) =>
          e?.type === 'started' ? undefined : of(e?.type === 'text' ? e.text : '', finish ?? null, info),
        (end) => ({ ...of('', null), choices: [], usage: end.usage, ringwork: end.ringwork }),
      );
    const end = await answer(job, ctl, () => {});
    return { ...of(end.text, end.finish, end.ringwork), usage: end.usage };
  };

  return {
    chat: { completions: { create: chatCreate as RingworkClient['chat']['completions']['create'] } },
    completions: { create: completionCreate as RingworkClient['completions']['create'] },
    models: o.models ?? {
      list: () =>
        Promise.reject(
          new RingworkError('API_UNSUPPORTED', 'This ring client was given no server to list models from.'),
        ),
    },
  };
}
