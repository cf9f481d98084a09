/**
 * `GET /sdk/ringwork.js`: the browser SDK (web/src/sdk/ringwork.ts, built by `vite build` into
 * `<root>/sdk/ringwork.js`). Other sites import it as an ES module, which browsers fetch in CORS
 * mode, so it is served to any origin (`Access-Control-Allow-Origin: *`, no credentials): the code
 * is public. What a page may then *call* is the API's own policy (`--allow-origin`, keys, rates).
 * The modules it loads on demand (`/sdk/ringwork-*.js`: its ring transport) are served alike.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Routes } from '../http-routes.js';

/** The SDK's path on the server. */
export const SDK_PATH = '/sdk/ringwork.js';

/** The SDK and the modules it imports on demand (the build names them `ringwork-<name>-<hash>.js`). */
const SDK_FILE = /\/sdk\/(ringwork(?:-[A-Za-z0-9_-]+)?\.js)$/;

/** Options of {@link createSdkRoutes}. */
export interface SdkRoutesOptions {
  /** The web root (`--root`, default dist/) holding the build's `sdk/ringwork.js`. */
  root: string;
  onError: (e: unknown) => void;
}

const HEADERS = {
  'Access-Control-Allow-Origin': '*',
  // Pages that are cross-origin isolated (COEP) may load it too.
  'Cross-Origin-Resource-Policy': 'cross-origin',
  'Cache-Control': 'no-cache',
  'X-Content-Type-Options': 'nosniff',
};

/** The SDK route. The file is read per request (about 100 KB; a rebuild is served at once). */
export function createSdkRoutes(o: SdkRoutesOptions): Routes {
  const text = (res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}) =>
    res
      .writeHead(status, { ...HEADERS, ...extra, 'Content-Type': 'text/plain; charset=utf-8' })
      .end(`${body}\n`);
  return {
    handles: (pathname) => pathname.startsWith('/sdk/') && SDK_FILE.test(pathname),
    handle(req: IncomingMessage, res: ServerResponse, url: URL) {
      // The name is one path segment of a fixed pattern: nothing outside `<root>/sdk` can be named.
      const name = SDK_FILE.exec(url.pathname)?.[1];
      if (!name) return text(res, 404, 'No such SDK module.');
      const file = join(o.root, 'sdk', name);
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { ...HEADERS, 'Access-Control-Allow-Methods': 'GET, HEAD' }).end();
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        text(res, 405, 'Use GET.', { Allow: 'GET, HEAD' });
        return;
      }
      readFile(file)
        .then((body) => {
          res.writeHead(200, {
            ...HEADERS,
            'Content-Type': 'text/javascript; charset=utf-8',
            'Content-Length': String(body.length),
          });
          res.end(req.method === 'HEAD' ? undefined : body);
        })
        .catch((e: unknown) => {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT')
            return text(res, 404, 'The SDK is not built: run `npm run build` (npm start builds it).');
          o.onError(e);
          text(res, 500, 'The SDK could not be read.');
        });
    },
  };
}
