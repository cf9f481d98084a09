/**
 * `npm run contracts:build`: compiles contracts/RingworkStake.sol with solc-js and writes the
 * generated ABI + bytecode module (tools/contracts/compile-stake.ts), formatted by prettier.
 */
import { writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { compileStake, renderStakeArtifact, STAKE_ARTIFACT } from '../contracts/compile-stake.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const file = resolve(ROOT, STAKE_ARTIFACT);
const compiled = compileStake();
const text = await format(renderStakeArtifact(compiled), {
  ...(await resolveConfig(file)),
  filepath: file,
});
writeFileSync(file, text);
console.log(
  `${STAKE_ARTIFACT}: ${(compiled.bytecode.length - 2) / 2} bytes of bytecode (solc ${compiled.compiler})`,
);
