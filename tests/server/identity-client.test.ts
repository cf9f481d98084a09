/**
 * The browser's identity client against the real server: a local key (kept in its store, so the
 * address survives a "reload") or an EIP-1193 wallet signs in, and the signaling client carries the
 * token in hello; a token the server refuses (spent in another session) is renewed once.
 */
import { pino } from 'pino';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Hex } from 'viem';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import {
  createIdentityClient,
  createMemoryKeyStore,
  type Eip1193Provider,
} from '../../web/src/identity/identity';
import { createSignalingClient, type SignalingClient } from '../../web/src/network/signaling-client';

const servers: SignalingServer[] = [];
const clients: SignalingClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.stop();
  for (const s of servers.splice(0)) await s.stop();
});

async function start(): Promise<number> {
  const srv = createSignalingServer(
    { host: '127.0.0.1', port: 0, testMode: true },
    { logger: pino({ level: 'silent' }), catalog: await loadCatalog([]) },
  );
  servers.push(srv);
  return (await srv.start()).port;
}

describe('browser identity client', () => {
  it('a local key signs in, survives a reload (same store), and its token binds in hello', async () => {
    const port = await start();
    const keys = createMemoryKeyStore();
    const origin = `http://127.0.0.1:${port}`;
    const first = await createIdentityClient({ origin, keys }).signIn();
    expect(first.source).toBe('local');
    const reloaded = createIdentityClient({ origin, keys });
    const second = await reloaded.signIn();
    expect(second.address).toBe(first.address);
    expect(second.token).not.toBe(first.token);

    const client = createSignalingClient({
      url: `ws://127.0.0.1:${port}/ws`,
      roles: ['contributor'],
      WebSocket: WebSocket,
      identity: {
        token: () => reloaded.current?.token,
        refresh: async () => (await reloaded.signIn()).token,
      },
    });
    clients.push(client);
    expect((await client.start()).address).toBe(first.address);
  });

  it('a spent token is renewed once: the new session still gets the address', async () => {
    const port = await start();
    const origin = `http://127.0.0.1:${port}`;
    const id = createIdentityClient({ origin, keys: createMemoryKeyStore() });
    const spent = (await id.signIn()).token;
    const opts = (token: () => string | undefined) => ({
      url: `ws://127.0.0.1:${port}/ws`,
      roles: ['contributor' as const],
      WebSocket: WebSocket,
      identity: { token, refresh: async () => (await id.signIn()).token },
    });
    const a = createSignalingClient(opts(() => spent));
    clients.push(a);
    const wa = await a.start();
    // Another session presenting the same token: refused by the server, renewed by the client.
    let current = spent;
    const b = createSignalingClient({
      ...opts(() => current),
      identity: {
        token: () => current,
        refresh: async () => (current = (await id.signIn()).token),
      },
    });
    clients.push(b);
    const wb = await b.start();
    expect(wb.peerId).not.toBe(wa.peerId);
    expect(wb.address).toBe(wa.address);
    expect(current).not.toBe(spent);
  });

  it('an injected EIP-1193 wallet signs with its own account (personal_sign)', async () => {
    const port = await start();
    const account = privateKeyToAccount(generatePrivateKey());
    const calls: string[] = [];
    const ethereum: Eip1193Provider = {
      request: async ({ method, params }) => {
        calls.push(method);
        if (method === 'eth_requestAccounts') return [account.address];
        if (method === 'personal_sign')
          return account.signMessage({ message: { raw: (params as Hex[])[0]! } });
        throw new Error(`unexpected ${method}`);
      },
    };
    const r = await createIdentityClient({
      origin: `http://127.0.0.1:${port}`,
      keys: createMemoryKeyStore(),
      ethereum,
    }).signIn();
    expect(r).toMatchObject({ address: account.address, source: 'wallet' });
    expect(calls).toEqual(['eth_requestAccounts', 'personal_sign']);
  });
});
