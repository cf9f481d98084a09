/**
 * The cluster tests' setup: a real `redis-server` and real server processes with `--redis`, one
 * per named instance. One place for what every cluster test starts (instance ids, the short lease,
 * the health and coordinator reads), so the tests differ only in the flags their story needs.
 */
import type { NetworkSnapshot } from '../../signaling-server/src/network-snapshot';
import { spawnServer, type SpawnedServer } from '../../tools/testing/spawn-server';
import { startRedis, type TestRedis } from './redis-server';
import { scaled, waitUntil } from './timeouts';

/** The lease the cluster tests run with: a takeover within ~2 s. */
export const TEST_LEASE_MS = 1500;

/** One server process of the test cluster. */
export interface ClusterInstance {
  name: string;
  server: SpawnedServer;
  /** `http://127.0.0.1:<port>`. */
  url: string;
  port: number;
  /** Killed by {@link TestCluster.kill}. */
  dead: boolean;
}

/** What `/healthz` says about the cluster. */
export interface ClusterHealth {
  ok: boolean;
  peers: number;
  cluster?: { instance: string; coordinator: boolean; leader: string | null; redis: 'up' | 'down' };
}

/** A Redis server and the instances started on it. */
export interface TestCluster {
  readonly redis: TestRedis;
  readonly instances: ClusterInstance[];
  /** Starts instance `name` (`--instance-id name`) with the common flags and `args`. */
  start(name: string, args?: readonly string[]): Promise<ClusterInstance>;
  /** SIGKILLs an instance (no goodbye to Redis: its lease and keys lapse). */
  kill(inst: ClusterInstance): void;
  /** The instances not killed. */
  alive(): ClusterInstance[];
  health(inst: ClusterInstance): Promise<ClusterHealth>;
  network(inst: ClusterInstance): Promise<NetworkSnapshot>;
  /** The one live instance whose coordinator is active, once every live instance agrees on it. */
  coordinatorInstance(what: string): Promise<ClusterInstance>;
  /** Stops every instance, then Redis. Safe twice. */
  stop(): Promise<void>;
}

/** Options of {@link startCluster}. */
export interface TestClusterOptions {
  /** Flags every instance gets (after the common ones); {@link TestCluster.start} adds its own. */
  args?: readonly string[];
  leaseMs?: number;
}

const getJson = async <T>(url: string): Promise<T> => (await (await fetch(url)).json()) as T;

/** Starts `redis-server`, then `names` one after another (the first usually takes the lease). */
export async function startCluster(
  names: readonly string[],
  o: TestClusterOptions = {},
): Promise<TestCluster> {
  const redis = await startRedis();
  const instances: ClusterInstance[] = [];
  let stopped: Promise<void> | null = null;
  const cluster: TestCluster = {
    redis,
    instances,
    async start(name, args = []) {
      const server = await spawnServer([
        '--redis',
        redis.url,
        '--instance-id',
        name,
        '--cluster-lease-ms',
        String(o.leaseMs ?? TEST_LEASE_MS),
        ...(o.args ?? []),
        ...args,
      ]);
      const port = Number(new URL(server.url).port);
      const inst: ClusterInstance = { name, server, url: server.url, port, dead: false };
      instances.push(inst);
      return inst;
    },
    kill(inst) {
      inst.dead = true;
      process.kill(inst.server.pid!, 'SIGKILL');
    },
    alive: () => instances.filter((i) => !i.dead),
    health: (inst) => getJson<ClusterHealth>(`${inst.url}/healthz`),
    network: (inst) => getJson<NetworkSnapshot>(`${inst.url}/api/network`),
    coordinatorInstance(what) {
      return waitUntil(
        what,
        async () => {
          const alive = cluster.alive();
          const hs = await Promise.all(alive.map(cluster.health));
          const leaders = alive.filter((_, i) => hs[i]!.cluster?.coordinator === true);
          if (leaders.length !== 1) return undefined;
          const name = leaders[0]!.name;
          return hs.every((h) => h.cluster?.leader === name && h.cluster.redis === 'up')
            ? leaders[0]
            : undefined;
        },
        {
          timeoutMs: scaled(15_000),
          describe: async () => JSON.stringify(await Promise.all(cluster.alive().map(cluster.health))),
        },
      );
    },
    stop() {
      stopped ??= (async () => {
        await Promise.all(instances.map((i) => i.server.stop()));
        await redis.kill();
      })();
      return stopped;
    },
  };
  try {
    for (const name of names) await cluster.start(name);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
