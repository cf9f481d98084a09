/**
 * The signaling server end to end over real WebSockets on 127.0.0.1: peers join, get assignments that
 * form a ring, a requester gets the ring, introduced peers relay signaling (test-mode ICE filtering on),
 * strangers do not, and confirmed unreachable peers are evicted and the ring re-planned.
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ServerMessageOf } from '../../shared/protocol/signaling';
import { loadCatalog } from '../../signaling-server/src/catalog';
import type { NetworkSnapshot } from '../../signaling-server/src/network-snapshot';
import { CLOSE_CODES, createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import { capability, connect, healthy, hello, httpGet, type TestClient } from './signaling-test-client';

let server: SignalingServer;
let port: number;
const clients: TestClient[] = [];

beforeAll(async () => {
  server = createSignalingServer(
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
    { logger: pino({ level: 'silent' }), catalog: await loadCatalog([]) },
  );
  ({ port } = await server.start());
});
afterEach(async () => {
  for (const c of clients.splice(0)) {
    expect(c.violations).toEqual([]);
    // Leave (rather than drop) so the next test starts from an empty network, not one in resume grace.
    c.send({ type: 'leave', v: 1 });
    await Promise.race([c.closed, new Promise((r) => setTimeout(r, 500))]);
    c.ws.terminate();
  }
  // The next test starts from an empty network.
  await vi.waitFor(async () => expect((await network()).peers).toEqual([]));
  expect(await healthy(port)).toBe(true);
});
afterAll(async () => {
  await server.stop();
  await server.stop();
});

async function join(
  roles: Array<'contributor' | 'requester'>,
  memoryBytes?: number,
  opts: { autoPong?: boolean } = {},
) {
  const c = await connect(port, opts);
  clients.push(c);
  const w = await hello(c, roles);
  if (memoryBytes !== undefined) c.send({ type: 'profile', v: 1, capability: capability(memoryBytes) });
  return { c, id: w.peerId, token: w.token };
}

const network = async (): Promise<NetworkSnapshot> =>
  JSON.parse((await httpGet(port, '/api/network')).body) as NetworkSnapshot;

/** Three 1 MB contributors (a three-stage ring for stories260K), one idle contributor and a requester. */
async function fleet() {
  const members = [
    await join(['contributor'], 1_000_000),
    await join(['contributor'], 1_000_000),
    await join(['contributor'], 1_000_000),
  ];
  const idle = await join(['contributor'], 100_000);
  const assignments = await Promise.all(members.map((m) => m.c.next('assignment')));
  await idle.c.next('unassigned');
  const req = await join(['requester']);
  req.c.send({ type: 'ring-request', v: 1, model: 'stories260K' });
  const ring = await req.c.next('ring');
  return { members, idle, req, ring, assignments };
}

const loopCand = (port_: number) => `candidate:1 1 udp 2122260223 127.0.0.1 ${port_} typ host generation 0`;

describe('rings over the wire', () => {
  it('assignments form a ring covering every unit; the requester gets the same ring', async () => {
    const { members, ring, assignments } = await fleet();
    const sorted = [...assignments].sort((a, b) => a.range[0] - b.range[0]);
    expect(sorted.map((a) => a.range)).toEqual(ring.stages.map((s) => s.range));
    expect(sorted[0]!.range[0]).toBe(0);
    expect(sorted.at(-1)!.range[1]).toBe(7);
    expect(new Set(assignments.map((a) => a.epoch))).toEqual(new Set([ring.epoch]));
    expect(ring.model.url).toBe('/models/stories260K/stories260K.bin');
    expect(ring.stages.map((s) => s.peer).sort()).toEqual(members.map((m) => m.id).sort());
    const net = await network();
    expect(net.rings).toHaveLength(1);
    // One request gets 1 / latency; the pipelined capacity of a 3-stage ring is shown apart, higher.
    const model = net.models.find((x) => x.id === 'stories260K')!;
    expect(model.predictedTokensPerSecond).toBeGreaterThan(0);
    expect(model.pipelinedTokensPerSecond).toBeGreaterThan(model.predictedTokensPerSecond!);
    for (const m of members) {
      expect(net.assignments[m.id]).toMatchObject({ kind: 'assigned' });
      expect(net.profiles[m.id]).toMatchObject({ memoryBytes: 1_000_000 });
    }
    const text = JSON.stringify(net);
    for (const m of members) expect(text).not.toContain(m.token);
    // The model files are served where the descriptor says.
    expect((await httpGet(port, ring.model.url)).status).toBe(200);
  });

  it('relays between ring neighbours and between requester and stages, both ways', async () => {
    const { members, req, ring, assignments } = await fleet();
    // The requester talks to the first stage (and the head); a is the first stage.
    const a = members.find((m) => m.id === ring.stages[0]!.peer)!;
    const aAssignment = assignments[members.indexOf(a)]!;
    const neighbour = members.find((m) => m.id === aAssignment.next)!;
    a.c.send({
      type: 'signal',
      v: 1,
      to: neighbour.id,
      payload: { kind: 'sdp', sdp: { type: 'offer', sdp: 'v=0\r\n' } },
    });
    const got = await neighbour.c.next('signal');
    expect(got).toMatchObject({ from: a.id, payload: { kind: 'sdp', sdp: { type: 'offer' } } });
    req.c.send({
      type: 'signal',
      v: 1,
      to: a.id,
      payload: { kind: 'candidate', candidate: { candidate: loopCand(5000), sdpMid: '0' } },
    });
    expect((await a.c.next('signal')).from).toBe(req.id);
    a.c.send({
      type: 'signal',
      v: 1,
      to: req.id,
      payload: { kind: 'sdp', sdp: { type: 'answer', sdp: 'v=0\r\n' } },
    });
    expect((await req.c.next('signal')).from).toBe(a.id);
  });

  it('refuses relays to and from an idle contributor the ring does not use', async () => {
    const { members, idle } = await fleet();
    idle.c.send({
      type: 'signal',
      v: 1,
      to: members[0]!.id,
      payload: { kind: 'candidate', candidate: { candidate: '' } },
    });
    expect((await idle.c.next('error')).code).toBe('PROTOCOL_NOT_ALLOWED');
    expect(await members[0]!.c.receives('signal', 100)).toBe(false);
  });

  it('test mode drops non-loopback ICE candidates and SDP candidate lines, and counts them', async () => {
    const { members, req, ring } = await fleet();
    const target = members.find((m) => m.id === ring.stages[0]!.peer)!;
    const before = (await network()).iceDropped;
    for (const cand of [
      'candidate:1 1 udp 2122260223 192.168.1.20 5000 typ host',
      'candidate:2 1 udp 1686052607 203.0.113.7 61000 typ srflx raddr 10.0.0.2 rport 5000',
      'candidate:3 1 udp 2122260223 4e7d5a1c-aaaa-bbbb-cccc-0123456789ab.local 5000 typ host',
      'candidate:4 1 udp 2122260223 fe80::1 5000 typ host',
      'garbage',
    ]) {
      req.c.send({
        type: 'signal',
        v: 1,
        to: target.id,
        payload: { kind: 'candidate', candidate: { candidate: cand } },
      });
    }
    req.c.send({
      type: 'signal',
      v: 1,
      to: target.id,
      payload: { kind: 'candidate', candidate: { candidate: loopCand(6000) } },
    });
    req.c.send({
      type: 'signal',
      v: 1,
      to: target.id,
      payload: { kind: 'candidate', candidate: { candidate: 'candidate:5 1 udp 1 ::1 6001 typ host' } },
    });
    const sdp = [
      'v=0',
      'a=candidate:1 1 udp 1 10.1.2.3 5000 typ host',
      `a=${loopCand(7000)}`,
      'a=candidate:2 1 udp 1 8.8.8.8 5000 typ host',
      'a=end-of-candidates',
      '',
    ].join('\r\n');
    req.c.send({
      type: 'signal',
      v: 1,
      to: target.id,
      payload: { kind: 'sdp', sdp: { type: 'offer', sdp } },
    });
    const first = await target.c.next('signal');
    const second = await target.c.next('signal');
    const third = await target.c.next('signal');
    expect(first.payload).toMatchObject({ kind: 'candidate', candidate: { candidate: loopCand(6000) } });
    expect(second.payload).toMatchObject({ kind: 'candidate' });
    const forwardedSdp = (third.payload as Extract<ServerMessageOf<'signal'>['payload'], { kind: 'sdp' }>).sdp
      .sdp;
    expect(forwardedSdp).toContain('127.0.0.1 7000');
    expect(forwardedSdp).not.toMatch(/10\.1\.2\.3|8\.8\.8\.8/);
    expect(forwardedSdp).toContain('a=end-of-candidates');
    expect(await target.c.receives('signal', 100)).toBe(false);
    expect(target.c.messages.filter((m) => m.type === 'signal')).toHaveLength(3);
    const net = await network();
    expect(net.iceDropped - before).toBe(7);
    expect(net.testMode).toBe(true);
  });

  it('never evicts a peer with a fresh heartbeat on reports: the server probes it, and it stays', async () => {
    const { members, ring } = await fleet();
    const [x, y, z] = ring.stages.map((s) => members.find((m) => m.id === s.peer)!) as [
      (typeof members)[0],
      (typeof members)[0],
      (typeof members)[0],
    ];
    const probesBefore = (await network()).counters.probes ?? 0;
    x.c.send({ type: 'peer-unreachable', v: 1, peer: z.id, reason: 'ice failed' });
    y.c.send({ type: 'peer-unreachable', v: 1, peer: z.id, reason: 'ice failed' });
    await vi.waitFor(async () =>
      expect((await network()).counters.probes ?? 0).toBeGreaterThan(probesBefore),
    );
    // Past the probe's timeout: z answered the ping, so it keeps its place.
    await new Promise((r) => setTimeout(r, 400));
    expect(z.c.ws.readyState).toBe(z.c.ws.OPEN);
    const net = await network();
    expect(net.rings[0]?.ringId).toBe(ring.ringId);
    expect(net.assignments[z.id]).toMatchObject({ kind: 'assigned' });
  });

  it('evicts a reported peer that does not answer the server probe, and re-plans', async () => {
    const members = [
      await join(['contributor'], 1_000_000),
      await join(['contributor'], 1_000_000),
      await join(['contributor'], 1_000_000, { autoPong: false }),
    ];
    await Promise.all(members.map((m) => m.c.next('assignment')));
    const req = await join(['requester']);
    req.c.send({ type: 'ring-request', v: 1, model: 'stories260K' });
    await req.c.next('ring');
    const z = members[2]!;
    const reporter = members[0]!;
    reporter.c.send({ type: 'peer-unreachable', v: 1, peer: z.id, reason: 'ice failed' });
    expect((await z.c.next('error')).code).toBe('PEER_EVICTED');
    expect((await z.c.closed).code).toBe(CLOSE_CODES.evicted);
    // Two 1 MB peers cannot hold the model: the requester is told there is no ring now.
    const nr = await req.c.next('no-ring');
    expect(nr.missingBytes).toBeGreaterThan(0);
    expect(nr.descriptor?.id).toBe('stories260K');
    expect(nr.totalBytes).toBeGreaterThan(nr.missingBytes!);
    expect((await network()).peers.some((p) => p.id === z.id)).toBe(false);
  });

  it('a dropped contributor is planned out at once, and a resume brings it back to its place', async () => {
    const { members } = await fleet();
    const m = members[0]!;
    const asg = m.c.messages.find((x) => x.type === 'assignment') as ServerMessageOf<'assignment'>;
    m.c.ws.terminate();
    await m.c.closed;
    // Its ring cannot run without it: the remaining two 1 MB peers cannot hold the model.
    const others = members.filter((x) => x !== m);
    await Promise.all(others.map((x) => x.c.next('unassigned')));
    const back = await connect(port);
    clients.push(back);
    back.send({ type: 'hello', v: 1, roles: ['contributor'], resume: { peerId: m.id, token: m.token } });
    expect((await back.next('welcome')).peerId).toBe(m.id);
    const again = await back.next('assignment');
    // Re-planning from the previous plan puts it back on the same units, in a new epoch.
    expect(again.range).toEqual(asg.range);
    expect(again.epoch).toBeGreaterThan(asg.epoch);
  });
});
