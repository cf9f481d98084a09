import { isRingworkError } from '../../shared/errors.js';

/**
 * Runs a CLI main function: typed errors print as `error [CODE]: message` (no stack trace) and
 * exit 1; anything else is a bug and prints its stack.
 */
export function runCli(main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    if (isRingworkError(e)) {
      process.stderr.write(`error [${e.code}]: ${e.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}

/** Parses an integer flag, with a message that names the flag. */
export function intFlag(name: string, value: string | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw usage(`--${name} must be an integer >= ${min}, got "${value}".`);
  return n;
}

/** Parses a number flag. */
export function numFlag(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n)) throw usage(`--${name} must be a number, got "${value}".`);
  return n;
}

/** A usage error (exit 2 with the message). */
export function usage(message: string): Error {
  process.stderr.write(`usage error: ${message}\n`);
  process.exit(2);
}
