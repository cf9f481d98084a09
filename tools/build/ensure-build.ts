/**
 * Builds the web app (`vite build` into dist/) only when it is missing or older than its sources,
 * with all build output on stderr, so that tools whose stdout is their result (`npm run swarm`)
 * stay clean and repeated runs skip a build that has nothing to do.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * What the build reads, relative to the repository root: the app, the shared code it bundles, the
 * static files it copies, its config, and the installed dependencies (npm rewrites
 * node_modules/.package-lock.json on every install). Folders count with everything inside them,
 * and their own mtime, so a deleted or renamed file makes the build stale too.
 */
export const BUILD_INPUTS: readonly string[] = [
  'web',
  'shared',
  'public',
  'vite.config.ts',
  'tsconfig.base.json',
  'package.json',
  'package-lock.json',
  'node_modules/.package-lock.json',
];

/** Where the start time of the last successful build is kept (its mtime); outside dist/, which is served. */
export const BUILD_STAMP = 'node_modules/.cache/ringwork/web-build-stamp';

/** Options of {@link ensureBuild}. */
export interface EnsureBuildOptions {
  /** The repository root. */
  root: string;
  /** Build even when dist/ looks current. */
  force?: boolean;
  /** Paths (relative to `root`) whose changes make the build stale; defaults to {@link BUILD_INPUTS}. */
  inputs?: readonly string[];
  /** The build's output folder, relative to `root`; its index.html must exist. Defaults to `dist`. */
  outDir?: string;
  /** The stamp file, relative to `root`; defaults to {@link BUILD_STAMP}. */
  stamp?: string;
  /** Runs the build and resolves with its exit status; defaults to {@link viteBuild}. */
  build?: (root: string) => Promise<number>;
  /** Progress lines (stderr in the CLI). */
  log?: (m: string) => void;
  /** The clock; injected for tests. */
  now?: () => number;
}

/** What {@link ensureBuild} did, and why. */
export interface EnsureBuildResult {
  /** Whether a build ran and succeeded. */
  built: boolean;
  /** Why it built (`forced`, or what was stale), or `current`. */
  reason: string;
  /** The build's exit status (0 when none ran); the build printed why when it is not 0. */
  status: number;
}

/** The newest mtime (ms) under `path` (a file or a folder, recursively); -Infinity when it does not exist. */
export async function newestMtime(path: string): Promise<number> {
  let s;
  try {
    s = await stat(path);
  } catch {
    return -Infinity;
  }
  let newest = s.mtimeMs;
  if (s.isDirectory()) {
    for (const entry of await readdir(path)) newest = Math.max(newest, await newestMtime(join(path, entry)));
  }
  return newest;
}

/**
 * Why the build in `outDir` is stale (missing output, no stamp, or the newest input and when it
 * changed), or null when it is current.
 */
export async function staleReason(
  root: string,
  inputs: readonly string[] = BUILD_INPUTS,
  outDir = 'dist',
  stamp = BUILD_STAMP,
): Promise<string | null> {
  if (!existsSync(join(root, outDir, 'index.html'))) return `${outDir}/ has no build`;
  let builtAt: number;
  try {
    builtAt = (await stat(join(root, stamp))).mtimeMs;
  } catch {
    return `no record of when ${outDir}/ was built`;
  }
  for (const input of inputs) {
    const t = await newestMtime(join(root, input));
    if (t > builtAt) return `${input} changed since the last build`;
  }
  return null;
}

/** Runs `vite build` in `root` with its stdout sent to stderr; resolves with its exit status. */
export function viteBuild(root: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'node_modules/vite/bin/vite.js'), 'build'], {
      cwd: root,
      stdio: ['ignore', process.stderr, process.stderr],
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/**
 * Builds the web app when dist/ is missing or older than any of its inputs (or when `force`), and
 * records the build's start time so that sources edited during the build count as changed.
 */
export async function ensureBuild(o: EnsureBuildOptions): Promise<EnsureBuildResult> {
  const log = o.log ?? (() => undefined);
  const now = o.now ?? Date.now;
  const stamp = join(o.root, o.stamp ?? BUILD_STAMP);
  const reason = o.force ? 'forced' : await staleReason(o.root, o.inputs, o.outDir, o.stamp);
  if (reason === null) {
    log('web build is current (dist/ is newer than web/, shared/, public/ and the config); not rebuilding');
    return { built: false, reason: 'current', status: 0 };
  }
  log(`building the web app: ${reason}`);
  const startedAt = now();
  const status = await (o.build ?? viteBuild)(o.root);
  // No stamp for a failed build: the next run builds again.
  if (status !== 0) return { built: false, reason, status };
  await mkdir(dirname(stamp), { recursive: true });
  await writeFile(stamp, `${new Date(startedAt).toISOString()}\n`);
  await utimes(stamp, startedAt / 1000, startedAt / 1000);
  return { built: true, reason, status };
}
