/**
 * The OpenAI-compatible API's wire format, shared by both ends: the server (signaling-server/src/api/)
 * writes errors and server-sent events with it, and the browser SDK (shared/api/ringwork-client.ts,
 * served as `/sdk/ringwork.js`) reads them back. One table maps Ringwork's error codes to HTTP
 * statuses and OpenAI's error `type`s, so an error leaves the server and comes back in the SDK with
 * the same `code`.
 */
import { z } from 'zod';
import type { AnswerFailover, AnswerSpeculative } from '../app/chat-history.js';
import type { AnswerEnd } from '../app/chat-input.js';
import type { AnswerVerification } from '../app/validated-ring.js';
import { isErrorCode, isRingworkError, RingworkError, type ErrorCode } from '../errors.js';

/** HTTP status and OpenAI error `type` of each code the API answers with. */
export const API_ERROR_STATUS: Readonly<Partial<Record<ErrorCode, readonly [number, string]>>> = {
  INVALID_ARGUMENT: [400, 'invalid_request_error'],
  API_UNSUPPORTED: [400, 'invalid_request_error'],
  API_CONTEXT_EXCEEDED: [400, 'invalid_request_error'],
  API_UNAUTHORIZED: [401, 'authentication_error'],
  API_ORIGIN_NOT_ALLOWED: [403, 'permission_error'],
  API_MODEL_NOT_FOUND: [404, 'invalid_request_error'],
  API_BODY_TOO_LARGE: [413, 'invalid_request_error'],
  API_RATE_LIMITED: [429, 'rate_limit_error'],
  API_NO_CAPACITY: [503, 'server_error'],
  ABORTED: [499, 'server_error'],
  SERVER_INTERNAL: [500, 'server_error'],
};

/** The code an error status means when the body names none (a proxy's page, an old server). */
const CODE_OF_STATUS: Readonly<Record<number, ErrorCode>> = {
  400: 'INVALID_ARGUMENT',
  401: 'API_UNAUTHORIZED',
  403: 'API_ORIGIN_NOT_ALLOWED',
  404: 'API_MODEL_NOT_FOUND',
  413: 'API_BODY_TOO_LARGE',
  429: 'API_RATE_LIMITED',
  503: 'API_NO_CAPACITY',
};

/** OpenAI's error body. */
export interface OpenAiErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

/** OpenAI's error body and HTTP status for any error; unexpected ones are 500 `SERVER_INTERNAL` without internals. */
export function openAiErrorBody(e: unknown): { status: number; body: OpenAiErrorBody } {
  const err = isRingworkError(e)
    ? e
    : new RingworkError('SERVER_INTERNAL', 'The server failed while answering; it is logged.');
  const [status, type] = API_ERROR_STATUS[err.code] ?? [502, 'server_error'];
  const param = typeof err.details.param === 'string' ? err.details.param : null;
  return { status, body: { error: { message: err.message, type, code: err.code, param } } };
}

const errorBodySchema = z
  .object({
    error: z
      .object({
        message: z.string().max(10_000),
        type: z.string().max(200).nullish(),
        code: z.string().max(200).nullish(),
        param: z.string().max(200).nullish(),
      })
      .loose(),
  })
  .loose();

/**
 * The {@link RingworkError} an API error body stands for: its `code` when it is one of Ringwork's,
 * else the one its HTTP status means. `details` keep the status, OpenAI's `type` and `param`, and
 * `retryAfterS` when the server said when to retry.
 */
export function apiErrorFromBody(status: number, body: unknown, retryAfter?: string | null): RingworkError {
  const parsed = errorBodySchema.safeParse(body);
  const retryAfterS = retryAfter != null && /^\d+$/.test(retryAfter) ? Number(retryAfter) : undefined;
  const extra = retryAfterS !== undefined ? { retryAfterS } : {};
  if (!parsed.success)
    return new RingworkError(
      CODE_OF_STATUS[status] ?? (status >= 500 ? 'SERVER_INTERNAL' : 'API_BAD_RESPONSE'),
      `The API answered ${status} without an error in OpenAI's shape.`,
      { details: { status, ...extra } },
    );
  const { message, type, code, param } = parsed.data.error;
  const known = isErrorCode(code) ? code : undefined;
  return new RingworkError(
    known ?? CODE_OF_STATUS[status] ?? (status >= 500 ? 'SERVER_INTERNAL' : 'API_BAD_RESPONSE'),
    message,
    {
      details: {
        status,
        type: type ?? null,
        param: param ?? null,
        ...(known === undefined && code ? { remoteCode: code } : {}),
        ...extra,
      },
    },
  );
}

/** One server-sent event carrying `body` as JSON. */
export const sseData = (body: unknown): string => `data: ${JSON.stringify(body)}\n\n`;

/** The event that ends every API stream. */
export const SSE_DONE = 'data: [DONE]\n\n';

/** What one answer measured (the ring transport; the Chat page's stats line). */
export interface RingworkAnswerStats {
  prefillTokPerS: number;
  decodeTokPerS: number;
  /** Per decode token: stage compute, and the rest (hops between stages; scheduling when run here). */
  computeMsPerToken: number;
  hopMsPerToken: number;
  /** Why the answer ended: the model's own end, `max_tokens`, or the model's context filled. */
  end: AnswerEnd;
  /** The model's context length, tokens. */
  contextLength: number;
  /** A drafted answer (`ringwork.draft`): drafted tokens the ring accepted, laps, tokens per lap. */
  speculative?: AnswerSpeculative;
}

/**
 * The non-standard `ringwork` field of answers: how the answer was produced and verified. The HTTP
 * API fills the first five fields; the SDK's ring transport (`via: 'ring'`, the Chat page's) also
 * fills the rest, since it drives the ring itself and sees every step.
 */
export interface RingworkAnswerInfo {
  /** Rings that ran every step side by side (k); 1: no result validation. */
  securityLevel: number;
  /** True when k >= 2 rings ran every step and were compared (see `verification`). */
  validated: boolean;
  /**
   * `ring` (contributors served it), `server` (the server's own engine, `--api-local-fallback`) or
   * `local` (no ring: the ring transport ran the whole model in this page).
   */
  path: 'ring' | 'server' | 'local';
  /** The peers that served the answer and their layer ranges (the ring that finished it). */
  servedBy: { peer: string; range: [number, number] }[];
  ringId?: string;
  /** Ring transport: the peers in ring order, as the Chat page lists them (validator rings included). */
  peers?: string[];
  /** Ring transport: ring peers lost mid-answer and survived (failover), as they happened. */
  failovers?: AnswerFailover[];
  /** Ring transport, k >= 2: what was checked, which rings and peers agreed, deviants dropped. */
  verification?: AnswerVerification;
  /** Ring transport: speed and why the answer ended. */
  stats?: RingworkAnswerStats;
}

/**
 * `ringwork` of a streamed chunk. The HTTP API sends it once, on the usage chunk. The ring
 * transport sends `generated` (tokens so far) on every content chunk, `failovers` on a chunk of its
 * own whenever a ring peer is lost or the answer goes on, and the whole {@link RingworkAnswerInfo}
 * on the chunk with `finish_reason`.
 */
export type RingworkChunkInfo = Partial<RingworkAnswerInfo> & {
  /** Tokens generated so far. */
  generated?: number;
};

/** Token counts of an answer. */
export interface ApiUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Why an answer ended. */
export type FinishReason = 'stop' | 'length';

/** A chat message sent to the API. */
export interface ApiChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant';
  content: string;
}

/** One chunk of a streamed chat answer (`chat.completion.chunk`). */
export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: {
    index: number;
    delta: { role?: 'assistant'; content?: string };
    logprobs: null;
    finish_reason: FinishReason | null;
  }[];
  usage?: ApiUsage;
  ringwork?: RingworkChunkInfo;
}

/** A whole chat answer (`chat.completion`). */
export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: {
    index: number;
    message: { role: 'assistant'; content: string; refusal: null };
    logprobs: null;
    finish_reason: FinishReason;
  }[];
  usage: ApiUsage;
  ringwork: RingworkAnswerInfo;
}

/** A completion, whole or one streamed chunk (`text_completion` both). */
export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { index: number; text: string; logprobs: null; finish_reason: FinishReason | null }[];
  usage?: ApiUsage;
  /** A whole completion carries the whole {@link RingworkAnswerInfo}; a streamed chunk, see {@link RingworkChunkInfo}. */
  ringwork?: RingworkChunkInfo;
}

/** One entry of `GET /v1/models`. */
export interface ApiModel {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  ringwork: {
    contextLength: number;
    units: number;
    totalBytes: number;
    /** Every stage of a ring has loaded its shard: the network serves the model now. */
    ringServing: boolean;
    /** The server runs the model itself when no ring serves it (`--api-local-fallback`). */
    localFallback: boolean;
  };
}

/** `GET /v1/models`. */
export interface ApiModelList {
  object: 'list';
  data: ApiModel[];
}

/** The loosely checked shapes of what the SDK reads: enough that a wrong server fails typed, not later. */
const choiceArray = z.array(z.object({ index: z.number() }).loose()).max(16);
/** A chat answer or chunk, or a completion: the envelope the SDK relies on. */
export const apiAnswerSchema = z
  .object({ id: z.string(), object: z.string(), model: z.string(), choices: choiceArray })
  .loose();
/** `GET /v1/models`. */
export const apiModelListSchema = z
  .object({ object: z.literal('list'), data: z.array(z.object({ id: z.string() }).loose()) })
  .loose();
