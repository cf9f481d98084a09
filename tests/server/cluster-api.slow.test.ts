/**
 * The OpenAI API in cluster mode: a real `redis-server`, two server processes with `--redis`, two
 * Node contributors (real ORT shard runners) both on the coordinator's instance, and `/v1` asked on
 * the other instance, which holds none of the ring's stages. Its API requester is a peer of the
 * leader's coordinator (its ring comes back over the cluster bus) and its links to the first stage
 * and the head go through the instance holding them (`api-link` frames over the bus both ways):
 * the official `openai` client gets llama2.c's golden text, streamed and not; a client that goes
 * away mid-stream frees its sessions on the stages of the other instance.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Contributor } from '../../shared/app/contributor';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';
import { SWARM_TFLOPS } from '../../tools/swarm/swarm-capability';
import { type SignalingClient } from '../../web/src/network/signaling-client';
import { startCluster, type ClusterInstance, type TestCluster } from '../helpers/cluster';
import { scaled, TIMEOUTS, waitUntil } from '../helpers/timeouts';
import { CAPABILITY, warmUpOrt } from '../shared/app/app-fixture';
import { nodeContributor } from '../helpers/node-contributor';
import {
  expectAbandonedStreamFreed,
  expectGoldenChatStream,
  expectGoldenCompletion,
} from '../helpers/api-ring';
import { stories260KSplitMemory } from '../helpers/split-memory';

const KEY = 'rw-cluster-api-key-0123456789abcdef';

let cluster: TestCluster;
/** The coordinator's instance: holds both contributors. */
let holder: ClusterInstance;
/** The other one: holds no peer; `/v1` is asked here. */
let asked: ClusterInstance;
let client: OpenAI;
const clients: SignalingClient[] = [];
const contributors: Contributor[] = [];

interface ModelsView {
  data: { id: string; ringwork: { ringServing: boolean } }[];
}

/** A Node contributor signaling to `at`; ring links in memory; a real ORT runner. */
function contributor(at: ClusterInstance, hub: ReturnType<typeof createMemoryTransportHub>): Contributor {
  const n = nodeContributor(`${at.url.replace('http', 'ws')}/ws`, hub);
  clients.push(n.signaling);
  contributors.push(n.contributor);
  return n.contributor;
}

const peersOn = async (inst: ClusterInstance): Promise<number> => (await cluster.health(inst)).peers;
const openSessions = (): number =>
  contributors.reduce((n, c) => n + c.store.getState().stats.openSessions, 0);
const stepsServed = (): number => contributors.reduce((n, c) => n + c.store.getState().stats.stepsServed, 0);

beforeAll(
  async () => {
    await warmUpOrt();
    const dir = mkdtempSync(join(tmpdir(), 'ringwork-cluster-api-'));
    const keys = join(dir, 'keys.txt');
    writeFileSync(keys, `${KEY}\n`);
    // The same keys file on every instance: a key works wherever the balancer sends the request.
    cluster = await startCluster(['a', 'b'], {
      args: ['--api-keys', keys, '--category-c-below-tflops', '0', '--replan-debounce-ms', '100'],
    });
    holder = await cluster.coordinatorInstance('one coordinator among a and b');
    asked = cluster.instances.find((i) => i !== holder)!;
    client = new OpenAI({ baseURL: `${asked.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: scaled(60_000) });
    const hub = createMemoryTransportHub();
    // Memory forces a split over both contributors: the first stage and the head are two peers.
    const memoryBytes = await stories260KSplitMemory(2);
    for (let i = 0; i < 2; i++)
      await contributor(holder, hub).start({
        capability: { ...CAPABILITY, tflops: SWARM_TFLOPS, memoryBytes },
      });
    await waitUntil(
      'both contributors serving a stage',
      () => contributors.every((c) => c.store.getState().phase === 'serving'),
      { timeoutMs: scaled(60_000) },
    );
    // The asked instance answers /v1/models from its copy of the leader's view.
    await waitUntil(
      'a ring serving stories260K, as the instance holding none of it sees it',
      async () => {
        const m = (await client.models.list()) as unknown as ModelsView;
        return m.data.find((x) => x.id === 'stories260K')?.ringwork.ringServing === true;
      },
      { timeoutMs: scaled(30_000) },
    );
  },
  TIMEOUTS.serverStart * 2 + scaled(120_000),
);

afterAll(async () => {
  for (const c of contributors) await c.stop();
  for (const s of clients) s.stop();
  await cluster?.stop();
});

describe('cluster mode: /v1 on an instance that holds none of the ring', () => {
  it('completions through stages held by the other instance: prompt + completion is the golden text', async () => {
    expect(await peersOn(asked)).toBe(0);
    expect(await peersOn(holder)).toBe(2);
    // The contributors on the other instance served it (no local fallback is configured).
    await expectGoldenCompletion(client, stepsServed);
    // The frames crossed instances: the asked instance received the stages' frames over the bus.
    const bus = ((await cluster.health(asked)).cluster as { bus?: { messages: number } }).bus;
    expect(bus?.messages ?? 0).toBeGreaterThan(0);
  });

  it('chat completions streamed across instances: the same text', async () => {
    await expectGoldenChatStream(client);
  });

  it('a client that goes away mid-stream frees its sessions on the other instance’s stages', async () => {
    await expectAbandonedStreamFreed(client, openSessions);
    // The instance holding the stages is asked too: its own API requester reaches them locally.
    const local = new OpenAI({
      baseURL: `${holder.url}/v1`,
      apiKey: KEY,
      maxRetries: 0,
      timeout: scaled(60_000),
    });
    await expectGoldenCompletion(local, stepsServed);
  });
});
