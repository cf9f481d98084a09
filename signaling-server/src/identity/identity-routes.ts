/**
 * The sign-in endpoints: `GET /api/auth/nonce` → `{nonce, expiresAt}` and `POST /api/auth/verify`
 * `{message, signature}` → `{address, token, expiresAt}`, or `{error}` (a serialised
 * {@link RingworkError}) with a status by code. Requests are limited per client address bucket; the
 * expected domain is the request's Host header, which the server's host allowlist has already
 * accepted (so it is one of this server's own names).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isRingworkError, RingworkError, type ErrorCode } from '../../../shared/errors.js';
import type { KeyedRateLimiter } from '../rate-limit.js';
import type { SiweAuth } from './siwe-auth.js';
import { sendJson } from '../json-response.js';

/** Largest sign-in body accepted, bytes (a SIWE message is well under 1 KiB). */
export const MAX_AUTH_BODY_BYTES = 8 * 1024;

const STATUS: Partial<Record<ErrorCode, number>> = {
  AUTH_BAD_MESSAGE: 400,
  AUTH_RATE_LIMITED: 429,
  CLUSTER_UNAVAILABLE: 503,
};

/** The identity routes of one server. */
export interface IdentityRoutes {
  handles(pathname: string): boolean;
  handle(req: IncomingMessage, res: ServerResponse, url: URL, bucket: string): void;
}

/** Creates the sign-in routes. */
export function createIdentityRoutes(deps: {
  auth: SiweAuth;
  rate: KeyedRateLimiter;
  headers: Record<string, string>;
  onError?: (e: unknown) => void;
}): IdentityRoutes {
  const { auth, rate } = deps;
  const send = (res: ServerResponse, status: number, body: unknown): void =>
    sendJson(res, status, body, deps.headers);
  const fail = (res: ServerResponse, e: unknown): void => {
    let err: RingworkError;
    if (isRingworkError(e)) err = e;
    else {
      deps.onError?.(e);
      err = new RingworkError('SERVER_INTERNAL', 'Internal error; the sign-in was dropped.', {});
    }
    send(res, STATUS[err.code] ?? (err.code === 'SERVER_INTERNAL' ? 500 : 401), { error: err.toJSON() });
  };

  const readBody = (req: IncomingMessage): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let over = false;
      req.on('data', (c: Buffer) => {
        if (over) return;
        size += c.length;
        if (size > MAX_AUTH_BODY_BYTES) {
          reject(
            new RingworkError('AUTH_BAD_MESSAGE', `The sign-in body is over ${MAX_AUTH_BODY_BYTES} bytes.`),
          );
          // Drain the rest (a bounded request timeout applies) so the client reads the answer.
          over = true;
          chunks.length = 0;
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => {
        if (over) return;
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (e) {
          reject(new RingworkError('AUTH_BAD_MESSAGE', 'The sign-in body is not JSON.', { cause: e }));
        }
      });
      req.on('error', reject);
    });

  return {
    handles: (p) => p === '/api/auth/nonce' || p === '/api/auth/verify',
    handle(req, res, url, bucket) {
      const method = req.method ?? 'GET';
      if (!rate.take(bucket)) {
        fail(
          res,
          new RingworkError('AUTH_RATE_LIMITED', 'Too many sign-in requests; retry in a few seconds.'),
        );
        return;
      }
      if (url.pathname === '/api/auth/nonce') {
        if (method !== 'GET') {
          res.writeHead(405, { Allow: 'GET' }).end();
          return;
        }
        auth
          .issueSharedNonce(bucket)
          .then((n) => send(res, 200, { ...n, chainId: auth.chainId }))
          .catch((e: unknown) => fail(res, e));
        return;
      }
      if (method !== 'POST') {
        res.writeHead(405, { Allow: 'POST' }).end();
        return;
      }
      const domain = req.headers.host ?? '';
      readBody(req)
        .then((body) => auth.verify(body, { domain }))
        .then((r) => send(res, 200, r))
        .catch((e: unknown) => fail(res, e));
    },
  };
}
