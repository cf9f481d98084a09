/**
 * The API's per-key limits counted over the whole cluster (cluster mode). Behind a balancer a key's
 * requests reach any instance, so each instance counting on its own would allow N× a key's request
 * rate, hourly token budget and concurrent streams. Here one Lua script per decision reads and
 * writes the key's counters in Redis atomically:
 * - `rw:api:rate:<principal>` and `rw:api:budget:<principal>`: token buckets (`level`, `at`),
 *   refilled with the deciding instance's clock (instances' clocks agree to well under a second);
 * - `rw:api:streams:<principal>`: streams held, one field per instance, set from that instance's own
 *   count on every decision (so a lost release heals at the next one) and dropped once the instance's
 *   liveness key (`rw:inst:<id>`) is gone (a crashed instance's streams do not count for ever).
 * The server-wide stream cap stays per instance: it bounds one process's work, not a key's.
 * Redis unreachable or slow: the caller counts on this instance alone (see api-access.ts).
 */
import type { Redis } from 'ioredis';
import { KEYS } from './redis-store.js';

/** The limits of one key as configured (every instance is given the same `--api-*` flags). */
export interface KeyLimits {
  maxStreamsPerKey: number;
  requestsPerMinute: number;
  tokensPerHour: number;
}

/** Why a key's request was refused, as the cluster counted it. */
export type SharedRefusal = 'streams' | 'budget' | 'rate';

/** The cluster's counters of the per-key limits. Every call rejects when Redis cannot answer. */
export interface SharedApiLimits {
  /**
   * Takes a request and a stream slot for `principal` when the cluster's counts allow it; `mine`:
   * the streams this instance holds for it now (written first, so the count is this instance's truth).
   * Resolves `held` (streams over the cluster, this one included) or the refusal.
   */
  admit(
    principal: string,
    mine: number,
    limits: KeyLimits,
    now: number,
  ): Promise<{ ok: true; held: number } | { ok: false; reason: SharedRefusal; held: number }>;
  /** Debits generated tokens from the key's hourly budget. */
  spend(principal: string, tokens: number, limits: KeyLimits, now: number): Promise<void>;
  /** Writes this instance's stream count for `principal` (after a release). */
  setMine(principal: string, mine: number): Promise<void>;
}

/** Key names (under the cluster's prefix). */
export const API_KEYS = {
  rate: (principal: string) => `rw:api:rate:${principal}`,
  budget: (principal: string) => `rw:api:budget:${principal}`,
  streams: (principal: string) => `rw:api:streams:${principal}`,
} as const;

/**
 * Counters expire after two idle hours: longer than the budget's full refill (an hour), so an
 * expired bucket reads as the full one it would be anyway.
 */
const TTL_MS = 2 * 3_600_000;

// KEYS: streams, budget, rate. ARGV: me, mine, maxStreams, instance key prefix, now, tokensPerHour,
// requestsPerMinute, ttl. The budget may be below zero (a stream is debited as it goes): refused while
// it is not positive, like the single-instance count.
const ADMIT = `
if tonumber(ARGV[2]) > 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
local h = redis.call('HGETALL', KEYS[1])
local held = 0
for i = 1, #h, 2 do
  if h[i] ~= ARGV[1] and redis.call('EXISTS', ARGV[4] .. h[i]) == 0 then
    redis.call('HDEL', KEYS[1], h[i])
  else
    held = held + tonumber(h[i + 1])
  end
end
if held >= tonumber(ARGV[3]) then return {'streams', held} end
local now = tonumber(ARGV[5])
local tph = tonumber(ARGV[6])
local b = redis.call('HMGET', KEYS[2], 'level', 'at')
local level = tonumber(b[1]) or tph
local at = tonumber(b[2]) or now
if now > at then level = math.min(tph, level + (now - at) / 3600000 * tph); at = now end
if level <= 0 then return {'budget', held} end
local rpm = tonumber(ARGV[7])
local r = redis.call('HMGET', KEYS[3], 'level', 'at')
local rl = tonumber(r[1]) or rpm
local rat = tonumber(r[2]) or now
if now > rat then rl = math.min(rpm, rl + (now - rat) / 60000 * rpm); rat = now end
if rl < 1 then return {'rate', held} end
redis.call('HSET', KEYS[3], 'level', tostring(rl - 1), 'at', tostring(rat))
redis.call('HSET', KEYS[2], 'level', tostring(level), 'at', tostring(at))
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[8]) end
return {'ok', held + 1}`;

// KEYS: budget. ARGV: now, tokensPerHour, tokens, ttl.
const SPEND = `
local now = tonumber(ARGV[1])
local tph = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(b[1]) or tph
local at = tonumber(b[2]) or now
if now > at then level = math.min(tph, level + (now - at) / 3600000 * tph); at = now end
redis.call('HSET', KEYS[1], 'level', tostring(level - tonumber(ARGV[3])), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1`;

type Scripted = Redis & {
  rwApiAdmit(...args: Array<string | number>): Promise<[string, number]>;
  rwApiSpend(...args: Array<string | number>): Promise<number>;
};

/** The shared counters over `cmd` (the instance's command connection); `me` is this instance's id. */
export function createSharedApiLimits(cmd: Redis, me: string): SharedApiLimits {
  cmd.defineCommand('rwApiAdmit', { numberOfKeys: 3, lua: ADMIT });
  cmd.defineCommand('rwApiSpend', { numberOfKeys: 1, lua: SPEND });
  const r = cmd as Scripted;
  const instancePrefix = KEYS.instance('');
  return {
    async admit(principal, mine, limits, now) {
      const [verdict, held] = await r.rwApiAdmit(
        API_KEYS.streams(principal),
        API_KEYS.budget(principal),
        API_KEYS.rate(principal),
        me,
        mine,
        limits.maxStreamsPerKey,
        instancePrefix,
        now,
        limits.tokensPerHour,
        limits.requestsPerMinute,
        TTL_MS,
      );
      if (verdict === 'ok') return { ok: true, held };
      return { ok: false, reason: verdict as SharedRefusal, held };
    },
    async spend(principal, tokens, limits, now) {
      await r.rwApiSpend(API_KEYS.budget(principal), now, limits.tokensPerHour, tokens, TTL_MS);
    },
    async setMine(principal, mine) {
      if (mine > 0) await cmd.hset(API_KEYS.streams(principal), me, mine);
      else await cmd.hdel(API_KEYS.streams(principal), me);
    },
  };
}
