/**
 * A flooding socket group against the real server process (`signaling-server/src/main.ts`): eight
 * sockets of one host (one IPv6 /64, forwarded by the trusted proxy 127.0.0.1) flood small valid
 * frames and 60 KiB junk frames as fast as their sockets take them. Their address's shared budget
 * runs dry, the server stops reading them (paused sockets) and closes each with 1008 (policy), while
 * an honest contributor's heartbeats and an honest requester's relayed signals, sent meanwhile,
 * are all answered and delivered, and no honest socket is closed or sent an error. The cut host is
 * then held back: its next upgrade waits unanswered and is refused (429) before any handshake,
 * while another host connects at once.
 *
 * Behaviour only, no timing: how fast the honest answers come is the benchmark's business
 * (`npm run bench:hostile`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { NetworkSnapshot } from '../../signaling-server/src/network-snapshot';
import { CLOSE_CODES } from '../../signaling-server/src/server-context';
import { spawnServer, type SpawnedServer } from '../../tools/testing/spawn-server';
import { scaled, TIMEOUTS, waitUntil } from '../helpers/timeouts';
import { capability, connect, hello, httpGet, type TestClient } from './signaling-test-client';

let server: SpawnedServer;
let port: number;
const clients: TestClient[] = [];

beforeAll(async () => {
  server = await spawnServer([
    '--trust-proxy',
    '127.0.0.1',
    '--max-connections-per-ip',
    '64',
    '--network-cache-ms',
    '0',
    // An address budget below one connection's own (200 frames): the group meets the shared budget
    // first, however its frames are spread over its sockets. The honest peers need ~20 frames/s.
    '--frames-burst-per-ip',
    '100',
    '--frames-per-second-per-ip',
    '50',
    // Every cut holds the host back 5 s (no doubling): long enough to see a reconnect wait.
    '--hold-back-ms',
    '5000',
    '--hold-back-max-ms',
    '5000',
  ]);
  port = Number(new URL(server.url).port);
}, TIMEOUTS.serverStart);

afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  await server?.stop();
});

async function join(roles: Array<'contributor' | 'requester'>, headers?: Record<string, string>) {
  const c = await connect(port, headers ? { headers } : {});
  clients.push(c);
  const w = await hello(c, roles);
  return { c, id: w.peerId };
}

const network = async (): Promise<NetworkSnapshot> =>
  JSON.parse((await httpGet(port, '/api/network')).body) as NetworkSnapshot;

/** Tries a WebSocket upgrade; resolves with the HTTP status it was refused with (101: accepted). */
function upgradeStatus(
  headers: Record<string, string>,
): Promise<{ status: number; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers });
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] });
      ws.terminate();
    });
    ws.once('open', () => {
      resolve({ status: 101, retryAfter: undefined });
      ws.terminate();
    });
    ws.once('error', (e) => reject(e));
  });
}

/** Sends `frame` again whenever the last batch has reached the kernel, until the socket closes. */
function flood(c: TestClient, frame: string): void {
  const pump = (): void => {
    if (c.ws.readyState !== c.ws.OPEN) return;
    for (let i = 0; i < 32; i++) c.ws.send(frame, i === 31 ? () => setImmediate(pump) : undefined);
  };
  pump();
}

describe('a flooding socket group (real server process)', () => {
  it(
    'is paused and closed with 1008 while an honest peer’s heartbeats and relayed signals all get through',
    async () => {
      const members = [];
      for (let i = 0; i < 3; i++) {
        const m = await join(['contributor']);
        m.c.send({ type: 'profile', v: 1, capability: capability(1_000_000) });
        members.push(m);
      }
      await Promise.all(members.map((m) => m.c.next('assignment', scaled(10_000))));
      const req = await join(['requester']);
      req.c.send({ type: 'ring-request', v: 1, model: 'stories260K' });
      const ring = await req.c.next('ring', scaled(10_000));
      const first = members.find((m) => m.id === ring.stages[0]!.peer)!;
      const beater = members.find((m) => m !== first)!;

      // One host, eight sockets: four flood heartbeats (valid, tiny), four flood 60 KiB junk frames.
      const flooders: TestClient[] = [];
      for (let i = 1; i <= 8; i++) {
        const f = await join(['requester'], { 'x-forwarded-for': `2001:db8:77::${i}` });
        flooders.push(f.c);
      }
      const heartbeat = JSON.stringify({ type: 'heartbeat', v: 1, sentAt: 1 });
      const junk = JSON.stringify({ type: 'junk', v: 1, pad: 'x'.repeat(60 * 1024) });
      flooders.forEach((f, i) => flood(f, i < 4 ? heartbeat : junk));

      // Meanwhile the honest peers go about their business, within every quota.
      const candidate = (p: number) => ({
        kind: 'candidate' as const,
        candidate: {
          candidate: `candidate:1 1 udp 2122260223 127.0.0.1 ${p} typ host generation 0`,
          sdpMid: '0',
        },
      });
      const SIGNALS = 20;
      const BEATS = 30;
      for (let i = 0; i < Math.max(SIGNALS, BEATS); i++) {
        if (i < SIGNALS) req.c.send({ type: 'signal', v: 1, to: first.id, payload: candidate(5000 + i) });
        if (i < BEATS) beater.c.send({ type: 'heartbeat', v: 1, sentAt: i });
        await new Promise((r) => setTimeout(r, 100));
      }

      const flooderCloses = await Promise.all(flooders.map((f) => f.closed));
      expect(flooderCloses.map((c) => c.code)).toEqual(flooders.map(() => CLOSE_CODES.policy));

      // The cut host may not come straight back: its upgrade is held unanswered, then refused.
      const t0 = Date.now();
      const [back, elsewhere] = await Promise.all([
        upgradeStatus({ 'x-forwarded-for': '2001:db8:77::99' }),
        upgradeStatus({ 'x-forwarded-for': '2001:db8:78::1' }),
      ]);
      expect(elsewhere.status).toBe(101);
      expect(back.status).toBe(429);
      expect(back.retryAfter).toBeDefined();
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);

      // Every honest message arrived, in order, and nothing honest was refused or cut.
      await waitUntil(
        'every honest signal and heartbeat answer',
        () =>
          first.c.messages.filter((m) => m.type === 'signal').length === SIGNALS &&
          beater.c.messages.filter((m) => m.type === 'heartbeat-ack').length === BEATS,
        { timeoutMs: scaled(10_000), intervalMs: 50 },
      );
      const relayed = first.c.messages.flatMap((m) =>
        m.type === 'signal' && m.from === req.id && m.payload.kind === 'candidate'
          ? [m.payload.candidate?.candidate ?? '']
          : [],
      );
      expect(relayed).toEqual(
        Array.from({ length: SIGNALS }, (_, i) => candidate(5000 + i).candidate.candidate),
      );
      const acks = beater.c.messages.flatMap((m) => (m.type === 'heartbeat-ack' ? [m.sentAt] : []));
      expect(acks).toEqual(Array.from({ length: BEATS }, (_, i) => i));
      for (const p of [...members, req]) {
        expect(p.c.ws.readyState).toBe(p.c.ws.OPEN);
        expect(p.c.messages.filter((m) => m.type === 'error')).toEqual([]);
        expect(p.c.violations).toEqual([]);
      }

      // The server throttled the group by address (shared budget), not by reading and dropping.
      const net = await network();
      expect(net.counters.frameGate?.bucketPauses ?? 0).toBeGreaterThan(0);
      expect(net.counters.disconnects['rate-limit'] ?? 0).toBeGreaterThan(0);
      expect(net.counters.disconnects['slow-consumer'] ?? 0).toBe(0);
      expect(net.counters.rejectedUpgrades['held-back']).toBe(1);
      expect(net.counters.frameGate?.cuts ?? 0).toBeGreaterThanOrEqual(flooders.length);
      expect(net.peers.filter((p) => p.connected).map((p) => p.id)).toEqual(
        expect.arrayContaining([...members.map((m) => m.id), req.id]),
      );
    },
    scaled(60_000),
  );
});
