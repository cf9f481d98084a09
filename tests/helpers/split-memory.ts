/**
 * The memory a stories260K contributor declares so that the planner must split the embedded model
 * over `stages` peers (as the swarm's pages do): each holds about 1/stages of the weights and of a
 * 512-token KV cache, never the whole model.
 */
import { openModelLocation } from '../../shared/model/open-model';
import { profileModel } from '../../shared/model/profile';
import { nodeOpenerFor } from '../../signaling-server/src/model/open-node-model';
import { swarmMemoryBytes } from '../../tools/swarm/swarm-capability';

/** Context the tests' contributors reserve KV cache for. */
const CONTEXT = 512;

/** Declared memory that forces stories260K over `stages` contributors (see swarm-capability.ts). */
export async function stories260KSplitMemory(stages = 2): Promise<number> {
  const opened = await openModelLocation({ url: 'public/models/stories260K/stories260K.bin' }, nodeOpenerFor);
  const profile = profileModel('stories260K', opened.source.config, {
    format: 'f32',
    contextTokens: CONTEXT,
  });
  return swarmMemoryBytes(
    profile.layers.map((l) => l.weightBytes + l.kvBytesPerToken * CONTEXT),
    stages,
  );
}
