/**
 * Stake-gated rings in cluster mode: RingworkStake on the in-process EVM (ganache behind a loopback
 * JSON-RPC endpoint, tools/contracts/dev-chain.ts), a real `redis-server` and two server processes
 * with `--redis --chain-rpc --stake-contract --min-stake`. Every contributor signs in with a real viem
 * account on the instance that is NOT the coordinator's and connects there; the requester is on
 * the coordinator's instance. The leader's stake gate judges them by the address their instance
 * verified (carried with the forwarded profile), reading the stake with viem itself: the staked ones
 * form the ring; an unstaked signed-in one and an anonymous one are told `STAKE_INSUFFICIENT` once,
 * through their instance, and are never in it.
 */
import { parseEther } from 'viem';
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIGNALING_VERSION } from '../../shared/protocol/signaling';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { deployStake, stakeAs, startDevChain, type DevChain } from '../../tools/contracts/dev-chain';
import { startCluster, type ClusterInstance, type TestCluster } from '../helpers/cluster';
import { signIn } from '../helpers/siwe';
import { scaled, TIMEOUTS } from '../helpers/timeouts';
import { capability, connect, type TestClient } from './signaling-test-client';

let chain: DevChain;
let cluster: TestCluster;
let leader: ClusterInstance;
let follower: ClusterInstance;
const clients: TestClient[] = [];
const stakers = [0, 1, 2].map(() => privateKeyToAccount(generatePrivateKey()));
const unstaked = privateKeyToAccount(generatePrivateKey());

beforeAll(
  async () => {
    chain = await startDevChain();
    const deployer = privateKeyToAccount(generatePrivateKey());
    for (const a of [deployer, unstaked, ...stakers]) await chain.fund(a.address, '10');
    const contract = await deployStake(chain, deployer, { slasher: deployer.address });
    for (const a of stakers) await stakeAs(chain, a, contract, '2');
    cluster = await startCluster(['a', 'b'], {
      args: [
        '--chain-rpc',
        chain.rpcUrl,
        '--stake-contract',
        contract,
        '--min-stake',
        parseEther('1').toString(),
        // Raw test sockets do not answer heartbeats; a quick re-plan.
        '--heartbeat-timeout-ms',
        '600000',
        '--replan-debounce-ms',
        '20',
      ],
    });
    leader = await cluster.coordinatorInstance('one coordinator among a and b');
    follower = cluster.instances.find((i) => i !== leader)!;
  },
  scaled(60_000) + TIMEOUTS.serverStart * 2,
);

afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  await cluster?.stop();
  await chain?.close();
});

/** A contributor on the follower, signed in there (nonce, signature and hello on the same instance). */
async function contributor(account: PrivateKeyAccount | null): Promise<{ c: TestClient; id: string }> {
  const c = await connect(follower.port);
  clients.push(c);
  const identity = account ? await signIn(`127.0.0.1:${follower.port}`, account) : undefined;
  c.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['contributor'], ...(identity ? { identity } : {}) });
  const id = (await c.next('welcome')).peerId;
  c.send({ type: 'profile', v: 1, capability: capability(1_000_000) });
  return { c, id };
}

describe('cluster mode: the leader’s stake gate judges peers signed in on a follower', () => {
  it('staked contributors on the follower form the ring; unstaked and anonymous ones are refused once', async () => {
    const model = (await loadCatalog([]))[0]!.descriptor.id;
    const poor = await contributor(unstaked);
    const anon = await contributor(null);
    const errors = [];
    for (const p of [poor, anon]) errors.push(await p.c.next('error', scaled(10_000)));
    expect(errors.map((e) => e.code)).toEqual(['STAKE_INSUFFICIENT', 'STAKE_INSUFFICIENT']);
    // The leader read the chain for the address the follower verified.
    expect(errors[0]!.details).toMatchObject({ address: unstaked.address, stakeWei: '0' });
    expect(errors[1]!.details).toMatchObject({ address: null });

    const staked = new Set<string>();
    for (const a of stakers) staked.add((await contributor(a)).id);
    const req = await connect(leader.port);
    clients.push(req);
    req.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['requester'] });
    await req.next('welcome');
    req.send({ type: 'ring-request', v: 1, model });
    const ring = await req.next('ring', scaled(20_000));
    const inRing = ring.stages.map((s) => s.peer);
    expect(inRing.length).toBeGreaterThanOrEqual(1);
    for (const p of inRing) expect(staked.has(p)).toBe(true);
    expect(inRing).not.toContain(poor.id);
    expect(inRing).not.toContain(anon.id);
    const refused = await poor.c.next('unassigned', scaled(5_000));
    expect(refused.reason).toMatch(/stake/);
    // Told once: the follower's own gate does not repeat the leader's refusal.
    for (const p of [poor, anon])
      expect(p.c.messages.filter((m) => m.type === 'error' && m.code === 'STAKE_INSUFFICIENT')).toHaveLength(
        1,
      );
  });
});
