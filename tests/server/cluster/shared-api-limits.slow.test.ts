/**
 * The API keys' limits counted over a cluster (cluster/shared-api-limits.ts) on a real
 * `redis-server`: two instances' access policies (each its own Redis connection and instance id)
 * share one key's concurrent streams, request rate and hourly token budget, so two instances allow
 * what one does, not twice; a crashed instance's streams stop counting once its liveness key is
 * gone; with Redis down each instance counts alone again (fail open) and says so.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRingworkError } from '../../../shared/errors';
import { createApiAccess, type ApiAccess } from '../../../signaling-server/src/api/api-access';
import { apiConfigSchema } from '../../../signaling-server/src/api/api-config';
import { createRedisStore, KEYS, type RedisStore } from '../../../signaling-server/src/cluster/redis-store';
import { createSharedApiLimits } from '../../../signaling-server/src/cluster/shared-api-limits';
import { startRedis, type TestRedis } from '../../helpers/redis-server';
import { scaled, TIMEOUTS, waitUntil } from '../../helpers/timeouts';

const KEY = 'k'.repeat(24);
const OTHER = 'o'.repeat(24);
const auth = (k: string) => `Bearer ${k}`;

let redis: TestRedis;
const stores: RedisStore[] = [];

beforeAll(async () => {
  redis = await startRedis();
}, TIMEOUTS.serverStart);
afterAll(async () => {
  for (const s of stores) await s.close().catch(() => undefined);
  await redis?.kill();
});

/** How an acquire ended: granted, or the typed refusal's code and its retry hint. */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (!isRingworkError(e)) throw e;
    return `${e.code}/${String(e.details.retryAfterS)}`;
  }
}

let now = 1_000_000;
/** Instance `id`: its own Redis connection, liveness key and access policy over the shared counters. */
async function instance(
  id: string,
  config: Record<string, unknown>,
): Promise<{ access: ApiAccess; store: RedisStore; warnings: string[] }> {
  const store = createRedisStore(redis.url, () => undefined);
  stores.push(store);
  await store.connect(5000);
  await store.cmd.set(KEYS.instance(id), '1');
  const warnings: string[] = [];
  const access = createApiAccess(apiConfigSchema.parse(config), {
    keys: [KEY, OTHER],
    clock: { now: () => now },
    logger: { warn: (_o, m) => warnings.push(m), info: () => undefined },
  });
  access.share(createSharedApiLimits(store.cmd, id));
  return { access, store, warnings };
}

describe('API key limits over a cluster (real redis-server)', () => {
  it(
    "a key's streams, requests per minute and token budget count over both instances; a dead instance's streams lapse",
    async () => {
      const config = { maxStreamsPerKey: 2, requestsPerMinute: 4, tokensPerHour: 100 };
      const a = await instance('a', config);
      const b = await instance('b', config);
      expect(a.access.counting).toBe('cluster');

      // Streams: one on each instance fills the key's two; a third is refused on either.
      const s1 = await a.access.acquire(auth(KEY), 'x');
      const s2 = await b.access.acquire(auth(KEY), 'x');
      expect(await outcome(a.access.acquire(auth(KEY), 'x'))).toBe('API_RATE_LIMITED/1');
      expect(await outcome(b.access.acquire(auth(KEY), 'x'))).toBe('API_RATE_LIMITED/1');
      // Another key is not affected.
      (await b.access.acquire(auth(OTHER), 'x')).release();
      // b crashes holding its stream: once its liveness key lapses, its stream no longer counts.
      await b.store.cmd.del(KEYS.instance('b'));
      const s3 = await a.access.acquire(auth(KEY), 'x');
      s1.release();
      s3.release();
      s2.release();
      // Releases are written: a freed slot is free on the other instance (the 4 requests of the
      // minute are used up by now: 3 granted + 1 of the other key does not count).
      await waitUntil(
        'releases written',
        async () =>
          (await a.store.cmd.hget(`rw:api:streams:${s1.principal}`, 'a')) === null ? true : undefined,
        { timeoutMs: scaled(10_000) },
      );

      // Requests per minute: the key's fourth request, then none on either instance.
      expect(await outcome(b.access.acquire(auth(KEY), 'x').then((g) => g.release()))).toBe('ok');
      expect(await outcome(a.access.acquire(auth(KEY), 'x'))).toBe('API_RATE_LIMITED/15');
      expect(await outcome(b.access.acquire(auth(KEY), 'x'))).toBe('API_RATE_LIMITED/15');
      now += 15_000; // one request back, for the cluster: one instance takes it, the other waits
      expect(await outcome(a.access.acquire(auth(KEY), 'x').then((g) => g.release()))).toBe('ok');
      expect(await outcome(b.access.acquire(auth(KEY), 'x'))).toBe('API_RATE_LIMITED/15');

      // Token budget: 100 an hour over the cluster. 60 spent on a and 60 on b: refused on both.
      now += 60_000;
      const g1 = await a.access.acquire(auth(OTHER), 'x');
      g1.spend(60);
      g1.release();
      const g2 = await b.access.acquire(auth(OTHER), 'x');
      g2.spend(60);
      g2.release();
      await waitUntil(
        'spends written',
        async () => {
          const level = Number(await a.store.cmd.hget(`rw:api:budget:${g1.principal}`, 'level'));
          return level < 0 ? true : undefined;
        },
        { timeoutMs: scaled(10_000) },
      );
      expect(await outcome(a.access.acquire(auth(OTHER), 'x'))).toBe('API_RATE_LIMITED/60');
      expect(await outcome(b.access.acquire(auth(OTHER), 'x'))).toBe('API_RATE_LIMITED/60');
      now += 36 * 60_000; // 60 tokens refilled: positive again
      expect(await outcome(b.access.acquire(auth(OTHER), 'x').then((g) => g.release()))).toBe('ok');
    },
    scaled(60_000),
  );

  it(
    "concurrent requests of one key on one instance each count (none overwrites the other's slot)",
    async () => {
      await redis.restart();
      const a = await instance('a', { maxStreamsPerKey: 2, requestsPerMinute: 1000 });
      const b = await instance('b', { maxStreamsPerKey: 2, requestsPerMinute: 1000 });
      const both = await Promise.all([a.access.acquire(auth(KEY), 'x'), a.access.acquire(auth(KEY), 'x')]);
      expect(await a.store.cmd.hget(`rw:api:streams:${both[0].principal}`, 'a')).toBe('2');
      expect(await outcome(b.access.acquire(auth(KEY), 'x'))).toBe('API_RATE_LIMITED/1');
      for (const g of both) g.release();
      await waitUntil(
        'releases written',
        async () =>
          (await a.store.cmd.hget(`rw:api:streams:${both[0].principal}`, 'a')) === null ? true : undefined,
        { timeoutMs: scaled(10_000) },
      );
      expect(await outcome(b.access.acquire(auth(KEY), 'x').then((g) => g.release()))).toBe('ok');
    },
    scaled(60_000),
  );

  it(
    'Redis down: each instance counts alone (fail open, N× the limit) and says so; back to the cluster when Redis is',
    async () => {
      await redis.restart();
      const config = { maxStreamsPerKey: 1, requestsPerMinute: 1000 };
      const a = await instance('a', config);
      const b = await instance('b', config);
      const held = await a.access.acquire(auth(KEY), 'x');
      expect(await outcome(b.access.acquire(auth(KEY), 'x'))).toBe('API_RATE_LIMITED/1');
      await redis.kill();
      // b holds none itself: alone it grants one; a holds its one: alone it refuses.
      const alone = await b.access.acquire(auth(KEY), 'x');
      expect(b.access.counting).toBe('instance-fallback');
      expect(b.warnings).toEqual([expect.stringContaining('counting on this instance alone (fail open)')]);
      expect(await outcome(a.access.acquire(auth(KEY), 'x'))).toBe('API_RATE_LIMITED/1');
      alone.release();
      held.release();
      await redis.restart();
      await waitUntil('b reconnected', async () => (b.store.ready ? true : undefined), {
        timeoutMs: scaled(10_000),
      });
      await b.store.cmd.set(KEYS.instance('b'), '1');
      const again = await b.access.acquire(auth(KEY), 'x');
      expect(b.access.counting).toBe('cluster');
      // Counted over the cluster again: a's request waits for b's stream.
      await waitUntil('a reconnected', async () => (a.store.ready ? true : undefined), {
        timeoutMs: scaled(10_000),
      });
      expect(await outcome(a.access.acquire(auth(KEY), 'x'))).toBe('API_RATE_LIMITED/1');
      again.release();
    },
    scaled(60_000),
  );
});
