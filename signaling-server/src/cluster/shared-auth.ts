/**
 * Sign-in across instances (cluster mode). Behind a sticky-less balancer a tab's `GET
 * /api/auth/nonce`, `POST /api/auth/verify` and its WebSocket `hello` may each reach a different
 * instance, so the nonce and the token key must be the cluster's, not one process's:
 * - nonces are written to Redis (`rw:auth:nonce:<nonce>`, expiring with the nonce) and taken with
 *   `GETDEL` on verify, so a nonce stays single use over the whole cluster;
 * - the identity tokens' HMAC key is one random key (`rw:auth:secret`), set once by whichever
 *   instance starts first (`SET NX`) and read by every other; after a Redis restart the first
 *   instance to reconnect puts it back.
 * Redis unreachable: a nonce issued by another instance cannot be checked and the verify is refused
 * with `CLUSTER_UNAVAILABLE` (the client fetches a new nonce and retries); nonces this instance issued
 * still verify from its own memory.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { RingworkError } from '../../../shared/errors.js';
import type { SharedAuthState } from '../identity/siwe-auth.js';

const SECRET_KEY = 'rw:auth:secret';
const nonceKey = (nonce: string): string => `rw:auth:nonce:${nonce}`;

const unavailable = (what: string, cause: unknown): RingworkError =>
  new RingworkError(
    'CLUSTER_UNAVAILABLE',
    `The cluster's shared state is unreachable (${what}); retry in a moment.`,
    {
      cause,
    },
  );

/** Reads (creating once) the cluster's token key and returns the shared sign-in state over `cmd`. */
export async function createSharedAuth(cmd: Redis): Promise<SharedAuthState> {
  const mine = randomBytes(32).toString('hex');
  await cmd.set(SECRET_KEY, mine, 'NX');
  const hex = await cmd.get(SECRET_KEY);
  if (!hex || !/^[0-9a-f]{64}$/.test(hex))
    throw new RingworkError('CLUSTER_UNAVAILABLE', 'The cluster has no valid sign-in key in Redis.', {
      details: { key: SECRET_KEY },
    });
  // A Redis restart (without persistence) loses the key: every running instance holds the same one,
  // so whichever reconnects first puts it back, and an instance started later reads it.
  cmd.on('ready', () => void cmd.set(SECRET_KEY, hex, 'NX').catch(() => undefined));
  return {
    secret: Buffer.from(hex, 'hex'),
    async putNonce(nonce, ttlMs) {
      try {
        await cmd.set(nonceKey(nonce), '1', 'PX', Math.max(1, Math.ceil(ttlMs)));
      } catch (e) {
        throw unavailable('storing a sign-in nonce', e);
      }
    },
    async takeNonce(nonce) {
      try {
        return (await cmd.getdel(nonceKey(nonce))) !== null;
      } catch (e) {
        throw unavailable('checking a sign-in nonce', e);
      }
    },
  };
}
