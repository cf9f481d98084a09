/**
 * Two rings of real stories260K stages over in-memory links (`a`, the primary, and `b`, its
 * validator), each stage signing its commitments with a session key registered in one key
 * registry, and a requester linked to each ring: what the validated and spot-check ring tests run.
 */
import { splitUnits } from '../../shared/graph/units';
import { createMemoryTransportHub, type MemoryTransportHub } from '../../shared/transport/memory-transport';
import { createSessionKey } from '../../shared/validation/crypto';
import { createKeyRegistry, type KeyRegistry } from '../../shared/validation/key-registry';
import type { TamperFn } from '../../shared/validation/stage';
import {
  buildMemoryRing,
  connectRequester,
  stopMemoryRing,
  type MemoryStage,
} from '../../tools/bench/memory-ring';
import { stories260KRunner } from './engine';

/** Unit splits of the 3-stage rings. */
export const SIGNED_RING_SPLITS = [2, 4];
/** Each stage's unit range. */
export const SIGNED_RING_RANGES = splitUnits({ numLayers: 5 }, SIGNED_RING_SPLITS).map(
  (r) => [r[0], r[1]] as [number, number],
);

/** The rings, their registry and the requester's links to each (ring 0 the primary). */
export interface SignedRings {
  hub: MemoryTransportHub;
  registry: KeyRegistry;
  rings: MemoryStage[][];
  links: Awaited<ReturnType<typeof connectRequester>>[];
}

/** Builds rings `a` and `b`; `tamper` makes one stage of one ring tamper; teardown goes to `cleanup`. */
export async function buildSignedRings(
  cleanup: (() => Promise<void>)[],
  tamper?: { ring: 'a' | 'b'; stage: number; fn: TamperFn },
): Promise<SignedRings> {
  const hub = createMemoryTransportHub();
  const registry = createKeyRegistry();
  const rings: MemoryStage[][] = [];
  for (const prefix of ['a', 'b']) {
    const keys = await Promise.all(SIGNED_RING_RANGES.map(() => createSessionKey()));
    const stages = await buildMemoryRing({
      hub,
      makeRunner: stories260KRunner,
      model: { url: 'stories260K.bin' },
      numLayers: 5,
      splits: SIGNED_RING_SPLITS,
      contextLength: 256,
      prefix,
      validation: (i) => ({
        key: keys[i]!,
        ...(prefix === tamper?.ring && tamper.stage === i ? { tamper: tamper.fn } : {}),
      }),
    });
    cleanup.push(() => stopMemoryRing(stages));
    for (let i = 0; i < stages.length; i++) await registry.register(stages[i]!.id, keys[i]!.publicKeyRaw);
    rings.push(stages);
  }
  const links = await Promise.all(rings.map((stages, j) => connectRequester(hub, stages, `req${j}`)));
  cleanup.push(async () => void (await Promise.all(links.map((l) => l.transport.close()))));
  return { hub, registry, rings, links };
}
