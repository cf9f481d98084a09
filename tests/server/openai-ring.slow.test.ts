/**
 * The OpenAI API's ring path: the real server process (no local fallback) drives a ring of Node
 * contributors — real ORT shard runners, signaling over real WebSockets to the server, hidden states
 * between them over in-memory links — as a requester, its links to the first stage and the head
 * carried over those stages' signaling sockets (`api-link`). The official `openai` client gets the
 * golden text; a client that goes away mid-stream releases its ring sessions.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { type Contributor } from '../../shared/app/contributor';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';
import { SWARM_TFLOPS } from '../../tools/swarm/swarm-capability';
import { spawnServer, type SpawnedServer } from '../../tools/testing/spawn-server';
import { type SignalingClient } from '../../web/src/network/signaling-client';
import { CAPABILITY, warmUpOrt } from '../shared/app/app-fixture';
import { scaled, waitUntil } from '../helpers/timeouts';
import { nodeContributor } from '../helpers/node-contributor';
import {
  expectAbandonedStreamFreed,
  expectGoldenChatStream,
  expectGoldenCompletion,
} from '../helpers/api-ring';
import { stories260KSplitMemory } from '../helpers/split-memory';

const KEY = 'rw-ring-test-key-0123456789abcdef';

let server: SpawnedServer;
let client: OpenAI;
const clients: SignalingClient[] = [];
const contributors: Contributor[] = [];

/** A Node contributor: signaling to the real server, ring links in memory, a real ORT runner. */
async function contributor(hub: ReturnType<typeof createMemoryTransportHub>): Promise<Contributor> {
  const n = nodeContributor(`${server.url.replace('http', 'ws')}/ws`, hub);
  clients.push(n.signaling);
  contributors.push(n.contributor);
  return n.contributor;
}

interface ModelsView {
  data: { id: string; ringwork: { ringServing: boolean } }[];
}

beforeAll(async () => {
  await warmUpOrt();
  const dir = mkdtempSync(join(tmpdir(), 'ringwork-api-ring-'));
  const keys = join(dir, 'keys.txt');
  writeFileSync(keys, `${KEY}\n`);
  server = await spawnServer(['--api-keys', keys, '--category-c-below-tflops', '0']);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: scaled(60_000) });
  const hub = createMemoryTransportHub();
  // As the swarm's pages do: memory forces a split over both contributors, so the API's links to the
  // first stage and to the head go to different peers.
  const memoryBytes = await stories260KSplitMemory(2);
  for (let i = 0; i < 2; i++)
    await (
      await contributor(hub)
    ).start({ capability: { ...CAPABILITY, tflops: SWARM_TFLOPS, memoryBytes } });
  await waitUntil(
    'a ring serving stories260K',
    async () => {
      const m = (await client.models.list()) as unknown as ModelsView;
      return m.data.find((x) => x.id === 'stories260K')?.ringwork.ringServing === true;
    },
    { timeoutMs: scaled(30_000) },
  );
  await waitUntil(
    'a contributor serving its stage',
    () => contributors.some((c) => c.store.getState().phase === 'serving'),
    {
      timeoutMs: scaled(30_000),
    },
  );
}, scaled(90_000));

afterAll(async () => {
  for (const c of contributors) await c.stop();
  for (const s of clients) s.stop();
  await server?.stop();
});

describe('OpenAI API through a ring of contributors (real server process, no local fallback)', () => {
  const stepsServed = () => contributors.reduce((n, c) => n + c.store.getState().stats.stepsServed, 0);
  const openSessions = () => contributors.reduce((n, c) => n + c.store.getState().stats.openSessions, 0);

  it('completions at temperature 0 through the ring: prompt + completion is the golden text', async () => {
    // The contributors served it: their stages counted the steps.
    await expectGoldenCompletion(client, stepsServed);
  });

  it('chat completions streamed through the ring: the same text', async () => {
    await expectGoldenChatStream(client);
  });

  it('a client that goes away mid-stream releases its ring sessions on every stage', async () => {
    await expectAbandonedStreamFreed(client, openSessions);
    // And the ring still answers.
    await expectGoldenCompletion(client, stepsServed);
  });
});
