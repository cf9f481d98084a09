/**
 * The one error family of Ringwork. Every failure that crosses a module boundary is a
 * {@link RingworkError} with a stable machine-readable `code`, a short message that says what is
 * wrong and how to fix it, structured `details`, and the underlying `cause` when there is one.
 */
import { z } from 'zod';
import { formatZodIssues, zodIssueDetails } from './util/zod-issues.js';

/**
 * Stable error codes, the one list every layer (and the wire) uses. Add new codes here; never
 * reuse or rename one: peers of another build decode codes they do not know as
 * `PROTOCOL_UNKNOWN_CODE` (see {@link RingworkError.fromJSON}). Callers decide by code — retries
 * by code sets such as `RETRYABLE_RING_CODES` — never by message text.
 */
export const ERROR_CODES = [
  // ---- model files and formats
  /** A model file does not start with the expected magic bytes (wrong file, HTML error page). */
  'MODEL_BAD_MAGIC',
  /** A model file's header is malformed (bad JSON, impossible sizes). */
  'MODEL_BAD_HEADER',
  /** A model file ends before the data its header promises. */
  'MODEL_TRUNCATED',
  /** A tensor the architecture needs is absent from the checkpoint. */
  'MODEL_MISSING_TENSOR',
  /** A tensor has the wrong dtype, shape or byte range. */
  'MODEL_BAD_TENSOR',
  /** The checkpoint's architecture (or one of its options) is not supported. */
  'MODEL_UNSUPPORTED_ARCHITECTURE',
  /** `config.json` (or an equivalent) is invalid or inconsistent. */
  'MODEL_BAD_CONFIG',
  /** A tokenizer file is invalid. */
  'TOKENIZER_BAD_FILE',
  // ---- fetching bytes
  /** An HTTP request for model bytes answered a non-success status. */
  'FETCH_HTTP_STATUS',
  /** The server ignored a Range request (answered the whole file). */
  'FETCH_RANGE_IGNORED',
  /** A network request for model bytes failed (no answer, reset, CORS). */
  'FETCH_FAILED',
  /** Reading a local file failed. */
  'FILE_READ_FAILED',
  // ---- graph and runtime
  /** A unit range does not fit the model (empty, reversed, past the last unit). */
  'GRAPH_BAD_RANGE',
  /** A graph-compiler option is invalid. */
  'GRAPH_BAD_OPTION',
  /** A shard runner was used before `load` finished. */
  'RUNNER_NOT_LOADED',
  /** A step's input does not match the shard (wrong kind, shape, position). */
  'RUNNER_BAD_INPUT',
  /** A runner was given a KV session id it never opened (a caller bug, not a ring race). */
  'RUNNER_UNKNOWN_SESSION',
  /** A KV session reached the model's context length. */
  'RUNNER_CONTEXT_FULL',
  /** The inference backend (onnxruntime, WebGPU, a benchmark) failed; the generic compute failure. */
  'RUNNER_BACKEND_FAILED',
  /** The runner was disposed: create a new one. */
  'RUNNER_DISPOSED',
  /** The caller aborted the operation (AbortSignal, stop button). */
  'ABORTED',
  /** A function argument is invalid. */
  'INVALID_ARGUMENT',
  // ---- planner
  /** The planner's input (peers, model, objective) is invalid. */
  'PLAN_BAD_INPUT',
  /** No placement satisfies the constraints (not enough memory). */
  'PLAN_INFEASIBLE',
  // ---- protocol and network
  /** A frame is not valid (not JSON, wrong fields) for its protocol. */
  'PROTOCOL_BAD_FRAME',
  /** A frame's `type` is not one this build knows. */
  'PROTOCOL_UNKNOWN_TYPE',
  /** A frame's protocol version `v` is not the one this build speaks. */
  'PROTOCOL_BAD_VERSION',
  /** A frame exceeds the protocol's size limit. */
  'PROTOCOL_FRAME_TOO_LARGE',
  /** A connection sent frames faster than its rate limit. */
  'PROTOCOL_RATE_LIMITED',
  /** A message is not allowed in the connection's state or roles. */
  'PROTOCOL_NOT_ALLOWED',
  /** A resume token does not match the peer id. */
  'PROTOCOL_BAD_TOKEN',
  /** A message names a peer the server does not know. */
  'PROTOCOL_UNKNOWN_PEER',
  /**
   * A peer reported an error whose code this build does not know (a newer peer); the original
   * code is kept in `details.remoteCode`.
   */
  'PROTOCOL_UNKNOWN_CODE',
  /** A binary tensor frame is malformed. */
  'TENSOR_BAD_FRAME',
  /** A tensor frame's checksum does not match its payload. */
  'TENSOR_CHECKSUM',
  /** A tensor frame's payload size does not match its dtype and shape. */
  'TENSOR_SIZE_MISMATCH',
  /** A tensor holds NaN or infinity. */
  'TENSOR_NOT_FINITE',
  /** A peer-to-peer link (DataChannel) did not open within its timeout. */
  'TRANSPORT_CONNECT_TIMEOUT',
  /** The transport knows no way to reach that peer (not connected to the hub, left). */
  'TRANSPORT_PEER_UNREACHABLE',
  /** A peer-to-peer link is closed (or failed) and cannot carry the message. */
  'TRANSPORT_CLOSED',
  /** No ring serves the model (and the tab cannot run it alone). */
  'NO_RING',
  /** A tensor frame declares more bytes than the receiving link accepts (refused before allocating). */
  'TENSOR_TOO_LARGE',
  /** A tensor's remaining chunks did not arrive in time; the link is closed. */
  'TENSOR_PARTIAL_TIMEOUT',
  // ---- ring stages (per-counterparty limits)
  /** A requester already holds as many sessions on this stage as it may. */
  'STAGE_SESSION_LIMIT',
  /** The stage's KV-cache budget is fully reserved; retry shortly. */
  'STAGE_KV_BUDGET',
  /** A session's open, step or end came from a link other than the one that opened it. */
  'STAGE_WRONG_LINK',
  /** The next stage took no data within the send deadline. */
  'STAGE_NEXT_TIMEOUT',
  // ---- ring sessions (requester <-> stages)
  /** A stage serves another ring epoch than the one the request was planned against (re-plan raced). */
  'RING_STALE_EPOCH',
  /** A stage is not serving yet (still loading its shard after a re-plan). */
  'RING_STAGE_NOT_SERVING',
  /** A stage has no such generation session (it restarted, or the open went astray). */
  'RING_UNKNOWN_SESSION',
  /** The ring did not answer a generation step within the step timeout. */
  'RING_STEP_TIMEOUT',
  /** A ring peer (stage or neighbour link) went away mid-generation. */
  'RING_PEER_LOST',
  // ---- signaling (client side)
  /** The signaling server could not be reached (WebSocket error before welcome). */
  'SIGNALING_UNREACHABLE',
  /** The signaling connection is closed (the server closed it, or it was never opened). */
  'SIGNALING_CLOSED',
  /** The signaling server did not send an expected message within the timeout. */
  'SIGNALING_REPLY_TIMEOUT',
  /** The coordinator did not answer a ring request within the timeout. */
  'SIGNALING_COORDINATOR_TIMEOUT',
  /** A relayed signal did not come back within the timeout (relay benchmark). */
  'RELAY_TIMEOUT',
  // ---- signaling server
  /** Another connection resumed this peer id; this one is closed. */
  'PROTOCOL_SESSION_REPLACED',
  /** A connection missed its hello or heartbeat deadline. */
  'PROTOCOL_TIMEOUT',
  /** The server evicted the peer (capacity, policy). */
  'PEER_EVICTED',
  /** An unexpected server failure; the request was dropped (details stay in the server log). */
  'SERVER_INTERNAL',
  /** The request's Host header does not name this server (DNS rebinding); see `--allow-host`. */
  'HTTP_HOST_NOT_ALLOWED',
  // ---- the OpenAI-compatible HTTP API (`/v1`)
  /** No API key, or one the server does not know (401). */
  'API_UNAUTHORIZED',
  /** The request names a model the catalog does not serve (404). */
  'API_MODEL_NOT_FOUND',
  /** The request body is over the server's limit (413). */
  'API_BODY_TOO_LARGE',
  /** A request option the API does not support (e.g. `n` > 1, tools) was set (400). */
  'API_UNSUPPORTED',
  /** Prompt plus `max_tokens` do not fit the model's context (400). */
  'API_CONTEXT_EXCEEDED',
  /** Too many requests, tokens or concurrent streams for this key or server (429). */
  'API_RATE_LIMITED',
  /** No ring serves the model now and the server does not run it itself (503). */
  'API_NO_CAPACITY',
  // ---- result validation
  /** A validation commitment or send receipt is malformed (wrong length, version, field). */
  'VALIDATION_BAD_COMMITMENT',
  /** A commitment's or receipt's signature does not verify under the signer's registered key. */
  'VALIDATION_BAD_SIGNATURE',
  /** A commitment names a signer that registered no key for the session. */
  'VALIDATION_UNKNOWN_SIGNER',
  /** A received frame's bytes do not match the sender's signed receipt; the frame was refused. */
  'VALIDATION_RECEIPT_MISMATCH',
  /**
   * The server refuses this peer for good (a ban): a client must not reconnect. Clients stop their
   * rejoin loop on it; the server does not send it yet (no ban list), the code reserves the meaning.
   */
  'PEER_BANNED',
  // ---- failover
  /** A ring lost a peer mid-answer and no replacement ring could take the session over (says what is missing). */
  'RING_FAILOVER_FAILED',
  // ---- proximity and graceful leave
  /** A link shaping table (test/bench flag only) is malformed. */
  'TRANSPORT_BAD_SHAPE',
  /** A link probe got no answer in time (the neighbour is slow, gone, or does not probe). */
  'PROBE_TIMEOUT',
  /** The stage is draining (its tab leaves or pauses): it finishes open sessions but takes no new one. */
  'RING_STAGE_DRAINING',
  // ---- cluster mode
  /** Cluster mode: the shared state (Redis) or the coordinator instance cannot be reached right now. */
  'CLUSTER_UNAVAILABLE',
  // ---- identity (SIWE, EIP-4361) and the ledger
  /** A sign-in request is malformed: not an EIP-4361 message, a bad signature encoding, a bad body (400). */
  'AUTH_BAD_MESSAGE',
  /** The sign-in nonce is unknown, already used (replay) or expired: fetch a new one (401). */
  'AUTH_NONCE_INVALID',
  /** The sign-in message is outside its validity window (expired, not yet valid, issued too long ago or in the future) (401). */
  'AUTH_MESSAGE_EXPIRED',
  /** The sign-in message names another domain than this server's host (401). */
  'AUTH_WRONG_DOMAIN',
  /** The sign-in message's URI is not on this server's origin (401). */
  'AUTH_WRONG_URI',
  /** The sign-in message names another chain id than the server's (401). */
  'AUTH_WRONG_CHAIN',
  /** The signature does not verify for the message's address (another key, or a tampered message) (401). */
  'AUTH_BAD_SIGNATURE',
  /** An identity token is forged, expired, or from another server instance: sign in again. */
  'AUTH_BAD_TOKEN',
  /** The identity token is bound to another signaling session: sign in again for this one. */
  'AUTH_TOKEN_OTHER_SESSION',
  /** The server requires a signed-in identity (`--require-identity`) and the hello carried none. */
  'AUTH_IDENTITY_REQUIRED',
  /** Too many sign-in requests from one address (429). */
  'AUTH_RATE_LIMITED',
  /** The ledger database cannot be opened or written (unreachable, bad data directory). */
  'LEDGER_UNAVAILABLE',
  /** A ledger record is invalid (negative work, unknown peer, inconsistent stages). */
  'LEDGER_BAD_RECORD',
  // ---- result validation (ring wiring)
  /** A ring's signed commitments locate one of its stages as deviant (wrong output, equivocation, forged commitment). */
  'VALIDATION_DEVIANT',
  /** A validated step came back without every stage's commitment (a stage that does not commit, or lost ones). */
  'VALIDATION_MISSING_COMMITMENT',
  // ---- chat input
  /** A chat setting typed by a person is not a number in its range (temperature, top-p, max tokens, seed). */
  'CHAT_BAD_SETTING',
  /** A prompt does not fit the model's context (it says how many tokens to keep). */
  'CHAT_PROMPT_TOO_LONG',
  /** A prompt holds characters the model's tokenizer cannot represent (they would be lost). */
  'CHAT_UNREPRESENTABLE',
  // ---- the browser SDK and cross-origin API use
  /** A page's origin is not one the operator allows to call the API (`--allow-origin`) (403). */
  'API_ORIGIN_NOT_ALLOWED',
  /**
   * The API could not be reached: no answer, a reset, or (in a browser) a response the page may not
   * read because the server does not allow its origin (CORS); the browser does not say which.
   */
  'API_UNREACHABLE',
  /** An API response broke off or is not in the API's shape (a stream without `[DONE]`, bad JSON). */
  'API_BAD_RESPONSE',
  // ---- tooling
  /**
   * A tooling-only mode (`--null-compute`: stages pass data through without running the model) was
   * asked for outside a test-mode server; production never runs it.
   */
  'TOOLING_ONLY',
  // ---- result validation (security level k)
  /** Too few peers disjoint from the primary ring for the security level asked for (it says what is missing). */
  'VALIDATION_NOT_ENOUGH_PEERS',
  /** A validated-work proof does not hold: rings that disagree, unknown rings, broken boundaries. Nobody is credited. */
  'VALIDATION_UNPROVEN_WORK',
  // ---- stake on an EVM chain (signaling-server/src/stake/)
  /** Ring membership of this model requires more on-chain stake than the peer's address holds (or the peer is anonymous). */
  'STAKE_INSUFFICIENT',
  /** The stake chain or contract cannot be read or written (RPC unreachable, no contract at the address, slash reverted). */
  'STAKE_CHAIN_UNAVAILABLE',
  /**
   * Staking from the page cannot go ahead: an amount that is not a positive ETH amount, an address
   * without the ETH to stake, a wallet on another chain, or a transaction that reverted.
   */
  'STAKE_REFUSED',
  // ---- speculative decoding
  /**
   * Speculative decoding (`--draft`) was asked for with a setting it does not support: sampling
   * (temperature > 0; only greedy drafting keeps the output identical), a validated ring, or a
   * pipeline that cannot verify several positions in one pass.
   */
  'SPECULATIVE_UNSUPPORTED',
  // ---- browser SDK
  /**
   * The SDK's ring transport was asked for something that needs model shards run in this page (a
   * validated answer, k >= 2) but was given no shard runner (a page of another site cannot start
   * the server's Web Workers).
   */
  'SDK_NO_RUNNER',
] as const;

/** A stable error code; see {@link ERROR_CODES}. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** The zod schema of {@link ErrorCode}, for every protocol field that carries a code. */
export const errorCodeSchema = z.enum(ERROR_CODES);

const KNOWN_CODES: ReadonlySet<string> = new Set(ERROR_CODES);

/** True when `x` is one of {@link ERROR_CODES}. */
export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === 'string' && KNOWN_CODES.has(x);
}

/** Longest message that crosses a boundary (the protocols' limit). */
export const MAX_WIRE_MESSAGE = 2000;
/** Largest serialised `details` that crosses a boundary; bigger ones are replaced by a marker. */
export const MAX_WIRE_DETAILS = 4000;
/** How many causes deep a serialised error goes. */
const MAX_CAUSE_DEPTH = 3;

/** A cause that is not a {@link RingworkError}, as it crosses a boundary (name and message only). */
export interface ForeignErrorJSON {
  name: string;
  message: string;
}

/** The serialised form of a {@link RingworkError}: plain data that survives JSON and structured clone. */
export interface RingworkErrorJSON {
  code: ErrorCode;
  message: string;
  details: Record<string, unknown>;
  cause?: RingworkErrorJSON | ForeignErrorJSON;
}

/** What a peer may send for an error: the code is any string here, mapped on receipt. */
interface WireError {
  code: string;
  message: string;
  details?: Record<string, unknown>;
  cause?: WireError | ForeignErrorJSON;
}

const foreignErrorSchema = z.object({ name: z.string().max(200), message: z.string().max(MAX_WIRE_MESSAGE) });
/** Zod schema of a serialised cause (recursive), for protocol messages that carry one. */
export const wireCauseSchema: z.ZodType<WireError | ForeignErrorJSON> = z.lazy(() =>
  z.union([wireErrorSchema, foreignErrorSchema]),
);
const wireErrorSchema: z.ZodType<WireError> = z.object({
  code: z.string().max(64),
  message: z.string().max(MAX_WIRE_MESSAGE),
  details: z.record(z.string(), z.unknown()).optional(),
  cause: wireCauseSchema.optional(),
});

/** Options accepted by {@link RingworkError}. */
export interface RingworkErrorOptions {
  /** Structured facts about the failure (file name, offsets, sizes...). JSON-serialisable. */
  details?: Record<string, unknown>;
  /** The lower-level error that caused this one. */
  cause?: unknown;
}

/** A JSON-safe, size-bounded copy of `details` (what may cross a boundary). */
function wireDetails(details: Record<string, unknown>): Record<string, unknown> {
  try {
    const s = JSON.stringify(details);
    if (s === undefined) return {};
    if (s.length > MAX_WIRE_DETAILS) return { truncated: true, size: s.length };
    return JSON.parse(s) as Record<string, unknown>;
  } catch {
    return { unserialisable: true };
  }
}

function causeToJSON(cause: unknown, depth: number): RingworkErrorJSON | ForeignErrorJSON | undefined {
  if (cause === undefined || cause === null || depth >= MAX_CAUSE_DEPTH) return undefined;
  if (cause instanceof RingworkError) return serialise(cause, depth + 1);
  if (cause instanceof Error)
    return { name: cause.name.slice(0, 200), message: cause.message.slice(0, MAX_WIRE_MESSAGE) };
  return { name: typeof cause, message: String(cause).slice(0, MAX_WIRE_MESSAGE) };
}

function causeFromJSON(c: WireError | ForeignErrorJSON | undefined): unknown {
  if (c === undefined) return undefined;
  if ('code' in c) return RingworkError.fromJSON(c);
  const e = new Error(c.message);
  e.name = c.name;
  return e;
}

/**
 * The single error class used across shared/, web/ and signaling-server/. Short `message` (what is
 * wrong and how to fix it), structured `details`, and the lower-level `cause`. Errors cross every
 * boundary (worker, ring, signaling) as {@link RingworkError.toJSON} and come back with
 * {@link RingworkError.fromJSON}, so the code survives.
 */
export class RingworkError extends Error {
  override readonly name = 'RingworkError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: RingworkErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  /**
   * Plain data that survives JSON and structured clone (comlink, the ring, the signaling wire):
   * message cut to {@link MAX_WIRE_MESSAGE}, details JSON-safe and bounded, causes a few levels deep.
   */
  toJSON(): RingworkErrorJSON {
    return serialise(this, 0);
  }

  /**
   * Rebuilds an error serialised by {@link toJSON} on the other side of a boundary. Never throws:
   * a code this build does not know becomes `PROTOCOL_UNKNOWN_CODE` (the original in
   * `details.remoteCode`), and anything that is not a serialised error becomes `PROTOCOL_BAD_FRAME`.
   */
  static fromJSON(json: unknown): RingworkError {
    const r = wireErrorSchema.safeParse(json);
    if (!r.success) {
      return new RingworkError(
        'PROTOCOL_BAD_FRAME',
        'Received an error that is not a serialised RingworkError.',
        {
          details: { issues: zodIssueDetails(r.error) },
        },
      );
    }
    const { code, message, details = {}, cause } = r.data;
    const known = isErrorCode(code);
    return new RingworkError(known ? code : 'PROTOCOL_UNKNOWN_CODE', message, {
      details: known ? details : { ...details, remoteCode: code },
      cause: causeFromJSON(cause),
    });
  }
}

function serialise(e: RingworkError, depth: number): RingworkErrorJSON {
  const cause = causeToJSON(e.cause, depth);
  return {
    code: e.code,
    message: e.message.slice(0, MAX_WIRE_MESSAGE),
    details: wireDetails(e.details),
    ...(cause ? { cause } : {}),
  };
}

/**
 * `e.toJSON()` cut to fit a frame of `maxChars` (the ring's control frames are 16 KiB): the cause
 * chain goes first, then the details; the code always survives.
 */
export function boundedErrorJSON(e: RingworkError, maxChars: number): RingworkErrorJSON {
  const full = e.toJSON();
  if (JSON.stringify(full).length <= maxChars) return full;
  const { cause: _dropped, ...withoutCause } = full;
  if (JSON.stringify(withoutCause).length <= maxChars) return withoutCause;
  return {
    code: full.code,
    message: full.message.slice(0, Math.max(0, Math.floor(maxChars / 4))),
    details: { truncated: true },
  };
}

/**
 * A typed error for input that failed `schema` validation: `Invalid <what>: path: message; ...`,
 * with the issues in `details.issues` (the one formatter for zod issues; see `util/zod-issues`).
 */
export function invalidInputError(
  code: ErrorCode,
  what: string,
  error: z.ZodError,
  details: Record<string, unknown> = {},
): RingworkError {
  return new RingworkError(code, `Invalid ${what}: ${formatZodIssues(error)}.`, {
    details: { ...details, issues: zodIssueDetails(error) },
  });
}

/** Parses `value` with `schema`, or throws {@link invalidInputError} with `code`. */
export function parseWithSchema<S extends z.ZodType>(
  schema: S,
  value: unknown,
  code: ErrorCode,
  what: string,
): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw invalidInputError(code, what, r.error);
  return r.data;
}

/**
 * Maps a received error frame's code to one this build knows, before schema validation: an unknown
 * code becomes `PROTOCOL_UNKNOWN_CODE` with the original in `details.remoteCode`, so a newer peer's
 * error is still delivered (never dropped as a bad frame). Other values pass through unchanged.
 */
export function normaliseWireErrorCode(frame: unknown): unknown {
  if (typeof frame !== 'object' || frame === null) return frame;
  const f = frame as Record<string, unknown>;
  if (f.type !== 'error' || typeof f.code !== 'string' || isErrorCode(f.code)) return frame;
  const details = typeof f.details === 'object' && f.details !== null ? f.details : {};
  return { ...f, code: 'PROTOCOL_UNKNOWN_CODE', details: { ...details, remoteCode: f.code.slice(0, 64) } };
}

/** True when `e` is a {@link RingworkError}, optionally with the given code. */
export function isRingworkError(e: unknown, code?: ErrorCode): e is RingworkError {
  return e instanceof RingworkError && (code === undefined || e.code === code);
}

/** True when `e` looks like a serialised error ({@link RingworkErrorJSON}), not an Error instance. */
export function isRingworkErrorJSON(e: unknown): boolean {
  if (typeof e !== 'object' || e === null || e instanceof Error) return false;
  const o = e as Record<string, unknown>;
  return typeof o.code === 'string' && typeof o.message === 'string';
}

/**
 * Rethrows an error that crossed a boundary (a worker's comlink reply) as a typed error: serialised
 * RingworkErrors are rebuilt with {@link RingworkError.fromJSON}; anything else is rethrown as is.
 */
export function rethrow(e: unknown): never {
  throw isRingworkErrorJSON(e) ? RingworkError.fromJSON(e) : e;
}

/**
 * `e` as a {@link RingworkError}: itself, rebuilt from its serialised form, or wrapped with
 * `fallback` (the original kept as `cause`).
 */
export function toRingworkError(e: unknown, fallback: ErrorCode): RingworkError {
  if (e instanceof RingworkError) return e;
  if (isRingworkErrorJSON(e)) return RingworkError.fromJSON(e);
  return new RingworkError(fallback, e instanceof Error ? e.message : String(e), { cause: e });
}

/** Throws a typed `ABORTED` error when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) {
    throw new RingworkError('ABORTED', `${what} was aborted.`, { cause: signal.reason });
  }
}
