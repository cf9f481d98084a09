/** `npm start -- --help` prints the usage and exits 0; an unknown flag says where the usage is. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { scaled } from '../helpers/timeouts';

const run = promisify(execFile);
const TSX = path.resolve('node_modules/.bin/tsx');
const MAIN = 'signaling-server/src/main.ts';

describe('server --help', () => {
  it('prints the usage and the common flags, and starts nothing', { timeout: scaled(60_000) }, async () => {
    for (const flag of ['--help', '-h']) {
      const { stdout } = await run(TSX, [MAIN, '--port', '0', flag], { timeout: scaled(50_000) });
      expect(stdout).toMatch(/^usage: npm start -- \[flags\]/);
      for (const f of ['--port', '--category-c-below-tflops', '--api-keys', '--redis', '--test-mode'])
        expect(stdout).toContain(f);
      expect(stdout).not.toContain('RINGWORK_LISTENING');
    }
  });

  it('answers an unknown flag with exit 2 and a pointer to --help', { timeout: scaled(60_000) }, async () => {
    const err = await run(TSX, [MAIN, '--no-such-flag'], { timeout: scaled(50_000) }).then(
      () => undefined,
      (e: unknown) => e as { code: number; stderr: string },
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain("Unknown option '--no-such-flag'");
    expect(err?.stderr).toContain('npm start -- --help');
  });
});
