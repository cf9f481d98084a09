/**
 * `GET /api/stake/<address>` → `{enabled: true, contract, chainId, slasher, requiredWei: {default,
 * models}, stakeWei}`: what the Contribute page shows (the address's active stake and the minimum for
 * ring membership), `rpc` when `--chain-rpc-public` names one for pages; `?fresh=1` reads the chain
 * again (a page that just staked). Amounts are decimal wei strings. Without stake configured: 200
 * `{enabled: false}`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../json-response.js';
import type { KeyedRateLimiter } from '../rate-limit.js';
import type { StakeService } from './stake-service.js';

/** Creates the stake route (`stake` null: stake is off). */
export function createStakeRoutes(deps: {
  stake: StakeService | null;
  rate: KeyedRateLimiter;
  headers: Record<string, string>;
  onError: (e: unknown) => void;
}) {
  const send = (res: ServerResponse, status: number, body: unknown): void =>
    sendJson(res, status, body, deps.headers);
  return {
    handles: (p: string) => p.startsWith('/api/stake/'),
    handle(req: IncomingMessage, res: ServerResponse, url: URL, bucket: string): void {
      if ((req.method ?? 'GET') !== 'GET') {
        res.writeHead(405, { Allow: 'GET' }).end();
        return;
      }
      if (!deps.rate.take(bucket)) {
        send(res, 429, { error: 'too many stake requests' });
        return;
      }
      const stake = deps.stake;
      if (!stake) {
        // Stake off is a normal server state (200), not a missing page.
        send(res, 200, { enabled: false });
        return;
      }
      const m = /^\/api\/stake\/(0x[0-9a-fA-F]{40})$/.exec(url.pathname);
      if (!m) {
        send(res, 404, { error: 'unknown stake path' });
        return;
      }
      // `?fresh=1` (the page just staked): read the chain unless read in the last second. The
      // route's rate limit bounds the reads one client can cause.
      const fresh = url.searchParams.get('fresh') === '1';
      stake.gate.stakeOf(m[1]!, fresh ? 1000 : undefined).then(
        (wei) => send(res, 200, { enabled: true, ...stake.describe(), stakeWei: wei?.toString() ?? null }),
        (e: unknown) => {
          deps.onError(e);
          send(res, 503, { enabled: true, error: 'the stake chain is not answering' });
        },
      );
    },
  };
}
