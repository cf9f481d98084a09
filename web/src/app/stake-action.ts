/**
 * "Stake" on the Contribute page: a `stake()` call with ETH on the server's RingworkStake contract
 * (the contract and chain come from `GET /api/stake/<address>`). With an injected EIP-1193 wallet
 * the wallet signs and sends it (viem wallet client over a `custom` transport: its own RPC, the
 * user approves); with the key this browser keeps, the page signs it and sends it through the chain
 * RPC the server advertises for pages (`--chain-rpc-public`, meant for dev chains). Either way the
 * address must already hold the ETH: a real user funds their address first.
 */
import {
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  formatEther,
  http,
  parseEther,
  type Address,
  type Hex,
} from 'viem';
import { RingworkError } from '../../../shared/errors';
import type { Eip1193Provider, IdentityClient } from '../identity/identity';

/** The part of RingworkStake the page calls. */
const STAKE_ABI = [
  { type: 'function', name: 'stake', stateMutability: 'payable', inputs: [], outputs: [] },
] as const;

/** Where to stake, as `/api/stake` says. */
export interface StakeTarget {
  readonly contract: Address;
  readonly chainId: number;
  /** A JSON-RPC URL pages may send through (absent: only a wallet can stake). */
  readonly rpc?: string | undefined;
}

/** What staking needs from the page. */
export interface StakeDeps {
  readonly identity: IdentityClient;
  readonly ethereum?: Eip1193Provider | undefined;
}

/** A positive ETH amount with at most 18 decimals → wei; `STAKE_REFUSED` otherwise. */
export function stakeAmountWei(amount: string): bigint {
  const a = amount.trim();
  if (!/^\d{1,12}(\.\d{1,18})?$/.test(a) || parseEther(a) === 0n) {
    throw new RingworkError(
      'STAKE_REFUSED',
      `"${amount}" is not an amount of ETH to stake (e.g. 1 or 0.5).`,
      {
        details: { amount },
      },
    );
  }
  return parseEther(a);
}

/**
 * Stakes `amount` ETH from the signed-in address; resolves the transaction hash once mined
 * successfully. Typed errors: `STAKE_REFUSED` (bad amount, not enough ETH, wrong wallet chain,
 * reverted), `STAKE_CHAIN_UNAVAILABLE` (no RPC for a browser key, or the chain does not answer).
 */
export async function stakeFromPage(target: StakeTarget, amount: string, deps: StakeDeps): Promise<Hex> {
  const value = stakeAmountWei(amount);
  const signedIn = deps.identity.current;
  const chain = defineChain({
    id: target.chainId,
    name: `chain ${target.chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: target.rpc ? [target.rpc] : [] } },
  });
  const useWallet = signedIn?.source === 'wallet' && deps.ethereum !== undefined;
  let transport;
  let account;
  if (useWallet) {
    transport = custom(deps.ethereum);
    account = signedIn.address;
  } else {
    account = await deps.identity.localAccount();
    if (!account) throw new RingworkError('STAKE_REFUSED', 'Sign in first: this browser has no key yet.', {});
    if (!target.rpc) {
      throw new RingworkError(
        'STAKE_CHAIN_UNAVAILABLE',
        'This server names no chain RPC for keys kept in the browser (--chain-rpc-public): stake with a wallet.',
        {},
      );
    }
    transport = http(target.rpc, { retryCount: 0 });
  }
  const reader = createPublicClient({ chain, transport, pollingInterval: 250 });
  const from = typeof account === 'string' ? account : account.address;
  const onChain = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (e) {
      throw new RingworkError('STAKE_CHAIN_UNAVAILABLE', `The stake chain did not answer (${what}).`, {
        cause: e,
      });
    }
  };
  if (useWallet) {
    const id = await onChain('chain id', () => reader.getChainId());
    if (id !== target.chainId) {
      throw new RingworkError(
        'STAKE_REFUSED',
        `Your wallet is on chain ${id}; switch it to chain ${target.chainId} to stake here.`,
        { details: { walletChainId: id, chainId: target.chainId } },
      );
    }
  }
  const balance = await onChain('balance', () => reader.getBalance({ address: from }));
  if (balance < value) {
    throw new RingworkError(
      'STAKE_REFUSED',
      `${from} holds ${formatEther(balance)} ETH, less than the ${formatEther(value)} ETH to stake (plus gas): fund it first.`,
      { details: { address: from, balanceWei: balance.toString(), valueWei: value.toString() } },
    );
  }
  const wallet = createWalletClient({ account, chain, transport });
  const hash = await onChain('send', () =>
    wallet.writeContract({ address: target.contract, abi: STAKE_ABI, functionName: 'stake', value }),
  );
  const receipt = await onChain('receipt', () =>
    reader.waitForTransactionReceipt({ hash, timeout: 120_000 }),
  );
  if (receipt.status !== 'success') {
    throw new RingworkError('STAKE_REFUSED', `The stake transaction ${hash} reverted.`, {
      details: { hash },
    });
  }
  return hash;
}
