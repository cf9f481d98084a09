/**
 * Static files: the web app and the catalog's model files, with Range support. Paths come from
 * strangers: every one is decoded, refused when it names a dotfile, and contained by real path.
 */
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
};

/** Headers that make pages cross-origin isolated (wasm threads) and let workers load same-origin files. */
export const ISOLATION_HEADERS: Record<string, string> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** Options of {@link serveStatic}. */
export interface ServeStaticOptions {
  /** Only these paths (relative to the root, `/`-separated, decoded) are served. */
  allow?: ReadonlySet<string>;
}

/** True when `child` is `parent` or inside it (both absolute, resolved). */
const within = (parent: string, child: string): boolean => child === parent || child.startsWith(parent + sep);

/**
 * Serves files under `root` with HTTP Range support (peers fetch only their shard's byte ranges)
 * and the isolation headers. Returns false when the path is not a file so the caller can 404.
 * `pathname` (still URL-encoded) overrides the request's path, for directories mounted under a prefix.
 *
 * Refused (false): dotfiles and dot-directories at any depth (`.env`, `.git/`, `.ssh/`), paths not
 * in `opts.allow` when given, and any path whose real location (symlinks resolved) is outside the
 * root's real location — a link inside the root must not publish what it points to.
 */
export async function serveStatic(
  root: string,
  req: IncomingMessage,
  res: ServerResponse,
  pathname?: string,
  opts: ServeStaticOptions = {},
): Promise<boolean> {
  const base = resolve(root);
  let path: string;
  try {
    path = decodeURIComponent(pathname ?? new URL(req.url ?? '/', 'http://x').pathname);
  } catch {
    // Malformed percent-encoding or URL: nothing can match it.
    return false;
  }
  if (path.includes('\u0000') || path.includes('\\')) return false;
  if (path.endsWith('/')) path += 'index.html';
  const rel = path.replace(/^\/+/, '');
  // `..` is a dot-segment too: nothing that starts with a dot is ever served.
  if (rel.split('/').some((seg) => seg.startsWith('.'))) return false;
  if (opts.allow && !opts.allow.has(rel)) return false;
  const file = normalize(join(base, rel));
  if (!within(base, file)) return false;
  let size: number;
  let real: string;
  try {
    real = await realpath(file);
    if (!within(await realpath(base), real)) return false;
    const s = await stat(real);
    if (!s.isFile()) return false;
    size = s.size;
  } catch {
    return false;
  }
  const headers: Record<string, string | number> = {
    ...ISOLATION_HEADERS,
    'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    'Cache-Control': 'no-cache',
  };
  const range = req.headers.range;
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range);
    let start = m?.[1] ? Number(m[1]) : NaN;
    let end = m?.[2] ? Number(m[2]) : size - 1;
    if (m && !m[1] && m[2]) {
      start = Math.max(0, size - Number(m[2]));
      end = size - 1;
    }
    if (!m || !(start >= 0) || start >= size || end < start) {
      res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` }).end();
      return true;
    }
    end = Math.min(end, size - 1);
    res.writeHead(206, {
      ...headers,
      'Content-Range': `bytes ${start}-${end}/${size}`,
      'Content-Length': end - start + 1,
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(real, { start, end }).pipe(res);
    return true;
  }
  res.writeHead(200, { ...headers, 'Content-Length': size });
  if (req.method === 'HEAD') res.end();
  else createReadStream(real).pipe(res);
  return true;
}
