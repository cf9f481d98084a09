/**
 * The in-process EVM for development and tests: ganache's provider (npm only, no binaries) behind a
 * small JSON-RPC over HTTP endpoint on loopback, so the real server process reaches it with
 * `--chain-rpc`, exactly as it reaches a real chain; and the helpers that deploy RingworkStake, fund
 * accounts and stake with viem (tests use real viem accounts and signed transactions throughout).
 *
 * Dev-only: the server never imports this (it talks JSON-RPC to whatever `--chain-rpc` names).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import ganache from 'ganache';
import {
  createPublicClient,
  createWalletClient,
  custom,
  parseEther,
  toHex,
  type Account,
  type Address,
  type Chain,
  type Hex,
  type PublicClient,
} from 'viem';
import {
  RINGWORK_STAKE_ABI,
  RINGWORK_STAKE_BYTECODE,
} from '../../signaling-server/src/stake/ringwork-stake-artifact.js';

/** The dev chain's id (the usual local-chain id). */
export const DEV_CHAIN_ID = 31337;

/** A running dev chain. */
export interface DevChain {
  /** `http://127.0.0.1:<port>`: the JSON-RPC URL for `--chain-rpc`. */
  readonly rpcUrl: string;
  readonly chain: Chain;
  /** A viem client straight on the provider (no HTTP) for the test's own reads. */
  readonly client: PublicClient;
  /** Sets an address's balance (dev method `evm_setAccountBalance`). */
  fund(address: string, eth: string): Promise<void>;
  /** A wallet client of `account` on this chain. */
  wallet(account: Account): ReturnType<typeof createWalletClient<ReturnType<typeof custom>, Chain, Account>>;
  close(): Promise<void>;
}

interface RpcRequest {
  jsonrpc?: string;
  id?: unknown;
  method?: unknown;
  params?: unknown;
}

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
      if (body.length > 5_000_000) req.destroy(new Error('body too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });

/** Starts ganache in this process with an HTTP JSON-RPC endpoint on `host:port` (0: any free port). */
export async function startDevChain(o: { host?: string; port?: number } = {}): Promise<DevChain> {
  const provider = ganache.provider({
    logging: { quiet: true },
    chain: { chainId: DEV_CHAIN_ID, hardfork: 'shanghai' },
    wallet: { totalAccounts: 0 },
  });
  const request = (method: string, params: unknown): Promise<unknown> =>
    provider.request({ method, params } as never) as Promise<unknown>;

  const answer = async (r: RpcRequest): Promise<unknown> => {
    const id = r.id ?? null;
    if (typeof r.method !== 'string')
      return { jsonrpc: '2.0', id, error: { code: -32600, message: 'no method' } };
    try {
      return { jsonrpc: '2.0', id, result: await request(r.method, r.params ?? []) };
    } catch (e) {
      const err = e as { code?: number; message?: string; data?: unknown };
      return {
        jsonrpc: '2.0',
        id,
        error: { code: err.code ?? -32603, message: err.message ?? String(e), data: err.data },
      };
    }
  };
  const server: Server = createServer((req, res) => {
    // Pages on another loopback origin (the Contribute page's Stake with a browser-kept key) call
    // it with fetch: allow them (a dev chain on loopback; it holds no one's money).
    res.setHeader('access-control-allow-origin', '*');
    if (req.method === 'OPTIONS') {
      res
        .writeHead(204, {
          'access-control-allow-methods': 'POST',
          'access-control-allow-headers': 'content-type',
          'access-control-max-age': '600',
        })
        .end();
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { Allow: 'POST' }).end();
      return;
    }
    readBody(req)
      .then(async (body) => {
        const parsed = JSON.parse(body) as RpcRequest | RpcRequest[];
        const out = Array.isArray(parsed) ? await Promise.all(parsed.map(answer)) : await answer(parsed);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out));
      })
      .catch((e: unknown) => {
        res
          .writeHead(400, { 'content-type': 'application/json' })
          .end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32700, message: String(e) } }));
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  // No retries: a revert is an answer, and tests wait on it.
  const transport = custom(
    { request: ({ method, params }) => request(method as string, params) },
    { retryCount: 0 },
  );
  const chain: Chain = {
    id: DEV_CHAIN_ID,
    name: 'Ringwork dev chain',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [`http://${address}:${port}`] } },
  };
  const client = createPublicClient({ chain, transport, pollingInterval: 50 });
  return {
    rpcUrl: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    chain,
    client,
    async fund(addr, eth) {
      await request('evm_setAccountBalance', [addr, toHex(parseEther(eth))]);
    },
    wallet: (account) => createWalletClient({ account, chain, transport }),
    async close() {
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      await provider.disconnect();
    },
  };
}

/** Deploys RingworkStake from `deployer` with `slasher` and the withdrawal delay; resolves its address. */
export async function deployStake(
  chain: Pick<DevChain, 'client' | 'wallet'>,
  deployer: Account,
  o: { slasher: Address; withdrawalDelaySeconds?: bigint },
): Promise<Address> {
  const hash = await chain.wallet(deployer).deployContract({
    abi: RINGWORK_STAKE_ABI,
    bytecode: RINGWORK_STAKE_BYTECODE,
    args: [o.slasher, o.withdrawalDelaySeconds ?? 3600n],
  });
  const receipt = await chain.client.waitForTransactionReceipt({ hash });
  if (!receipt.contractAddress) throw new Error('RingworkStake deployment made no contract');
  return receipt.contractAddress;
}

/** `account` stakes `eth` on the contract (a signed `stake()` call); resolves the tx hash once mined. */
export async function stakeAs(
  chain: Pick<DevChain, 'client' | 'wallet'>,
  account: Account,
  contract: Address,
  eth: string,
): Promise<Hex> {
  const hash = await chain.wallet(account).writeContract({
    address: contract,
    abi: RINGWORK_STAKE_ABI,
    functionName: 'stake',
    value: parseEther(eth),
  });
  const receipt = await chain.client.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success') throw new Error('stake() reverted');
  return hash;
}
