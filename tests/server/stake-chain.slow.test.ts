/**
 * The stake contract and the server's slasher on the in-process EVM (ganache via viem), with real
 * signed transactions: withdrawal waits for its delay and stays slashable until then; only the
 * slasher key may slash, once per evidence hash; the slasher retries a slash that failed (its key had
 * no gas money) until it lands, records every attempt, and a second slasher for the same evidence
 * (a restart) finds it already on chain instead of slashing twice.
 */
import { parseEther, toHex, type Address } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../signaling-server/src/clock';
import type { SlashRow } from '../../signaling-server/src/ledger/ledger';
import { RINGWORK_STAKE_ABI } from '../../signaling-server/src/stake/ringwork-stake-artifact';
import { createSlasher } from '../../signaling-server/src/stake/slasher';
import { createStakeChain } from '../../signaling-server/src/stake/stake-chain';
import { deployStake, stakeAs, startDevChain, type DevChain } from '../../tools/contracts/dev-chain';
import { scaled } from '../helpers/timeouts';
import type { EvidenceRecord } from '../../shared/validation/evidence';

let chain: DevChain;
beforeAll(async () => {
  chain = await startDevChain();
}, scaled(60_000));
afterAll(async () => {
  await chain?.close();
});

const silent = pino({ level: 'silent' });
const evidenceHashOf = (n: number) => toHex(n, { size: 32 });
const EVIDENCE = { reason: 'equivocation' } as unknown as EvidenceRecord;

async function setup(o: { fundSlasher: boolean; delay?: bigint }) {
  const deployer = privateKeyToAccount(generatePrivateKey());
  const slasherKey = generatePrivateKey();
  const slasher = privateKeyToAccount(slasherKey);
  const peer = privateKeyToAccount(generatePrivateKey());
  await chain.fund(deployer.address, '10');
  await chain.fund(peer.address, '10');
  if (o.fundSlasher) await chain.fund(slasher.address, '10');
  const contract = await deployStake(chain, deployer, {
    slasher: slasher.address,
    withdrawalDelaySeconds: o.delay ?? 3600n,
  });
  await stakeAs(chain, peer, contract, '3');
  const read = (functionName: 'stakeOf' | 'accounts', who: Address): Promise<unknown> =>
    functionName === 'stakeOf'
      ? chain.client.readContract({ address: contract, abi: RINGWORK_STAKE_ABI, functionName, args: [who] })
      : chain.client.readContract({ address: contract, abi: RINGWORK_STAKE_ABI, functionName, args: [who] });
  return { deployer, slasher, slasherKey, peer, contract, read };
}

const slashedEvents = (contract: Address) =>
  chain.client.getContractEvents({
    address: contract,
    abi: RINGWORK_STAKE_ABI,
    eventName: 'Slashed',
    fromBlock: 0n,
  });

describe('RingworkStake on the in-process chain', () => {
  it(
    'withdrawal waits for the delay and pending stake stays slashable; only the slasher slashes, once per evidence',
    async () => {
      const { peer, deployer, slasher, contract, read } = await setup({ fundSlasher: true, delay: 600n });
      const wallet = chain.wallet(peer);
      await chain.client.waitForTransactionReceipt({
        hash: await wallet.writeContract({
          address: contract,
          abi: RINGWORK_STAKE_ABI,
          functionName: 'requestWithdrawal',
          args: [parseEther('1')],
        }),
      });
      // Active stake drops at once: the coordinator stops counting it.
      expect(await read('stakeOf', peer.address)).toBe(parseEther('2'));
      await expect(
        wallet.writeContract({ address: contract, abi: RINGWORK_STAKE_ABI, functionName: 'withdraw' }),
      ).rejects.toThrow();
      // A stranger (the deployer) may not slash.
      await expect(
        chain.wallet(deployer).writeContract({
          address: contract,
          abi: RINGWORK_STAKE_ABI,
          functionName: 'slash',
          args: [peer.address, parseEther('1'), evidenceHashOf(1)],
        }),
      ).rejects.toThrow();
      // The slasher takes 2.5 ETH: the 2 active, then 0.5 of the pending withdrawal.
      const s = chain.wallet(slasher);
      await chain.client.waitForTransactionReceipt({
        hash: await s.writeContract({
          address: contract,
          abi: RINGWORK_STAKE_ABI,
          functionName: 'slash',
          args: [peer.address, parseEther('2.5'), evidenceHashOf(1)],
        }),
      });
      expect(await read('accounts', peer.address)).toEqual([0n, parseEther('0.5'), expect.any(BigInt)]);
      // The same evidence cannot slash twice.
      await expect(
        s.writeContract({
          address: contract,
          abi: RINGWORK_STAKE_ABI,
          functionName: 'slash',
          args: [peer.address, 1n, evidenceHashOf(1)],
        }),
      ).rejects.toThrow();
      // After the delay the rest comes back.
      await chain.client.request({ method: 'evm_increaseTime' as never, params: [601] as never });
      await chain.client.request({ method: 'evm_mine' as never, params: [] as never });
      const before = await chain.client.getBalance({ address: contract });
      await chain.client.waitForTransactionReceipt({
        hash: await wallet.writeContract({
          address: contract,
          abi: RINGWORK_STAKE_ABI,
          functionName: 'withdraw',
        }),
      });
      expect(before - (await chain.client.getBalance({ address: contract }))).toBe(parseEther('0.5'));
      expect(await read('accounts', peer.address)).toEqual([0n, 0n, 0n]);
    },
    scaled(60_000),
  );

  it(
    'the slasher retries a failed slash until it lands, records each attempt, and never slashes one evidence twice',
    async () => {
      const { peer, slasher, slasherKey, contract, read } = await setup({ fundSlasher: false });
      const stakeChain = createStakeChain({ rpc: chain.rpcUrl, contract, slasherKey, pollingMs: 50 });
      expect(await stakeChain.check()).toEqual({ chainId: chain.chain.id, slasher: slasher.address });
      const rows: SlashRow[] = [];
      const slashedOn: string[] = [];
      const make = () =>
        createSlasher({
          chain: stakeChain,
          record: async (r) => void rows.push(r),
          clock: systemClock,
          logger: silent,
          retryMs: 50,
          onSlashed: (a) => slashedOn.push(a),
        });
      const first = make();
      const deviant = {
        peerId: 'p_deviant',
        address: peer.address,
        evidenceHash: evidenceHashOf(7),
        evidence: EVIDENCE,
      };
      first.slash(deviant);
      // The slasher's key has no gas money: the first attempt fails, is recorded, and is retried.
      await vi.waitFor(() => expect(rows.some((r) => r.state === 'failed')).toBe(true), {
        timeout: scaled(10_000),
      });
      expect(first.stats().failures).toBeGreaterThan(0);
      await chain.fund(slasher.address, '1');
      await vi.waitFor(() => expect(rows.at(-1)?.state).toBe('sent'), {
        timeout: scaled(20_000),
        interval: 50,
      });
      await first.idle();
      const sent = rows.at(-1)!;
      expect(sent.attempts).toBeGreaterThanOrEqual(2);
      expect(rows[0]).toMatchObject({ state: 'pending', evidenceHash: evidenceHashOf(7) });
      const events = await slashedEvents(contract);
      expect(events).toHaveLength(1);
      expect(events[0]!.transactionHash).toBe(sent.txHash);
      expect(events[0]!.args).toEqual({
        peer: peer.address,
        amount: parseEther('3'),
        evidenceHash: evidenceHashOf(7),
      });
      expect(await read('stakeOf', peer.address)).toBe(0n);
      expect(slashedOn).toEqual([peer.address]);
      // The same deviant reported again to this slasher: nothing new.
      first.slash(deviant);
      await first.idle();
      first.stop();

      // A restarted server (a fresh slasher) told of the same evidence: its send reverts, the retry
      // reads evidenceUsed and records the slash as done; no second Slashed event.
      rows.length = 0;
      const second = make();
      second.slash(deviant);
      await vi.waitFor(() => expect(rows.at(-1)?.state).toBe('sent'), {
        timeout: scaled(20_000),
        interval: 50,
      });
      await second.idle();
      second.stop();
      expect(rows.at(-1)!.txHash).toBeUndefined();
      expect(await slashedEvents(contract)).toHaveLength(1);
    },
    scaled(90_000),
  );
});
