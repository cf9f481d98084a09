/**
 * Cluster mode's shared state in Redis, through ioredis (no hand-written protocol): key and channel
 * names, the coordinator lease (SET NX PX, renewed and released only by its holder with a
 * compare-and-set script), the peer directory (which instance holds a peer's socket, with a TTL),
 * session records (token hash, roles, capability, subscribed models) and pub/sub.
 *
 * Commands fail fast while Redis is unreachable (`enableOfflineQueue: false`): callers turn that into
 * a typed `CLUSTER_UNAVAILABLE` for what needs shared state and keep serving everything else; ioredis
 * reconnects (and re-subscribes) by itself.
 */
import { Redis, type ChainableCommander } from 'ioredis';
import { RingworkError } from '../../../shared/errors.js';

/** Key and channel names (one prefix, so a Redis can be shared with other data). */
export const KEYS = {
  lease: 'rw:lease',
  snapshot: 'rw:snapshot',
  dir: (peer: string) => `rw:dir:${peer}`,
  session: (peer: string) => `rw:sess:${peer}`,
  instance: (id: string) => `rw:inst:${id}`,
  instancesPattern: 'rw:inst:*',
  /** Open WebSocket connections per client address bucket (IPv4 address, IPv6 /64): instance -> count. */
  addressCount: (bucket: string) => `rw:ipc:${bucket}`,
  /** Set (with a short TTL) by a follower whose `/api/network` is being read: the leader publishes its snapshot. */
  snapshotWanted: 'rw:snapshot:wanted',
  /** Each instance's own channel: everything addressed to it (batched, see cluster-bus.ts). */
  chInstance: (id: string) => `rw:ch:inst:${id}`,
  chLeader: 'rw:ch:leader',
} as const;

/** Renews (PEXPIRE) or deletes a key only when it still holds our value. */
const RENEW_IF_MINE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const DEL_IF_MINE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
/**
 * A Lua fragment that sums the per-instance counts of the hash `key` into `local <total>`, dropping
 * (HDEL) the field of every instance but `me` whose liveness key `<prefix><instance>` has lapsed: a
 * crashed instance's share stops counting by itself. The cluster-wide caps (connections per address,
 * an API key's streams) share it.
 */
export function luaLiveInstanceSum(total: string, key: string, me: string, prefix: string): string {
  return `local h = redis.call('HGETALL', ${key})
local ${total} = 0
for i = 1, #h, 2 do
  if h[i] ~= ${me} and redis.call('EXISTS', ${prefix} .. h[i]) == 0 then
    redis.call('HDEL', ${key}, h[i])
  else
    ${total} = ${total} + tonumber(h[i + 1])
  end
end`;
}

/**
 * Admits one connection from an address bucket against the cluster-wide cap, atomically: sums the
 * bucket's counts of the live instances (a dead instance's field is dropped: its key
 * `<ARGV[4]><instance>` lapsed), refuses at the cap, else adds one to this instance's field.
 * KEYS[1] the bucket's hash; ARGV: me, cap, TTL ms, instance key prefix. Returns {admitted 0/1, total}.
 * (It reads instance keys it is not passed: fine on one Redis, not on Redis Cluster.)
 */
const ADMIT_ADDRESS = `
${luaLiveInstanceSum('total', 'KEYS[1]', 'ARGV[1]', 'ARGV[4]')}
if total >= tonumber(ARGV[2]) then return {0, total} end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, total + 1}`;

/** A session as the shared store keeps it (never the token itself). */
export interface SharedSession {
  tokenHash: string;
  roles: string[];
  client?: string;
  /** The last capability the peer sent (JSON), so the coordinator can be re-fed after a takeover. */
  capability?: unknown;
  models: string[];
}

/** The two ioredis connections of an instance (commands, and the one in subscriber mode). */
export interface RedisStore {
  readonly cmd: Redis;
  readonly sub: Redis;
  /** Connects both; CLUSTER_UNAVAILABLE when Redis cannot be reached within `timeoutMs`. */
  connect(timeoutMs: number): Promise<void>;
  /** True while the command connection is up. */
  readonly ready: boolean;
  tryAcquireLease(me: string, ms: number): Promise<boolean>;
  renewLease(me: string, ms: number): Promise<boolean>;
  releaseLease(me: string): Promise<void>;
  leaseHolder(): Promise<string | null>;
  /** Claims a peer for `me`; returns the instance that held it before (null if none). */
  claimPeer(peer: string, me: string, ttlMs: number): Promise<string | null>;
  /** Deletes the directory entry if `me` holds it; true when it did. */
  releasePeer(peer: string, me: string): Promise<boolean>;
  ownerOf(peer: string): Promise<string | null>;
  ownersOf(peers: readonly string[]): Promise<Array<string | null>>;
  /** Queues writing a session record (and its TTL) on a MULTI/pipeline. */
  writeSession(m: ChainableCommander, peer: string, s: SharedSession, ttlMs: number): void;
  loadSession(peer: string): Promise<SharedSession | null>;
  deleteSession(peer: string): Promise<void>;
  /** Publishes JSON; resolves to the number of subscribers that received it (0: nobody listens). */
  publish(channel: string, payload: unknown): Promise<number>;
  /** Counts one more connection from `bucket` on `me` unless the cluster-wide total is at `cap`. */
  admitAddress(
    bucket: string,
    me: string,
    cap: number,
    ttlMs: number,
  ): Promise<{ admitted: boolean; total: number }>;
  /** Queues setting this instance's count for `bucket` to what it holds (0: its field removed). */
  setAddressCount(m: ChainableCommander, bucket: string, me: string, n: number, ttlMs: number): void;
  close(): Promise<void>;
}

/** Wraps a failed Redis call as the typed error callers decide on. */
export function clusterUnavailable(what: string, cause: unknown): RingworkError {
  return new RingworkError(
    'CLUSTER_UNAVAILABLE',
    `Shared state unavailable: ${what} needs Redis, which cannot be reached right now; retry shortly.`,
    {
      cause,
    },
  );
}

/** Creates the store (nothing connects until {@link RedisStore.connect}). */
export function createRedisStore(url: string, onError: (e: unknown) => void): RedisStore {
  const opts = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    // Reconnect for ever, at most every second: an outage ends by itself.
    retryStrategy: (times: number) => Math.min(1000, 50 * times),
  };
  const cmd = new Redis(url, opts);
  cmd.defineCommand('rwAdmitAddress', { numberOfKeys: 1, lua: ADMIT_ADDRESS });
  const sub = new Redis(url, opts);
  cmd.on('error', onError);
  sub.on('error', onError);

  const parseSession = (h: Record<string, string>): SharedSession | null => {
    if (!h.tokenHash) return null;
    try {
      return {
        tokenHash: h.tokenHash,
        roles: JSON.parse(h.roles ?? '[]') as string[],
        ...(h.client ? { client: h.client } : {}),
        ...(h.capability ? { capability: JSON.parse(h.capability) as unknown } : {}),
        models: JSON.parse(h.models ?? '[]') as string[],
      };
    } catch {
      return null;
    }
  };

  return {
    cmd,
    sub,
    async connect(timeoutMs) {
      const timeout = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs).unref(),
      );
      try {
        await Promise.race([Promise.all([cmd.connect(), sub.connect()]), timeout]);
      } catch (e) {
        cmd.disconnect();
        sub.disconnect();
        throw clusterUnavailable('cluster mode (--redis)', e);
      }
    },
    get ready() {
      return cmd.status === 'ready';
    },
    async tryAcquireLease(me, ms) {
      return (await cmd.set(KEYS.lease, me, 'PX', ms, 'NX')) === 'OK';
    },
    async renewLease(me, ms) {
      return (await cmd.eval(RENEW_IF_MINE, 1, KEYS.lease, me, String(ms))) === 1;
    },
    async releaseLease(me) {
      await cmd.eval(DEL_IF_MINE, 1, KEYS.lease, me);
    },
    leaseHolder: () => cmd.get(KEYS.lease),
    async claimPeer(peer, me, ttlMs) {
      return (await cmd.set(KEYS.dir(peer), me, 'PX', ttlMs, 'GET')) ?? null;
    },
    async releasePeer(peer, me) {
      return (await cmd.eval(DEL_IF_MINE, 1, KEYS.dir(peer), me)) === 1;
    },
    ownerOf: (peer) => cmd.get(KEYS.dir(peer)),
    async ownersOf(peers) {
      return peers.length === 0 ? [] : cmd.mget(...peers.map((p) => KEYS.dir(p)));
    },
    writeSession(m, peer, s, ttlMs) {
      const key = KEYS.session(peer);
      m.hset(key, {
        tokenHash: s.tokenHash,
        roles: JSON.stringify(s.roles),
        client: s.client ?? '',
        capability: s.capability === undefined ? '' : JSON.stringify(s.capability),
        models: JSON.stringify(s.models),
      }).pexpire(key, ttlMs);
    },
    async loadSession(peer) {
      return parseSession(await cmd.hgetall(KEYS.session(peer)));
    },
    async deleteSession(peer) {
      await cmd.del(KEYS.session(peer));
    },
    publish: (channel, payload) => cmd.publish(channel, JSON.stringify(payload)),
    async admitAddress(bucket, me, cap, ttlMs) {
      const admit = (cmd as unknown as Record<string, (...a: unknown[]) => Promise<[number, number]>>)
        .rwAdmitAddress!;
      const [ok, total] = await admit.call(
        cmd,
        KEYS.addressCount(bucket),
        me,
        String(cap),
        String(ttlMs),
        KEYS.instance(''),
      );
      return { admitted: ok === 1, total };
    },
    setAddressCount(m, bucket, me, n, ttlMs) {
      const key = KEYS.addressCount(bucket);
      if (n <= 0) m.hdel(key, me);
      else m.hset(key, me, String(n)).pexpire(key, ttlMs);
    },
    async close() {
      await Promise.allSettled([cmd.quit(), sub.quit()]);
      cmd.disconnect();
      sub.disconnect();
    },
  };
}
