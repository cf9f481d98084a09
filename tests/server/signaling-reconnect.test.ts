/**
 * The signaling client heals a dropped connection by itself against the real server: it resumes its
 * session within the grace, and when the session is gone (evicted, server restarted) it starts a new
 * one and replays its profile and ring requests, so a contributor is planned back in unattended.
 */
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import type { ServerMessageOf } from '../../shared/protocol/signaling';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import {
  createSignalingClient,
  reconnectDelay,
  type SignalingClient,
} from '../../web/src/network/signaling-client';

const servers: SignalingServer[] = [];
const clients: SignalingClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.stop();
  for (const s of servers.splice(0)) await s.stop();
});

async function server(port = 0): Promise<{ srv: SignalingServer; port: number }> {
  const srv = createSignalingServer(
    {
      host: '127.0.0.1',
      port,
      testMode: true,
      limits: { replanDebounceMs: 10, heartbeatMs: 10_000, heartbeatTimeoutMs: 60_000, networkCacheMs: 0 },
    },
    { logger: pino({ level: 'silent' }), catalog: await loadCatalog([]) },
  );
  servers.push(srv);
  return { srv, port: (await srv.start()).port };
}

const profile = {
  type: 'profile',
  capability: { tflops: 10, bandwidthGBps: 100, memoryBytes: 50_000_000, backend: 'wasm', mobile: false },
} as const;

describe('signaling client reconnect', () => {
  it('backs off exponentially with jitter, capped', () => {
    expect(reconnectDelay(0, { baseMs: 100 }, () => 1)).toBe(100);
    expect(reconnectDelay(3, { baseMs: 100 }, () => 1)).toBe(800);
    expect(reconnectDelay(3, { baseMs: 100 }, () => 0)).toBe(400);
    expect(reconnectDelay(40, { baseMs: 100, maxMs: 5000 }, () => 1)).toBe(5000);
  });

  it('after a server restart it starts a new session and replays its profile: assigned again', async () => {
    const first = await server();
    const client = createSignalingClient({
      url: `ws://127.0.0.1:${first.port}/ws`,
      roles: ['contributor', 'requester'],
      WebSocket: WebSocket,
      reconnect: { baseMs: 20, maxMs: 200 },
    });
    clients.push(client);
    const assignments: Array<ServerMessageOf<'assignment'>> = [];
    const welcomes: Array<ServerMessageOf<'welcome'>> = [];
    const rings: Array<ServerMessageOf<'ring'>> = [];
    let reconnecting = 0;
    client.on('assignment', (m) => assignments.push(m));
    client.on('welcome', (m) => welcomes.push(m));
    client.on('ring', (m) => rings.push(m));
    client.on('reconnecting', () => reconnecting++);
    await client.start();
    client.send(profile);
    client.send({ type: 'ring-request', model: 'stories260K' });
    await vi.waitFor(() => expect(assignments).toHaveLength(1));
    const oldId = client.peerId;
    await first.srv.stop();
    // Attempts fail while nothing listens; then a new server on the same port takes them.
    await vi.waitFor(() => expect(reconnecting).toBeGreaterThanOrEqual(2));
    const second = await server(first.port);
    await vi.waitFor(() => expect(assignments).toHaveLength(2), { timeout: 5000 });
    expect(welcomes.at(-1)?.resumed).toBe(false);
    expect(client.peerId).not.toBe(oldId);
    const net = second.srv.snapshot();
    expect(net.assignments[client.peerId!]).toMatchObject({ kind: 'assigned' });
    await vi.waitFor(() => expect(rings.length).toBeGreaterThanOrEqual(2));
  });

  it('without its own loop: start() again after the socket ended resumes, or starts a new session when the server lost it', async () => {
    const first = await server();
    const client = createSignalingClient({
      url: `ws://127.0.0.1:${first.port}/ws`,
      roles: ['contributor'],
      WebSocket: WebSocket,
    });
    clients.push(client);
    const closed: { code?: number }[] = [];
    client.on('closed', (m) => closed.push(m));
    const w1 = await client.start();
    expect(w1.resumed).toBe(false);
    await first.srv.stop();
    await vi.waitFor(() => expect(closed).toHaveLength(1));
    expect(closed[0]!.code).toBe(1001);
    // The restarted server does not know the token: the same start() falls back to a new session.
    await server(first.port);
    const w2 = await client.start();
    expect(w2.resumed).toBe(false);
    expect(w2.peerId).not.toBe(w1.peerId);
    expect(client.peerId).toBe(w2.peerId);
  });

  it('does not reconnect after stop()', async () => {
    const { port } = await server();
    const client = createSignalingClient({
      url: `ws://127.0.0.1:${port}/ws`,
      roles: ['requester'],
      WebSocket: WebSocket,
      reconnect: { baseMs: 10 },
    });
    let reconnecting = 0;
    client.on('reconnecting', () => reconnecting++);
    await client.start();
    client.stop();
    client.stop();
    await new Promise((r) => setTimeout(r, 100));
    expect(reconnecting).toBe(0);
  });
});
