/**
 * The page's Stake action refuses before touching a chain: an amount that is not positive ETH is
 * `STAKE_REFUSED`, a browser without a key is `STAKE_REFUSED`, and a browser key on a server that
 * names no public chain RPC is `STAKE_CHAIN_UNAVAILABLE` (the chain path itself runs in
 * tests/e2e/stake.spec.ts against ganache).
 */
import { describe, expect, it } from 'vitest';
import { generatePrivateKey } from 'viem/accounts';
import { isRingworkError } from '../../shared/errors';
import { createIdentityClient, createMemoryKeyStore } from '../../web/src/identity/identity';
import { stakeAmountWei, stakeFromPage } from '../../web/src/app/stake-action';

const code = async (f: () => unknown): Promise<string> => {
  try {
    await f();
  } catch (e) {
    if (isRingworkError(e)) return e.code;
    throw e;
  }
  return 'no error';
};

describe('stake action', () => {
  it('takes positive ETH amounts only', async () => {
    expect(stakeAmountWei('0.5')).toBe(5n * 10n ** 17n);
    expect(stakeAmountWei(' 2 ')).toBe(2n * 10n ** 18n);
    for (const bad of ['', '0', '0.0', '-1', '1e18', 'abc', '1.1234567890123456789'])
      expect(await code(() => stakeAmountWei(bad)), bad).toBe('STAKE_REFUSED');
  });
  it('refuses a browser without a key, and a browser key without a public chain RPC', async () => {
    const target = { contract: `0x${'ab'.repeat(20)}` as const, chainId: 31337 };
    const keys = createMemoryKeyStore();
    const identity = createIdentityClient({ origin: 'http://127.0.0.1:1', keys });
    expect(await code(() => stakeFromPage(target, '1', { identity }))).toBe('STAKE_REFUSED');
    await keys.put(generatePrivateKey());
    expect(await code(() => stakeFromPage(target, '1', { identity }))).toBe('STAKE_CHAIN_UNAVAILABLE');
  });
});
