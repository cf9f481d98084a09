/**
 * A requester's own usage (`GET /api/usage` with its SIWE token) on the real server with a PGlite
 * ledger: answers and tokens from its `ring-lap` reports (only laps of a ring it was sent count; the
 * answer's `generated` count when sent, bounded by the model's context, else an older client's steps),
 * validated steps from the ledger's validated work; another signed-in requester sees only its own
 * (zeros); no token, a malformed header or a forged token is a 401 with a typed `AUTH_BAD_TOKEN`.
 * The migration from an empty database to the requests/tokens columns runs at start.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SIGNALING_VERSION } from '../../shared/protocol/signaling';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import { signIn } from '../helpers/siwe';
import { scaled } from '../helpers/timeouts';
import { capability, connect, type TestClient } from './signaling-test-client';

let server: SignalingServer;
let host: string;
let port: number;
const clients: TestClient[] = [];
const dir = mkdtempSync(join(tmpdir(), 'ringwork-usage-'));

beforeAll(async () => {
  server = createSignalingServer(
    {
      host: '127.0.0.1',
      port: 0,
      testMode: true,
      dataDir: join(dir, 'db'),
      limits: { replanDebounceMs: 20, heartbeatMs: 10_000, heartbeatTimeoutMs: 60_000, networkCacheMs: 0 },
    },
    { logger: pino({ level: 'silent' }), catalog: await loadCatalog([]) },
  );
  ({ port } = await server.start());
  host = `127.0.0.1:${port}`;
}, scaled(60_000));
afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const usageOf = async (authorization?: string) => {
  const r = await fetch(`http://${host}/api/usage`, authorization ? { headers: { authorization } } : {});
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
};

describe('a requester reads its own usage', () => {
  it(
    'counts its answers and tokens and validated steps, for it only; no or a bad token is a typed 401',
    async () => {
      const model = (await loadCatalog([]))[0]!.descriptor.id;
      for (let i = 0; i < 3; i++) {
        const c = await connect(port);
        clients.push(c);
        c.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['contributor'] });
        await c.next('welcome');
        c.send({ type: 'profile', v: 1, capability: capability(1_000_000) });
      }
      const me = privateKeyToAccount(generatePrivateKey());
      const other = privateKeyToAccount(generatePrivateKey());
      const token = await signIn(host, me);
      const otherToken = await signIn(host, other);
      const req = await connect(port);
      clients.push(req);
      req.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['requester'], identity: token });
      const peerId = (await req.next('welcome')).peerId;

      // Before anything: zeros, with the address the token names.
      expect(await usageOf(`Bearer ${token}`)).toEqual({
        status: 200,
        body: { enabled: true, address: me.address, requests: 0, tokens: 0, validatedSteps: 0, flops: 0 },
      });

      // A lap of a ring it was not sent is refused and counts nothing.
      req.send({ type: 'ring-lap', v: 1, ringId: `${model}:99`, msPerToken: 10, tokens: 50 });
      expect((await req.next('error')).code).toBe('PROTOCOL_NOT_ALLOWED');

      req.send({ type: 'ring-request', v: 1, model });
      const ring = await req.next('ring', scaled(10_000));
      const context = (await loadCatalog([]))[0]!.descriptor.contextLength;
      // Refused before anything counts: a count over what a ring of the model can generate (its
      // context), an unknown version of the field, a lap with neither timing nor count, half a timing.
      req.send({ type: 'ring-lap', v: 1, ringId: ring.ringId, generated: { v: 1, tokens: context + 1 } });
      expect(await req.next('error')).toMatchObject({
        code: 'PROTOCOL_BAD_FRAME',
        details: { tokens: context + 1, max: context },
      });
      for (const bad of [
        { generated: { v: 2, tokens: 5 } },
        {},
        { msPerToken: 12, generated: { v: 1, tokens: 5 } },
        { generated: { v: 1, tokens: -1 } },
      ]) {
        req.send({ type: 'ring-lap', v: 1, ringId: ring.ringId, ...bad });
        expect((await req.next('error')).code, JSON.stringify(bad)).toBe('PROTOCOL_BAD_FRAME');
      }
      // An older client's laps count their decode steps (no generated count).
      req.send({ type: 'ring-lap', v: 1, ringId: ring.ringId, msPerToken: 12, tokens: 40 });
      req.send({ type: 'ring-lap', v: 1, ringId: ring.ringId, msPerToken: 12, tokens: 2 });
      // A plain answer of 60 tokens (59 decode steps timed) and a drafted or failed-over one (no
      // timing): each counts its generated tokens.
      req.send({
        type: 'ring-lap',
        v: 1,
        ringId: ring.ringId,
        msPerToken: 12,
        tokens: 59,
        generated: { v: 1, tokens: 60 },
      });
      req.send({ type: 'ring-lap', v: 1, ringId: ring.ringId, generated: { v: 1, tokens: 60 } });
      // Validated steps come from validation through the ledger (stubbed here by its own record call).
      await server.ledger!.recordSteps({
        sessionId: 's1',
        model,
        requester: { peerId, address: me.address },
        stages: [{ peerId: 'p_x', units: [0, ring.stages.at(-1)!.range[1]] }],
        steps: 7,
        verdict: 'passed',
      });
      await vi.waitFor(
        async () => {
          const u = await usageOf(`Bearer ${token}`);
          expect(u.body).toMatchObject({ requests: 4, tokens: 162, validatedSteps: 7 });
          expect(u.body.flops).toBeGreaterThan(0);
        },
        { timeout: scaled(10_000), interval: 100 },
      );

      await expect(server.ledger!.recordRequest({ requester: me.address, tokens: -1 })).rejects.toMatchObject(
        {
          code: 'LEDGER_BAD_RECORD',
        },
      );
      // Another requester's token reads its own usage only.
      expect((await usageOf(`Bearer ${otherToken}`)).body).toEqual({
        enabled: true,
        address: other.address,
        requests: 0,
        tokens: 0,
        validatedSteps: 0,
        flops: 0,
      });
      // No token, a malformed header, a forged token: 401 with the typed error.
      const forged = `${token.slice(0, -4)}${token.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
      for (const auth of [undefined, token, `Bearer ${forged}`, 'Bearer ']) {
        const r = await usageOf(auth);
        expect(r.status, String(auth)).toBe(401);
        expect((r.body.error as { code: string }).code).toBe('AUTH_BAD_TOKEN');
      }
      for (const c of clients) expect(c.violations).toEqual([]);
    },
    scaled(60_000),
  );
});
