/**
 * Regression tests of the "hostile tabs" attacks on a ring stage (real stages, real ORT runners on
 * stories260K, real peer links over in-memory channels). Each asserts that the attack is refused
 * AND that an honest request still gets the golden text.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createRemotePipeline } from '../../shared/ring/remote-pipeline';
import { RING_PROTOCOL_VERSION, parseRingControl } from '../../shared/ring/ring-protocol';
import { createComputeQueue } from '../../shared/ring/stage-scheduler';
import { generate } from '../../shared/runtime/generate';
import { createSampler } from '../../shared/runtime/sampler';
import { createMemoryChannelPair, createMemoryTransportHub } from '../../shared/transport/memory-transport';
import { createPeerLink } from '../../shared/transport/peer-link';
import type { PeerLink } from '../../shared/transport/types';
import { closedWith, frameBomb, sessionExhaustion, stalledChannel } from '../../tools/bench/hostile-attacks';
import {
  GREEDY,
  askRing,
  buildMemoryRing,
  connectRequester,
  stopMemoryRing,
  type MemoryRingOptions,
  type MemoryStage,
} from '../../tools/bench/memory-ring';
import { stories260KRunner, stories260KTokenizer } from '../helpers/engine';
import { loadGolden } from '../helpers/golden';
import { TIMEOUT_SCALE } from '../helpers/timeouts';

const golden = loadGolden();
const tokenizer = stories260KTokenizer();
const PROMPT = 'Once upon a time';

let rings: MemoryStage[][] = [];
afterEach(async () => {
  for (const r of rings) await stopMemoryRing(r);
  rings = [];
});

async function ring(hub: ReturnType<typeof createMemoryTransportHub>, o: Partial<MemoryRingOptions> = {}) {
  const stages = await buildMemoryRing({
    hub,
    makeRunner: stories260KRunner,
    model: { url: 'stories260K.bin' },
    numLayers: 5,
    splits: [2, 4],
    contextLength: 512,
    ...o,
  });
  rings.push(stages);
  return stages;
}

const honest = (
  hub: ReturnType<typeof createMemoryTransportHub>,
  stages: MemoryStage[],
  id: string,
  steps = 64,
) => askRing({ hub, stages, requester: id, tokenizer, prompt: PROMPT, steps });

const runnerSessions = async (stages: MemoryStage[]) =>
  Promise.all(stages.map(async (s) => (await s.runner.info()).sessions));

describe('session exhaustion', () => {
  it('caps an attacker at its session limit, serves an honest request within 4x of its time alone, and frees idle sessions', async () => {
    const hub = createMemoryTransportHub();
    // One stage: in-process, every stage would share this thread, so the attacker's work at the
    // other stages would delay the honest step too (a real ring has one device per stage).
    const stages = await ring(hub, { splits: [], limits: { maxSessionsPerRequester: 4, idleMs: 5_000 } });
    // Warm up (first ORT runs are slow), then time an honest 20-step request alone.
    await honest(hub, stages, 'warm', 20);
    let alone = Infinity;
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      const r = await honest(hub, stages, `alone${i}`, 20);
      alone = Math.min(alone, performance.now() - t0);
      expect(r.tokens).toEqual(golden.sequenceTokens.slice(0, r.tokens.length));
    }

    // ORT compiles each new chunk shape on first use (a one-off of up to ~100 ms here): let a first
    // attacker warm those up so the timing below is steady-state, not a compile.
    const warm = await sessionExhaustion({
      hub,
      stages,
      attacker: 'warm',
      sessions: 4,
      promptLength: 500,
      vocabSize: 512,
    });
    await honest(hub, stages, 'warm2', 20);
    await warm.close();
    const attack = await sessionExhaustion({
      hub,
      stages,
      attacker: 'mallory',
      sessions: 250,
      promptLength: 500,
      vocabSize: 512,
    });
    const t0 = performance.now();
    const during = await honest(hub, stages, 'alice', 20);
    const duringMs = performance.now() - t0;
    console.log(`honest 20 steps: ${alone.toFixed(0)} ms alone, ${duringMs.toFixed(0)} ms during the attack`);
    expect(during.tokens).toEqual(golden.sequenceTokens.slice(0, during.tokens.length));
    // Loose on purpose (a busy CI machine): the precise ratio is `npm run bench:hostile`'s job.
    expect(duringMs).toBeLessThanOrEqual(TIMEOUT_SCALE * (4 * alone + 250));

    // 246 of 250 opens were refused with a typed code that reached the attacker.
    await vi.waitFor(() => expect(attack.refused.STAGE_SESSION_LIMIT).toBe(246));
    // Once alice's `end` is through, the stage holds at most the attacker's 4 sessions.
    await vi.waitFor(async () => expect((await runnerSessions(stages))[0]).toBeLessThanOrEqual(4));
    // The full honest request still gets the golden text while the attacker's sessions sit there.
    expect((await honest(hub, stages, 'bob')).text).toBe(golden.text);
    // Never ended: they are freed once idle.
    await vi.waitFor(async () => expect(await runnerSessions(stages)).toEqual([0]), {
      timeout: 20_000,
      interval: 100,
    });
    await attack.close();
  });

  it('refuses an open over the KV budget with STAGE_KV_BUDGET, which reaches the requester; serves again once sessions end', async () => {
    const hub = createMemoryTransportHub();
    const probe = await ring(hub, { splits: [], prefix: 'probe' });
    const perSession = probe[0]!.kvBytesPerSession;
    expect(perSession).toBe(5 * 2 * 32 * 4 * 512); // 5 layers, K+V, 4 kv heads x 8 dims, f32, 512 positions
    const stages = await ring(hub, {
      splits: [],
      limits: { maxSessionsPerRequester: 100, kvBudgetBytes: 3 * perSession },
    });
    const attack = await sessionExhaustion({
      hub,
      stages,
      attacker: 'mallory',
      sessions: 10,
      promptLength: 10,
      vocabSize: 512,
    });
    await vi.waitFor(() => expect(attack.refused.STAGE_KV_BUDGET).toBe(7));
    await expect(honest(hub, stages, 'alice')).rejects.toMatchObject({ code: 'STAGE_KV_BUDGET' });
    expect(await runnerSessions(stages)).toEqual([3]);
    expect(stages[0]!.stage.stats.reservedKvBytes).toBe(3 * perSession);
    // An `end` from another link is not the attacker's to give...
    const other = await connectRequester(hub, stages, 'mallory');
    other.first.sendControl({ type: 'end', v: RING_PROTOCOL_VERSION, session: 'mallory-0', reason: 'x' });
    await expect(honest(hub, stages, 'alice1')).rejects.toMatchObject({ code: 'STAGE_KV_BUDGET' });
    // ...but the attacker's own ends free the budget.
    for (let i = 0; i < 3; i++) {
      attack.first.sendControl({
        type: 'end',
        v: RING_PROTOCOL_VERSION,
        session: `mallory-${i}`,
        reason: 'done',
      });
    }
    await vi.waitFor(async () => expect(await runnerSessions(stages)).toEqual([0]));
    expect((await honest(hub, stages, 'alice2')).text).toBe(golden.text);
    await attack.close();
  });
});

describe('session exhaustion across the stages of one device', () => {
  it('3 stages sharing one compute queue: a sustained attacker is capped at every stage, an honest request gets the golden text, and the shared queue drains', async () => {
    const hub = createMemoryTransportHub();
    const computeQueue = createComputeQueue();
    const stages = await ring(hub, { computeQueue, limits: { maxSessionsPerRequester: 4 } });
    const attack = await sessionExhaustion({
      hub,
      stages,
      attacker: 'mallory',
      sessions: 12,
      promptLength: 100,
      vocabSize: 512,
      sustain: true,
    });
    // Capped at the first stage (by the requester's own link) and, for the opens that got through,
    // at every later stage (by the neighbour that vouched for the requester).
    await vi.waitFor(() => expect(attack.refused.STAGE_SESSION_LIMIT).toBe(8), {
      timeout: 30_000,
      interval: 50,
    });
    for (const s of stages) expect(s.stage.stats.openSessions).toBeLessThanOrEqual(4);
    const r = await honest(hub, stages, 'alice');
    expect(r.text).toBe(golden.text);
    // Fair, not starving: the attacker's own sessions get through as well (and, sustained, it
    // re-opens as each one answers), still within its cap.
    await vi.waitFor(() => expect(attack.opened).toBeGreaterThan(12), { timeout: 30_000, interval: 50 });
    // The cap is per requester and the stats count every session: the honest request's own session
    // may still be open at a later stage while its `end` travels down the ring (one more at most).
    for (const s of stages) expect(s.stage.stats.openSessions).toBeLessThanOrEqual(4 + 1);
    await attack.close();
    // Its sessions end with its link; nothing of theirs is left queued on the device.
    await vi.waitFor(async () => expect(await runnerSessions(stages)).toEqual([0, 0, 0]), {
      timeout: 30_000,
      interval: 50,
    });
    await vi.waitFor(() => expect(computeQueue.queued()).toBe(0), { timeout: 30_000, interval: 50 });
  });
});

describe('chunked prefill', () => {
  it('a 40-token prompt prefilled in chunks of 8 across 3 stages continues exactly like llama2.c', async () => {
    const hub = createMemoryTransportHub();
    const stages = await ring(hub, { limits: { maxChunkPositions: 8 } });
    const { transport, first, head } = await connectRequester(hub, stages, 'req');
    const stageMs: number[][] = [];
    const r = await generate({
      pipeline: createRemotePipeline({ requesterId: 'req', epoch: 1, first, head, sampler: GREEDY }),
      tokenizer,
      prompt: golden.sequenceTokens.slice(0, 40),
      steps: 64,
      sampler: createSampler({ temperature: 0 }),
      stopTokens: [],
      onStep: (e) => stageMs.push(e.timing.stageMs),
    });
    await transport.close();
    expect(r.tokens).toEqual(golden.sequenceTokens);
    // One compute time per stage per step, the prefill's being the sum of its 5 chunks.
    expect(stageMs.every((s) => s.length === 3)).toBe(true);
    expect(stages[0]!.stage.stats.stepsServed).toBe(5 + 64 - 40);
  });
});

describe('frame bombs', () => {
  it('a chunk declaring 256 MiB is refused from its header (nothing allocated); the ring still serves', async () => {
    const hub = createMemoryTransportHub();
    const stages = await ring(hub);
    for (const target of [0, 1]) {
      const [attacker, stageEnd] = createMemoryChannelPair();
      const link = createPeerLink('mallory', stageEnd);
      stages[target]!.links.set('mallory', link);
      stages[target]!.stage.attach(link);
      const before = process.memoryUsage().arrayBuffers;
      const closed = closedWith(link);
      attacker.send(frameBomb(256 * 1024 * 1024));
      await expect(closed).resolves.toMatchObject({ code: 'TENSOR_TOO_LARGE' });
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(32 * 1024 * 1024);
    }
    expect((await honest(hub, stages, 'alice')).text).toBe(golden.text);
  });
});

describe('answers and steps from the wrong link', () => {
  it('the requester ignores tokens from the first stage; a session takes steps and `end` only from the link that opened it', async () => {
    const hub = createMemoryTransportHub();
    const stages = await ring(hub, { splits: [3] });
    const { transport, first, head } = await connectRequester(hub, stages, 'alice');
    // Stage 0 turns hostile: it answers every step itself, at once, with a wrong token.
    const stage0Side = stages[0]!.links.get('alice')!;
    stage0Side.onTensor((t) =>
      stage0Side.sendControl({
        type: 'token',
        v: RING_PROTOCOL_VERSION,
        session: t.session,
        position: t.position + t.shape[0]! - 1,
        token: 0,
        stageMs: [0],
      }),
    );
    // Another tab knows the session id and tries to drive or end it.
    const mallory = await connectRequester(hub, stages, 'mallory');
    const malloryErrors: string[] = [];
    mallory.first.onControl((raw) => {
      const m = parseRingControl(raw);
      if (m.type === 'error') malloryErrors.push(m.code);
    });
    let steps = 0;
    const r = await generate({
      pipeline: createRemotePipeline({
        requesterId: 'alice',
        epoch: 1,
        first,
        head,
        sampler: GREEDY,
        newSessionId: () => 'alice-1',
      }),
      tokenizer,
      prompt: PROMPT,
      steps: 64,
      sampler: createSampler({ temperature: 0 }),
      stopTokens: [],
      onStep: () => {
        if (++steps !== 3) return;
        mallory.first.sendControl({ type: 'end', v: RING_PROTOCOL_VERSION, session: 'alice-1', reason: 'x' });
        void mallory.first.sendTensor({
          session: 'alice-1',
          step: 9,
          position: 9,
          kind: 'tokens',
          dtype: 'int32',
          shape: [1],
          data: Int32Array.of(1),
        });
        // An open under alice's name from mallory's link.
        mallory.first.sendControl({
          type: 'open',
          v: RING_PROTOCOL_VERSION,
          session: 'fake',
          epoch: 1,
          requester: 'alice',
          sampler: GREEDY,
        });
      },
    });
    expect(r.text).toBe(golden.text);
    expect(malloryErrors.sort()).toEqual(['STAGE_WRONG_LINK', 'STAGE_WRONG_LINK']);
    await transport.close();
    await mallory.transport.close();
  });
});

describe('a stalled next stage', () => {
  it('fails the step with STAGE_NEXT_TIMEOUT after the send deadline instead of freezing; the stage serves on', async () => {
    const hub = createMemoryTransportHub();
    const stages = await ring(hub, { splits: [3], limits: { sendDeadlineMs: 300 } });
    const live = stages[0]!.links.get(stages[1]!.id)!;
    const stalled: PeerLink = createPeerLink(stages[1]!.id, stalledChannel());
    stages[0]!.links.set(stages[1]!.id, stalled);
    await expect(honest(hub, stages, 'alice')).rejects.toMatchObject({ code: 'STAGE_NEXT_TIMEOUT' });
    // The next stage is back: the same stage serves the next request.
    stages[0]!.links.set(stages[1]!.id, live);
    expect((await honest(hub, stages, 'bob')).text).toBe(golden.text);
  });
});
