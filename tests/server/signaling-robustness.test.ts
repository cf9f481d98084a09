/**
 * Robustness of the signaling server against bad input: the real server runs in-process on
 * 127.0.0.1, `ws` clients send every class of bad input we could think of, and each one must get a
 * typed error frame or a disconnect, while `/healthz` keeps answering (checked after every test).
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ErrorCode } from '../../shared/errors';
import { loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import type { SignalingConfigInput } from '../../signaling-server/src/config';
import type { NetworkSnapshot } from '../../signaling-server/src/network-snapshot';
import {
  ERROR_REPLIES_PER_BURST,
  MAX_PRESESSION_FRAME_BYTES,
} from '../../signaling-server/src/protocol-handlers';
import { CLOSE_CODES, createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import {
  capability,
  connect,
  healthy,
  hello,
  httpGet,
  upgradeStatus,
  type TestClient,
} from './signaling-test-client';

let catalog: CatalogModel[];
const servers: SignalingServer[] = [];
const ports: number[] = [];
const clients: TestClient[] = [];

async function startServer(
  limits: NonNullable<SignalingConfigInput['limits']> = {},
  extra: SignalingConfigInput = {},
): Promise<number> {
  const srv = createSignalingServer(
    {
      host: '127.0.0.1',
      port: 0,
      testMode: true,
      root: 'dist',
      allowedOrigins: ['https://allowed.example'],
      ...extra,
      limits: {
        replanDebounceMs: 10,
        heartbeatMs: 10_000,
        heartbeatTimeoutMs: 60_000,
        helloTimeoutMs: 30_000,
        // These tests read /api/network right after acting: no caching here (it has its own test).
        networkCacheMs: 0,
        ...limits,
      },
    },
    { logger: pino({ level: 'silent' }), catalog },
  );
  const { port } = await srv.start();
  servers.push(srv);
  ports.push(port);
  return port;
}

async function client(port: number, opts: { origin?: string } = {}): Promise<TestClient> {
  const c = await connect(port, opts);
  clients.push(c);
  return c;
}

/** A connection that already said hello. */
async function peer(port: number, roles: Array<'contributor' | 'requester'> = ['contributor', 'requester']) {
  const c = await client(port);
  const welcome = await hello(c, roles);
  return { c, id: welcome.peerId, token: welcome.token };
}

async function expectError(c: TestClient, code: ErrorCode): Promise<void> {
  const e = await c.next('error');
  expect(e.code, e.message).toBe(code);
  expect(e.message.length).toBeGreaterThan(0);
}

async function network(port: number): Promise<NetworkSnapshot> {
  return JSON.parse((await httpGet(port, '/api/network')).body) as NetworkSnapshot;
}

let main: number;

beforeAll(async () => {
  catalog = await loadCatalog([]);
  main = await startServer({ maxConnectionsPerIp: 500, rateBurst: 200, ratePerSecond: 200 });
});

afterEach(async () => {
  for (const c of clients.splice(0)) {
    expect(c.violations, 'the server sent frames that do not parse').toEqual([]);
    c.ws.terminate();
  }
  // Whatever the test did, every server is still up and answering.
  for (const port of ports) expect(await healthy(port)).toBe(true);
});

afterAll(async () => {
  for (const s of servers) await s.stop();
});

const valid = {
  heartbeat: { type: 'heartbeat', v: 1, sentAt: 1 },
  profile: { type: 'profile', v: 1, capability: capability(1e9) },
};

/** Frames that a hello'd connection sends and the parser must reject with `code`. */
const BAD_FRAMES: Array<[string, unknown, ErrorCode]> = [
  ['invalid JSON', '{"type":"heartbeat","v":1,', 'PROTOCOL_BAD_FRAME'],
  ['binary junk', Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]), 'PROTOCOL_BAD_FRAME'],
  ['a JSON array', '[{"type":"heartbeat","v":1,"sentAt":1}]', 'PROTOCOL_BAD_FRAME'],
  ['JSON null', 'null', 'PROTOCOL_BAD_FRAME'],
  ['a JSON number', '42', 'PROTOCOL_BAD_FRAME'],
  ['an empty frame', '', 'PROTOCOL_BAD_FRAME'],
  ['an unknown type', { type: 'exec', v: 1, cmd: 'rm -rf /' }, 'PROTOCOL_UNKNOWN_TYPE'],
  ['a missing type', { v: 1, sentAt: 1 }, 'PROTOCOL_UNKNOWN_TYPE'],
  ['a non-string type', { type: ['heartbeat'], v: 1, sentAt: 1 }, 'PROTOCOL_UNKNOWN_TYPE'],
  ['a future version', { ...valid.heartbeat, v: 2 }, 'PROTOCOL_BAD_VERSION'],
  ['a version as a string', { ...valid.heartbeat, v: '1' }, 'PROTOCOL_BAD_VERSION'],
  ['a missing version', { type: 'heartbeat', sentAt: 1 }, 'PROTOCOL_BAD_VERSION'],
  ['a wrong field type', { ...valid.heartbeat, sentAt: 'now' }, 'PROTOCOL_BAD_FRAME'],
  ['an unknown extra field', { ...valid.heartbeat, admin: true }, 'PROTOCOL_BAD_FRAME'],
  [
    'a huge number',
    { ...valid.profile, capability: { ...capability(1e9), tflops: 1e308 } },
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'an overflowing literal (1e999 = Infinity)',
    '{"type":"profile","v":1,"capability":{"tflops":1,"bandwidthGBps":1,"memoryBytes":1e999,"backend":"wasm"}}',
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'negative memory',
    { ...valid.profile, capability: { ...capability(1e9), memoryBytes: -1 } },
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'negative / zero TFLOPS',
    { ...valid.profile, capability: { ...capability(1e9), tflops: 0 } },
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'NaN-like strings',
    { ...valid.profile, capability: { ...capability(1e9), tflops: 'NaN' } },
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'null for a number',
    { ...valid.profile, capability: { ...capability(1e9), bandwidthGBps: null } },
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'fractional bytes',
    { ...valid.profile, capability: { ...capability(1e9), memoryBytes: 1.5 } },
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'an unknown backend',
    { ...valid.profile, capability: { ...capability(1e9), backend: 'cuda' } },
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'a __proto__ key',
    '{"type":"heartbeat","v":1,"sentAt":1,"__proto__":{"polluted":true}}',
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'nested constructor/prototype keys',
    '{"type":"profile","v":1,"capability":{"tflops":1,"bandwidthGBps":1,"memoryBytes":1,"backend":"wasm","constructor":{"prototype":{"polluted":true}}}}',
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'an oversized string field',
    { type: 'ring-request', v: 1, model: 'm'.repeat(5000) },
    'PROTOCOL_BAD_FRAME',
  ],
  ['deeply nested JSON', '['.repeat(20_000) + ']'.repeat(20_000), 'PROTOCOL_BAD_FRAME'],
  [
    'a malformed peer id',
    { type: 'signal', v: 1, to: '../../admin', payload: { kind: 'candidate', candidate: { candidate: '' } } },
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'a signal payload that is too large',
    {
      type: 'signal',
      v: 1,
      to: 'p_AAAAAAAAAAAAAAAA',
      payload: { kind: 'sdp', sdp: { type: 'offer', sdp: 'a'.repeat(50_000) } },
    },
    'PROTOCOL_BAD_FRAME',
  ],
  [
    'an unknown payload kind',
    { type: 'signal', v: 1, to: 'p_AAAAAAAAAAAAAAAA', payload: { kind: 'exec' } },
    'PROTOCOL_BAD_FRAME',
  ],
  ['a negative epoch', { type: 'assignment-status', v: 1, epoch: -1, state: 'ready' }, 'PROTOCOL_BAD_FRAME'],
  ['an unknown state', { type: 'assignment-status', v: 1, epoch: 1, state: 'pwned' }, 'PROTOCOL_BAD_FRAME'],
  ['a second hello with an unknown role', { type: 'hello', v: 1, roles: ['admin'] }, 'PROTOCOL_BAD_FRAME'],
];

describe('malformed frames get typed errors', () => {
  it.each(BAD_FRAMES)('%s', async (_name, frame, code) => {
    const { c } = await peer(main);
    c.send(frame);
    await expectError(c, code);
    // The connection survives a bad frame and still works.
    c.send(valid.heartbeat);
    await c.next('heartbeat-ack');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('rejects hello frames with a client-chosen id, no roles or too many roles', async () => {
    const c = await client(main);
    c.send({ type: 'hello', v: 1, roles: ['contributor'], peerId: 'p_AAAAAAAAAAAAAAAA' });
    await expectError(c, 'PROTOCOL_BAD_FRAME');
    c.send({ type: 'hello', v: 1, roles: [] });
    await expectError(c, 'PROTOCOL_BAD_FRAME');
    c.send({ type: 'hello', v: 1, roles: ['contributor', 'requester', 'contributor'] });
    await expectError(c, 'PROTOCOL_BAD_FRAME');
  });
});

describe('protocol state', () => {
  it('refuses every message before hello', async () => {
    const c = await client(main);
    for (const frame of [
      valid.heartbeat,
      valid.profile,
      {
        type: 'signal',
        v: 1,
        to: 'p_AAAAAAAAAAAAAAAA',
        payload: { kind: 'candidate', candidate: { candidate: '' } },
      },
      { type: 'ring-request', v: 1, model: 'stories260K' },
      { type: 'leave', v: 1 },
    ]) {
      c.send(frame);
      await expectError(c, 'PROTOCOL_NOT_ALLOWED');
    }
  });

  it('cuts a connection whose frame before hello is larger than any hello (1008), unparsed', async () => {
    // Its own server: a cut holds the address (this test's 127.0.0.1) back, unless told not to.
    const port = await startServer({ holdBackMs: 0 });
    const c = await client(port);
    // Well-formed but too big for a hello: refused by its length alone, the connection cut.
    c.send({ type: 'heartbeat', v: 1, sentAt: 1, pad: 'x'.repeat(MAX_PRESESSION_FRAME_BYTES) });
    await expectError(c, 'PROTOCOL_FRAME_TOO_LARGE');
    expect((await c.closed).code).toBe(CLOSE_CODES.policy);
    const net = await network(port);
    expect(net.counters.disconnects['presession-frame']).toBe(1);
    expect(net.counters.frameGate?.cuts).toBe(1);
    // A hello with its longest client name is far below the limit and still answered.
    const ok = await client(port);
    ok.send({ type: 'hello', v: 1, roles: ['requester'], client: 'c'.repeat(200) });
    await ok.next('welcome');
  });

  it('refuses hello twice on one connection', async () => {
    const { c } = await peer(main);
    c.send({ type: 'hello', v: 1, roles: ['requester'] });
    await expectError(c, 'PROTOCOL_NOT_ALLOWED');
  });

  it('refuses a forged session token without disturbing the real session', async () => {
    const victim = await peer(main);
    const attacker = await client(main);
    attacker.send({
      type: 'hello',
      v: 1,
      roles: ['contributor'],
      resume: { peerId: victim.id, token: 'A'.repeat(43) },
    });
    await expectError(attacker, 'PROTOCOL_BAD_TOKEN');
    victim.c.send(valid.heartbeat);
    await victim.c.next('heartbeat-ack');
    expect((await network(main)).peers.find((p) => p.id === victim.id)?.connected).toBe(true);
  });

  it('refuses to resume an unknown peer id (same error as a wrong token)', async () => {
    const c = await client(main);
    c.send({
      type: 'hello',
      v: 1,
      roles: ['contributor'],
      resume: { peerId: 'p_ZZZZZZZZZZZZZZZZ', token: 'B'.repeat(43) },
    });
    await expectError(c, 'PROTOCOL_BAD_TOKEN');
  });

  it('a replayed token of a live session replaces the old connection, and is rotated', async () => {
    const first = await peer(main);
    const second = await client(main);
    second.send({
      type: 'hello',
      v: 1,
      roles: ['contributor', 'requester'],
      resume: { peerId: first.id, token: first.token },
    });
    const w = await second.next('welcome');
    expect(w).toMatchObject({ peerId: first.id, resumed: true });
    expect(w.token).not.toBe(first.token);
    await expectError(first.c, 'PROTOCOL_SESSION_REPLACED');
    expect((await first.c.closed).code).toBe(CLOSE_CODES.sessionReplaced);
    // The old token no longer works: a second replay fails.
    const third = await client(main);
    third.send({
      type: 'hello',
      v: 1,
      roles: ['contributor'],
      resume: { peerId: first.id, token: first.token },
    });
    await expectError(third, 'PROTOCOL_BAD_TOKEN');
    second.send(valid.heartbeat);
    await second.next('heartbeat-ack');
  });

  it('refuses a relay to an unknown id, and queues nothing for it', async () => {
    const { c } = await peer(main);
    c.send({
      type: 'signal',
      v: 1,
      to: 'p_0123456789abcdef',
      payload: { kind: 'candidate', candidate: { candidate: '' } },
    });
    await expectError(c, 'PROTOCOL_UNKNOWN_PEER');
  });

  it('refuses a relay to a stranger (a peer it was not introduced to)', async () => {
    const a = await peer(main, ['requester']);
    const b = await peer(main, ['requester']);
    a.c.send({
      type: 'signal',
      v: 1,
      to: b.id,
      payload: { kind: 'sdp', sdp: { type: 'offer', sdp: 'v=0\r\n' } },
    });
    await expectError(a.c, 'PROTOCOL_NOT_ALLOWED');
    expect(await b.c.receives('signal', 150)).toBe(false);
  });

  it('refuses a relay to itself', async () => {
    const a = await peer(main);
    a.c.send({
      type: 'signal',
      v: 1,
      to: a.id,
      payload: { kind: 'candidate', candidate: { candidate: '' } },
    });
    await expectError(a.c, 'PROTOCOL_NOT_ALLOWED');
  });

  it('enforces roles: profile needs contributor, ring-request needs requester', async () => {
    const r = await peer(main, ['requester']);
    r.c.send(valid.profile);
    await expectError(r.c, 'PROTOCOL_NOT_ALLOWED');
    const k = await peer(main, ['contributor']);
    k.c.send({ type: 'ring-request', v: 1, model: 'stories260K' });
    await expectError(k.c, 'PROTOCOL_NOT_ALLOWED');
  });

  it('answers a ring-request for an unknown model with no-ring, without remembering it', async () => {
    const r = await peer(main, ['requester']);
    r.c.send({ type: 'ring-request', v: 1, model: '__proto__' });
    const nr = await r.c.next('no-ring');
    expect(nr.model).toBe('__proto__');
    expect(nr.reason).toMatch(/unknown model/);
    const me = (await network(main)).peers.find((p) => p.id === r.id);
    expect(me).toBeDefined();
  });

  it('refuses peer-unreachable reports about strangers and unknown ids', async () => {
    const a = await peer(main);
    const b = await peer(main);
    a.c.send({ type: 'peer-unreachable', v: 1, peer: b.id, reason: 'trust me' });
    await expectError(a.c, 'PROTOCOL_NOT_ALLOWED');
    a.c.send({ type: 'peer-unreachable', v: 1, peer: 'p_0123456789abcdef', reason: 'who?' });
    await expectError(a.c, 'PROTOCOL_UNKNOWN_PEER');
    b.c.send(valid.heartbeat);
    await b.c.next('heartbeat-ack');
  });

  it('ignores an assignment-status for an epoch the peer was never given', async () => {
    const a = await peer(main, ['contributor']);
    a.c.send({ type: 'assignment-status', v: 1, epoch: 99_999, state: 'failed', message: 'lies' });
    a.c.send(valid.heartbeat);
    await a.c.next('heartbeat-ack');
    expect(a.c.messages.some((m) => m.type === 'error')).toBe(false);
  });

  it('leave removes the peer and closes the connection normally', async () => {
    const a = await peer(main);
    a.c.send({ type: 'leave', v: 1 });
    expect((await a.c.closed).code).toBe(CLOSE_CODES.leave);
    expect((await network(main)).peers.some((p) => p.id === a.id)).toBe(false);
  });
});

describe('transport-level abuse', () => {
  it('closes on an oversize frame (> 64 KiB) with 1009', async () => {
    const { c } = await peer(main);
    c.send(JSON.stringify({ type: 'ring-request', v: 1, model: 'x'.repeat(70_000) }));
    expect((await c.closed).code).toBe(1009);
  });

  it('closes on a text frame that is not UTF-8 with 1007', async () => {
    const { c } = await peer(main);
    c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await c.closed).code).toBe(1007);
  });

  it('closes a connection that keeps sending bad frames (error budget) with 1008', async () => {
    const srv = await startServer({ maxProtocolErrors: 10 });
    const c = await client(srv);
    for (let i = 0; i < 30; i++) c.send('not json');
    expect((await c.closed).code).toBe(CLOSE_CODES.policy);
    expect(c.messages.filter((m) => m.type === 'error').length).toBeGreaterThanOrEqual(10);
  });

  it('answers the first errors of a burst one by one, then once in summary, then counts them silently', async () => {
    const srv = await startServer({ maxProtocolErrors: 40 });
    const { c } = await peer(srv);
    for (let i = 0; i < 60; i++) c.send('not json');
    expect((await c.closed).code).toBe(CLOSE_CODES.policy);
    const errors = c.messages.flatMap((m) => (m.type === 'error' ? [m] : []));
    expect(errors.slice(0, ERROR_REPLIES_PER_BURST).map((e) => e.code)).toEqual(
      Array.from({ length: ERROR_REPLIES_PER_BURST }, () => 'PROTOCOL_BAD_FRAME'),
    );
    expect(errors).toHaveLength(ERROR_REPLIES_PER_BURST + 1);
    expect(errors.at(-1)).toMatchObject({
      code: 'PROTOCOL_RATE_LIMITED',
      details: { replies: ERROR_REPLIES_PER_BURST, closeAfter: 40, last: 'PROTOCOL_BAD_FRAME' },
    });
    // Every refused frame still counted towards the close: 40 in the burst, the 41st closes.
    expect((await network(srv)).counters.errorsSuppressed).toBeGreaterThanOrEqual(
      40 - ERROR_REPLIES_PER_BURST,
    );
  });

  it('rate-limits a flood: one PROTOCOL_RATE_LIMITED error, then a disconnect', async () => {
    const srv = await startServer({ rateBurst: 20, ratePerSecond: 5, maxDroppedFrames: 50 });
    const { c } = await peer(srv);
    for (let i = 0; i < 500; i++) c.send(valid.heartbeat);
    await expectError(c, 'PROTOCOL_RATE_LIMITED');
    expect((await c.closed).code).toBe(CLOSE_CODES.policy);
    const acks = c.messages.filter((m) => m.type === 'heartbeat-ack').length;
    expect(acks).toBeLessThanOrEqual(21);
    expect(c.messages.filter((m) => m.type === 'error' && m.code === 'PROTOCOL_RATE_LIMITED')).toHaveLength(
      1,
    );
    expect((await network(srv)).counters.framesRateLimited).toBeGreaterThanOrEqual(50);
  });

  it('bounds the session table: sessions in resume grace are dropped first, then hellos are refused', async () => {
    const srv = await startServer({ maxSessions: 3, resumeGraceMs: 600_000 });
    const [a, b, c] = [await peer(srv), await peer(srv), await peer(srv)];
    a.c.ws.terminate();
    await a.c.closed;
    // In resume grace: counted, not listed.
    await vi.waitFor(async () => expect((await network(srv)).sessionsInGrace).toBe(1));
    const d = await peer(srv);
    expect(d.id).toMatch(/^p_/);
    const late = await client(srv);
    late.send({ type: 'hello', v: 1, roles: ['requester'], resume: { peerId: a.id, token: a.token } });
    await expectError(late, 'PROTOCOL_BAD_TOKEN');
    late.send({ type: 'hello', v: 1, roles: ['requester'] });
    await expectError(late, 'PROTOCOL_NOT_ALLOWED');
    expect((await network(srv)).peers.map((p) => p.id).sort()).toEqual([b.id, c.id, d.id].sort());
  });

  it('caps connections per IP (429 at upgrade) and frees the slot on close', async () => {
    const srv = await startServer({ maxConnectionsPerIp: 3 });
    const open = [await client(srv), await client(srv), await client(srv)];
    expect(await upgradeStatus(srv)).toBe(429);
    open[0]!.close();
    await open[0]!.closed;
    expect(await upgradeStatus(srv)).toBe(0);
    expect((await network(srv)).counters.rejectedUpgrades['per-ip-cap']).toBe(1);
  });

  it('checks Origin at upgrade: foreign and "null" origins 403, own and configured origins accepted', async () => {
    expect(await upgradeStatus(main, { origin: 'https://evil.example' })).toBe(403);
    expect(await upgradeStatus(main, { origin: 'null' })).toBe(403);
    expect(await upgradeStatus(main, { origin: `http://127.0.0.1:${main}.evil.example` })).toBe(403);
    expect(await upgradeStatus(main, { origin: 'https://allowed.example' })).toBe(0);
    expect(await upgradeStatus(main, { origin: `http://127.0.0.1:${main}` })).toBe(0);
  });

  it('refuses upgrades on other paths (404) and plain GET /ws (426)', async () => {
    expect(await upgradeStatus(main, { path: '/socket' })).toBe(404);
    expect(await upgradeStatus(main, { path: '/ws/../admin' })).toBe(404);
    expect((await httpGet(main, '/ws')).status).toBe(426);
  });

  it('serves HTTP safely: traversal, bad encodings and non-GET methods', async () => {
    expect((await httpGet(main, '/../package.json')).status).toBe(404);
    expect((await httpGet(main, '/%2e%2e/package.json')).status).toBe(404);
    expect((await httpGet(main, '/models/stories260K/%2e%2e/%2e%2e/%2e%2e/package.json')).status).toBe(404);
    expect((await httpGet(main, '/%E0%A4%A')).status).toBe(404);
    expect((await httpGet(main, '/models/stories260K/tok512.bin')).status).toBe(200);
    const net = await httpGet(main, '/api/network');
    expect(net.status).toBe(200);
    expect(net.headers['cross-origin-opener-policy']).toBe('same-origin');
  });
});

describe('timeouts (short configured values)', () => {
  let srv: number;
  beforeAll(async () => {
    srv = await startServer({
      heartbeatMs: 100,
      heartbeatTimeoutMs: 400,
      helloTimeoutMs: 300,
      resumeGraceMs: 300,
    });
  });

  it('removes a half-open peer that stops heartbeating (PROTOCOL_TIMEOUT, 4002)', async () => {
    const a = await peer(srv);
    expect((await network(srv)).peers.some((p) => p.id === a.id)).toBe(true);
    await expectError(a.c, 'PROTOCOL_TIMEOUT');
    expect((await a.c.closed).code).toBe(CLOSE_CODES.heartbeatTimeout);
    expect((await network(srv)).peers.some((p) => p.id === a.id)).toBe(false);
  });

  it('keeps a peer that heartbeats alive past the timeout', async () => {
    const a = await peer(srv);
    // The heartbeat cadence itself (not a wait for a condition): 8 beats at the configured 100 ms
    // span twice the 400 ms timeout.
    for (let i = 0; i < 8; i++) {
      a.c.send({ type: 'heartbeat', v: 1, sentAt: Date.now() });
      await a.c.next('heartbeat-ack');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(a.c.ws.readyState).toBe(a.c.ws.OPEN);
    expect((await network(srv)).peers.find((p) => p.id === a.id)?.connected).toBe(true);
  });

  it('closes a connection that never says hello (4004)', async () => {
    const c = await client(srv);
    await expectError(c, 'PROTOCOL_TIMEOUT');
    expect((await c.closed).code).toBe(CLOSE_CODES.helloTimeout);
  });

  it('keeps a dropped session for the resume grace, then forgets it', async () => {
    const a = await peer(srv);
    a.c.ws.terminate();
    await a.c.closed;
    // A session in resume grace is counted, not listed (it is not part of the network).
    await vi.waitFor(async () => {
      const during = await network(srv);
      expect(during.peers.some((p) => p.id === a.id)).toBe(false);
      expect(during.sessionsInGrace).toBe(1);
    });
    const back = await client(srv);
    back.send({
      type: 'hello',
      v: 1,
      roles: ['contributor', 'requester'],
      resume: { peerId: a.id, token: a.token },
    });
    const w = await back.next('welcome');
    expect(w.resumed).toBe(true);
    back.ws.terminate();
    await back.closed;
    // Not listed while in grace either: gone from the peers and from the grace count means expired.
    await vi.waitFor(
      async () => {
        const n = await network(srv);
        expect(n.peers.some((p) => p.id === a.id) || n.sessionsInGrace > 0).toBe(false);
      },
      { timeout: 5_000, interval: 50 },
    );
    const late = await client(srv);
    late.send({ type: 'hello', v: 1, roles: ['contributor'], resume: { peerId: a.id, token: w.token } });
    await expectError(late, 'PROTOCOL_BAD_TOKEN');
  });
});

describe('the server survives random frames on a live connection', () => {
  it('400 random frames: typed errors only, server healthy', async () => {
    const srv = await startServer({ rateBurst: 10_000, maxProtocolErrors: 10_000 });
    const { c } = await peer(srv);
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pieces = [
      '{',
      '}',
      '"type"',
      ':',
      '"signal"',
      '"v"',
      '1',
      ',',
      '[',
      ']',
      'null',
      '"__proto__"',
      '-1e400',
      '"p_AAAAAAAAAAAAAAAA"',
    ];
    for (let i = 0; i < 400; i++) {
      let s = '';
      const len = rnd(12);
      for (let k = 0; k < len; k++) s += pieces[rnd(pieces.length)];
      c.send(s);
    }
    c.send(valid.heartbeat);
    await c.next('heartbeat-ack', 10_000);
    expect(c.messages.every((m) => m.type !== 'error' || m.code.startsWith('PROTOCOL_'))).toBe(true);
  });
});

describe('features that are off on this server', () => {
  it('ledger and stake routes answer 200 {enabled:false}, not a failed request', async () => {
    const addr = '0x' + 'ab'.repeat(20);
    for (const path of [
      '/api/ledger/leaderboard',
      `/api/ledger/account/${addr}`,
      '/api/usage',
      `/api/stake/${addr}`,
    ]) {
      const res = await httpGet(main, path);
      expect(res.status, path).toBe(200);
      expect(JSON.parse(res.body), path).toEqual({ enabled: false });
    }
    // A path no route handles is still a 404.
    expect((await httpGet(main, '/api/nothing-here')).status).toBe(404);
  });
});
