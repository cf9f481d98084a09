/**
 * The cluster tests' Redis: a real `redis-server` on a free loopback port (tools/testing/redis-server.ts),
 * given the tests' scaled start timeout.
 */
import { startRedis as launchRedis, type TestRedis } from '../../tools/testing/redis-server';
import { TIMEOUTS } from './timeouts';

export { freePort, REDIS_SERVER, type TestRedis } from '../../tools/testing/redis-server';

/** Starts redis-server within the tests' server-start timeout. */
export const startRedis = (): Promise<TestRedis> => launchRedis(TIMEOUTS.serverStart);
