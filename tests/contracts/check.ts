/**
 * The tiny test API the contract suites are written against. A suite is a list of
 * {@link ContractCase}s; a runner (vitest in Node, the contract harness page in Chromium) runs each
 * case and reports what it throws. Checks throw {@link ContractFailure}; errors are told apart by
 * their {@link RingworkError} code, never by message text. Nothing here needs Node or the DOM.
 */
import { isRingworkError, type ErrorCode, type RingworkError } from '../../shared/errors.js';

/** One named check of a contract, self-contained: it builds its own fixture and tears it down. */
export interface ContractCase {
  name: string;
  run(): Promise<void>;
  /** Wall-clock limit the runner should give the case (ms). */
  timeoutMs: number;
}

/** A failed expectation of a contract case. */
export class ContractFailure extends Error {
  override readonly name = 'ContractFailure';
}

const show = (v: unknown): string => {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
};

/** Fails unless `cond` is truthy. */
export function ok(cond: unknown, what: string): asserts cond {
  if (!cond) throw new ContractFailure(what);
}

/** Fails unless `actual` and `expected` are equal (JSON-equal for objects and arrays). */
export function equal<T>(actual: T, expected: T, what: string): void {
  const same =
    typeof actual === 'object' && actual !== null
      ? show(actual) === show(expected)
      : Object.is(actual, expected);
  if (!same) throw new ContractFailure(`${what}: expected ${show(expected)}, got ${show(actual)}`);
}

/** Fails unless the two views hold the same bytes. */
export function sameBytes(actual: ArrayBufferView, expected: ArrayBufferView, what: string): void {
  const a = new Uint8Array(actual.buffer, actual.byteOffset, actual.byteLength);
  const b = new Uint8Array(expected.buffer, expected.byteOffset, expected.byteLength);
  if (a.byteLength !== b.byteLength)
    throw new ContractFailure(`${what}: ${a.byteLength} bytes, expected ${b.byteLength}`);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) throw new ContractFailure(`${what}: first differing byte at ${i}`);
  }
}

/** Largest absolute element difference of two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new ContractFailure(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Fails unless every element of `actual` is within `tol` of `expected`. */
export function close(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  what: string,
): void {
  const d = maxAbsDiff(actual, expected);
  if (!(d < tol)) throw new ContractFailure(`${what}: max |diff| ${d} is not below ${tol}`);
}

function checkCode(e: unknown, code: ErrorCode, what: string): RingworkError {
  if (!isRingworkError(e)) {
    throw new ContractFailure(
      `${what}: expected a RingworkError ${code}, got ${e instanceof Error ? `${e.name}: ${e.message}` : show(e)}`,
    );
  }
  if (e.code !== code)
    throw new ContractFailure(`${what}: expected code ${code}, got ${e.code} (${e.message})`);
  return e;
}

/** Fails unless `p` rejects with a RingworkError of `code`; returns it. */
export async function rejects(p: Promise<unknown>, code: ErrorCode, what: string): Promise<RingworkError> {
  try {
    await p;
  } catch (e) {
    return checkCode(e, code, what);
  }
  throw new ContractFailure(`${what}: expected a rejection with ${code}, but it resolved`);
}

/**
 * Fails unless `fn` throws a RingworkError of `code` synchronously (or returns a promise rejecting
 * with one: callers that do not care which way an error is reported use this).
 */
export async function fails(fn: () => unknown, code: ErrorCode, what: string): Promise<RingworkError> {
  let r: unknown;
  try {
    r = fn();
  } catch (e) {
    return checkCode(e, code, what);
  }
  if (r instanceof Promise) return rejects(r, code, what);
  throw new ContractFailure(`${what}: expected ${code}, but it returned`);
}

/** Resolves like `p`, or fails if `p` takes longer than `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new ContractFailure(`${what}: not settled within ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e: unknown) => (clearTimeout(timer), reject(e)),
    );
  });
}

/** Polls `cond` (every 10 ms) until it holds; fails after `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new ContractFailure(`${what}: not true within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
