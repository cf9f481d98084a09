/**
 * `npm run chain:dev`: a local chain for running Ringwork with stake, no binaries needed. Starts the
 * in-process EVM (ganache) with JSON-RPC on 127.0.0.1 (`--port`, default 8545), makes a slasher key
 * (written to `.ringwork-data/dev-chain/slasher.key`), deploys RingworkStake
 * (`--withdrawal-delay` seconds, default 3600) and prints the `npm start` line that uses it. Runs
 * until Ctrl-C; the chain lives in memory (a restart is a fresh chain and a fresh contract).
 *
 * `npm run chain:dev -- stake --rpc URL --contract ADDR --for 0xADDRESS [--eth 1]`: on that dev
 * chain, funds an address and stakes for it — meant for the key a browser keeps for you (shown on
 * the Contribute page), whose private key you do not hold. Dev chain only: it impersonates the
 * address with ganache's `evm_addAccount` + `personal_sendTransaction`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  createPublicClient,
  encodeFunctionData,
  http,
  parseEther,
  toHex,
  type Address,
  type Hex,
} from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { RINGWORK_STAKE_ABI } from '../../signaling-server/src/stake/ringwork-stake-artifact.js';
import { deployStake, startDevChain } from '../contracts/dev-chain.js';
import { intFlag, runCli, usage } from './cli-util.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { port: { type: 'string' }, host: { type: 'string' }, 'withdrawal-delay': { type: 'string' } },
  });
  const port = intFlag('port', values.port, 8545);
  const delay = intFlag('withdrawal-delay', values['withdrawal-delay'], 3600);
  const chain = await startDevChain({ host: values.host ?? '127.0.0.1', port });
  const slasherKey = generatePrivateKey();
  const slasher = privateKeyToAccount(slasherKey);
  const deployer = privateKeyToAccount(generatePrivateKey());
  await chain.fund(deployer.address, '10');
  await chain.fund(slasher.address, '10');
  const contract = await deployStake(chain, deployer, {
    slasher: slasher.address,
    withdrawalDelaySeconds: BigInt(delay),
  });
  const keyDir = join(ROOT, '.ringwork-data', 'dev-chain');
  mkdirSync(keyDir, { recursive: true });
  const keyFile = join(keyDir, 'slasher.key');
  writeFileSync(keyFile, `${slasherKey}\n`, { mode: 0o600 });
  const rel = '.ringwork-data/dev-chain/slasher.key';
  console.log(`Dev chain ${chain.chain.id} at ${chain.rpcUrl}
RingworkStake at ${contract} (withdrawal delay ${delay} s), slasher ${slasher.address}
Slasher key written to ${rel}

Run the server with stake (1 ETH minimum for ring membership):
  npm start -- --chain-rpc ${chain.rpcUrl} --stake-contract ${contract} --slasher-key ${rel} --min-stake ${parseEther('1')}

Stake for the address the Contribute page shows:
  npm run chain:dev -- stake --rpc ${chain.rpcUrl} --contract ${contract} --for 0xYOUR_ADDRESS --eth 1
Ctrl-C stops the chain.`);
  await new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  await chain.close();
}

async function stakeFor(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      rpc: { type: 'string' },
      contract: { type: 'string' },
      for: { type: 'string' },
      eth: { type: 'string' },
    },
  });
  const rpc = values.rpc ?? 'http://127.0.0.1:8545';
  const contract = values.contract;
  const who = values.for;
  const eth = values.eth ?? '1';
  if (!contract || !/^0x[0-9a-fA-F]{40}$/.test(contract))
    throw usage('--contract 0x… (printed by npm run chain:dev)');
  if (!who || !/^0x[0-9a-fA-F]{40}$/.test(who)) throw usage('--for 0x… (the address to stake for)');
  if (!/^\d+(\.\d+)?$/.test(eth)) throw usage(`--eth must be a decimal amount, got "${eth}"`);
  const client = createPublicClient({ transport: http(rpc), pollingInterval: 100 });
  const call = (method: string, params: unknown[]) => client.request({ method, params } as never);
  const value = parseEther(eth);
  await call('evm_setAccountBalance', [who, toHex(value + parseEther('1'))]);
  // Impersonation (dev chain only): the account joins ganache's personal namespace with a passphrase.
  await call('evm_addAccount', [who, 'ringwork-dev']);
  const hash = (await call('personal_sendTransaction', [
    {
      from: who,
      to: contract,
      value: toHex(value),
      data: encodeFunctionData({ abi: RINGWORK_STAKE_ABI, functionName: 'stake' }),
    },
    'ringwork-dev',
  ])) as Hex;
  const receipt = await client.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success') throw new Error(`stake() reverted (tx ${hash})`);
  const staked = await client.readContract({
    address: contract as Address,
    abi: RINGWORK_STAKE_ABI,
    functionName: 'stakeOf',
    args: [who as Address],
  });
  console.log(`${who} now has ${staked} wei staked (tx ${hash})`);
}

runCli(async () => {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === 'stake') await stakeFor(rest);
  else await serve(cmd === undefined ? [] : [cmd, ...rest]);
});
