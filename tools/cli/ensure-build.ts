/**
 * `tsx tools/cli/ensure-build.ts [--force]`
 *
 * Runs `vite build` only when dist/ is missing or older than web/, shared/, public/, the build
 * config or the installed dependencies (see build/ensure-build.ts). Everything it prints, the
 * build's own output included, goes to stderr: the scripts that chain it (`npm run swarm`,
 * `bench:swarm`, `bench:transport`, `test:browser`) keep stdout for their results. Exits with the
 * build's status when the build fails.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBuild } from '../build/ensure-build.js';
import { runCli } from './cli-util.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

runCli(async () => {
  const { values } = parseArgs({ options: { force: { type: 'boolean', default: false } } });
  const result = await ensureBuild({
    root: ROOT,
    force: values.force,
    log: (m) => process.stderr.write(`${m}\n`),
  });
  if (result.status !== 0) {
    process.stderr.write(`error: vite build failed (exit ${result.status}); its output is above.\n`);
    process.exit(result.status);
  }
});
