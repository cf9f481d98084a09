/**
 * Shared parts of the app-object tests: peer ids the real schema accepts, the stories260K model
 * descriptor, contributors and requesters over the fake signaling hub, in-memory links and real
 * in-process ORT runners, and a runner whose load waits on a gate (to order loads in a test).
 */
import { createContributor, type Contributor } from '../../../shared/app/contributor';
import { createRequester, type RequesterOptions, type Requester } from '../../../shared/app/requester';
import type { PeerCapability, ModelDescriptor } from '../../../shared/protocol/signaling';
import type { ShardRunner } from '../../../shared/runtime/shard-runner';
import { stories260KRunner, stories260KTokenizer } from '../../helpers/engine';
import type { FakeSignalingHub } from '../../helpers/memory-signaling';

/** A peer id of the server's form (`p_` + 16 characters) from a short name. */
export const pid = (name: string): string => `p_${name.padEnd(16, '0').slice(0, 16)}`;

/** stories260K as the coordinator describes it (the in-memory runner ignores the URL). */
export const STORIES: ModelDescriptor = {
  id: 'stories260K',
  url: 'stories260K.bin',
  weightFormat: 'f32',
  contextLength: 512,
  units: 7,
};

export const CAPABILITY: PeerCapability = {
  tflops: 1,
  bandwidthGBps: 100,
  memoryBytes: 4e9,
  backend: 'wasm',
  mobile: false,
};

/** Settings that reproduce the golden run: greedy, 64 positions from "Once upon a time" (4 + 60). */
export const GOLDEN_SETTINGS = { model: 'stories260K', temperature: 0, topP: 1, maxTokens: 60 };

/** A runner whose `load` waits for `gate` first; counts what it was asked to do. */
export function gatedRunner(gate: Promise<void>): ShardRunner & { disposed: boolean } {
  const inner = stories260KRunner();
  const r = {
    disposed: false,
    load: async (...a: Parameters<ShardRunner['load']>) => {
      await gate;
      return inner.load(...a);
    },
    openSession: () => inner.openSession(),
    step: (...a: Parameters<ShardRunner['step']>) => inner.step(...a),
    closeSession: (id: string) => inner.closeSession(id),
    info: () => inner.info(),
    dispose: async () => {
      r.disposed = true;
      await inner.dispose();
    },
  };
  return r;
}

/** A contributor on the hub with real runners (or the ones `createRunner` hands out). */
export function contributorOn(
  hub: FakeSignalingHub,
  id: string,
  createRunner: () => ShardRunner = stories260KRunner,
): Contributor {
  return createContributor({ network: async () => hub.network(id), createRunner, connectTimeoutMs: 5000 });
}

/** A requester on the hub with a real runner for local runs and the real tokenizer. */
export function requesterOn(hub: FakeSignalingHub, id: string, o: Partial<RequesterOptions> = {}): Requester {
  return createRequester({
    network: async () => hub.network(id),
    createRunner: stories260KRunner,
    openTokenizer: async () => stories260KTokenizer(),
    localMemoryBytes: () => 1e9,
    seed: () => 1,
    ...o,
  });
}

/** Pushes an assignment for `range` of stories260K in a ring `order` at `epoch`. */
export function assign(
  hub: FakeSignalingHub,
  order: { peer: string; range: [number, number] }[],
  epoch: number,
  model: ModelDescriptor = STORIES,
): void {
  order.forEach((s, i) => {
    const n = order.length;
    hub.push(s.peer, {
      type: 'assignment',
      epoch,
      ringId: `r${epoch}`,
      model,
      range: s.range,
      prev: n > 1 ? order[(i + n - 1) % n]!.peer : null,
      next: n > 1 ? order[(i + 1) % n]!.peer : null,
    });
  });
}

/** The `ring` message of that ring (`totalBytes`: the model's size as the coordinator sends it). */
export function ringOf(
  order: { peer: string; range: [number, number] }[],
  epoch: number,
  extra: { totalBytes?: number } = {},
) {
  return { type: 'ring' as const, epoch, ringId: `r${epoch}`, model: STORIES, stages: order, ...extra };
}

/**
 * Loads and frees one runner, so onnxruntime-web's wasm is initialised before tests load shards
 * concurrently (its first-time initialisation does not tolerate two sessions created at once).
 */
export async function warmUpOrt(): Promise<void> {
  const r = stories260KRunner();
  await r.load({
    model: { url: STORIES.url },
    range: [0, 1],
    weightFormat: 'f32',
    contextLength: 8,
    logits: 'last',
    backend: 'wasm',
  });
  await r.dispose();
}
