/**
 * Minimum stake per security level (`--level-min-stake`) against the real RingworkStake contract on
 * the in-process EVM (ganache, tools/contracts/dev-chain.ts) and the real server over its WebSocket
 * protocol, peers signed in with real viem accounts:
 *
 * - level 1 has no minimum, so unstaked peers form the primary ring and a plain request is served;
 * - a level-2 request gets no validator ring from unstaked peers (they are left out of the pool),
 *   though enough of them are free: `VALIDATION_NOT_ENOUGH_PEERS`;
 * - staked peers arrive and form the validator ring, but the primary ring's peers are short of
 *   level 2's minimum: a no-ring typed `STAKE_INSUFFICIENT` naming the level and the shortfall;
 * - the primary ring's peers stake on chain; the server's stake sweep reads it and the level-2
 *   request is served (primary + validator ring, every peer staked), the plain request all along.
 */
import { parseEther } from 'viem';
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SIGNALING_VERSION, type ServerMessage } from '../../shared/protocol/signaling';
import { createSessionKey } from '../../shared/validation/crypto';
import { toBase64 } from '../../shared/ring/stage-commitments';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import { deployStake, stakeAs, startDevChain, type DevChain } from '../../tools/contracts/dev-chain';
import { signIn } from '../helpers/siwe';
import { scaled } from '../helpers/timeouts';
import { capability, connect, type TestClient } from './signaling-test-client';

let chain: DevChain;
let server: SignalingServer | undefined;
const clients: TestClient[] = [];
beforeAll(async () => {
  chain = await startDevChain();
}, scaled(60_000));
afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  await server?.stop();
  await chain?.close();
});

type RingAnswer = Extract<ServerMessage, { type: 'ring' | 'no-ring' }>;

/** Waits until the latest ring answer `c` received satisfies `ok`; returns it. */
async function answerWhere(c: TestClient, ok: (m: RingAnswer) => boolean): Promise<RingAnswer> {
  return vi.waitFor(
    () => {
      const last = c.messages
        .filter((m): m is RingAnswer => m.type === 'ring' || m.type === 'no-ring')
        .at(-1);
      expect(last).toBeDefined();
      expect(ok(last!), JSON.stringify(last)).toBe(true);
      return last!;
    },
    { timeout: scaled(30_000), interval: 50 },
  );
}

describe('minimum stake per security level on the in-process chain', () => {
  it(
    'unstaked peers serve level 1 only; level 2 takes staked validator rings and refuses an unstaked primary until it stakes',
    async () => {
      const model = (await loadCatalog([]))[0]!.descriptor.id;
      const deployer = privateKeyToAccount(generatePrivateKey());
      const poor = [0, 1, 2, 3, 4, 5].map(() => privateKeyToAccount(generatePrivateKey()));
      const rich = [0, 1, 2].map(() => privateKeyToAccount(generatePrivateKey()));
      for (const a of [deployer, ...poor, ...rich]) await chain.fund(a.address, '10');
      const contract = await deployStake(chain, deployer, { slasher: deployer.address });
      for (const a of rich) await stakeAs(chain, a, contract, '1');

      server = createSignalingServer(
        {
          host: '127.0.0.1',
          port: 0,
          testMode: true,
          chainRpc: chain.rpcUrl,
          stakeContract: contract,
          levelMinStakeWei: { '2': parseEther('1').toString() },
          stakeCacheMs: 500,
          limits: {
            replanDebounceMs: 20,
            heartbeatMs: 10_000,
            heartbeatTimeoutMs: 60_000,
            networkCacheMs: 0,
          },
        },
        { logger: pino({ level: 'silent' }), catalog: await loadCatalog([]) },
      );
      const { port } = await server.start();
      const host = `127.0.0.1:${port}`;

      const contributor = async (account: PrivateKeyAccount) => {
        const c = await connect(port);
        clients.push(c);
        c.send({
          type: 'hello',
          v: SIGNALING_VERSION,
          roles: ['contributor'],
          identity: await signIn(host, account),
        });
        const id = (await c.next('welcome')).peerId;
        const key = await createSessionKey();
        c.send({ type: 'validation-key', v: 1, key: toBase64(key.publicKeyRaw) });
        c.send({ type: 'profile', v: 1, capability: capability(1_000_000) });
        return { c, id, account };
      };
      const requester = async (k?: number) => {
        const c = await connect(port);
        clients.push(c);
        c.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['requester'] });
        await c.next('welcome');
        c.send({ type: 'ring-request', v: 1, model, ...(k ? { security: { v: 1, k } } : {}) });
        return c;
      };

      // Level 1 needs no stake: the first three unstaked peers form the primary ring.
      const primaryPeers = [];
      for (const a of poor.slice(0, 3)) primaryPeers.push(await contributor(a));
      await Promise.all(primaryPeers.map((p) => p.c.next('assignment', scaled(10_000))));
      const plain = await requester();
      const ring1 = (await answerWhere(plain, (m) => m.type === 'ring')) as Extract<
        RingAnswer,
        { type: 'ring' }
      >;
      const primaryIds = new Set(ring1.stages.map((s) => s.peer));
      const byId = new Map(primaryPeers.map((p) => [p.id, p]));
      for (const id of primaryIds) expect(byId.has(id)).toBe(true);

      // Three more unstaked peers are free, but level 2's validator ring may not take them.
      for (const a of poor.slice(3)) await contributor(a);
      const secure = await requester(2);
      const refused = await answerWhere(secure, (m) => m.type === 'no-ring' && m.security !== undefined);
      expect(refused.security).toMatchObject({ requested: 2, k: 0 });
      expect(refused.security?.code).toBeUndefined(); // VALIDATION_NOT_ENOUGH_PEERS: no staked peers

      // Staked peers arrive: they form the validator ring; the unstaked primary is still short.
      const staked = [];
      for (const a of rich) staked.push(await contributor(a));
      const stakedIds = new Set(staked.map((s) => s.id));
      const short = (await answerWhere(
        secure,
        (m) => m.type === 'no-ring' && m.security?.code === 'STAKE_INSUFFICIENT',
      )) as Extract<RingAnswer, { type: 'no-ring' }>;
      expect(short.reason).toMatch(/security level 2/);
      expect(short.reason).toMatch(/stake 0 ETH below the minimum 1 ETH/);
      expect(short.security).toMatchObject({ requested: 2, k: 0 });
      for (const id of primaryIds) expect(short.reason).toContain(id);
      for (const id of stakedIds) expect(short.reason).not.toContain(id);
      // The plain request keeps its ring throughout.
      expect((await answerWhere(plain, () => true)).type).toBe('ring');

      // The primary ring's peers stake on chain; the server's sweep reads it and serves level 2.
      for (const id of primaryIds) await stakeAs(chain, byId.get(id)!.account, contract, '1');
      const served = (await answerWhere(secure, (m) => m.type === 'ring' && m.security?.k === 2)) as Extract<
        RingAnswer,
        { type: 'ring' }
      >;
      expect(served.validators).toHaveLength(1);
      // Every peer of every ring serving it holds level 2's minimum (the unstaked three are in none).
      for (const s of [...served.stages, ...served.validators![0]!.stages])
        expect(primaryIds.has(s.peer) || stakedIds.has(s.peer)).toBe(true);
      expect((await answerWhere(plain, () => true)).type).toBe('ring');
      for (const c of clients) expect(c.violations).toEqual([]);
    },
    scaled(120_000),
  );
});
