/**
 * `ring-stalled` in cluster mode: the ring's stages are held by the follower, the requester by the
 * coordinator's instance. A stage named in the requester's stall report is probed by the instance
 * holding its socket (the leader routes the probe there), never evicted on the requester's word: a
 * frozen stage that does not answer is evicted by its own instance, and the leader re-plans
 * without it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type ClusterInstance, type TestCluster } from '../helpers/cluster';
import { scaled, TIMEOUTS, waitUntil } from '../helpers/timeouts';
import { capability, connect, hello, type TestClient } from './signaling-test-client';

let cluster: TestCluster;
let leader: ClusterInstance;
let follower: ClusterInstance;
const clients: TestClient[] = [];

beforeAll(async () => {
  cluster = await startCluster(['a', 'b'], {
    args: ['--heartbeat-timeout-ms', '600000', '--replan-debounce-ms', '20'],
  });
  leader = await cluster.coordinatorInstance('one coordinator among a and b');
  follower = cluster.instances.find((i) => i !== leader)!;
}, TIMEOUTS.serverStart * 2);

afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  await cluster?.stop();
});

async function join(at: ClusterInstance, roles: Array<'contributor' | 'requester'>, memory?: number) {
  const c = await connect(at.port);
  clients.push(c);
  const w = await hello(c, roles);
  if (memory !== undefined) c.send({ type: 'profile', v: 1, capability: capability(memory) });
  return { c, id: w.peerId };
}

describe('cluster mode: the server-side probe runs where the accused peer is held', () => {
  it('a stalled ring’s silent stage on the follower is probed there and evicted; an answering one is kept', async () => {
    const members = [];
    for (let i = 0; i < 3; i++) members.push(await join(follower, ['contributor'], 1_000_000));
    const assignments = await Promise.all(members.map((m) => m.c.next('assignment', scaled(10_000))));
    members.forEach((m, i) =>
      m.c.send({ type: 'assignment-status', v: 1, epoch: assignments[i]!.epoch, state: 'ready' }),
    );
    const req = await join(leader, ['requester']);
    req.c.send({ type: 'ring-request', v: 1, model: 'stories260K' });
    const ring = await req.c.next('ring', scaled(10_000));
    const stall = (peer: string) =>
      req.c.send({
        type: 'ring-stalled',
        v: 1,
        ringId: ring.ringId,
        epoch: ring.epoch,
        position: 9,
        cause: 'deadline',
        peer,
      });
    // An answering stage: probed on the follower, kept (the probe's timeout is 3 s).
    const healthy = members.find((m) => m.id === ring.stages[0]!.peer)!;
    stall(healthy.id);
    const victim = members.find((m) => m.id === ring.stages[1]!.peer)!;
    // A frozen tab: socket open, nothing read or answered (ws answers pings itself, so it is paused).
    (victim.c.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    stall(victim.id);
    // The two 1 MB survivors cannot hold the model: the requester is told what is missing.
    const none = await req.c.next('no-ring', scaled(15_000));
    expect(none.missingBytes).toBeGreaterThan(0);
    await waitUntil(
      'the victim gone from the leader’s view',
      async () => !(await cluster.network(leader)).peers.some((p) => p.id === victim.id),
      { timeoutMs: scaled(10_000) },
    );
    const ids = (await cluster.network(leader)).peers.map((p) => p.id);
    expect(ids).toContain(healthy.id);
    expect(healthy.c.ws.readyState).toBe(healthy.c.ws.OPEN);
    // The follower probed (both) and evicted (one); the leader probed nobody itself.
    const counters = async (i: ClusterInstance) =>
      (await cluster.network(i)).counters as { probes?: number; disconnects: Record<string, number> };
    expect((await counters(follower)).probes).toBe(2);
    expect((await counters(follower)).disconnects.evicted).toBe(1);
    expect((await counters(leader)).probes ?? 0).toBe(0);
  });
});
