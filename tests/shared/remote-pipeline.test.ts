import { describe, expect, it, vi } from 'vitest';
import { createRemotePipeline } from '../../shared/ring/remote-pipeline';
import { RING_PROTOCOL_VERSION, parseRingControl } from '../../shared/ring/ring-protocol';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';

/**
 * A scripted head on an in-memory link (the real stage cannot be made to answer out of turn): for
 * every step it first re-sends the token of the previous step — a late duplicate — then the right one.
 */
async function lateTokenHead() {
  const hub = createMemoryTransportHub();
  const head = hub.transport('head');
  const requester = hub.transport('req');
  head.onIncoming((link) => {
    let previous: number | undefined;
    link.onTensor((t) => {
      const reply = (step: number, token: number) =>
        link.sendControl({
          type: 'token',
          v: RING_PROTOCOL_VERSION,
          session: t.session,
          step,
          position: t.position,
          token,
          stageMs: [1],
        });
      if (previous !== undefined) reply(t.step - 1, previous); // late: answers the step before
      previous = 100 + t.step;
      setTimeout(() => reply(t.step, 100 + t.step), 5);
    });
  });
  return requester.connect('head');
}

describe('remote pipeline', () => {
  it('matches token replies by session and step: a late token of an earlier step does not answer the next', async () => {
    const link = await lateTokenHead();
    const pipeline = createRemotePipeline({
      requesterId: 'req',
      epoch: 1,
      first: link,
      head: link,
      sampler: { temperature: 0, topP: 1, topK: 0, seed: 1 },
    });
    const session = await pipeline.open();
    const tokens: number[] = [];
    for (let step = 0; step < 4; step++) {
      const r = await session.forward(Int32Array.from([1]), step);
      tokens.push(r.token!);
    }
    expect(tokens).toEqual([100, 101, 102, 103]);
    await session.close();
  });

  it('the open message carries the sampler state (seed and draws) to the head', async () => {
    const hub = createMemoryTransportHub();
    const opens: unknown[] = [];
    hub.transport('head').onIncoming((l) => l.onControl((m) => opens.push(parseRingControl(m))));
    const link = await hub.transport('req').connect('head');
    const pipeline = createRemotePipeline({
      requesterId: 'req',
      epoch: 3,
      first: link,
      head: link,
      sampler: { temperature: 0.8, topP: 0.9, topK: 0, seed: 42, draws: 17 },
    });
    const session = await pipeline.open();
    await vi.waitFor(() => expect(opens).toHaveLength(1));
    expect(opens[0]).toMatchObject({ type: 'open', epoch: 3, sampler: { seed: 42, draws: 17 } });
    await session.close();
  });
});
