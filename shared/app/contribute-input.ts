/**
 * The Contribute page's "memory to lend" field: megabytes as typed (1 MB = 10^6 bytes, as the app
 * prints sizes), empty meaning all the memory the device can use.
 */
import { RingworkError } from '../errors.js';
import type { FieldResult } from './chat-input.js';

/** Bytes per megabyte, as the app prints sizes. */
export const MB = 1e6;

/**
 * Parses "memory to lend" in MB. Empty: undefined (lend all usable memory). `usableBytes`, when
 * known (after the device was measured), bounds it.
 */
export function parseLendMemory(raw: string, usableBytes?: number): FieldResult<number | undefined> {
  const t = raw.trim();
  if (t === '') return { ok: true, value: undefined };
  const fail = (message: string): FieldResult<never> => ({
    ok: false,
    error: new RingworkError('INVALID_ARGUMENT', message, { details: { field: 'lendMemory', raw } }),
  });
  if (!/^(\d+\.?\d*|\.\d+)$/.test(t)) return fail(`Memory to lend: “${t}” is not a number of MB.`);
  const bytes = Number(t) * MB;
  if (!(bytes > 0)) return fail('Memory to lend must be more than 0 MB (or empty: all usable memory).');
  if (usableBytes !== undefined && bytes > usableBytes)
    return fail(`This device can lend at most ${(usableBytes / MB).toFixed(1)} MB.`);
  return { ok: true, value: Math.floor(bytes) };
}
