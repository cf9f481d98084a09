/**
 * The error contract across the ring boundary: a stage's typed error reaches the requester with its
 * own code, details and cause (in-memory links, real stages with the real stories260K runner; faults
 * are injected around the runner), stale or unknown sessions and silent rings get their own codes, a
 * code from a newer peer is delivered (not dropped), and the retry decision is made by code.
 */
import { describe, expect, it } from 'vitest';
import { isRingworkError, RingworkError } from '../../shared/errors';
import { splitUnits } from '../../shared/graph/units';
import { createRemotePipeline } from '../../shared/ring/remote-pipeline';
import {
  parseRingControl,
  RING_PROTOCOL_VERSION,
  ringErrorFromControl,
} from '../../shared/ring/ring-protocol';
import { createRingStage, stageShardOf } from '../../shared/ring/ring-stage';
import { isRetryableRingError, RETRYABLE_RING_CODES } from '../../shared/ring/retry';
import type { ShardRunner } from '../../shared/runtime/shard-runner';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';
import type { PeerLink } from '../../shared/transport/types';
import { stories260KRunner } from '../helpers/engine';

type Hub = ReturnType<typeof createMemoryTransportHub>;
const sampler = { temperature: 0, topP: 1, topK: 0, seed: 1 };

/** A real runner whose `step` throws `fault()` on the `at`-th call (counting from 1). */
function faultyRunner(runner: ShardRunner, at: number, fault: () => unknown): ShardRunner {
  let calls = 0;
  return {
    load: (r, o) => runner.load(r, o),
    openSession: () => runner.openSession(),
    step: async (s, input, o) => {
      if (++calls === at) throw fault();
      return runner.step(s, input, o);
    },
    closeSession: (s) => runner.closeSession(s),
    info: () => runner.info(),
    dispose: () => runner.dispose(),
  };
}

/** A two-stage ring of stories260K; `wrap` may inject faults into stage i's runner. */
async function twoStageRing(hub: Hub, wrap: (i: number, r: ShardRunner) => ShardRunner = (_, r) => r) {
  const ranges = splitUnits({ numLayers: 5 }, [3]);
  const ids = ['s0', 's1'];
  const linkMaps = ids.map(() => new Map<string, PeerLink>());
  const transports = ids.map((id) => hub.transport(id));
  for (let i = 0; i < ids.length; i++) {
    const runner = stories260KRunner();
    const load = await runner.load({
      model: { url: 'stories260K.bin' },
      range: ranges[i]!,
      weightFormat: 'f32',
      contextLength: 64,
      logits: 'last',
      backend: 'wasm',
    });
    const links = linkMaps[i]!;
    const stage = createRingStage({
      peerId: ids[i]!,
      runner: wrap(i, runner),
      shard: stageShardOf(load, 64),
      epoch: 1,
      isFirst: i === 0,
      isHead: i === ids.length - 1,
      next: () => links.get(ids[i + 1] ?? ''),
      linkTo: (peer) => links.get(peer),
    });
    transports[i]!.onIncoming((link) => {
      links.set(link.remoteId, link);
      stage.attach(link);
    });
  }
  const l01 = await transports[0]!.connect('s1');
  linkMaps[0]!.set('s1', l01);
  return ids;
}

/** Runs steps of one session on `ids` until one fails; returns that failure. */
async function failureOf(hub: Hub, ids: string[], requester: string, steps = 6): Promise<unknown> {
  const t = hub.transport(requester);
  const first = await t.connect(ids[0]!);
  const head = ids.length === 1 ? first : await t.connect(ids[ids.length - 1]!);
  const session = await createRemotePipeline({
    requesterId: requester,
    epoch: 1,
    first,
    head,
    sampler,
  }).open();
  try {
    for (let p = 0; p < steps; p++) await session.forward(Int32Array.from([1]), p);
  } catch (e) {
    return e;
  } finally {
    await session.close();
  }
  throw new Error('expected a step to fail');
}

/** A fake peer that answers every `open` with `reply(session)` (or stays silent). */
function fakeStage(hub: Hub, id: string, reply?: (session: string) => Record<string, unknown>) {
  hub.transport(id).onIncoming((link) => {
    link.onControl((m) => {
      if (m.type === 'open' && reply) link.sendControl(reply(String(m.session)) as never);
    });
  });
}

describe('errors across the ring boundary', () => {
  it("the head's typed error reaches the requester with its code, details and cause", async () => {
    const hub = createMemoryTransportHub();
    const ids = await twoStageRing(hub, (i, r) =>
      i === 1
        ? faultyRunner(
            r,
            3,
            () =>
              new RingworkError('RUNNER_CONTEXT_FULL', 'The KV cache is full.', {
                details: { contextLength: 64 },
                cause: new RingworkError('RUNNER_BAD_INPUT', 'position past the end', {
                  details: { position: 64 },
                }),
              }),
          )
        : r,
    );
    const e = await failureOf(hub, ids, 'req');
    expect(e).toBeInstanceOf(RingworkError);
    expect(e).toMatchObject({
      code: 'RUNNER_CONTEXT_FULL',
      message: expect.stringContaining('The KV cache is full.'),
      details: { contextLength: 64, stage: 's1' },
    });
    const cause = (e as RingworkError).cause;
    expect(isRingworkError(cause, 'RUNNER_BAD_INPUT')).toBe(true);
    expect((cause as RingworkError).details).toEqual({ position: 64 });
    expect(isRetryableRingError(e)).toBe(false);
  });

  it('a plain exception in the first stage arrives as RUNNER_BACKEND_FAILED, the original kept as cause', async () => {
    const hub = createMemoryTransportHub();
    const ids = await twoStageRing(hub, (i, r) =>
      i === 0 ? faultyRunner(r, 2, () => new TypeError('webgpu device lost')) : r,
    );
    const e = (await failureOf(hub, ids, 'req')) as RingworkError;
    expect(e.code).toBe('RUNNER_BACKEND_FAILED');
    expect(e.details.stage).toBe('s0');
    expect(e.cause).toBeInstanceOf(Error);
    expect((e.cause as Error).name).toBe('TypeError');
    expect((e.cause as Error).message).toBe('webgpu device lost');
  });

  it('a tensor for a session the stage never opened is answered RING_UNKNOWN_SESSION (retryable)', async () => {
    const hub = createMemoryTransportHub();
    const ids = await twoStageRing(hub);
    const link = await hub.transport('req').connect(ids[0]!);
    const answer = new Promise<unknown>((resolve) => link.onControl(resolve));
    await link.sendTensor({
      session: 'ghost',
      step: 0,
      position: 0,
      kind: 'tokens',
      dtype: 'int32',
      shape: [1],
      data: Int32Array.from([1]),
      trace: [],
    });
    const m = parseRingControl(await answer);
    if (m.type !== 'error') throw new Error(`expected an error, got ${m.type}`);
    const e = ringErrorFromControl(m);
    expect(e).toMatchObject({ code: 'RING_UNKNOWN_SESSION', details: { stage: 's0', session: 'ghost' } });
    expect(isRetryableRingError(e)).toBe(true);
  });

  it('an error code this build does not know arrives as PROTOCOL_UNKNOWN_CODE with the original in details', async () => {
    const hub = createMemoryTransportHub();
    fakeStage(hub, 'future', (session) => ({
      type: 'error',
      v: RING_PROTOCOL_VERSION,
      session,
      code: 'RING_SOMETHING_NEW',
      message: 'a failure from a newer build',
      details: { hint: 42 },
      at: 'future',
    }));
    const e = (await failureOf(hub, ['future'], 'req')) as RingworkError;
    expect(e).toBeInstanceOf(RingworkError);
    expect(e.code).toBe('PROTOCOL_UNKNOWN_CODE');
    expect(e.details).toMatchObject({ remoteCode: 'RING_SOMETHING_NEW', hint: 42, stage: 'future' });
    expect(e.message).toContain('a failure from a newer build');
  });

  it('a ring that never answers a step fails with RING_STEP_TIMEOUT (retryable)', async () => {
    const hub = createMemoryTransportHub();
    fakeStage(hub, 'silent');
    const link = await hub.transport('req').connect('silent');
    const session = await createRemotePipeline({
      requesterId: 'req',
      epoch: 1,
      first: link,
      head: link,
      sampler,
      stepTimeoutMs: 50,
    }).open();
    const e = await session.forward(Int32Array.from([1]), 0).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'RING_STEP_TIMEOUT', details: { step: 0, timeoutMs: 50 } });
    expect(isRetryableRingError(e)).toBe(true);
    await session.close();
  });
});

describe('the retry decision is made by code', () => {
  it('retries re-plan races and link failures, never compute, input or abort failures', () => {
    for (const code of [
      'RING_STALE_EPOCH',
      'RING_STAGE_NOT_SERVING',
      'RING_UNKNOWN_SESSION',
      'RING_PEER_LOST',
      'TRANSPORT_CLOSED',
      'SIGNALING_COORDINATOR_TIMEOUT',
    ] as const) {
      expect(isRetryableRingError(new RingworkError(code, 'x')), code).toBe(true);
    }
    for (const code of ['RUNNER_BACKEND_FAILED', 'RUNNER_CONTEXT_FULL', 'ABORTED', 'NO_RING'] as const) {
      expect(RETRYABLE_RING_CODES.has(code), code).toBe(false);
      expect(isRetryableRingError(new RingworkError(code, 'stale epoch, not serving')), code).toBe(false);
    }
    // Message text decides nothing: an untyped error that says "stale" is not retried.
    expect(isRetryableRingError(new Error('ring epoch 3 is stale; not serving'))).toBe(false);
    // A code that crossed a boundary as JSON counts once rebuilt.
    expect(isRetryableRingError(RingworkError.fromJSON({ code: 'RING_STALE_EPOCH', message: 'x' }))).toBe(
      true,
    );
  });
});
