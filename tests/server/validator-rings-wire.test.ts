/**
 * Security level k over the real server's WebSocket protocol: a requester's `ring-request` with
 * `security` gets the primary ring plus a validator ring (same boundaries, disjoint peers, each
 * stage's registered key); validator peers are sent their assignments; `validated-work` without a
 * proof credits nobody (`VALIDATION_UNPROVEN_WORK`); a level outside 1–3 is refused at the boundary.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toBase64 } from '../../shared/ring/stage-commitments';
import { createSessionKey } from '../../shared/validation/crypto';
import { loadCatalog } from '../../signaling-server/src/catalog';
import type { NetworkSnapshot } from '../../signaling-server/src/network-snapshot';
import { createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import { capability, connect, hello, httpGet, type TestClient } from './signaling-test-client';

let server: SignalingServer;
let port: number;
const clients: TestClient[] = [];

beforeAll(async () => {
  server = createSignalingServer(
    {
      host: '127.0.0.1',
      port: 0,
      testMode: true,
      limits: { replanDebounceMs: 20, heartbeatMs: 10_000, heartbeatTimeoutMs: 60_000, networkCacheMs: 0 },
    },
    { logger: pino({ level: 'silent' }), catalog: await loadCatalog([]) },
  );
  ({ port } = await server.start());
});
afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  await server.stop();
});

async function contributor() {
  const c = await connect(port);
  clients.push(c);
  const w = await hello(c, ['contributor']);
  const key = await createSessionKey();
  c.send({ type: 'validation-key', v: 1, key: toBase64(key.publicKeyRaw) });
  c.send({ type: 'profile', v: 1, capability: capability(1_000_000) });
  return { c, id: w.peerId };
}

describe('security level k on the wire', () => {
  it('k = 2: a validator ring with keys, its peers assigned; proofless work and k = 4 refused', async () => {
    const first = [await contributor(), await contributor(), await contributor()];
    await Promise.all(first.map((m) => m.c.next('assignment')));
    const more = [await contributor(), await contributor(), await contributor()];
    const req = await connect(port);
    clients.push(req);
    await hello(req, ['requester']);
    req.send({ type: 'ring-request', v: 1, model: 'stories260K', security: { v: 1, k: 4 } });
    expect((await req.next('error')).code).toBe('PROTOCOL_BAD_FRAME');
    req.send({ type: 'ring-request', v: 1, model: 'stories260K', security: { v: 1, k: 2 } });
    const ring = await req.next('ring', 5000);
    expect(ring.security).toEqual({ requested: 2, k: 2 });
    const v = ring.validators![0]!;
    expect(v.stages.map((s) => s.range)).toEqual(ring.stages.map((s) => s.range));
    expect(v.stages.map((s) => s.peer).sort()).toEqual(more.map((m) => m.id).sort());
    expect([...ring.stages, ...v.stages].map((s) => typeof s.key)).toEqual(Array(6).fill('string'));
    for (const m of more) expect((await m.c.next('assignment')).ringId).toBe(v.ringId);
    req.send({ type: 'validated-work', v: 1, model: 'stories260K', ringId: ring.ringId, steps: 10 });
    expect((await req.next('error')).code).toBe('VALIDATION_UNPROVEN_WORK');
    const net = JSON.parse((await httpGet(port, '/api/network')).body) as NetworkSnapshot;
    for (const p of net.peers.filter((q) => q.roles.includes('contributor')))
      expect(p.validatedSteps ?? 0).toBe(0);
    for (const c of clients) expect(c.violations).toEqual([]);
  }, 30_000);
});
