import { readFileSync } from 'node:fs';
import { isRingworkError } from '../../shared/errors.js';

/**
 * The usage a CLI documents in its file's first doc comment (every tools/cli entry starts with
 * one: the command line and what it does), as plain text; undefined when there is none.
 */
export function headerUsage(source: string): string | undefined {
  const m = /\/\*\*([\s\S]*?)\*\//.exec(source);
  if (!m) return undefined;
  return m[1]!
    .split('\n')
    .map((l) => l.replace(/^\s*\* ?/, ''))
    .join('\n')
    .trim();
}

/** Node's `util.parseArgs` errors: a flag the CLI does not know, a missing value, a stray argument. */
const PARSE_ERRORS = new Set([
  'ERR_PARSE_ARGS_UNKNOWN_OPTION',
  'ERR_PARSE_ARGS_INVALID_OPTION_VALUE',
  'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL',
]);

/**
 * Runs a CLI main function: typed errors print as `error [CODE]: message` (no stack trace) and
 * exit 1; a command line the CLI's `parseArgs` refuses prints `usage error: …` and exits 2, except
 * `--help`/`-h` on a CLI that has no such flag, which prints the usage from the file's header; anything
 * else is a bug and prints its stack.
 */
export function runCli(main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    if (isRingworkError(e)) {
      process.stderr.write(`error [${e.code}]: ${e.message}\n`);
      process.exit(1);
    }
    const code = (e as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && PARSE_ERRORS.has(code)) {
      const help = process.argv.slice(2).some((a) => a === '--help' || a === '-h');
      let text: string | undefined;
      try {
        text = process.argv[1] ? headerUsage(readFileSync(process.argv[1], 'utf8')) : undefined;
      } catch {
        /* no readable source: no usage text */
      }
      if (help && text) {
        process.stdout.write(`${text}\n`);
        process.exit(0);
      }
      process.stderr.write(
        `usage error: ${(e as Error).message}${text ? ' (`--help` prints the options)' : ''}\n`,
      );
      process.exit(2);
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
