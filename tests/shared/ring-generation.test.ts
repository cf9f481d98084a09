import { describe, expect, it, vi } from 'vitest';
import { RingworkError } from '../../shared/errors';
import { splitUnits } from '../../shared/graph/units';
import { createRemotePipeline } from '../../shared/ring/remote-pipeline';
import { isRetryableRingError } from '../../shared/ring/retry';
import { createRingStage, stageShardOf, type RingStage } from '../../shared/ring/ring-stage';
import { generate } from '../../shared/runtime/generate';
import { createSampler } from '../../shared/runtime/sampler';
import type { ShardRunner } from '../../shared/runtime/shard-runner';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';
import type { PeerLink, Transport } from '../../shared/transport/types';
import { loadGolden } from '../helpers/golden';
import { stories260KRunner, stories260KTokenizer } from '../helpers/engine';

const golden = loadGolden();
const tokenizer = stories260KTokenizer();

interface Contributor {
  id: string;
  transport: Transport;
  runner: ShardRunner;
  stage: RingStage;
  links: Map<string, PeerLink>;
}

/** Builds a ring of in-memory contributors, each running its shard of stories260K in-process. */
async function buildRing(hub: ReturnType<typeof createMemoryTransportHub>, splits: number[], epoch = 1) {
  const ranges = splitUnits({ numLayers: 5 }, splits);
  const peers: Contributor[] = [];
  for (let i = 0; i < ranges.length; i++) {
    const id = `e${epoch}s${i}`;
    const transport = hub.transport(id);
    const runner = stories260KRunner();
    const load = await runner.load({
      model: { url: 'stories260K.bin' },
      range: ranges[i]!,
      weightFormat: 'f32',
      contextLength: 64,
      logits: 'last',
      backend: 'wasm',
    });
    const links = new Map<string, PeerLink>();
    const c: Contributor = { id, transport, runner, links, stage: undefined as unknown as RingStage };
    c.stage = createRingStage({
      peerId: id,
      runner,
      shard: stageShardOf(load, 64),
      epoch,
      isFirst: i === 0,
      isHead: i === ranges.length - 1,
      next: () => links.get(`e${epoch}s${i + 1}`),
      prev: () => links.get(`e${epoch}s${i - 1}`),
      linkTo: (peer) => links.get(peer),
    });
    transport.onIncoming((link) => {
      links.set(link.remoteId, link);
      c.stage.attach(link);
    });
    peers.push(c);
  }
  for (let i = 0; i + 1 < peers.length; i++) {
    const link = await peers[i]!.transport.connect(peers[i + 1]!.id);
    peers[i]!.links.set(link.remoteId, link);
  }
  return peers;
}

async function ask(
  hub: ReturnType<typeof createMemoryTransportHub>,
  peers: Contributor[],
  requester: string,
  epoch = 1,
) {
  const t = hub.transport(requester);
  const first = await t.connect(peers[0]!.id);
  const head = peers.length === 1 ? first : await t.connect(peers[peers.length - 1]!.id);
  const stageMs: number[][] = [];
  const result = await generate({
    pipeline: createRemotePipeline({
      requesterId: requester,
      epoch,
      first,
      head,
      sampler: { temperature: 0, topP: 1, topK: 0, seed: 1 },
    }),
    tokenizer,
    prompt: 'Once upon a time',
    steps: 64,
    sampler: createSampler({ temperature: 0 }),
    stopTokens: [],
    onStep: (e) => stageMs.push(e.timing.stageMs),
  });
  await t.close();
  return { result, stageMs };
}

describe('generation across a ring (in-memory links, in-process runners)', () => {
  it('3 stages: the requester gets exactly the golden text; every step carries one compute time per stage', async () => {
    const hub = createMemoryTransportHub();
    const peers = await buildRing(hub, [2, 4]);
    const { result, stageMs } = await ask(hub, peers, 'req');
    expect(result.text).toBe(golden.text);
    expect(result.tokens).toEqual(golden.sequenceTokens);
    expect(stageMs.every((s) => s.length === 3)).toBe(true);
    // Every stage freed the session's KV cache after `end`.
    await vi.waitFor(async () => {
      for (const p of peers) expect((await p.runner.info()).sessions).toBe(0);
    });
    for (const p of peers) await p.stage.stop();
  });

  it('1 stage (a tab running the whole model) gives the golden text too', async () => {
    const hub = createMemoryTransportHub();
    const peers = await buildRing(hub, []);
    expect((await ask(hub, peers, 'solo')).result.text).toBe(golden.text);
  });

  it('a stage leaving mid-generation fails that request with a clear typed error; a re-formed ring serves the next', async () => {
    const hub = createMemoryTransportHub();
    const peers = await buildRing(hub, [3]);
    const t = hub.transport('req2');
    const first = await t.connect(peers[0]!.id);
    const head = await t.connect(peers[1]!.id);
    let steps = 0;
    const run = generate({
      pipeline: createRemotePipeline({
        requesterId: 'req2',
        epoch: 1,
        first,
        head,
        sampler: { temperature: 0, topP: 1, topK: 0, seed: 1 },
      }),
      tokenizer,
      prompt: 'Once upon a time',
      steps: 64,
      sampler: createSampler({ temperature: 0 }),
      stopTokens: [],
      onStep: () => {
        if (++steps === 10) void peers[1]!.transport.close();
      },
    });
    await expect(run).rejects.toMatchObject({
      code: 'RING_PEER_LOST',
      message: expect.stringContaining('send the request again'),
    });
    const ring2 = await buildRing(hub, [2, 5], 2);
    expect((await ask(hub, ring2, 'req3', 2)).result.text).toBe(golden.text);
  });

  it('a request planned against another epoch is refused with a typed error from the stage', async () => {
    const hub = createMemoryTransportHub();
    const peers = await buildRing(hub, [3], 7);
    const refused = await ask(hub, peers, 'late', 6).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RingworkError);
    expect(refused).toMatchObject({
      code: 'RING_STALE_EPOCH',
      message: expect.stringContaining('epoch'),
      details: { requested: 6, serving: 7, stage: 'e7s0' },
    });
    // A stale epoch is a re-plan race: the requester retries it (by code).
    expect(isRetryableRingError(refused)).toBe(true);
  });
});
