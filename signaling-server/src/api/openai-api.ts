/**
 * The OpenAI-compatible HTTP API under `/v1`: `GET /v1/models`, `POST /v1/chat/completions` and
 * `POST /v1/completions` (streaming as server-sent events ending in `data: [DONE]`). Errors have
 * OpenAI's shape and carry Ringwork's error code (`error.code`). A non-standard `ringwork` field says
 * how the answer was produced and verified.
 *
 * Who generates: a ring of contributors when one serves the model (the server drives it as a
 * requester, ring-driver.ts); otherwise the server's own engine in a worker thread when the
 * operator enables it (`--api-local-fallback`); otherwise 503 saying what is missing.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { SSE_DONE, sseData } from '../../../shared/api/openai-wire.js';
import { RingworkError } from '../../../shared/errors.js';
import { isLlama2cLocation } from '../../../shared/model/open-model.js';
import type { CatalogModel } from '../catalog.js';
import type { Coordinator } from '../coordinator.js';
import { createApiAccess, type ApiAccess, type ApiGrant } from './api-access.js';
import type { ApiConfig } from './api-config.js';
import {
  createLocalEngine,
  type LocalEngine,
  type LocalGenerateHandlers,
  type LocalGenerateRequest,
} from './local-engine.js';
import type { EngineInput } from './local-engine-protocol.js';
import {
  chatCompletionRequestSchema,
  completionRequestSchema,
  contentText,
  openAiError,
  parseApiRequest,
} from './openai-schema.js';
import type { RingDriver } from './ring-driver.js';
import type { SharedApiLimits } from '../cluster/shared-api-limits.js';
import { createStopMatcher } from '../../../shared/api/stop-matcher.js';
import type { Ledger } from '../ledger/ledger.js';

/** What the API needs from the running server. */
export interface OpenAiApiDeps {
  config: ApiConfig;
  catalog: readonly CatalogModel[];
  coordinator: Pick<Coordinator, 'snapshot'>;
  /** Origins (besides none) whose pages may call the API (`--allow-origin`). */
  allowedOrigins: readonly string[];
  logger: Logger;
  /** Tests pass keys directly; otherwise `config.keysFile` is read. */
  keys?: readonly string[];
  access?: ApiAccess;
  /** Drives rings of contributors as a requester (absent: only the local fallback serves). */
  ring?: RingDriver;
  /** Cluster mode: the cluster's counters of a key's limits (absent: this instance counts alone). */
  sharedLimits?: SharedApiLimits;
  /** The ledger's record of usage per key (absent: no ledger; `/v1/usage` says so). */
  usage?: Pick<Ledger, 'recordApiUsage' | 'apiUsage'>;
}

/** The API's request handler. */
export interface OpenAiApi {
  /** True for paths under `/v1`. */
  handles(pathname: string): boolean;
  handle(req: IncomingMessage, res: ServerResponse, url: URL, addressBucket: string): void;
  /** Streams (generations running or queued) held now. */
  readonly streams: number;
  /** Where a key's limits are counted now (`instance-fallback`: alone while Redis fails, fail open). */
  readonly limitsCounting: ApiAccess['counting'];
  /** Stops the engine; safe twice. */
  stop(): Promise<void>;
}

type Finish = 'stop' | 'length';

/** One resolved generation request, independent of the endpoint. */
interface Job {
  model: CatalogModel;
  input: EngineInput;
  maxTokens: number | null;
  temperature: number;
  topP: number;
  seed: number;
  stops: string[];
  stream: boolean;
  includeUsage: boolean;
}

const now = (): number => Math.floor(Date.now() / 1000);
const newId = (prefix: string): string => `${prefix}-${randomBytes(12).toString('hex')}`;

/** Creates the API. The engine thread starts on the first request that needs it. */
export function createOpenAiApi(deps: OpenAiApiDeps): OpenAiApi {
  const { config, catalog, logger } = deps;
  const access =
    deps.access ?? createApiAccess(config, { ...(deps.keys ? { keys: deps.keys } : {}), logger });
  if (deps.sharedLimits) access.share(deps.sharedLimits);
  let engine: LocalEngine | null = null;

  /**
   * CORS: only the operator's listed origins (`--allow-origin`) get `Access-Control-Allow-Origin`,
   * on every answer, errors included (a page reads its 401 or 429 as the typed error it is).
   */
  const cors = (req: IncomingMessage): Record<string, string> => {
    const origin = req.headers.origin;
    if (origin === undefined || !deps.allowedOrigins.includes(origin)) return { Vary: 'Origin' };
    return {
      'Access-Control-Allow-Origin': origin,
      'Access-Control-Allow-Headers': 'authorization, content-type',
      'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
      'Access-Control-Expose-Headers': 'Retry-After',
      Vary: 'Origin',
    };
  };

  /**
   * Who may call: clients that send no Origin (not a browser page), the server's own pages (same
   * host), and the listed origins. Any other page is refused before authentication and before its
   * body is read, so a "simple" cross-site request (no preflight) costs no generation either.
   */
  const originAllowed = (req: IncomingMessage): boolean => {
    const origin = req.headers.origin;
    if (origin === undefined || deps.allowedOrigins.includes(origin)) return true;
    const m = /^https?:\/\/([^/]+)$/i.exec(origin);
    return m !== null && m[1]!.toLowerCase() === (req.headers.host ?? '').toLowerCase();
  };

  const sendJson = (req: IncomingMessage, res: ServerResponse, status: number, body: unknown, extra = {}) => {
    const text = JSON.stringify(body);
    res
      .writeHead(status, {
        ...cors(req),
        ...extra,
        'Content-Type': 'application/json; charset=utf-8',
        'Cache-Control': 'no-store',
        'Content-Length': Buffer.byteLength(text),
      })
      .end(text);
  };

  const sendError = (req: IncomingMessage, res: ServerResponse, e: unknown): void => {
    const { status, body } = openAiError(e);
    if (status >= 500) logger.warn({ err: e }, 'api request failed');
    const retry =
      e instanceof RingworkError && typeof e.details.retryAfterS === 'number' ? e.details.retryAfterS : 0;
    if (res.headersSent) {
      // Mid-stream: the status is gone; the error travels as an SSE event and the stream ends.
      if (!res.writableEnded) res.end(sseData(body) + SSE_DONE);
      return;
    }
    sendJson(req, res, status, body, retry > 0 ? { 'Retry-After': String(retry) } : {});
  };

  /** Reads a JSON body of at most maxBodyBytes. */
  const readBody = (req: IncomingMessage): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const limit = config.maxBodyBytes;
      const declared = Number(req.headers['content-length'] ?? 0);
      const tooLarge = () =>
        new RingworkError('API_BODY_TOO_LARGE', `The request body is over ${limit} bytes.`, {
          details: { limit },
        });
      if (declared > limit) return reject(tooLarge());
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > limit) {
          req.removeAllListeners('data');
          req.resume();
          reject(tooLarge());
          return;
        }
        chunks.push(c);
      });
      req.on('error', reject);
      req.on('end', () => {
        if (size > limit) return;
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve(JSON.parse(text));
        } catch {
          reject(
            new RingworkError('INVALID_ARGUMENT', 'The request body is not valid JSON.', {
              details: { param: null },
            }),
          );
        }
      });
    });

  const findModel = (id: string): CatalogModel => {
    const m = catalog.find((c) => c.descriptor.id === id);
    if (!m)
      throw new RingworkError(
        'API_MODEL_NOT_FOUND',
        `The model "${id.slice(0, 200)}" is not served here; GET /v1/models lists the ones that are.`,
        { details: { param: 'model' } },
      );
    return m;
  };

  /** A ring serves the model now: every stage said its shard is loaded for the ring's epoch. */
  const served = (id: string): boolean => {
    const snap = deps.coordinator.snapshot();
    const ring = snap.models.find((m) => m.id === id)?.ring;
    if (!ring) return false;
    return ring.stages.every((s) => {
      const st = snap.peers.find((p) => p.id === s.peer)?.status;
      return st?.state === 'ready' && st.epoch === ring.epoch;
    });
  };

  const listModels = () => ({
    object: 'list',
    data: catalog.map((m) => ({
      id: m.descriptor.id,
      object: 'model',
      created: 0,
      owned_by: 'ringwork',
      ringwork: {
        contextLength: m.descriptor.contextLength,
        units: m.descriptor.units,
        totalBytes: m.totalBytes,
        // lightweight: served whole by replicas on single peers (phones); sharded: a ring of peers.
        serving: m.descriptor.serving ?? 'sharded',
        ringServing: served(m.descriptor.id),
        localFallback: config.localFallback,
      },
    })),
  });

  /** Why the model cannot be served now (503), naming the missing memory when the planner knows it. */
  const noCapacity = (m: CatalogModel): RingworkError => {
    const view = deps.coordinator.snapshot().models.find((x) => x.id === m.descriptor.id);
    const missing = view?.noRing?.missingBytes;
    const why = view?.noRing?.reason ?? 'no contributors serve it';
    return new RingworkError(
      'API_NO_CAPACITY',
      `No capacity for "${m.descriptor.id}" now: ${why}` +
        (missing !== undefined ? ` (${(missing / 2 ** 20).toFixed(1)} MiB of peer memory missing)` : '') +
        '. Open the app and contribute, or run the server with --api-local-fallback.',
      { details: { model: m.descriptor.id, ...(missing !== undefined ? { missingBytes: missing } : {}) } },
    );
  };

  /** Runs a job and writes the response in the endpoint's shape. */
  const run = async (
    req: IncomingMessage,
    res: ServerResponse,
    job: Job,
    grant: ApiGrant,
    kind: 'chat' | 'text',
  ): Promise<void> => {
    const ring = deps.ring?.serves(job.model.descriptor.id) ? deps.ring : undefined;
    if (!ring && !config.localFallback) throw noCapacity(job.model);
    const id = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl');
    const created = now();
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    let ringwork: Record<string, unknown> = {
      securityLevel: 1,
      validated: false,
      path: ring ? 'ring' : 'server',
      servedBy: ring ? [] : [{ peer: 'server', range: [0, job.model.descriptor.units] }],
    };
    const ctl = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) ctl.abort(new RingworkError('ABORTED', 'The client went away.'));
    });
    const matcher = createStopMatcher(job.stops);
    let text = '';
    let hitStop = false;
    const chunk = (delta: string | null, finish: Finish | null, first = false): unknown =>
      kind === 'chat'
        ? {
            id,
            object,
            created,
            model: job.model.descriptor.id,
            choices: [
              {
                index: 0,
                delta:
                  delta === null ? {} : first ? { role: 'assistant', content: delta } : { content: delta },
                logprobs: null,
                finish_reason: finish,
              },
            ],
          }
        : {
            id,
            object,
            created,
            model: job.model.descriptor.id,
            choices: [{ index: 0, text: delta ?? '', logprobs: null, finish_reason: finish }],
          };
    const write = (body: unknown): void => {
      if (!res.writableEnded) res.write(sseData(body));
    };
    const startStream = (): void => {
      if (res.headersSent) return;
      res.writeHead(200, {
        ...cors(req),
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-store',
        Connection: 'keep-alive',
        'X-Accel-Buffering': 'no',
      });
      if (kind === 'chat') write(chunk('', null, true));
    };
    const emit = (s: string): void => {
      if (s.length === 0) return;
      text += s;
      if (job.stream) write(chunk(s, null));
    };
    const request: LocalGenerateRequest = {
      model: job.model.location ?? { url: job.model.descriptor.url },
      contextLength: job.model.descriptor.contextLength,
      llama2c: isLlama2cLocation((job.model.location ?? job.model.descriptor).url),
      input: job.input,
      maxTokens: job.maxTokens,
      temperature: job.temperature,
      topP: job.topP,
      seed: job.seed,
    };
    let result;
    // Counted here too: an answer ended by a stop string has no result, but it has usage.
    let promptSeen = 0;
    let tokensSeen = 0;
    try {
      const handlers: LocalGenerateHandlers = {
        signal: ctl.signal,
        onStarted: (n) => {
          promptSeen = n;
          if (job.stream) startStream();
        },
        onToken: (_t, piece) => {
          tokensSeen++;
          grant.spend(1);
          const r = matcher.push(piece);
          emit(r.emit);
          if (r.stopped && !hitStop) {
            hitStop = true;
            ctl.abort(new RingworkError('ABORTED', 'A stop string ended the answer.'));
          }
        },
      };
      if (ring) {
        const r = await ring.generate({ ...request, modelId: job.model.descriptor.id }, handlers);
        ringwork = { ...ringwork, ringId: r.served.ringId, servedBy: r.served.stages };
        result = r;
      } else {
        engine ??= createLocalEngine({ logger });
        result = await engine.generate(request, handlers);
      }
    } catch (e) {
      // Aborted by our own stop string: a normal end. The client going away: nobody to answer.
      if (!hitStop) {
        if (ctl.signal.aborted) return;
        throw e;
      }
    }
    if (!hitStop) emit(matcher.flush());
    const finish: Finish = hitStop || (result && result.stop !== 'steps') ? 'stop' : 'length';
    const promptTokens = result?.promptTokens ?? promptSeen;
    const completionTokens = result?.completionTokens ?? tokensSeen;
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    };
    logger.info({ principal: grant.principal, model: job.model.descriptor.id, ...usage }, 'api usage');
    deps.usage
      ?.recordApiUsage({ principal: grant.principal, promptTokens, completionTokens })
      .catch((e: unknown) => logger.error({ err: e, principal: grant.principal }, 'api usage not recorded'));
    if (job.stream) {
      startStream();
      write(chunk(null, finish));
      if (job.includeUsage)
        write({ id, object, created, model: job.model.descriptor.id, choices: [], usage, ringwork });
      res.end(SSE_DONE);
      return;
    }
    const choice =
      kind === 'chat'
        ? {
            index: 0,
            message: { role: 'assistant', content: text, refusal: null },
            logprobs: null,
            finish_reason: finish,
          }
        : { index: 0, text, logprobs: null, finish_reason: finish };
    sendJson(req, res, 200, {
      id,
      object: kind === 'chat' ? 'chat.completion' : 'text_completion',
      created,
      model: job.model.descriptor.id,
      choices: [choice],
      usage,
      ringwork,
    });
  };

  const jobOf = (
    r: {
      model: string;
      stream?: boolean | undefined;
      stream_options?: { include_usage?: boolean | undefined } | null | undefined;
      temperature?: number | null | undefined;
      top_p?: number | null | undefined;
      seed?: number | null | undefined;
      stop?: string | string[] | null | undefined;
    },
    input: EngineInput,
    maxTokens: number | null,
  ): Job => ({
    model: findModel(r.model),
    input,
    maxTokens,
    temperature: r.temperature ?? 1,
    topP: r.top_p ?? 1,
    seed: r.seed ?? randomBytes(4).readUInt32LE(0),
    stops: r.stop == null ? [] : typeof r.stop === 'string' ? [r.stop] : r.stop,
    stream: r.stream === true,
    includeUsage: r.stream_options?.include_usage === true,
  });

  const post = async (req: IncomingMessage, res: ServerResponse, path: string, bucket: string) => {
    const kind = path === '/v1/chat/completions' ? 'chat' : 'text';
    // Authenticate before reading the body: a stranger without a key costs no body buffering.
    access.authenticate(req.headers.authorization, bucket);
    const body = await readBody(req);
    let job: Job;
    if (kind === 'chat') {
      const r = parseApiRequest(chatCompletionRequestSchema, body);
      const messages = r.messages.map((m) => ({
        role: m.role === 'developer' ? ('system' as const) : m.role,
        content: contentText(m.content),
      }));
      job = jobOf(r, { kind: 'chat', messages }, r.max_completion_tokens ?? r.max_tokens ?? null);
    } else {
      const r = parseApiRequest(completionRequestSchema, body);
      const prompt = typeof r.prompt === 'string' ? r.prompt : r.prompt[0]!;
      // OpenAI's completions default is 16 tokens.
      job = jobOf(r, { kind: 'text', text: prompt }, r.max_tokens ?? 16);
    }
    const grant = await access.acquire(req.headers.authorization, bucket);
    try {
      await run(req, res, job, grant, kind);
    } finally {
      grant.release();
    }
  };

  return {
    handles: (pathname) => pathname === '/v1' || pathname.startsWith('/v1/'),
    handle(req, res, url, bucket) {
      const method = req.method ?? 'GET';
      const path = url.pathname.replace(/\/+$/, '');
      const fail = (e: unknown) => sendError(req, res, e);
      try {
        if (!originAllowed(req))
          throw new RingworkError(
            'API_ORIGIN_NOT_ALLOWED',
            "This page's origin may not call the API; the server's operator allows origins with --allow-origin.",
            { details: { origin: String(req.headers.origin).slice(0, 200) } },
          );
        if (method === 'OPTIONS') {
          res.writeHead(204, { ...cors(req), 'Access-Control-Max-Age': '600' }).end();
          return;
        }
        if (path === '/v1/models') {
          if (method !== 'GET' && method !== 'HEAD')
            throw new RingworkError('INVALID_ARGUMENT', 'Use GET for /v1/models.', {
              details: { param: null },
            });
          access.authenticate(req.headers.authorization, bucket);
          sendJson(req, res, 200, listModels());
          return;
        }
        if (path === '/v1/usage') {
          // Ringwork's extension: what the caller's key used so far, from the ledger.
          if (method !== 'GET' && method !== 'HEAD')
            throw new RingworkError('INVALID_ARGUMENT', 'Use GET for /v1/usage.', {
              details: { param: null },
            });
          const principal = access.authenticate(req.headers.authorization, bucket);
          if (!deps.usage) {
            sendJson(req, res, 200, { object: 'ringwork.usage', principal, ledger: false });
            return;
          }
          deps.usage
            .apiUsage(principal)
            .then((u) =>
              sendJson(req, res, 200, {
                object: 'ringwork.usage',
                principal,
                ledger: true,
                requests: u.requests,
                prompt_tokens: u.promptTokens,
                completion_tokens: u.completionTokens,
              }),
            )
            .catch(fail);
          return;
        }
        if (path === '/v1/chat/completions' || path === '/v1/completions') {
          if (method !== 'POST')
            throw new RingworkError('INVALID_ARGUMENT', `Use POST for ${path}.`, {
              details: { param: null },
            });
          post(req, res, path, bucket).catch(fail);
          return;
        }
        sendJson(req, res, 404, {
          error: {
            message: `Unknown API path ${path}: the API has /v1/models, /v1/chat/completions and /v1/completions.`,
            type: 'invalid_request_error',
            code: 'INVALID_ARGUMENT',
            param: null,
          },
        });
      } catch (e) {
        fail(e);
      }
    },
    get streams() {
      return access.streams;
    },
    get limitsCounting() {
      return access.counting;
    },
    async stop() {
      deps.ring?.stop();
      const e = engine;
      engine = null;
      await e?.stop();
    },
  };
}
