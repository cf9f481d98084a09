/**
 * The API's ring path survives a contributor lost mid-answer: the real server process (no local
 * fallback) drives a ring of three Node contributors (real ORT runners, signaling over real
 * WebSockets, in-memory links between them; memory forces at least two stages). While a streamed
 * answer runs, one stage dies abruptly (its socket and every link close, no drain). The server's
 * requester — the Chat page's `ask` loop — fails over to the re-planned ring and replays, so the
 * client still gets the golden text, served in the end by a ring without the lost peer.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Contributor } from '../../shared/app/contributor';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';
import { SWARM_TFLOPS } from '../../tools/swarm/swarm-capability';
import { stories260KSplitMemory } from '../helpers/split-memory';
import { spawnServer, type SpawnedServer } from '../../tools/testing/spawn-server';
import { CAPABILITY, warmUpOrt } from '../shared/app/app-fixture';
import { loadGolden } from '../helpers/golden';
import { scaled, waitUntil } from '../helpers/timeouts';
import { nodeContributor } from '../helpers/node-contributor';

const GOLDEN = loadGolden().text.trimEnd();
const PROMPT = 'Once upon a time';
const KEY = 'rw-failover-test-key-0123456789abcdef';

/** One Node contributor and how to kill it abruptly (a tab crashing: socket and links gone). */
interface Node {
  contributor: Contributor;
  peerId: () => string | undefined;
  kill(): Promise<void>;
}

let server: SpawnedServer;
let client: OpenAI;
const nodes: Node[] = [];

function node(hub: ReturnType<typeof createMemoryTransportHub>): Node {
  const n = nodeContributor(`${server.url.replace('http', 'ws')}/ws`, hub);
  return {
    contributor: n.contributor,
    peerId: () => n.net()?.peerId,
    async kill() {
      // No drain, no leave message: the socket drops (the server sees the peer go) and every
      // ring link closes, as when a tab crashes.
      n.signaling.stop();
      await n.net()?.transport.close();
    },
  };
}

beforeAll(async () => {
  await warmUpOrt();
  const dir = mkdtempSync(join(tmpdir(), 'ringwork-api-failover-'));
  writeFileSync(join(dir, 'keys.txt'), `${KEY}\n`);
  server = await spawnServer(['--api-keys', join(dir, 'keys.txt'), '--category-c-below-tflops', '0']);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: scaled(120_000) });
  const hub = createMemoryTransportHub();
  // Each holds half the model: any two of the three make a ring, so one can be lost.
  const memoryBytes = await stories260KSplitMemory(2);
  for (let i = 0; i < 3; i++) {
    const n = node(hub);
    nodes.push(n);
    await n.contributor.start({ capability: { ...CAPABILITY, tflops: SWARM_TFLOPS, memoryBytes } });
  }
  await waitUntil(
    'a ring serving stories260K',
    async () => {
      const m = (await client.models.list()) as unknown as {
        data: { id: string; ringwork: { ringServing: boolean } }[];
      };
      return m.data.find((x) => x.id === 'stories260K')?.ringwork.ringServing === true;
    },
    { timeoutMs: scaled(60_000) },
  );
}, scaled(120_000));

afterAll(async () => {
  for (const n of nodes) await n.contributor.stop().catch(() => undefined);
  for (const n of nodes) await n.kill().catch(() => undefined);
  await server?.stop();
});

describe('API ring path: a contributor lost mid-answer', () => {
  it('the server requester fails over to the re-planned ring and the streamed answer is still the golden text', async () => {
    const stream = await client.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 60,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let chunks = 0;
    let killed: string | undefined;
    let info: { path: string; servedBy: { peer: string }[] } | undefined;
    for await (const c of stream) {
      text += c.choices[0]?.text ?? '';
      const extra = (c as unknown as { ringwork?: typeof info }).ringwork;
      if (extra) info = extra;
      if (++chunks === 10) {
        // A stage serving this answer now dies.
        const victim = nodes.find((n) => n.contributor.store.getState().stats.openSessions > 0);
        expect(victim).toBeDefined();
        killed = victim!.peerId();
        await victim!.kill();
      }
    }
    expect(killed).toBeDefined();
    expect(PROMPT + text).toBe(GOLDEN);
    expect(info?.path).toBe('ring');
    // The ring that finished the answer is not the one that lost the peer.
    expect(info?.servedBy.map((s) => s.peer)).not.toContain(killed);
  });
});
