/**
 * `npm run contracts:build`: compiles contracts/RingworkStake.sol with solc-js and writes the
 * generated ABI + bytecode module (tools/contracts/compile-stake.ts), formatted by prettier.
 */
import { writeFileSync } from 'node:fs';
import {
  compileStake,
  formattedStakeArtifact,
  STAKE_ARTIFACT,
  stakeArtifactPath,
} from '../contracts/compile-stake.js';

const compiled = compileStake();
writeFileSync(stakeArtifactPath(), await formattedStakeArtifact(compiled));
console.log(
  `${STAKE_ARTIFACT}: ${(compiled.bytecode.length - 2) / 2} bytes of bytecode (solc ${compiled.compiler})`,
);
