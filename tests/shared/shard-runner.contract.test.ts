/** The shard-runner contract (tests/contracts/shard-runner.ts) on the in-process ORT runner (wasm). */
import { describe, it } from 'vitest';
import { contract, type ContractGolden } from '../contracts/shard-runner';
import { stories260KRunner } from '../helpers/engine';
import { loadGolden } from '../helpers/golden';
import { TIMEOUT_SCALE } from '../helpers/timeouts';

const g = loadGolden();
const golden: ContractGolden = {
  tokens: g.sequenceTokens,
  logits: g.logits,
  hidden: g.hidden,
  positions: g.sequenceTokens.length,
  nLayers: g.nLayers,
  dim: g.dim,
  vocab: g.vocab,
};

describe('ShardRunner contract: createOrtShardRunner in-process', () => {
  const cases = contract({
    create: async () => ({ runner: stories260KRunner(), teardown: async () => undefined }),
    model: { url: 'stories260K.bin' },
    golden,
    scale: TIMEOUT_SCALE,
  });
  for (const c of cases) it(c.name, c.run, c.timeoutMs);
});
