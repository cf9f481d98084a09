/**
 * The Ringwork API client: `createRingworkClient({ server, apiKey })` with
 * `chat.completions.create`, `completions.create` and `models.list`, in the shape of OpenAI's client
 * (and WebLLM's engine): a streamed answer is an async iterator of OpenAI-shaped chunks. It is what
 * the server serves to other sites as the browser SDK (`/sdk/ringwork.js`, built from
 * web/src/sdk/ringwork.ts), and it runs in Node as well (tests, tools).
 *
 * It reads the API through the same wire module the server writes it with (openai-wire.ts, sse.ts),
 * so every failure is one {@link RingworkError} whose `code` is the server's: `API_RATE_LIMITED`,
 * `API_UNAUTHORIZED`, ... as the server sent it, `ABORTED` when the caller's signal fired,
 * `API_UNREACHABLE` when no answer could be read (down, or a browser refused it under CORS), and
 * `API_BAD_RESPONSE` when an answer broke off or is not the API's.
 */
import { RingworkError } from '../errors.js';
import {
  apiAnswerSchema,
  apiErrorFromBody,
  apiModelListSchema,
  type ApiChatMessage,
  type ApiModelList,
  type ChatCompletion,
  type ChatCompletionChunk,
  type Completion,
} from './openai-wire.js';
import { readSseData, type ByteStreamLike } from './sse.js';

/** The `fetch` response surface the client uses (browsers' and Node's `Response` satisfy it). */
export interface ApiFetchResponse {
  ok: boolean;
  status: number;
  headers: { get(name: string): string | null };
  body: ByteStreamLike | null;
  text(): Promise<string>;
}

/** A minimal `fetch` signature so shared/ needs no DOM types; `globalThis.fetch` satisfies it. */
export type ApiFetch = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string; signal?: AbortSignal },
) => Promise<ApiFetchResponse>;

/** Options of {@link createRingworkClient}. */
export interface RingworkClientOptions {
  /** The Ringwork server's base URL, e.g. `https://ringwork.example` (the API is under `/v1`). */
  server: string;
  /** The API key (`Authorization: Bearer`); omit only where the server allows anonymous use. */
  apiKey?: string;
  /** The fetch implementation (default `globalThis.fetch`). */
  fetch?: ApiFetch;
}

/** Sampling options both endpoints share; the server validates them and refuses what it cannot honour. */
export interface ApiSamplingParams {
  model: string;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  /** Streamed answers end with a chunk that carries `usage` (and `ringwork`). */
  stream_options?: { include_usage?: boolean };
  /** Aborts the request; a stream being read then ends with `ABORTED` and the server stops generating. */
  signal?: AbortSignal;
  /**
   * Ringwork's own options. Only the ring transport (`via: 'ring'`) takes them; the HTTP API
   * refuses them with `API_UNSUPPORTED` rather than answer at a lower security level than asked.
   */
  ringwork?: RingworkRequestOptions;
}

/** Ringwork's own request options (the ring transport's). */
export interface RingworkRequestOptions {
  /**
   * Security level k (1–3): rings that run every step side by side and are compared. Absent: the
   * server's default.
   */
  security?: number;
  /**
   * With `security: 2`: spot-check mode — the validator ring re-runs only a sampled fraction of
   * the steps, at least `f` (the coordinator's rate for the ring's peers applies when higher).
   */
  spot?: { f?: number };
  /**
   * For a completion model (no chat template, e.g. stories260K): the streamed text starts with the
   * prompt as the model prints it, as the Chat page shows stories. Chat models ignore it.
   */
  echoPrompt?: boolean;
  /**
   * Speculative decoding (the ring transport only): this page drafts up to `k` tokens with a copy
   * of the model in `format` (q4) and the ring verifies them in one lap. Greedy (`temperature: 0`)
   * and small models only (shared/app/draft-setting.ts); else the answer fails with
   * `SPECULATIVE_UNSUPPORTED`. The text is the same as without it.
   */
  draft?: { format: 'f32' | 'q8' | 'q4'; k: number };
}

/** `chat.completions.create` parameters. */
export interface ChatCreateParams extends ApiSamplingParams {
  messages: ApiChatMessage[];
  stream?: boolean;
}

/** `completions.create` parameters. */
export interface CompletionCreateParams extends ApiSamplingParams {
  prompt: string;
  stream?: boolean;
}

/** A streamed answer: iterate it for chunks; `abort()` (or leaving the loop) ends it. */
export interface ApiStream<T> extends AsyncIterable<T> {
  abort(reason?: unknown): void;
}

/** The client. */
export interface RingworkClient {
  chat: {
    completions: {
      create(p: ChatCreateParams & { stream: true }): Promise<ApiStream<ChatCompletionChunk>>;
      create(p: ChatCreateParams & { stream?: false }): Promise<ChatCompletion>;
      create(p: ChatCreateParams): Promise<ApiStream<ChatCompletionChunk> | ChatCompletion>;
    };
  };
  completions: {
    create(p: CompletionCreateParams & { stream: true }): Promise<ApiStream<Completion>>;
    create(p: CompletionCreateParams & { stream?: false }): Promise<Completion>;
    create(p: CompletionCreateParams): Promise<ApiStream<Completion> | Completion>;
  };
  models: {
    list(o?: { signal?: AbortSignal }): Promise<ApiModelList>;
  };
}

interface AbortControllerLike {
  readonly signal: AbortSignal;
  abort(reason?: unknown): void;
}

/** Parses a JSON body, or `undefined` when it is not JSON. */
function json(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Creates a client of the Ringwork server at `o.server`. */
export function createRingworkClient(o: RingworkClientOptions): RingworkClient {
  // An origin and an optional path; no query or fragment (the API paths are appended to it).
  if (!/^https?:\/\/[^\s/?#@]+(\/[^\s?#]*)?$/i.test(o.server))
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `server must be an http(s) URL, not "${o.server.slice(0, 200)}".`,
      {
        details: { param: 'server' },
      },
    );
  const base = o.server.replace(/\/+$/, '');
  const fetchFn: ApiFetch =
    o.fetch ?? ((url, init) => (globalThis as unknown as { fetch: ApiFetch }).fetch(url, init));
  const headers: Record<string, string> = o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {};

  /** The caller's signal chained to one of our own, so `ApiStream.abort` works without one. */
  const controller = (signal: AbortSignal | undefined): AbortControllerLike => {
    const Ctor = (globalThis as unknown as { AbortController: new () => AbortControllerLike })
      .AbortController;
    const ctl = new Ctor();
    if (signal?.aborted) ctl.abort(signal.reason);
    else signal?.addEventListener('abort', () => ctl.abort(signal.reason), { once: true });
    return ctl;
  };

  const aborted = (ctl: AbortControllerLike, e?: unknown): RingworkError =>
    new RingworkError('ABORTED', 'The API request was aborted.', { cause: ctl.signal.reason ?? e });

  /** Sends one request; a non-2xx answer becomes the error it carries. */
  const send = async (
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    ctl: AbortControllerLike,
  ): Promise<ApiFetchResponse> => {
    if (ctl.signal.aborted) throw aborted(ctl);
    const url = `${base}${path}`;
    let res: ApiFetchResponse;
    try {
      res = await fetchFn(url, {
        method,
        headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: ctl.signal,
      });
    } catch (e) {
      if (ctl.signal.aborted) throw aborted(ctl, e);
      throw new RingworkError(
        'API_UNREACHABLE',
        `Could not reach ${url}: the server is down or unreachable, or (in a browser) it does not allow this page's origin (its operator lists allowed origins with --allow-origin).`,
        { details: { url }, cause: e },
      );
    }
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      throw apiErrorFromBody(res.status, json(text), res.headers.get('retry-after'));
    }
    return res;
  };

  /** Reads a whole JSON answer and checks its envelope. */
  const readJson = async <T>(
    res: ApiFetchResponse,
    schema: { safeParse(x: unknown): { success: boolean } },
    ctl: AbortControllerLike,
  ): Promise<T> => {
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      if (ctl.signal.aborted) throw aborted(ctl, e);
      throw new RingworkError('API_UNREACHABLE', 'The connection broke off while reading the answer.', {
        cause: e,
      });
    }
    const body = json(text);
    if (!schema.safeParse(body).success)
      throw new RingworkError('API_BAD_RESPONSE', 'The answer is not in the API shape.', {
        details: { status: res.status, start: text.slice(0, 200) },
      });
    return body as T;
  };

  /** The chunks of a streamed answer, each checked; an error event mid-stream is thrown as its error. */
  async function* chunks<T>(res: ApiFetchResponse, ctl: AbortControllerLike): AsyncGenerator<T> {
    if (!res.body) throw new RingworkError('API_BAD_RESPONSE', 'The streamed answer has no body.');
    try {
      for await (const data of readSseData(res.body)) {
        // Chunks already buffered when the caller aborted are not handed out: an abort ends the stream.
        if (ctl.signal.aborted) throw aborted(ctl);
        const event = json(data);
        if (typeof event === 'object' && event !== null && 'error' in event)
          throw apiErrorFromBody(res.status, event);
        if (!apiAnswerSchema.safeParse(event).success)
          throw new RingworkError('API_BAD_RESPONSE', 'A streamed chunk is not in the API shape.', {
            details: { start: data.slice(0, 200) },
          });
        yield event as T;
      }
    } catch (e) {
      if (ctl.signal.aborted) throw aborted(ctl, e);
      if (e instanceof RingworkError) throw e;
      throw new RingworkError('API_UNREACHABLE', 'The connection broke off mid-stream.', { cause: e });
    }
  }

  const stream = <T>(res: ApiFetchResponse, ctl: AbortControllerLike): ApiStream<T> => {
    let iterated = false;
    return {
      abort: (reason?: unknown) => ctl.abort(reason),
      [Symbol.asyncIterator]: () => {
        // One body, read once: a second loop would find it locked.
        if (iterated)
          throw new RingworkError('INVALID_ARGUMENT', 'A streamed answer can be iterated only once.');
        iterated = true;
        return chunks<T>(res, ctl);
      },
    };
  };

  /** One POST endpoint: the request body is the params minus the signal. */
  const create = async <Whole, Chunk>(
    path: string,
    p: ApiSamplingParams & { stream?: boolean },
  ): Promise<ApiStream<Chunk> | Whole> => {
    const { signal, ringwork, ...body } = p;
    if (ringwork && Object.values(ringwork).some((v) => v !== undefined))
      throw new RingworkError(
        'API_UNSUPPORTED',
        "The HTTP API takes no `ringwork` options: use the ring transport (via: 'ring').",
        { details: { param: 'ringwork' } },
      );
    const ctl = controller(signal);
    const res = await send('POST', path, body, ctl);
    return p.stream ? stream<Chunk>(res, ctl) : readJson<Whole>(res, apiAnswerSchema, ctl);
  };

  return {
    chat: {
      completions: {
        create: ((p: ChatCreateParams) =>
          create<ChatCompletion, ChatCompletionChunk>(
            '/v1/chat/completions',
            p,
          )) as RingworkClient['chat']['completions']['create'],
      },
    },
    completions: {
      create: ((p: CompletionCreateParams) =>
        create<Completion, Completion>('/v1/completions', p)) as RingworkClient['completions']['create'],
    },
    models: {
      async list(opts = {}) {
        const ctl = controller(opts.signal);
        const res = await send('GET', '/v1/models', undefined, ctl);
        return readJson<ApiModelList>(res, apiModelListSchema, ctl);
      },
    },
  };
}
