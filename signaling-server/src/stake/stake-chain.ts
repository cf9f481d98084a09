/**
 * The server's view of the RingworkStake contract (contracts/RingworkStake.sol) through viem: reads a
 * peer's active stake and whether an evidence hash was already slashed on, and sends `slash` signed
 * by the slasher key. Every chain failure becomes `STAKE_CHAIN_UNAVAILABLE` (with the viem error as
 * cause), so callers decide by code.
 */
import { readFileSync } from 'node:fs';
import {
  createPublicClient,
  createWalletClient,
  http,
  type Address,
  type Chain,
  type Hex,
  type PublicClient,
  type Transport,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { RingworkError } from '../../../shared/errors.js';
import { RINGWORK_STAKE_ABI } from './ringwork-stake-artifact.js';

/** What the stake gate and the slasher need from the chain. */
export interface StakeChain {
  readonly contract: Address;
  /** The slasher's address, when a key was given. */
  readonly slasher: Address | undefined;
  /** Checks there is a contract at the address and reads its slasher; `STAKE_CHAIN_UNAVAILABLE` otherwise. */
  check(): Promise<{ chainId: number; slasher: Address }>;
  /** Active stake of `address` (wei). */
  stakeOf(address: string): Promise<bigint>;
  /** True once `slash` recorded this evidence hash. */
  evidenceUsed(evidenceHash: Hex): Promise<boolean>;
  /** Sends `slash(peer, amount, evidenceHash)` and waits for its receipt; resolves the tx hash. */
  slash(peer: string, amount: bigint, evidenceHash: Hex): Promise<Hex>;
}

/** Options of {@link createStakeChain}. */
export interface StakeChainOptions {
  /** JSON-RPC URL, or a viem transport (tests). */
  readonly rpc: string | Transport;
  readonly contract: string;
  /** The slasher's private key (0x + 64 hex); absent: reads only, `slash` throws. */
  readonly slasherKey?: Hex | undefined;
  /** Receipt polling interval (ms; default 500). */
  readonly pollingMs?: number;
}

const unavailable = (message: string, cause: unknown, details: Record<string, unknown> = {}) =>
  new RingworkError('STAKE_CHAIN_UNAVAILABLE', message, { details, cause });

/** Reads a slasher key file: one 0x-prefixed 32-byte hex key (whitespace ignored). */
export function readSlasherKey(file: string): Hex {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new RingworkError('INVALID_ARGUMENT', `The slasher key file ${file} cannot be read.`, { cause: e });
  }
  const key = text.startsWith('0x') ? text : `0x${text}`;
  if (!/^0x[0-9a-fA-F]{64}$/.test(key))
    throw new RingworkError(
      'INVALID_ARGUMENT',
      'The slasher key file must hold one 32-byte hex private key.',
      {
        details: { file },
      },
    );
  return key as Hex;
}

/** Creates the chain view; nothing is sent until a method is called. */
export function createStakeChain(o: StakeChainOptions): StakeChain {
  const transport = typeof o.rpc === 'string' ? http(o.rpc, { retryCount: 1, timeout: 10_000 }) : o.rpc;
  const pollingInterval = o.pollingMs ?? 500;
  const client: PublicClient = createPublicClient({ transport, pollingInterval });
  const contract = o.contract as Address;
  const account = o.slasherKey ? privateKeyToAccount(o.slasherKey) : undefined;
  let chain: Promise<Chain> | undefined;
  /** A minimal chain object for signing (EIP-155 needs the id; the RPC gives it). */
  const chainOf = (): Promise<Chain> =>
    (chain ??= client.getChainId().then(
      (id) =>
        ({
          id,
          name: `chain ${id}`,
          nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
          rpcUrls: { default: { http: [] } },
        }) satisfies Chain,
      (e: unknown) => {
        chain = undefined;
        throw e;
      },
    ));

  return {
    contract,
    slasher: account?.address,
    async check() {
      try {
        const code = await client.getCode({ address: contract });
        if (!code || code === '0x') throw new Error(`no contract code at ${contract}`);
        const slasher = await client.readContract({
          address: contract,
          abi: RINGWORK_STAKE_ABI,
          functionName: 'slasher',
        });
        return { chainId: (await chainOf()).id, slasher };
      } catch (e) {
        throw unavailable(`The stake contract ${contract} cannot be read on the chain.`, e, { contract });
      }
    },
    async stakeOf(address) {
      try {
        return await client.readContract({
          address: contract,
          abi: RINGWORK_STAKE_ABI,
          functionName: 'stakeOf',
          args: [address as Address],
        });
      } catch (e) {
        throw unavailable('The stake of an address cannot be read.', e, { address });
      }
    },
    async evidenceUsed(evidenceHash) {
      try {
        return await client.readContract({
          address: contract,
          abi: RINGWORK_STAKE_ABI,
          functionName: 'evidenceUsed',
          args: [evidenceHash],
        });
      } catch (e) {
        throw unavailable('The stake contract cannot be read.', e, { evidenceHash });
      }
    },
    async slash(peer, amount, evidenceHash) {
      if (!account)
        throw new RingworkError(
          'STAKE_CHAIN_UNAVAILABLE',
          'No slasher key is configured (--slasher-key).',
          {},
        );
      let hash: Hex;
      try {
        const wallet = createWalletClient({ account, chain: await chainOf(), transport });
        hash = await wallet.writeContract({
          address: contract,
          abi: RINGWORK_STAKE_ABI,
          functionName: 'slash',
          args: [peer as Address, amount, evidenceHash],
        });
      } catch (e) {
        throw unavailable('The slash transaction could not be sent.', e, { peer, evidenceHash });
      }
      let status: string;
      try {
        status = (await client.waitForTransactionReceipt({ hash, pollingInterval, timeout: 120_000 })).status;
      } catch (e) {
        throw unavailable('The slash transaction has no receipt.', e, { peer, evidenceHash, tx: hash });
      }
      if (status !== 'success')
        throw unavailable('The slash transaction reverted.', undefined, { peer, evidenceHash, tx: hash });
      return hash;
    },
  };
}
