/**
 * Cluster mode, what the instances share besides sessions and relay: a real `redis-server` and two
 * real server processes. `/api/network` on either instance lists every instance's peers (each with
 * the instance holding it), says which instance answered and which one coordinates; the per-address
 * connection cap (`--max-connections-per-ip`) is one cap over both instances, counted in Redis.
 */
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type ClusterInstance, type TestCluster } from '../helpers/cluster';
import { scaled, TIMEOUTS, waitUntil } from '../helpers/timeouts';
import { capability, connect, hello, type TestClient } from './signaling-test-client';

const CAP = 6;

type Instance = ClusterInstance;

let cluster: TestCluster;
let instances: Instance[] = [];
const clients: TestClient[] = [];

const network = (inst: Instance) => cluster.network(inst);

/** Tries one WebSocket upgrade: the HTTP status of a refusal, or 0 when it opened (kept open). */
function upgrade(inst: Instance): Promise<{ status: number; body: string; ws?: WebSocket }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${inst.port}/ws`);
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? -1, body }));
    });
    ws.on('open', () => resolve({ status: 0, body: '', ws }));
    ws.on('error', (e) => (ws.readyState === WebSocket.CLOSED ? undefined : reject(e)));
  });
}

const closeWs = (ws: WebSocket): Promise<void> =>
  new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    ws.once('close', () => resolve());
    ws.close();
  });

beforeAll(async () => {
  cluster = await startCluster(['a', 'b'], {
    args: [
      '--max-connections-per-ip',
      String(CAP),
      '--heartbeat-timeout-ms',
      '600000',
      '--replan-debounce-ms',
      '100',
    ],
  });
  instances = cluster.instances;
}, TIMEOUTS.serverStart * 2);

afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  await cluster?.stop();
});

describe('cluster mode: the network view and the address cap are shared (redis-server + 2 servers)', () => {
  const held: Array<{ id: string; at: string }> = [];
  const open: WebSocket[] = [];

  it('/api/network on either instance lists every instance’s peers, who answered and who coordinates', async () => {
    const [a, b] = instances as [Instance, Instance];
    for (const [at, mem] of [
      [a, 4_000_000],
      [b, 4_000_000],
      [b, undefined],
    ] as const) {
      const c = await connect(at.port);
      clients.push(c);
      const w = await hello(c, mem === undefined ? ['requester'] : ['contributor']);
      if (mem !== undefined) c.send({ type: 'profile', v: 1, capability: capability(mem) });
      held.push({ id: w.peerId, at: at.name });
    }
    const expected = held.map((p) => `${p.id}@${p.at}`).sort();
    for (const inst of [a, b]) {
      const net = await waitUntil(
        `${inst.name}'s /api/network to list the peers of both instances`,
        async () => {
          const n = await network(inst);
          const listed = n.peers.map((p) => `${p.id}@${p.instance}`).sort();
          return JSON.stringify(listed) === JSON.stringify(expected) ? n : undefined;
        },
        {
          timeoutMs: scaled(15_000),
          describe: async () => JSON.stringify((await network(inst)).peers),
        },
      );
      const leader = net.cluster!.leader!;
      expect([a.name, b.name]).toContain(leader);
      expect(net.cluster).toMatchObject({ instance: inst.name, coordinator: leader === inst.name });
      expect(net.cluster!.instances).toEqual([
        { id: 'a', peers: 1, coordinator: leader === 'a' },
        { id: 'b', peers: 2, coordinator: leader === 'b' },
      ]);
      // The contributors' profiles (one of them held by the other instance) are there too.
      for (const p of held.slice(0, 2)) expect(net.profiles[p.id]).toBeDefined();
    }
  });

  it('one address bucket has one connection cap over both instances (429 per-ip-cap), freed on close', async () => {
    const [a, b] = instances as [Instance, Instance];
    // Three connections are open (one on a, two on b): fill the cap with one more on a, two more on b.
    for (const inst of [a, b, b]) {
      const r = await upgrade(inst);
      expect(r.status).toBe(0);
      open.push(r.ws!);
    }
    // Each instance holds only 3 of the 6: a per-instance count would let both take more.
    for (const inst of [a, b]) {
      const r = await upgrade(inst);
      expect(r.status).toBe(429);
      expect(r.body.trim()).toBe('per-ip-cap');
      // (/api/network is cached for a moment: wait for the count.)
      await waitUntil(
        `${inst.name} to count the refusal`,
        async () => (await network(inst)).counters.rejectedUpgrades['per-ip-cap'] === 1,
        { timeoutMs: scaled(10_000) },
      );
    }
    // A connection closed on b frees a slot for the address on a.
    await closeWs(open.pop()!);
    const again = await waitUntil(
      'a connection on a once one on b closed',
      async () => {
        const r = await upgrade(a);
        return r.status === 0 ? r : undefined;
      },
      { timeoutMs: scaled(10_000) },
    );
    open.push(again.ws!);
    expect((await upgrade(b)).status).toBe(429);
    await Promise.all(open.map(closeWs));
  });
});
