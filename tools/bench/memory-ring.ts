/**
 * A generation ring of in-process stages over in-memory links (real ring stages, real ORT runners,
 * the real peer-link framing), for the hostile-tab tests and `npm run bench:hostile`. Each stage
 * is wired like a contributor tab: its own transport, a link to the next stage, links from
 * requesters, and the previous stage's link as the only source of opens.
 */
import { splitUnits } from '../../shared/graph/units.js';
import { createRemotePipeline } from '../../shared/ring/remote-pipeline.js';
import {
  createRingStage,
  stageShardOf,
  type RingStage,
  type RingStageLimits,
} from '../../shared/ring/ring-stage.js';
import type { SamplerSettings } from '../../shared/ring/ring-protocol.js';
import { createComputeQueue, type ComputeQueue } from '../../shared/ring/stage-scheduler.js';
import type { StageValidationOptions } from '../../shared/ring/stage-commitments.js';
import { generate, type GenerateResult } from '../../shared/runtime/generate.js';
import { createSampler } from '../../shared/runtime/sampler.js';
import type { ModelRef, ShardRunner } from '../../shared/runtime/shard-runner.js';
import type { MemoryTransportHub } from '../../shared/transport/memory-transport.js';
import type { PeerLink, Transport } from '../../shared/transport/types.js';
import type { Tokenizer } from '../../shared/tokenizer/types.js';

/** One in-process contributor. */
export interface MemoryStage {
  id: string;
  transport: Transport;
  runner: ShardRunner;
  stage: RingStage;
  links: Map<string, PeerLink>;
  /** KV bytes one session reserves on this stage (bytes per position × context). */
  kvBytesPerSession: number;
  /** The compute queue the ring created for its stages (stopped with them), if it made one. */
  ownQueue?: ComputeQueue;
}

export interface MemoryRingOptions {
  hub: MemoryTransportHub;
  makeRunner: () => ShardRunner;
  model: ModelRef;
  numLayers: number;
  /** Unit boundaries (`[]` = one stage with the whole model). */
  splits: number[];
  contextLength: number;
  epoch?: number;
  limits?: Partial<RingStageLimits>;
  /** Peer id prefix (default `e<epoch>s`). */
  prefix?: string;
  /**
   * How the stages' compute is queued. Default: one compute queue for all of them, created here
   * and stopped by {@link stopMemoryRing} — they share this process's one thread, i.e. one device,
   * and a device that hosts several stages runs them from one queue, fair per requester across its
   * stages. A {@link ComputeQueue}: that one (the caller stops it). `'per-stage'`: a queue per stage,
   * as separate devices would have — on one thread this overstates what an attacker at the other
   * stages costs an honest step (`bench:hostile` shows both).
   */
  computeQueue?: ComputeQueue | 'per-stage';
  /** Result validation: stage `i`'s session key (and test-only tamper), or undefined for none. */
  validation?: (i: number, id: string) => StageValidationOptions | undefined;
  /** How the head answers: `last` (default) or `rows` (it can verify drafted tokens). */
  logits?: 'last' | 'rows';
}

/** Builds and links the stages of a ring; `stop()` every stage and close the transports after use. */
export async function buildMemoryRing(o: MemoryRingOptions): Promise<MemoryStage[]> {
  const epoch = o.epoch ?? 1;
  const prefix = o.prefix ?? `e${epoch}s`;
  const ranges = splitUnits({ numLayers: o.numLayers }, o.splits);
  const ownQueue = o.computeQueue === undefined ? createComputeQueue() : undefined;
  const queue = o.computeQueue === 'per-stage' ? undefined : (o.computeQueue ?? ownQueue);
  const stages: MemoryStage[] = [];
  for (let i = 0; i < ranges.length; i++) {
    const id = `${prefix}${i}`;
    const transport = o.hub.transport(id);
    const runner = o.makeRunner();
    const load = await runner.load({
      model: o.model,
      range: ranges[i]!,
      weightFormat: 'f32',
      contextLength: o.contextLength,
      logits: o.logits ?? 'last',
      backend: 'wasm',
    });
    const shard = stageShardOf(load, o.contextLength);
    const links = new Map<string, PeerLink>();
    const stage = createRingStage({
      peerId: id,
      runner,
      shard,
      epoch,
      isFirst: i === 0,
      isHead: i === ranges.length - 1,
      next: () => links.get(`${prefix}${i + 1}`),
      prev: () => links.get(`${prefix}${i - 1}`),
      linkTo: (peer) => links.get(peer),
      limits: o.limits,
      ...(queue ? { computeQueue: queue } : {}),
      range: [ranges[i]![0], ranges[i]![1]],
      validation: o.validation?.(i, id),
    });
    transport.onIncoming((link) => {
      links.set(link.remoteId, link);
      stage.attach(link);
    });
    stages.push({
      id,
      transport,
      runner,
      stage,
      links,
      kvBytesPerSession: shard.kvBytesPerPosition * shard.contextLength,
      ...(ownQueue ? { ownQueue } : {}),
    });
  }
  for (let i = 0; i + 1 < stages.length; i++) {
    const link = await stages[i]!.transport.connect(stages[i + 1]!.id);
    stages[i]!.links.set(link.remoteId, link);
  }
  return stages;
}

/** Stops every stage, frees its runner and closes its transport. */
export async function stopMemoryRing(stages: MemoryStage[]): Promise<void> {
  for (const s of stages) {
    await s.stage.stop();
    await s.transport.close();
    await s.runner.dispose();
  }
  for (const q of new Set(stages.map((s) => s.ownQueue))) q?.stop();
}

/** A requester's links to a ring: to the first stage (steps) and the head (tokens). */
export async function connectRequester(hub: MemoryTransportHub, stages: MemoryStage[], requester: string) {
  const transport = hub.transport(requester);
  const first = await transport.connect(stages[0]!.id);
  const head = stages.length === 1 ? first : await transport.connect(stages[stages.length - 1]!.id);
  return { transport, first, head };
}

export const GREEDY: SamplerSettings = { temperature: 0, topP: 1, topK: 0, seed: 1 };

/** One honest request (greedy, llama2.c semantics), as a requester tab would send it. */
export async function askRing(o: {
  hub: MemoryTransportHub;
  stages: MemoryStage[];
  requester: string;
  tokenizer: Tokenizer;
  prompt: string;
  steps: number;
  epoch?: number;
}): Promise<GenerateResult> {
  const { transport, first, head } = await connectRequester(o.hub, o.stages, o.requester);
  try {
    return await generate({
      pipeline: createRemotePipeline({
        requesterId: o.requester,
        epoch: o.epoch ?? 1,
        first,
        head,
        sampler: GREEDY,
      }),
      tokenizer: o.tokenizer,
      prompt: o.prompt,
      steps: o.steps,
      sampler: createSampler({ temperature: 0 }),
      stopTokens: [],
    });
  } finally {
    await transport.close();
  }
}
