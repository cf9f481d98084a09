/**
 * Staking from the Contribute page with the key the browser keeps: the in-process EVM (ganache
 * behind loopback JSON-RPC, tools/contracts/dev-chain.ts) runs RingworkStake, and the real server
 * requires 1 ETH of stake for ring membership and advertises that RPC to pages
 * (`--chain-rpc-public`). A contributor tab signs in with a fresh local key: it is refused ring
 * membership and its card says it has no stake. A fresh address has no ETH, so the test funds it
 * from the dev chain first (a real user funds their own address); then the page's Stake button
 * sends `stake()` signed by that key through the advertised RPC. The contract holds the stake (read
 * with viem), the card shows it, and the tab is let into a ring and serves.
 */
import { mkdirSync } from 'node:fs';
import { test, expect } from '@playwright/test';
import { parseEther, type Address } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { RINGWORK_STAKE_ABI } from '../../signaling-server/src/stake/ringwork-stake-artifact';
import { deployStake, startDevChain } from '../../tools/contracts/dev-chain';
import { repoPath } from '../helpers/golden';
import { TIMEOUTS } from '../helpers/timeouts';
import { contributor } from './app-helpers';
import { startServer } from './server-fixture';

const SHOTS = repoPath('test-results/screenshots');

test('a browser-kept key stakes from the Contribute page and is let into a ring', async ({ browser }) => {
  test.setTimeout(TIMEOUTS.browserTest * 2);
  mkdirSync(SHOTS, { recursive: true });
  const chain = await startDevChain();
  const deployer = privateKeyToAccount(generatePrivateKey());
  await chain.fund(deployer.address, '10');
  const contract = await deployStake(chain, deployer, { slasher: deployer.address });
  const server = await startServer([
    '--chain-rpc',
    chain.rpcUrl,
    '--chain-rpc-public',
    chain.rpcUrl,
    '--stake-contract',
    contract,
    '--min-stake',
    parseEther('1').toString(),
    '--stake-cache-ms',
    '1000',
  ]);
  try {
    const peer = await contributor(browser, server.url, 1e-6);
    const page = peer.page;
    const addressCell = page.getByTestId('identity-address');
    await expect(addressCell).toContainText('key kept in this browser', { timeout: TIMEOUTS.ringForm });
    const address = (await addressCell.getAttribute('title')) as Address;
    const stakeCell = page.getByTestId('identity-stake');
    await expect(stakeCell).toContainText('0 ETH staked, below the minimum 1 ETH', {
      timeout: TIMEOUTS.ringForm,
    });
    await expect(page.getByTestId('contribute-phase')).not.toHaveText('serving');
    // The page proposes the shortfall; with no ETH the page refuses before sending anything.
    await expect(page.getByTestId('stake-amount')).toHaveValue('1');
    await page.getByTestId('stake-button').click();
    await expect(page.getByTestId('stake-status')).toContainText('fund it first', {
      timeout: TIMEOUTS.ringForm,
    });

    // A fresh address has no ETH: fund it from the dev chain (a real user funds their own).
    await chain.fund(address, '2');
    await page.getByTestId('stake-button').click();
    await expect(page.getByTestId('stake-status')).toContainText('staked 1 ETH', {
      timeout: TIMEOUTS.ringForm,
    });
    expect(
      await chain.client.readContract({
        address: contract,
        abi: RINGWORK_STAKE_ABI,
        functionName: 'stakeOf',
        args: [address],
      }),
    ).toBe(parseEther('1'));
    await expect(stakeCell).toContainText('1 ETH staked (minimum 1 ETH): may join rings', {
      timeout: TIMEOUTS.ringForm,
    });
    await expect(page.getByTestId('contribute-phase')).toHaveText('serving', {
      timeout: TIMEOUTS.contributorServing,
    });
    for (const width of [412, 1280]) {
      await page.setViewportSize({ width, height: 900 });
      await page.screenshot({ path: `${SHOTS}/contribute-stake-${width}.png`, fullPage: true });
    }
    await peer.context.close();
  } finally {
    await server.stop();
    await chain.close();
  }
});
