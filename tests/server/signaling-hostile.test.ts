/**
 * Hostile tabs against the real signaling server on 127.0.0.1: each attack reproduced from the
 * "Hostile tabs" issue must be refused while the honest peers keep serving (their assignments stay,
 * their heartbeats are answered, the ring still exists). Attackers come from another client address
 * (a forwarded one, the server trusting 127.0.0.1 as its proxy), as they would in the field.
 */
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ServerMessageOf } from '../../shared/protocol/signaling';
import { loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import type { SignalingConfigInput } from '../../signaling-server/src/config';
import type { NetworkSnapshot } from '../../signaling-server/src/network-snapshot';
import { createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import { scaled } from '../helpers/timeouts';
import { capability, connect, healthy, hello, httpGet, type TestClient } from './signaling-test-client';

let catalog: CatalogModel[];
let servers: SignalingServer[] = [];
const clients: TestClient[] = [];
const ATTACKER = { 'x-forwarded-for': '10.66.0.1' };

beforeAll(async () => {
  catalog = await loadCatalog([]);
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  for (const s of servers) await s.stop();
  servers = [];
});
afterAll(async () => {
  for (const s of servers) await s.stop();
});

async function startServer(limits: NonNullable<SignalingConfigInput['limits']> = {}): Promise<number> {
  const srv = createSignalingServer(
    {
      host: '127.0.0.1',
      port: 0,
      testMode: true,
      trustProxy: ['127.0.0.1'],
      limits: {
        replanDebounceMs: 20,
        heartbeatMs: 10_000,
        heartbeatTimeoutMs: 60_000,
        networkCacheMs: 0,
        // Long enough that a loaded test process still answers a ping in time (a stall is not a death).
        probeTimeoutMs: scaled(2_000),
        maxConnectionsPerIp: 64,
        ...limits,
      },
    },
    { logger: pino({ level: 'silent' }), catalog },
  );
  servers.push(srv);
  return (await srv.start()).port;
}

async function join(
  port: number,
  roles: Array<'contributor' | 'requester'>,
  cap?: Record<string, unknown>,
  headers?: Record<string, string>,
) {
  const c = await connect(port, headers ? { headers } : {});
  clients.push(c);
  const w = await hello(c, roles);
  if (cap) c.send({ type: 'profile', v: 1, capability: cap });
  return { c, id: w.peerId };
}

type Member = Awaited<ReturnType<typeof join>>;

const network = async (port: number): Promise<NetworkSnapshot> =>
  JSON.parse((await httpGet(port, '/api/network')).body) as NetworkSnapshot;

/** Three honest 1 MB contributors forming a three-stage ring of stories260K, all `ready`. */
async function honestRing(port: number) {
  const members: Member[] = [];
  for (let i = 0; i < 3; i++) members.push(await join(port, ['contributor'], capability(1_000_000)));
  const assignments = await Promise.all(members.map((m) => m.c.next('assignment')));
  members.forEach((m, i) =>
    m.c.send({ type: 'assignment-status', v: 1, epoch: assignments[i]!.epoch, state: 'ready' }),
  );
  const net = await network(port);
  expect(net.rings).toHaveLength(1);
  return { members, assignments, ring: net.rings[0]! };
}

/** Every honest member still holds the range it was given, answers heartbeats, and the ring exists. */
async function expectStillServing(
  port: number,
  members: Member[],
  assignments: Array<ServerMessageOf<'assignment'>>,
  ringId: string,
): Promise<void> {
  const net = await network(port);
  expect(net.rings.map((r) => r.ringId)).toEqual([ringId]);
  members.forEach((m, i) => {
    expect(m.c.ws.readyState, `${m.id} was closed`).toBe(m.c.ws.OPEN);
    expect(net.assignments[m.id]).toMatchObject({ kind: 'assigned', range: assignments[i]!.range });
  });
  for (const m of members) {
    const sentAt = Date.now();
    m.c.send({ type: 'heartbeat', v: 1, sentAt });
    await vi.waitFor(() =>
      expect(m.c.messages.some((x) => x.type === 'heartbeat-ack' && x.sentAt === sentAt)).toBe(true),
    );
  }
}

describe('hostile tabs', () => {
  it('1. eviction by rumour: requesters that lend nothing cannot evict healthy stages', async () => {
    const port = await startServer();
    const { members, assignments, ring } = await honestRing(port);
    const liars: Member[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await join(port, ['requester'], undefined, ATTACKER);
      r.c.send({ type: 'ring-request', v: 1, model: 'stories260K' });
      await r.c.next('ring');
      liars.push(r);
    }
    const probesBefore = (await network(port)).counters.probes ?? 0;
    for (let round = 0; round < 10; round++)
      for (const r of liars)
        for (const s of ring.stages)
          r.c.send({ type: 'peer-unreachable', v: 1, peer: s.peer, reason: 'trust me' });
    // The middle stage is not theirs to report; the first stage and head are probed, and answer.
    await vi.waitFor(() => {
      for (const r of liars) {
        const codes = r.c.messages.flatMap((m) => (m.type === 'error' ? [m.code] : []));
        expect(codes).toContain('PROTOCOL_NOT_ALLOWED');
        expect(codes).toContain('PROTOCOL_RATE_LIMITED');
      }
    });
    await vi.waitFor(async () =>
      expect((await network(port)).counters.probes ?? 0).toBeGreaterThan(probesBefore),
    );
    // Every probe decided (answered, or timed out and acted on), then nobody was evicted.
    await vi.waitFor(
      async () => {
        const { counters } = await network(port);
        expect(counters.probesSettled ?? 0).toBe(counters.probes ?? 0);
      },
      { timeout: scaled(4_000), interval: 50 },
    );
    expect((await network(port)).counters.disconnects.evicted ?? 0).toBe(0);
    await expectStillServing(port, members, assignments, ring.ringId);
  });

  it('2. capture by claim: inflated figures are capped; honest peers keep their ranges', async () => {
    const port = await startServer();
    const { members, assignments, ring } = await honestRing(port);
    const liar = await join(
      port,
      ['contributor'],
      { tflops: 1e5, bandwidthGBps: 1e6, memoryBytes: 2 ** 50, backend: 'webgpu' },
      ATTACKER,
    );
    const mobileA = await join(
      port,
      ['contributor'],
      { tflops: 0.001, bandwidthGBps: 1, memoryBytes: 1e6, backend: 'wasm', mobile: true, category: 'A' },
      ATTACKER,
    );
    await vi.waitFor(async () => {
      const net = await network(port);
      expect(net.assignments[liar.id]).toBeDefined();
      expect(net.assignments[mobileA.id]).toBeDefined();
    });
    const net = await network(port);
    const p = net.profiles[liar.id]!;
    expect(p.tflops).toBeLessThanOrEqual(10);
    expect(p.bandwidthGBps).toBeLessThanOrEqual(100);
    expect(p.memoryBytes).toBeLessThanOrEqual(4 * 1024 ** 3);
    expect(net.peers.find((x) => x.id === mobileA.id)?.category).toBe('C');
    expect(net.peers.find((x) => x.id === liar.id)?.category).not.toBe('A');
    await expectStillServing(port, members, assignments, ring.ringId);
    // Requesters are still sent the honest ring, not the liar alone.
    const req = await join(port, ['requester']);
    req.c.send({ type: 'ring-request', v: 1, model: 'stories260K' });
    const got = await req.c.next('ring');
    expect(got.stages.map((s) => s.peer)).not.toEqual([liar.id]);
  });

  it('5. relay flood: quotas refuse the senders; the receiver is neither flooded nor cut', async () => {
    const port = await startServer();
    const { members, assignments, ring } = await honestRing(port);
    const victim = members.find((m) => m.id === ring.stages[0]!.peer)!;
    const flooders: Member[] = [];
    for (let i = 0; i < 15; i++) {
      const r = await join(port, ['requester'], undefined, { 'x-forwarded-for': `10.66.1.${i + 1}` });
      r.c.send({ type: 'ring-request', v: 1, model: 'stories260K' });
      await r.c.next('ring');
      flooders.push(r);
    }
    // The victim stops reading, as a busy tab would.
    (victim.c.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const big = 'a'.repeat(48 * 1024 - 100);
    const mid = 'a'.repeat(8 * 1024);
    for (let round = 0; round < 30; round++) {
      for (const [i, f] of flooders.entries()) {
        for (const sdp of [big, mid]) {
          f.c.send({
            type: 'signal',
            v: 1,
            to: victim.id,
            conn: `c${i}-${round}-${sdp.length}`,
            payload: { kind: 'sdp', sdp: { type: 'offer', sdp } },
          });
        }
      }
      await new Promise((r) => setImmediate(r));
    }
    await vi.waitFor(() => {
      for (const f of flooders)
        expect(f.c.messages.some((m) => m.type === 'error' && m.code === 'PROTOCOL_RATE_LIMITED')).toBe(true);
    });
    // Each sender over its byte budget is throttled: its socket is paused (its frames wait in its own
    // TCP buffers, at no cost to the server) instead of being read and dropped.
    const paused = (n: NetworkSnapshot) =>
      (n.counters.frameGate?.connPauses ?? 0) + (n.counters.frameGate?.bucketPauses ?? 0);
    await vi.waitFor(async () => expect(paused(await network(port))).toBeGreaterThan(0), {
      timeout: scaled(30_000),
    });
    const net = await network(port);
    const relay = net.relay;
    // At most 4 connection ids per (sender, receiver) pair, and never the 48 KiB offers.
    expect(relay.forwarded).toBeLessThanOrEqual(15 * 4);
    expect((relay.throttled ?? 0) + net.counters.framesRateLimited).toBeGreaterThan(0);
    expect(net.counters.disconnects['slow-consumer'] ?? 0).toBe(0);
    (victim.c.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    // Paused senders are read on as their budgets refill, so `forwarded` may still grow: the victim
    // gets exactly what the relay forwarded (never more than the caps allow), all of it 8 KiB offers.
    await vi.waitFor(
      async () => {
        const forwarded = (await network(port)).relay.forwarded;
        expect(forwarded).toBeLessThanOrEqual(15 * 4);
        const offers = victim.c.messages.filter((m) => m.type === 'signal');
        expect(offers.length).toBe(forwarded);
        for (const o of offers)
          expect(o.type === 'signal' && o.payload.kind === 'sdp' && o.payload.sdp.sdp.length).toBe(
            mid.length,
          );
      },
      { timeout: scaled(30_000), interval: 100 },
    );
    await expectStillServing(port, members, assignments, ring.ringId);
  });

  it('7. re-plan storm: a flipping profile re-plans nothing within the hysteresis interval', async () => {
    const port = await startServer({ profileMinIntervalMs: 30_000 });
    const { members, assignments, ring } = await honestRing(port);
    const flipper = members[0]!;
    const before = await network(port);
    for (let i = 0; i < 12; i++) {
      flipper.c.send({
        type: 'profile',
        v: 1,
        capability: i % 2 === 0 ? capability(100_000, 0.001) : capability(1_000_000),
      });
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 100));
    const after = await network(port);
    expect(after.epoch).toBe(before.epoch);
    expect(after.plans).toBe(before.plans);
    for (const m of members) expect(m.c.messages.filter((x) => x.type === 'assignment')).toHaveLength(1);
    await expectStillServing(port, members, assignments, ring.ringId);
  });

  it('10. a 60 KiB-frame flood from 15 reconnecting sockets barely moves an honest heartbeat', async () => {
    const port = await startServer();
    const { members, assignments, ring } = await honestRing(port);
    const honest = members[0]!;
    const rtts = async (n: number): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const sentAt = performance.now();
        honest.c.send({ type: 'heartbeat', v: 1, sentAt });
        await honest.c.next('heartbeat-ack');
        out.push(performance.now() - sentAt);
        await new Promise((r) => setTimeout(r, 5));
      }
      return out.sort((a, b) => a - b);
    };
    const alone = await rtts(40);
    // The flood runs on its own thread, so the cost measured is the server's, not the sender's.
    const worker = new Worker(
      `const { WebSocket } = require('ws');
       const { port, sockets, ms } = require('node:worker_threads').workerData;
       const frame = JSON.stringify({ type: 'junk', v: 1, pad: 'x'.repeat(60 * 1024) });
       const end = Date.now() + ms;
       let sent = 0;
       function open() {
         if (Date.now() > end) return;
         const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws', { headers: { 'x-forwarded-for': '10.66.2.1' } });
         ws.on('error', () => {});
         ws.on('close', () => setTimeout(open, 10));
         ws.on('open', () => {
           const pump = () => {
             if (Date.now() > end) { ws.terminate(); return; }
             for (let i = 0; i < 8 && ws.readyState === 1 && ws.bufferedAmount < 1 << 20; i++) { ws.send(frame); sent++; }
             setImmediate(pump);
           };
           pump();
         });
       }
       for (let i = 0; i < sockets; i++) open();
       setTimeout(() => require('node:worker_threads').parentPort.postMessage(sent), ms + 50);`,
      { eval: true, workerData: { port, sockets: 15, ms: 2500 } },
    );
    const sentP = new Promise<number>((resolve) => worker.once('message', (n: number) => resolve(n)));
    await new Promise((r) => setTimeout(r, 300));
    const during = await rtts(40);
    const sent = await sentP;
    await worker.terminate();
    const p50 = (xs: number[]) => xs[Math.floor(xs.length / 2)]!;
    expect(sent).toBeGreaterThan(100);
    // Issue figure before the fix: p50 0.8 ms alone, 216 ms during. Generous for a shared CI box.
    expect(p50(during), `alone ${p50(alone).toFixed(2)} ms`).toBeLessThanOrEqual(
      Math.max(3 * p50(alone), p50(alone) + 25),
    );
    // No hello, so no frame over a hello's size is ever read past its length: each socket is cut on
    // its first junk frame (the flood after a hello meets the byte budgets: signaling-flood.slow.test.ts).
    const net = await network(port);
    expect(net.counters.disconnects['presession-frame'] ?? 0).toBeGreaterThan(0);
    expect(net.counters.frameGate?.cuts ?? 0).toBeGreaterThan(0);
    await expectStillServing(port, members, assignments, ring.ringId);
    expect(await healthy(port)).toBe(true);
  });
});
