/**
 * Sign-In with Ethereum across instances (cluster mode). Behind a sticky-less balancer a tab's
 * `GET /api/auth/nonce`, `POST /api/auth/verify` and WebSocket `hello` may each reach another
 * instance: a real `redis-server`, two server processes serving one public name (`--allow-host`),
 * and a real viem account. The nonce comes from one instance, the signature is verified by the
 * other, the token is accepted in a `hello` on the first; the nonce stays single use over the
 * cluster, and a token no instance issued is refused everywhere.
 */
import { request } from 'node:http';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createSiweMessage } from 'viem/siwe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIGNALING_VERSION } from '../../shared/protocol/signaling';
import { startCluster, type ClusterInstance, type TestCluster } from '../helpers/cluster';
import { scaled, TIMEOUTS } from '../helpers/timeouts';
import { connect, type TestClient } from './signaling-test-client';

/** The name the balancer serves both instances under. */
const PUBLIC = 'ringwork.test';

let cluster: TestCluster;
let a: ClusterInstance;
let b: ClusterInstance;
const clients: TestClient[] = [];

/** An HTTP request to one instance as the balancer forwards it (Host: the public name). */
function viaBalancer(
  inst: ClusterInstance,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: inst.port,
        path,
        method,
        headers: { host: PUBLIC, 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as Record<string, unknown> }),
        );
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const account = privateKeyToAccount(generatePrivateKey());

async function signed(nonce: string): Promise<{ message: string; signature: string }> {
  const message = createSiweMessage({
    address: account.address,
    chainId: 1,
    domain: PUBLIC,
    nonce,
    uri: `http://${PUBLIC}/`,
    version: '1',
    issuedAt: new Date(),
  });
  return { message, signature: await account.signMessage({ message }) };
}

beforeAll(async () => {
  cluster = await startCluster(['a', 'b'], { args: ['--allow-host', PUBLIC] });
  [a, b] = cluster.instances as [ClusterInstance, ClusterInstance];
  await cluster.coordinatorInstance('one coordinator among a and b');
}, TIMEOUTS.serverStart * 3);

afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  await cluster?.stop();
});

describe('cluster mode: signing in across instances', () => {
  it(
    'nonce on one instance, verify on the other, hello with the token on the first; the nonce is single use cluster-wide',
    async () => {
      const n = await viaBalancer(a, 'GET', '/api/auth/nonce');
      expect(n.status).toBe(200);
      const body = await signed(n.json.nonce as string);
      const v = await viaBalancer(b, 'POST', '/api/auth/verify', body);
      expect(v.status, JSON.stringify(v.json)).toBe(200);
      expect(v.json.address).toBe(account.address);
      // The token b issued is accepted by a (one token key for the cluster).
      const c = await connect(a.port);
      clients.push(c);
      c.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['requester'], identity: v.json.token as string });
      expect((await c.next('welcome')).address).toBe(account.address);
      // The same signed nonce again, on either instance: already used.
      for (const inst of [a, b]) {
        const again = await viaBalancer(inst, 'POST', '/api/auth/verify', body);
        expect(again.status).toBe(401);
        expect((again.json.error as { code: string }).code).toBe('AUTH_NONCE_INVALID');
      }
    },
    scaled(30_000),
  );

  it(
    'a nonce no instance issued is refused on every instance',
    async () => {
      for (const inst of [a, b]) {
        const v = await viaBalancer(inst, 'POST', '/api/auth/verify', await signed('neverIssued12345'));
        expect(v.status).toBe(401);
        expect((v.json.error as { code: string }).code).toBe('AUTH_NONCE_INVALID');
      }
    },
    scaled(30_000),
  );
});
