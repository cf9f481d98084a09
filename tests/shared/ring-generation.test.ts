import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { Contributor } from '../../shared/app/contributor';
import { splitUnits } from '../../shared/graph/units';
import { RingworkError } from '../../shared/errors';
import { createRemotePipeline } from '../../shared/ring/remote-pipeline';
import { isRetryableRingError } from '../../shared/ring/retry';
import type { SamplerSettings } from '../../shared/ring/ring-protocol';
import { generate } from '../../shared/runtime/generate';
import type { ShardRunner } from '../../shared/runtime/shard-runner';
import { scaled } from '../helpers/timeouts';
import { loadGolden } from '../helpers/golden';
import { stories260KRunner, stories260KTokenizer } from '../helpers/engine';
import { createFakeSignalingHub } from '../helpers/memory-signaling';
import { CAPABILITY, assign, contributorOn, pid, warmUpOrt } from './app/app-fixture';

const golden = loadGolden();
const tokenizer = stories260KTokenizer();

type Hub = ReturnType<typeof createFakeSignalingHub>;

interface Peer {
  id: string;
  contributor: Contributor;
  runner: ShardRunner;
}

/**
 * Builds a ring of contributors (the app's own object and signaling+links wiring) over in-memory
 * signaling and links, each running its shard of stories260K in-process, as the coordinator would
 * assign it.
 */
async function buildRing(hub: Hub, splits: number[], epoch = 1): Promise<Peer[]> {
  const ranges = splitUnits({ numLayers: 5 }, splits);
  const peers: Peer[] = [];
  for (let i = 0; i < ranges.length; i++) {
    const id = pid(`e${epoch}s${i}`);
    const runner = stories260KRunner();
    const contributor = contributorOn(hub, id, () => runner);
    await contributor.start({ capability: CAPABILITY });
    peers.push({ id, contributor, runner });
  }
  assign(
    hub,
    peers.map((p, i) => ({ peer: p.id, range: [ranges[i]![0], ranges[i]![1]] as [number, number] })),
    epoch,
  );
  for (const p of peers)
    await vi.waitFor(() => expect(p.contributor.store.getState().phase).toBe('serving'), {
      timeout: scaled(30_000),
    });
  // Every stage's link to its next stage is up before a request comes.
  for (let i = 0; i + 1 < peers.length; i++)
    await vi.waitFor(() => expect(peers[i]!.contributor.openLink(peers[i + 1]!.id)?.isOpen).toBe(true));
  return peers;
}

async function ask(
  hub: Hub,
  peers: Peer[],
  requester: string,
  epoch = 1,
  o: { sampler?: SamplerSettings; prompt?: string | number[] } = {},
) {
  const t = hub.network(requester).transport;
  const first = await t.connect(peers[0]!.id);
  const head = peers.length === 1 ? first : await t.connect(peers[peers.length - 1]!.id);
  const stageMs: number[][] = [];
  const result = await generate({
    pipeline: createRemotePipeline({
      requesterId: requester,
      epoch,
      first,
      head,
      sampler: o.sampler ?? { temperature: 0, topP: 1, topK: 0, seed: 1 },
    }),
    tokenizer,
    prompt: o.prompt ?? 'Once upon a time',
    steps: 64,
    stopTokens: [],
    onStep: (e) => stageMs.push(e.timing.stageMs),
  });
  await t.close();
  return { result, stageMs };
}

describe('generation across a ring (in-memory links, in-process runners)', () => {
  beforeAll(warmUpOrt);

  it('3 stages: the requester gets exactly the golden text; every step carries one compute time per stage', async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, [2, 4]);
    const { result, stageMs } = await ask(hub, peers, pid('req'));
    expect(result.text).toBe(golden.text);
    expect(result.tokens).toEqual(golden.sequenceTokens);
    expect(stageMs.every((s) => s.length === 3)).toBe(true);
    // Every stage freed the session's KV cache after `end`.
    for (const p of peers) await vi.waitFor(async () => expect((await p.runner.info()).sessions).toBe(0));
    for (const p of peers) await p.contributor.stop();
  });

  it('a head handed the sampler state (seed + draws) continues the same sampled text', async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, [3]);
    const sampler = { temperature: 0.9, topP: 0.9, topK: 0, seed: 7 };
    const full = (await ask(hub, peers, pid('full'), 1, { sampler })).result;
    // A replacement head after k sampled tokens: the text so far is its prompt, and its sampler is
    // fast-forwarded past the k draws (one per head step) the first head made.
    const k = 20;
    const sofar = full.tokens.slice(0, full.promptTokens + k);
    const resumed = (
      await ask(hub, peers, pid('resumed'), 1, { sampler: { ...sampler, draws: k }, prompt: sofar })
    ).result;
    expect(resumed.tokens).toEqual(full.tokens);
    // Without the draws it would restart the random sequence and (here) diverge.
    const restarted = (await ask(hub, peers, pid('restarted'), 1, { sampler, prompt: sofar })).result;
    expect(restarted.tokens).not.toEqual(full.tokens);
    for (const p of peers) await p.contributor.stop();
  });

  it('1 stage (a tab running the whole model) gives the golden text too', async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, []);
    expect((await ask(hub, peers, pid('solo'))).result.text).toBe(golden.text);
  });

  it('a stage leaving mid-generation fails that request with a clear typed error; a re-formed ring serves the next', async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, [3]);
    const t = hub.network(pid('req2')).transport;
    const first = await t.connect(peers[0]!.id);
    const head = await t.connect(peers[1]!.id);
    let steps = 0;
    const run = generate({
      pipeline: createRemotePipeline({
        requesterId: pid('req2'),
        epoch: 1,
        first,
        head,
        sampler: { temperature: 0, topP: 1, topK: 0, seed: 1 },
      }),
      tokenizer,
      prompt: 'Once upon a time',
      steps: 64,
      stopTokens: [],
      onStep: () => {
        // The head's peer leaves the network: its links close.
        if (++steps === 10) void peers[1]!.contributor.stop();
      },
    });
    await expect(run).rejects.toMatchObject({
      code: 'RING_PEER_LOST',
      message: expect.stringContaining('send the request again'),
    });
    const ring2 = await buildRing(hub, [2, 5], 2);
    expect((await ask(hub, ring2, pid('req3'), 2)).result.text).toBe(golden.text);
  });

  it('a request planned against another epoch is refused with a typed error from the stage', async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, [3], 7);
    const refused = await ask(hub, peers, pid('late'), 6).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RingworkError);
    expect(refused).toMatchObject({
      code: 'RING_STALE_EPOCH',
      message: expect.stringContaining('epoch'),
      details: { requested: 6, serving: 7, stage: peers[0]!.id },
    });
    // A stale epoch is a re-plan race: the requester retries it (by code).
    expect(isRetryableRingError(refused)).toBe(true);
  });
});
