/**
 * Refusals of a peer's message, built without a stack trace. A refusal goes back to the peer as
 * code, message and details and is decided on by code; nobody debugs it from a stack. Capturing
 * one was most of the error's cost (about 10× the rest, measured in Node), paid for every refused
 * frame of a flood on the server's one thread: CPU profiles of `npm run bench:hostile` showed
 * the error constructor among the top self-time entries in the offers and rumours phases.
 */
import { RingworkError, type ErrorCode, type RingworkErrorOptions } from '../../shared/errors.js';

/** A {@link RingworkError} without a stack trace (see the module comment). */
export function refusal(code: ErrorCode, message: string, options: RingworkErrorOptions = {}): RingworkError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new RingworkError(code, message, options);
  } finally {
    Error.stackTraceLimit = limit;
  }
}
