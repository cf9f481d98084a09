import { readFileSync } from 'node:fs';
import { openLlama2cModel } from '../../shared/model/llama2c';
import { createMemoryFileOpener } from '../../shared/model/memory-source';
import { createOrtShardRunner } from '../../shared/runtime/ort-shard-runner';
import type { ShardRunner } from '../../shared/runtime/shard-runner';
import { createLlama2cTokenizer, parseLlama2cTokenizer } from '../../shared/tokenizer/llama2c-tokenizer';
import { nodeOrt } from '../../signaling-server/src/model/open-node-model';
import { repoPath } from './golden';

const bin = new Uint8Array(readFileSync(repoPath('public/models/stories260K/stories260K.bin')));
const tok = new Uint8Array(readFileSync(repoPath('public/models/stories260K/tok512.bin')));

/** stories260K from memory (no file or network I/O), so tests can count bytes and run fast. */
export function stories260KOpener() {
  return createMemoryFileOpener({ 'stories260K.bin': bin, 'tok512.bin': tok }, 'mem:');
}

export const stories260KTokenizer = () =>
  createLlama2cTokenizer(parseLlama2cTokenizer(tok, 512, 'tok512.bin'));

/** An in-process wasm runner over stories260K in memory. */
export function stories260KRunner(): ShardRunner {
  const opener = stories260KOpener();
  return createOrtShardRunner({
    ort: nodeOrt(),
    openModel: () => openLlama2cModel(opener, 'stories260K.bin'),
    probeWebGpu: async () => ({ ok: false, reason: 'node' }),
  });
}

/**
 * Loaded stories260K runners for `ranges` (f32, wasm, last-row logits): a requester's referee over
 * the same unit boundaries as the rings it checks. The caller disposes them.
 */
export async function loadStories260KRunners(
  ranges: readonly (readonly [number, number])[],
): Promise<ShardRunner[]> {
  const runners: ShardRunner[] = [];
  for (const range of ranges) {
    const r = stories260KRunner();
    await r.load({
      model: { url: 'stories260K.bin' },
      range: [range[0], range[1]],
      weightFormat: 'f32',
      contextLength: 256,
      logits: 'last',
      backend: 'wasm',
    });
    runners.push(r);
  }
  return runners;
}
