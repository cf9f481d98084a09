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
import { KEYS, luaLiveInstanceSum } from './redis-store.js';

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

/**
 * A Lua fragment that reads the token bucket in hash `key` (`level`, `at`) into `local <level>` and
 * `local <at>`, refilled to now (a Lua local `now`) at `cap` per `periodMs`, never above `cap`; a
 * bucket not there yet is full. `cap` is a Lua expression.
 */
function luaRefill(level: string, at: string, key: string, cap: string, periodMs: number): string {
  return `local ${level}_cap = ${cap}
local ${level}_b = redis.call('HMGET', ${key}, 'level', 'at')
local ${level} = tonumber(${level}_b[1]) or ${level}_cap
local ${at} = tonumber(${level}_b[2]) or now
if now > ${at} then ${level} = math.min(${level}_cap, ${level} + (now - ${at}) / ${periodMs} * ${level}_cap); ${at} = now end`;
}

// KEYS: streams, budget, rate. ARGV: me, mine, maxStreams, instance key prefix, now, tokensPerHour,
// requestsPerMinute, ttl. The budget may be below zero (a stream is debited as it goes): refused while
// it is not positive, like the single-instance count.
const ADMIT = `
if tonumber(ARGV[2]) > 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
${luaLiveInstanceSum('held', 'KEYS[1]', 'ARGV[1]', 'ARGV[4]')}
if held >= tonumber(ARGV[3]) then return {'streams', held} end
local now = tonumber(ARGV[5])
${luaRefill('level', 'at', 'KEYS[2]', 'tonumber(ARGV[6])', 3_600_000)}
if level <= 0 then return {'budget', held} end
${luaRefill('rl', 'rat', 'KEYS[3]', 'tonumber(ARGV[7])', 60_000)}
if rl < 1 then return {'rate', held} end
redis.call('HSET', KEYS[3], 'level', tostring(rl - 1), 'at', tostring(rat))
redis.call('HSET', KEYS[2], 'level', tostring(level), 'at', tostring(at))
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[8]) end
return {'ok', held + 1}`;

// KEYS: budget. ARGV: now, tokensPerHour, tokens, ttl.
const SPEND = `
local now = tonumber(ARGV[1])
${luaRefill('level', 'at', 'KEYS[1]', 'tonumber(ARGV[2])', 3_600_000)}
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
