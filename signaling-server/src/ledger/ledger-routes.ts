/**
 * Read-only ledger endpoints: `GET /api/ledger/leaderboard[?limit=N]` → `{leaderboard: [{address,
 * flops, validatedSteps}]}` (top contributors by credit) and `GET /api/ledger/account/<address>` →
 * `{address, flops, validatedSteps, sessions, usage, penalties, slashes}` (slashes: the on-chain
 * slashes of proven deviations with their transaction hashes, stake/slasher.ts). Without a ledger all three
 * answer 200 with `{enabled: false}`: a server without a ledger is a normal state, not a missing
 * page, so the UI says "ledger off" without a failed request in the browser's console.
 *
 * `GET /api/usage` with `Authorization: Bearer <SIWE token>` → `{enabled: true, address, requests,
 * tokens, validatedSteps, flops}`: the signed-in requester's own usage, readable by it only (the
 * address comes from the token, never from the request); without a valid token 401 `{error}` (a
 * serialised `AUTH_BAD_TOKEN`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isRingworkError, RingworkError } from '../../../shared/errors.js';
import type { SiweAuth } from '../identity/siwe-auth.js';
import type { KeyedRateLimiter } from '../rate-limit.js';
import type { Ledger } from './ledger.js';
import { sendJson } from '../json-response.js';

/** The ledger routes of one server. */
export interface LedgerRoutes {
  handles(pathname: string): boolean;
  handle(req: IncomingMessage, res: ServerResponse, url: URL, bucket: string): void;
}

/** Creates the ledger routes (`ledger` null: the ledger is off). */
export function createLedgerRoutes(deps: {
  ledger: Ledger | null;
  rate: KeyedRateLimiter;
  headers: Record<string, string>;
  onError: (e: unknown) => void;
  /** Checks the SIWE token of `/api/usage` (absent: that route answers 404). */
  auth?: Pick<SiweAuth, 'checkToken'>;
}): LedgerRoutes {
  const send = (res: ServerResponse, status: number, body: unknown): void =>
    sendJson(res, status, body, deps.headers);
  /** The address of the request's bearer token, or undefined after answering 401. */
  const signedIn = (req: IncomingMessage, res: ServerResponse): string | undefined => {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    try {
      if (!m || !deps.auth)
        throw new RingworkError(
          'AUTH_BAD_TOKEN',
          'Sign in first: send your identity token as "Authorization: Bearer".',
        );
      return deps.auth.checkToken(m[1]!).address;
    } catch (e) {
      if (!isRingworkError(e)) throw e;
      send(res, 401, { error: e.toJSON() });
      return undefined;
    }
  };
  return {
    handles: (p) => p.startsWith('/api/ledger/') || p === '/api/usage',
    handle(req, res, url, bucket) {
      if ((req.method ?? 'GET') !== 'GET') {
        res.writeHead(405, { Allow: 'GET' }).end();
        return;
      }
      if (!deps.rate.take(bucket)) {
        send(res, 429, { error: 'too many ledger requests' });
        return;
      }
      const ledger = deps.ledger;
      if (!ledger) {
        send(res, 200, { enabled: false });
        return;
      }
      const account = /^\/api\/ledger\/account\/(0x[0-9a-fA-F]{40})$/.exec(url.pathname);
      let answer: Promise<unknown>;
      if (url.pathname === '/api/usage') {
        const address = signedIn(req, res);
        if (!address) return;
        answer = ledger.usage(address).then((u) => ({
          enabled: true,
          address,
          requests: u.requests,
          tokens: u.tokens,
          validatedSteps: u.steps,
          flops: u.flops,
        }));
      } else if (url.pathname === '/api/ledger/leaderboard') {
        const limit = Number(url.searchParams.get('limit') ?? 20);
        answer = ledger
          .leaderboard(Number.isFinite(limit) ? limit : 20)
          .then((leaderboard) => ({ enabled: true, leaderboard }));
      } else if (account) {
        const address = account[1]!;
        answer = Promise.all([
          ledger.account(address),
          ledger.usage(address),
          ledger.penalties(address),
          ledger.slashes(address),
        ]).then(([a, usage, penalties, slashes]) => ({ enabled: true, ...a, usage, penalties, slashes }));
      } else {
        send(res, 404, { error: 'unknown ledger path' });
        return;
      }
      answer.then(
        (body) => send(res, 200, body),
        (e: unknown) => {
          deps.onError(e);
          send(res, 503, { enabled: true, error: 'the ledger database is not answering' });
        },
      );
    },
  };
}
