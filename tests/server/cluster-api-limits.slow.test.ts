/**
 * An API key's limits in cluster mode: a real `redis-server` and two server processes with the same
 * `--api-keys` file, answering with the server's own engine (`--api-local-fallback`, stories260K).
 * Requests alternating between the instances (a sticky-less balancer) hit the key's requests per
 * minute and its hourly token budget once over the cluster, not once per instance (2 requests a
 * minute and 20 tokens an hour per key, so one request on each instance reaches either).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type ClusterInstance, type TestCluster } from '../helpers/cluster';
import { scaled, TIMEOUTS, waitUntil } from '../helpers/timeouts';

const RATE_KEY = 'r'.repeat(24);
const BUDGET_KEY = 'b'.repeat(24);
/** Starts each instance's engine, so the rate test's requests fall well inside one refill (30 s). */
const WARM_KEY = 'w'.repeat(24);
/** Requests per minute and generated tokens per hour, per key (the same flags on both instances). */
const RPM = 2;
const TOKENS_PER_HOUR = 20;

let cluster: TestCluster;
let a: ClusterInstance;
let b: ClusterInstance;
let redis: Redis;
const dir = mkdtempSync(join(tmpdir(), 'ringwork-cluster-limits-'));

beforeAll(async () => {
  const keys = join(dir, 'keys.txt');
  writeFileSync(keys, `${RATE_KEY}\n${BUDGET_KEY}\n${WARM_KEY}\n`);
  cluster = await startCluster(['a', 'b'], {
    args: [
      '--api-keys',
      keys,
      '--api-local-fallback',
      '--api-requests-per-minute',
      String(RPM),
      '--api-tokens-per-hour',
      String(TOKENS_PER_HOUR),
    ],
  });
  [a, b] = cluster.instances as [ClusterInstance, ClusterInstance];
  await cluster.coordinatorInstance('one coordinator among a and b');
  redis = new Redis(cluster.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
}, TIMEOUTS.serverStart * 3);

afterAll(async () => {
  await redis?.quit().catch(() => undefined);
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** One completion on `inst` with `key`: the status, the typed code of a refusal, its Retry-After. */
async function complete(inst: ClusterInstance, key: string, maxTokens: number) {
  const r = await fetch(`${inst.url}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'stories260K',
      prompt: 'Once upon a time',
      max_tokens: maxTokens,
      temperature: 0,
    }),
  });
  const body = (await r.json()) as { error?: { code: string }; usage?: { completion_tokens: number } };
  return {
    status: r.status,
    code: body.error?.code,
    retryAfter: r.headers.get('retry-after'),
    tokens: body.usage?.completion_tokens ?? 0,
  };
}

const principal = (key: string) => `key:${createHash('sha256').update(key).digest('hex').slice(0, 8)}`;

describe('cluster mode: API key limits over every instance', () => {
  it(
    "a key's requests per minute are the cluster's: the balancer alternating instances gets RPM, not 2 × RPM",
    async () => {
      // Each instance says where it counts a key's limits.
      for (const inst of [a, b])
        expect(((await (await fetch(`${inst.url}/healthz`)).json()) as { apiLimits: string }).apiLimits).toBe(
          'cluster',
        );
      for (const inst of [a, b]) expect((await complete(inst, WARM_KEY, 1)).status, inst.name).toBe(200);
      for (const inst of [a, b]) expect((await complete(inst, RATE_KEY, 1)).status, inst.name).toBe(200);
      // Each instance served one of the two: alone, each would grant one more.
      for (const inst of [a, b]) {
        expect(await complete(inst, RATE_KEY, 1), inst.name).toMatchObject({
          status: 429,
          code: 'API_RATE_LIMITED',
          retryAfter: String(Math.ceil(60 / RPM)),
        });
      }
    },
    scaled(60_000),
  );

  it(
    "a key's hourly token budget is the cluster's: tokens spent on one instance count on the other",
    async () => {
      const first = await complete(a, BUDGET_KEY, 16);
      expect(first.status).toBe(200);
      const second = await complete(b, BUDGET_KEY, 16);
      expect(second.status).toBe(200);
      expect(first.tokens + second.tokens).toBeGreaterThan(TOKENS_PER_HOUR);
      // Spends are written when a stream ends, after its answer: wait for both to reach Redis.
      await waitUntil(
        'both spends in the shared budget',
        async () => {
          const level = Number(await redis.hget(`rw:api:budget:${principal(BUDGET_KEY)}`, 'level'));
          return level <= 0 ? true : undefined;
        },
        { timeoutMs: scaled(10_000) },
      );
      // Refused on either instance for the budget (Retry-After 60; the rate's would be 30). Alone,
      // each instance would have counted only its own 16 tokens and one request, and granted it.
      for (const inst of [a, b]) {
        expect(await complete(inst, BUDGET_KEY, 1), inst.name).toMatchObject({
          status: 429,
          code: 'API_RATE_LIMITED',
          retryAfter: '60',
        });
      }
    },
    scaled(60_000),
  );
});
