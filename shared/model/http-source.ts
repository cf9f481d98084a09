/**
 * A {@link FileOpener} over HTTP(S) that reads byte ranges with `Range` requests, so a peer
 * downloads only the tensors of its own layers. Works against any static server with Range
 * support, including Hugging Face `https://huggingface.co/<repo>/resolve/main/` URLs.
 */
import { RingworkError, throwIfAborted } from '../errors.js';
import type { ByteSource, FileOpener } from './types.js';

/** The response surface this module uses; satisfied by the WHATWG `Response` of browsers and Node. */
export interface FetchResponseLike {
  ok: boolean;
  status: number;
  statusText?: string;
  headers: { get(name: string): string | null };
  arrayBuffer(): Promise<ArrayBuffer>;
}

/**
 * A minimal `fetch` signature so shared/ needs no DOM types; `globalThis.fetch` satisfies it and
 * tests can inject a fake.
 */
export type FetchLike = (
  url: string,
  init?: { method?: string; headers?: Record<string, string>; signal?: AbortSignal },
) => Promise<FetchResponseLike>;

/** Options of {@link createHttpFileOpener}. */
export interface HttpFileOpenerOptions {
  /** The fetch implementation (default `globalThis.fetch`). */
  fetch?: FetchLike;
  /** Extra headers sent with every request (e.g. `Authorization` for a gated repo). */
  headers?: Record<string, string>;
}

interface AbortControllerLike {
  readonly signal: AbortSignal;
  abort(reason?: unknown): void;
}
type AbortControllerCtor = new () => AbortControllerLike;

/** The decoded body length announced by the response, when it is trustworthy. */
function contentLength(res: FetchResponseLike): number | undefined {
  const raw = res.headers.get('content-length');
  // With Content-Encoding the header counts compressed bytes, not what arrayBuffer() yields.
  const encoding = res.headers.get('content-encoding');
  if (raw === null || (encoding !== null && encoding !== 'identity')) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** The error text plus the low-level reason Node's fetch hides in `cause` (ECONNREFUSED...). */
function describeFailure(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const cause =
    e instanceof Error ? (e.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  const reason = cause?.code ?? cause?.message;
  return typeof reason === 'string' && !text.includes(reason) ? `${text} (${reason})` : text;
}

/** Joins a base URL and a relative file path, keeping any query string of the base at the end. */
export function joinUrl(baseUrl: string, file: string): string {
  const q = baseUrl.search(/[?#]/);
  const base = q < 0 ? baseUrl : baseUrl.slice(0, q);
  const suffix = q < 0 ? '' : baseUrl.slice(q);
  const path = file
    .replace(/^\/+/, '')
    .split('/')
    .map((seg) => encodeURIComponent(seg))
    .join('/');
  return `${base.endsWith('/') ? base : `${base}/`}${path}${suffix}`;
}

/**
 * Creates a {@link FileOpener} rooted at `baseUrl`. Each `read` is one `Range: bytes=a-b` request
 * that must be answered with 206; `size` uses `Range: bytes=0-0` (falling back to `HEAD`).
 *
 * @throws (from the sources) `FETCH_HTTP_STATUS` for 404 and other error statuses,
 *   `FETCH_RANGE_IGNORED` when the server answers a ranged request with the whole file,
 *   `FETCH_FAILED` for network/CORS errors, `MODEL_TRUNCATED` for a range past the end of the
 *   file, `ABORTED` when the signal fires.
 */
export function createHttpFileOpener(baseUrl: string, opts: HttpFileOpenerOptions = {}): FileOpener {
  const fetchFn: FetchLike =
    opts.fetch ?? ((url, init) => (globalThis as unknown as { fetch: FetchLike }).fetch(url, init));
  const extraHeaders = opts.headers ?? {};
  let total = 0;
  return {
    root: baseUrl,
    get bytesRead() {
      return total;
    },
    open(file: string): ByteSource {
      const url = joinUrl(baseUrl, file);
      let own = 0;
      let knownSize: number | undefined;
      const count = (n: number) => {
        own += n;
        total += n;
      };

      async function request(
        headers: Record<string, string>,
        signal: AbortSignal | undefined,
        method = 'GET',
      ): Promise<{ res: FetchResponseLike; cancel: () => void }> {
        throwIfAborted(signal, `Fetching ${url}`);
        // Our own controller lets us drop a response whose body we refuse (a server that ignored
        // Range would otherwise stream the whole multi-GB file), chained to the caller's signal.
        const Ctor = (globalThis as unknown as { AbortController?: AbortControllerCtor }).AbortController;
        const ctl = Ctor ? new Ctor() : undefined;
        const onAbort = () => ctl?.abort(signal?.reason);
        signal?.addEventListener('abort', onAbort, { once: true });
        const cleanup = () => signal?.removeEventListener('abort', onAbort);
        try {
          const res = await fetchFn(url, {
            method,
            headers: { ...extraHeaders, ...headers },
            signal: ctl?.signal ?? signal,
          });
          return {
            res,
            cancel: () => {
              cleanup();
              ctl?.abort();
            },
          };
        } catch (e) {
          cleanup();
          if (signal?.aborted) {
            throw new RingworkError('ABORTED', `Fetching ${url} was aborted.`, { cause: signal.reason });
          }
          throw new RingworkError(
            'FETCH_FAILED',
            `Could not fetch ${url}: ${describeFailure(e)}. Check that the server is reachable and, in a browser, that it sends CORS headers (Access-Control-Allow-Origin, and exposes Content-Range).`,
            { details: { url, method, headers }, cause: e },
          );
        }
      }

      async function body(res: FetchResponseLike, signal: AbortSignal | undefined): Promise<Uint8Array> {
        try {
          return new Uint8Array(await res.arrayBuffer());
        } catch (e) {
          if (signal?.aborted) {
            throw new RingworkError('ABORTED', `Fetching ${url} was aborted.`, { cause: signal.reason });
          }
          throw new RingworkError(
            'FETCH_FAILED',
            `The download of ${url} broke off: ${e instanceof Error ? e.message : String(e)}. Retry; check the network.`,
            { details: { url }, cause: e },
          );
        }
      }

      function statusError(res: FetchResponseLike, what: string): RingworkError {
        const hint =
          res.status === 404
            ? 'The file does not exist at that URL: check the base URL, the repo name and the file name.'
            : res.status === 401 || res.status === 403
              ? 'Access was refused: the repo may be gated or private (pass an Authorization header).'
              : 'Check the server and retry.';
        return new RingworkError(
          'FETCH_HTTP_STATUS',
          `${what} ${url} failed with HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}. ${hint}`,
          { details: { url, status: res.status, statusText: res.statusText, notFound: res.status === 404 } },
        );
      }

      async function headSize(signal: AbortSignal | undefined): Promise<number> {
        const { res, cancel } = await request({}, signal, 'HEAD');
        cancel();
        if (!res.ok) throw statusError(res, 'HEAD');
        const len = contentLength(res);
        if (len === undefined) {
          throw new RingworkError(
            'FETCH_FAILED',
            `Could not learn the size of ${url}: the server sends neither Content-Range nor Content-Length. Serve the file from a static server with Range support.`,
            { details: { url } },
          );
        }
        return len;
      }

      async function sizeFrom(res: FetchResponseLike, signal: AbortSignal | undefined): Promise<number> {
        const cr = /\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '');
        if (res.status === 206) {
          count((await body(res, signal)).byteLength);
          return cr ? Number(cr[1]) : headSize(signal);
        }
        // Only an empty file cannot satisfy bytes=0-0; Content-Range then reads "bytes */0".
        if (res.status === 416) return cr ? Number(cr[1]) : 0;
        // Range ignored: the body is the whole file. Don't download it just to count it.
        if (res.ok) return contentLength(res) ?? headSize(signal);
        throw statusError(res, 'GET');
      }

      async function readFrom(
        res: FetchResponseLike,
        offset: number,
        length: number,
        signal: AbortSignal | undefined,
      ): Promise<Uint8Array> {
        const end = offset + length - 1;
        const truncated = (got: number, size?: number) =>
          new RingworkError(
            'MODEL_TRUNCATED',
            `${url}: asked for bytes ${offset}..${offset + length} but the file ends at ${size ?? offset + got}. The file on the server is truncated or the header is wrong; re-upload or re-export it.`,
            { details: { url, offset, length, got, size } },
          );
        const rangeIgnored = (bodyLength: number | undefined) =>
          new RingworkError(
            'FETCH_RANGE_IGNORED',
            `${url}: the server ignored the Range header (answered ${res.status} with ${bodyLength ?? 'all the'} bytes instead of 206 with bytes ${offset}-${end}). Serve the model from a server with HTTP Range support (e.g. \`npx http-server\`, nginx, Hugging Face), not one that always sends the whole file.`,
            { details: { url, offset, length, status: res.status, bodyLength } },
          );
        if (res.status === 206) {
          const range = /bytes\s+(\d+)-(\d+)\/(\d+|\*)/.exec(res.headers.get('content-range') ?? '');
          if (range && Number(range[1]) !== offset) {
            throw new RingworkError(
              'FETCH_RANGE_IGNORED',
              `${url}: asked for bytes ${offset}-${end} but the server sent ${range[0]}. Serve the model from a server with correct HTTP Range support.`,
              { details: { url, offset, length, contentRange: range[0] } },
            );
          }
          const bytes = await body(res, signal);
          count(bytes.byteLength);
          if (bytes.byteLength < length) {
            throw truncated(bytes.byteLength, range && range[3] !== '*' ? Number(range[3]) : undefined);
          }
          return bytes.byteLength === length ? bytes : bytes.subarray(0, length);
        }
        if (res.status === 416) {
          const m = /\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '');
          throw truncated(0, m ? Number(m[1]) : undefined);
        }
        if (res.ok) {
          // 200 to a ranged request: the server ignored Range. That is only right when the range
          // we asked for is the whole file (e.g. a small JSON file read from offset 0).
          const len = contentLength(res);
          if (offset === 0 && (len === undefined || len === length)) {
            const bytes = await body(res, signal);
            count(bytes.byteLength);
            if (bytes.byteLength === length) return bytes;
            throw rangeIgnored(bytes.byteLength);
          }
          throw rangeIgnored(len);
        }
        throw statusError(res, 'GET');
      }

      const source: ByteSource = {
        name: url,
        get bytesRead() {
          return own;
        },
        async size(signal?: AbortSignal): Promise<number> {
          if (knownSize !== undefined) return knownSize;
          const { res, cancel } = await request({ Range: 'bytes=0-0' }, signal);
          try {
            knownSize = await sizeFrom(res, signal);
          } finally {
            cancel();
          }
          return knownSize;
        },
        async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
          if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
            throw new RingworkError(
              'INVALID_ARGUMENT',
              `${url}: bad byte range offset=${offset} length=${length}.`,
              {
                details: { url, offset, length },
              },
            );
          }
          throwIfAborted(signal, `Fetching ${url}`);
          if (length === 0) return new Uint8Array(0);
          const { res, cancel } = await request({ Range: `bytes=${offset}-${offset + length - 1}` }, signal);
          try {
            return await readFrom(res, offset, length, signal);
          } finally {
            // Drops any body we refused to read (no-op once it has been consumed).
            cancel();
          }
        },
      };
      return source;
    },
  };
}
