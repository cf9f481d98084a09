/**
 * The committed stake contract module (ABI + bytecode) is exactly what contracts/RingworkStake.sol
 * compiles to with solc-js and the fixed settings: edit the source without `npm run contracts:build`
 * and this fails.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  RINGWORK_STAKE_ABI,
  RINGWORK_STAKE_BYTECODE,
} from '../../signaling-server/src/stake/ringwork-stake-artifact';
import { compileStake, formattedStakeArtifact, stakeArtifactPath } from '../../tools/contracts/compile-stake';
import { scaled } from '../helpers/timeouts';

describe('stake contract artifact', () => {
  it(
    'matches the compilation of contracts/RingworkStake.sol',
    async () => {
      const compiled = compileStake();
      expect(compiled.bytecode).toBe(RINGWORK_STAKE_BYTECODE);
      expect(compiled.abi).toEqual(RINGWORK_STAKE_ABI);
      // The whole file, so its header (compiler version) cannot drift either.
      expect(readFileSync(stakeArtifactPath(), 'utf8')).toBe(await formattedStakeArtifact(compiled));
      const names = RINGWORK_STAKE_ABI.filter((x) => x.type === 'function').map((x) => x.name);
      expect(names).toEqual(
        expect.arrayContaining(['stake', 'requestWithdrawal', 'withdraw', 'slash', 'stakeOf']),
      );
      expect(
        RINGWORK_STAKE_ABI.filter((x) => x.type === 'event')
          .map((x) => x.name)
          .sort(),
      ).toEqual(['Slashed', 'Staked', 'WithdrawalRequested', 'Withdrawn']);
    },
    scaled(60_000),
  );
});
