/**
 * Every tools/cli entry run through `runCli` answers `--help` with the usage from its file's header
 * and an unknown flag with exit 2 and a one-line `usage error` (no stack trace). `npm run swarm` and
 * `npm run generate` have no `--help` flag of their own, so this is the generic path.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { headerUsage } from '../../tools/cli/cli-util';
import { scaled } from '../helpers/timeouts';

const run = promisify(execFile);
const TSX = path.resolve('node_modules/.bin/tsx');

describe('CLI usage', () => {
  it('headerUsage reads the first doc comment as plain text', () => {
    expect(headerUsage('/**\n * `npm run x -- --a`\n *\n * Does x.\n */\nconst y = 1; /** not this */')).toBe(
      '`npm run x -- --a`\n\nDoes x.',
    );
    expect(headerUsage('const y = 1;')).toBeUndefined();
  });

  for (const [cli, usage] of [
    ['tools/cli/swarm.ts', '`npm run swarm -- --peers N'],
    ['tools/cli/generate.ts', '`npm run generate'],
  ] as const) {
    it(
      `${cli}: --help prints the header's usage, an unknown flag exits 2 without a stack`,
      {
        timeout: scaled(60_000),
      },
      async () => {
        const { stdout } = await run(TSX, [cli, '--help'], { timeout: scaled(50_000) });
        expect(stdout.startsWith(usage)).toBe(true);
        const err = await run(TSX, [cli, '--no-such-flag'], { timeout: scaled(50_000) }).then(
          () => undefined,
          (e: unknown) => e as { code: number; stderr: string },
        );
        expect(err?.code).toBe(2);
        expect(err?.stderr).toContain("usage error: Unknown option '--no-such-flag'");
        expect(err?.stderr).toContain('--help');
        expect(err?.stderr).not.toContain('    at ');
      },
    );
  }
});
