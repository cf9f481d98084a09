/**
 * `ring-stalled` against the real signaling server on 127.0.0.1: a requester's word that its ring
 * stalled makes the server check the ring's peers itself (a probe), never evict on that word; a
 * peer that fails the server's own probe is evicted and the ring is re-planned without it.
 */
import { pino } from 'pino';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import type { NetworkSnapshot } from '../../signaling-server/src/network-snapshot';
import { createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import { capability, connect, hello, httpGet, type TestClient } from './signaling-test-client';

let catalog: CatalogModel[];
const servers: SignalingServer[] = [];
const clients: TestClient[] = [];

beforeAll(async () => {
  catalog = await loadCatalog([]);
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  for (const s of servers.splice(0)) await s.stop();
});

async function startServer(): Promise<number> {
  const srv = createSignalingServer(
    {
      host: '127.0.0.1',
      port: 0,
      testMode: true,
      limits: {
        replanDebounceMs: 20,
        heartbeatMs: 10_000,
        heartbeatTimeoutMs: 60_000,
        networkCacheMs: 0,
        probeTimeoutMs: 300,
      },
    },
    { logger: pino({ level: 'silent' }), catalog },
  );
  servers.push(srv);
  return (await srv.start()).port;
}

async function join(port: number, roles: Array<'contributor' | 'requester'>, cap?: Record<string, unknown>) {
  const c = await connect(port);
  clients.push(c);
  const w = await hello(c, roles);
  if (cap) c.send({ type: 'profile', v: 1, capability: cap });
  return { c, id: w.peerId };
}

const network = async (port: number): Promise<NetworkSnapshot> =>
  JSON.parse((await httpGet(port, '/api/network')).body) as NetworkSnapshot;

async function ringOfThree(port: number) {
  const members = [];
  for (let i = 0; i < 3; i++) members.push(await join(port, ['contributor'], capability(1_000_000)));
  const assignments = await Promise.all(members.map((m) => m.c.next('assignment')));
  members.forEach((m, i) =>
    m.c.send({ type: 'assignment-status', v: 1, epoch: assignments[i]!.epoch, state: 'ready' }),
  );
  const req = await join(port, ['requester']);
  req.c.send({ type: 'ring-request', v: 1, model: 'stories260K' });
  const ring = await req.c.next('ring');
  return { members, req, ring };
}

describe('ring-stalled (real server)', () => {
  it("healthy stages answer the probe: nobody is evicted on the requester's word; others may not report", async () => {
    const port = await startServer();
    const { members, req, ring } = await ringOfThree(port);
    const probes = (await network(port)).counters.probes ?? 0;
    req.c.send({
      type: 'ring-stalled',
      v: 1,
      ringId: ring.ringId,
      epoch: ring.epoch,
      position: 17,
      cause: 'deadline',
    });
    // No peer named: every stage is probed.
    await vi.waitFor(async () => expect((await network(port)).counters.probes ?? 0).toBe(probes + 3));
    // A stranger that was never sent the ring is refused, with a typed error.
    const stranger = await join(port, ['requester']);
    stranger.c.send({
      type: 'ring-stalled',
      v: 1,
      ringId: ring.ringId,
      epoch: ring.epoch,
      position: 1,
      cause: 'deadline',
      peer: ring.stages[1]!.peer,
    });
    await vi.waitFor(() =>
      expect(stranger.c.messages.some((m) => m.type === 'error' && m.code === 'PROTOCOL_NOT_ALLOWED')).toBe(
        true,
      ),
    );
    // Past the 300 ms probe timeout: all answered, all kept, same ring.
    await vi.waitFor(async () => {
      const net = await network(port);
      expect(net.counters.disconnects.evicted ?? 0).toBe(0);
      expect(net.rings.map((r) => r.ringId)).toEqual([ring.ringId]);
    });
    await new Promise((r) => setTimeout(r, 400));
    expect((await network(port)).counters.disconnects.evicted ?? 0).toBe(0);
    for (const m of members) expect(m.c.ws.readyState).toBe(m.c.ws.OPEN);
  });

  it("a named stage that does not answer the server's probe is evicted and the requester is told the re-planned answer", async () => {
    const port = await startServer();
    const { members, req, ring } = await ringOfThree(port);
    const victim = members.find((m) => m.id === ring.stages[1]!.peer)!;
    // A frozen tab: its socket stays open but it answers no ping (ws answers pings automatically,
    // so its socket is paused: nothing is read, nothing answered).
    (victim.c.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    req.c.send({
      type: 'ring-stalled',
      v: 1,
      ringId: ring.ringId,
      epoch: ring.epoch,
      position: 9,
      cause: 'deadline',
      peer: victim.id,
    });
    // The two 1 MB survivors cannot hold the model: the requester is told what is missing (its
    // failover then ends the answer with RING_FAILOVER_FAILED saying so).
    const none = await req.c.next('no-ring', 5000);
    expect(none.missingBytes).toBeGreaterThan(0);
    const net = await network(port);
    expect(net.counters.disconnects.evicted).toBe(1);
    expect(net.peers.map((p) => p.id)).not.toContain(victim.id);
  });
});
