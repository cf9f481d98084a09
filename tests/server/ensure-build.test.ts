import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BUILD_STAMP, ensureBuild, newestMtime, staleReason } from '../../tools/build/ensure-build';

/** Sets a path's mtime to `t` ms (explicit times, no sleeping for the clock to move). */
const touch = (path: string, t: number) => utimes(path, t / 1000, t / 1000);

describe('ensureBuild', () => {
  let root: string;
  let builds: number;
  let status: number;
  let clock: number;
  const build = async (r: string) => {
    builds++;
    await mkdir(join(r, 'dist'), { recursive: true });
    await writeFile(join(r, 'dist/index.html'), '<!doctype html>');
    return status;
  };
  const run = (force = false) =>
    ensureBuild({ root, force, inputs: ['web', 'vite.config.ts'], build, now: () => clock });

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'ringwork-ensure-build-'));
    await mkdir(join(root, 'web/src'), { recursive: true });
    await writeFile(join(root, 'web/src/a.ts'), 'a');
    await writeFile(join(root, 'vite.config.ts'), 'c');
    for (const p of ['web/src/a.ts', 'web/src', 'web', 'vite.config.ts'])
      await touch(join(root, p), 1_000_000);
    builds = 0;
    status = 0;
    clock = 2_000_000;
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('builds when there is no build, then skips while nothing changed', async () => {
    expect(await run()).toEqual({ built: true, reason: 'dist/ has no build', status: 0 });
    expect(await run()).toEqual({ built: false, reason: 'current', status: 0 });
    expect(builds).toBe(1);
    expect(await staleReason(root, ['web'])).toBeNull();
  });

  it('rebuilds when a source file, a deleted file or a config file is newer than the build start', async () => {
    await run();
    await touch(join(root, 'web/src/a.ts'), 2_000_001);
    expect((await run()).reason).toBe('web changed since the last build');
    clock = 3_000_000;
    await run();
    // Deleting a file only changes its folder's mtime.
    await rm(join(root, 'web/src/a.ts'));
    await touch(join(root, 'web/src'), 3_000_001);
    expect((await run()).built).toBe(true);
    clock = 4_000_000;
    await run();
    await touch(join(root, 'vite.config.ts'), 4_000_001);
    expect((await run()).reason).toBe('vite.config.ts changed since the last build');
    expect(builds).toBe(6);
  });

  it('counts a source edited during the build as changed (the stamp is the start time)', async () => {
    await run();
    // Edited after the build started (clock 2_000_000) but before it finished.
    await touch(join(root, 'web/src/a.ts'), 2_000_500);
    expect((await run()).built).toBe(true);
  });

  it('rebuilds when dist/ or the stamp is gone, and when forced', async () => {
    await run();
    await rm(join(root, 'dist'), { recursive: true });
    expect((await run()).reason).toBe('dist/ has no build');
    await rm(join(root, BUILD_STAMP));
    expect((await run()).reason).toBe('no record of when dist/ was built');
    expect((await run(true)).reason).toBe('forced');
    expect(builds).toBe(4);
  });

  it('reports a failed build and leaves no stamp, so the next run builds again', async () => {
    status = 2;
    expect(await run()).toEqual({ built: false, reason: 'dist/ has no build', status: 2 });
    status = 0;
    expect((await run()).reason).toBe('no record of when dist/ was built');
    expect(builds).toBe(2);
  });

  it('takes the newest mtime over a folder tree, and -Infinity for a missing path', async () => {
    await touch(join(root, 'web/src/a.ts'), 5_000_000);
    expect(await newestMtime(join(root, 'web'))).toBe(5_000_000);
    expect(await newestMtime(join(root, 'nope'))).toBe(-Infinity);
  });
});
