/** The Contribute page's stake line says what the server will do with the address's stake. */
import { describe, expect, it } from 'vitest';
import { stakeText } from '../../web/src/app/stake-text';

const base = {
  enabled: true,
  contract: '0xabc',
  requiredWei: { default: '1000000000000000000', models: {} },
};

describe('stake line', () => {
  it('says off, enough, or refused with the minimum and the contract', () => {
    expect(stakeText({ enabled: false }, true)).toBe('stake off on this server');
    expect(stakeText(undefined, false)).toBe('signs in when you contribute');
    expect(stakeText({ ...base, stakeWei: '1500000000000000000' }, true)).toBe(
      '1.5 ETH staked (minimum 1 ETH): may join rings',
    );
    expect(stakeText({ ...base, stakeWei: '0' }, true)).toBe(
      '0 ETH staked, below the minimum 1 ETH: refused ring membership until you stake at 0xabc',
    );
    expect(stakeText({ ...base, stakeWei: null }, true)).toMatch(/stake unknown.*minimum 1 ETH/);
    expect(
      stakeText(
        { ...base, requiredWei: { default: '0', models: { m: '2000000000000000000' } }, stakeWei: '0' },
        true,
      ),
    ).toMatch(/below the minimum 2 ETH for some models: refused/);
    expect(stakeText({ ...base, requiredWei: { default: '0', models: {} }, stakeWei: '5' }, true)).toBe(
      '0 ETH staked (no stake required here)',
    );
  });
});
