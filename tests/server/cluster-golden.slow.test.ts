/**
 * Cluster mode answers exactly like one server: a real `redis-server`, two server processes with
 * `--redis`, two Node contributors (real ORT shard runners) on different instances and a requester
 * on one of them. The coordinator (on whichever instance holds the lease) plans one ring over both
 * contributors; its assignments reach each through its own instance, the ring reaches the requester
 * through its instance, and the answer is llama2.c's golden text. Hidden states travel between the
 * Node peers over in-memory links (Node has no WebRTC here); what is under test is that the state
 * shared through Redis (directory, coordinator forwarding, mirrored assignments) forms a working
 * ring. Every client connects through one address, a TCP balancer in rotation over both instances
 * (as behind nginx): then instance `a` dies, the peers it held reconnect through the balancer, land
 * on `b`, resume their sessions with their tokens, and the next answer is the golden text again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createContributor, type Contributor } from '../../shared/app/contributor';
import type { NetworkHandle } from '../../shared/app/network-port';
import { createRequester, type Requester } from '../../shared/app/requester';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';
import type { NetworkSnapshot } from '../../signaling-server/src/network-snapshot';
import { SWARM_TFLOPS } from '../../tools/swarm/swarm-capability';
import { stories260KSplitMemory } from '../helpers/split-memory';
import type { SpawnedServer } from '../../tools/testing/spawn-server';
import {
  createSignalingClient,
  signalingPort,
  type SignalingClient,
} from '../../web/src/network/signaling-client';
import { stories260KRunner, stories260KTokenizer } from '../helpers/engine';
import { loadGolden } from '../helpers/golden';
import { startCluster, type TestCluster } from '../helpers/cluster';
import { startTcpBalancer, type TcpBalancer } from '../helpers/tcp-balancer';
import { scaled, TIMEOUTS, waitUntil } from '../helpers/timeouts';
import { CAPABILITY, GOLDEN_SETTINGS, warmUpOrt } from '../shared/app/app-fixture';

const GOLDEN = loadGolden().text;
const PROMPT = 'Once upon a time';

let cluster: TestCluster | undefined;
let balancer: TcpBalancer | undefined;
const servers: SpawnedServer[] = [];
const clients: SignalingClient[] = [];
const contributors: Contributor[] = [];
const hub = createMemoryTransportHub();
let requester: Requester;

/** Signaling through the balancer as a Node client (reconnecting, quickly); ring links in memory. */
function network(role: 'contributor' | 'requester'): () => Promise<NetworkHandle> {
  const signaling = createSignalingClient({
    url: `ws://127.0.0.1:${balancer!.port}/ws`,
    roles: [role],
    WebSocket,
    reconnect: { baseMs: 100, maxMs: 1000 },
  });
  clients.push(signaling);
  let net: NetworkHandle | undefined;
  return async () => {
    if (net) return net;
    const welcome = await signaling.start();
    net = {
      signaling: signalingPort(signaling),
      transport: hub.transport(welcome.peerId),
      peerId: welcome.peerId,
    };
    return net;
  };
}

/** How many peers' sockets an instance holds. */
const peersOn = async (s: SpawnedServer): Promise<number> =>
  ((await (await fetch(`${s.url}/healthz`)).json()) as { peers: number }).peers;

/** One answer to the golden prompt, with the ring peers that served it. */
async function ask(): Promise<{ text: string; peers: string[] }> {
  await requester.start();
  const r = await requester.ask({
    settings: GOLDEN_SETTINGS,
    history: [{ role: 'user', text: PROMPT }],
    signal: new AbortController().signal,
  });
  return { text: r.text, peers: r.stats.peers };
}

beforeAll(
  async () => {
    await warmUpOrt();
    cluster = await startCluster(['a', 'b'], {
      args: [
        '--category-c-below-tflops',
        '0',
        // The balancer's address: a loopback name on another port.
        '--allow-host',
        '127.0.0.1',
      ],
    });
    servers.push(...cluster.instances.map((i) => i.server));
    balancer = await startTcpBalancer(servers.map((s) => Number(new URL(s.url).port)));
    // As the swarm's pages do: memory forces a split over both contributors.
    const memoryBytes = await stories260KSplitMemory(2);
    // The rotation sends the first contributor to `a`, the second to `b`, the requester to `a`.
    for (let i = 0; i < 2; i++) {
      const c = createContributor({
        network: network('contributor'),
        createRunner: stories260KRunner,
        connectTimeoutMs: 5000,
        probeIntervalMs: 0,
      });
      contributors.push(c);
      await c.start({ capability: { ...CAPABILITY, tflops: SWARM_TFLOPS, memoryBytes } });
    }
    await waitUntil(
      'both contributors serving a stage',
      () => contributors.every((c) => c.store.getState().phase === 'serving'),
      { timeoutMs: scaled(60_000) },
    );
    requester = createRequester({
      network: network('requester'),
      createRunner: stories260KRunner,
      openTokenizer: async () => stories260KTokenizer(),
      // No room to run the model itself: the answer must come from the ring.
      localMemoryBytes: () => 0,
      seed: () => 1,
    });
  },
  TIMEOUTS.serverStart * 2 + scaled(90_000),
);

afterAll(async () => {
  await requester?.stop();
  for (const c of contributors) await c.stop();
  for (const s of clients) s.stop();
  await balancer?.close();
  await cluster?.stop();
});

describe('cluster mode: a ring across two server instances', () => {
  it('contributors on two instances and a requester on one answer the golden text', async () => {
    const answer = await ask();
    expect(answer.text + '\n').toBe(GOLDEN);
    expect(answer.peers.length).toBe(2);
    const served = contributors.map((c) => c.store.getState().stats.stepsServed);
    // Both stages served every step: neither instance's contributor was left out.
    for (const n of served) expect(n).toBeGreaterThanOrEqual(60);
    // The balancer spread the three peers over both instances (a: a contributor and the requester).
    expect(await Promise.all(servers.map(peersOn))).toEqual([2, 1]);
  });

  it('an instance dies mid-life: its peers resume on the other through the balancer; the golden text again', async () => {
    const [a, b] = servers as [SpawnedServer, SpawnedServer];
    expect(await peersOn(a)).toBeGreaterThan(0);
    process.kill(a.pid!, 'SIGKILL');
    // Everyone is on `b` now: the three peers (two contributors, one requester).
    await waitUntil('every peer resumed on b', async () => (await peersOn(b)) === 3, {
      timeoutMs: scaled(30_000),
    });
    await waitUntil(
      'both contributors serving again',
      () => contributors.every((c) => c.store.getState().phase === 'serving'),
      { timeoutMs: scaled(30_000) },
    );
    // The coordinator (b's own now, or b's view of it) has the 2-stage ring again.
    await waitUntil(
      'a 2-stage ring for stories260K on b',
      async () => {
        const snap = (await (await fetch(`${b.url}/api/network`)).json()) as NetworkSnapshot;
        const m = snap.models.find((x) => x.id === 'stories260K');
        return m?.ring?.stages.length === 2;
      },
      { timeoutMs: scaled(30_000) },
    );
    const answer = await ask();
    expect(answer.text + '\n').toBe(GOLDEN);
    expect(answer.peers.length).toBe(2);
  });
});
