/**
 * The one error family of Ringwork. Every failure that crosses a module boundary is a
 * {@link RingworkError} with a stable machine-readable `code`, a short message that says what is
 * wrong and how to fix it, structured `details`, and the underlying `cause` when there is one.
 */

/** Stable error codes. Add new codes here; never reuse or rename one. */
export const ERROR_CODES = [
  // model files and formats
  'MODEL_BAD_MAGIC',
  'MODEL_BAD_HEADER',
  'MODEL_TRUNCATED',
  'MODEL_MISSING_TENSOR',
  'MODEL_BAD_TENSOR',
  'MODEL_UNSUPPORTED_ARCHITECTURE',
  'MODEL_BAD_CONFIG',
  'TOKENIZER_BAD_FILE',
  // fetching bytes
  'FETCH_HTTP_STATUS',
  'FETCH_RANGE_IGNORED',
  'FETCH_FAILED',
  'FILE_READ_FAILED',
  // graph and runtime
  'GRAPH_BAD_RANGE',
  'GRAPH_BAD_OPTION',
  'RUNNER_NOT_LOADED',
  'RUNNER_BAD_INPUT',
  'RUNNER_UNKNOWN_SESSION',
  'RUNNER_CONTEXT_FULL',
  'RUNNER_BACKEND_FAILED',
  'ABORTED',
  'INVALID_ARGUMENT',
  // planner
  'PLAN_BAD_INPUT',
  'PLAN_INFEASIBLE',
  // protocol and network
  'PROTOCOL_BAD_FRAME',
  'PROTOCOL_UNKNOWN_TYPE',
  'PROTOCOL_BAD_VERSION',
  'PROTOCOL_FRAME_TOO_LARGE',
  'PROTOCOL_RATE_LIMITED',
  'PROTOCOL_NOT_ALLOWED',
  'PROTOCOL_BAD_TOKEN',
  'PROTOCOL_UNKNOWN_PEER',
  'TENSOR_BAD_FRAME',
  'TENSOR_CHECKSUM',
  'TENSOR_SIZE_MISMATCH',
  'TENSOR_NOT_FINITE',
  'TRANSPORT_CONNECT_TIMEOUT',
  'TRANSPORT_CLOSED',
  'NO_RING',
  // signaling server
  'PROTOCOL_SESSION_REPLACED',
  'PROTOCOL_TIMEOUT',
  'PEER_EVICTED',
  'SERVER_INTERNAL',
] as const;

/** A stable error code; see {@link ERROR_CODES}. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Options accepted by {@link RingworkError}. */
export interface RingworkErrorOptions {
  /** Structured facts about the failure (file name, offsets, sizes...). JSON-serialisable. */
  details?: Record<string, unknown>;
  /** The lower-level error that caused this one. */
  cause?: unknown;
}

/** The single error class used across shared/, web/ and signaling-server/. */
export class RingworkError extends Error {
  override readonly name = 'RingworkError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: RingworkErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  /** A plain object that survives structured clone / JSON (for comlink and the wire). */
  toJSON(): { code: ErrorCode; message: string; details: Record<string, unknown> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** True when `e` is a {@link RingworkError}, optionally with the given code. */
export function isRingworkError(e: unknown, code?: ErrorCode): e is RingworkError {
  return e instanceof RingworkError && (code === undefined || e.code === code);
}

/** Throws a typed `ABORTED` error when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) {
    throw new RingworkError('ABORTED', `${what} was aborted.`, { cause: signal.reason });
  }
}
