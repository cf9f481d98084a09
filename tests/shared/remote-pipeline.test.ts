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

  it('loop mode: sends only the prefill, takes answers that came before their forward, refuses a forced token and a verify step', async () => {
    // A scripted loop head: answers the prefill, then "feeds" itself (answers every next step with
    // `fed`) at once, far ahead of the requester, until `until`.
    const hub = createMemoryTransportHub();
    const sent: number[] = [];
    hub.transport('head').onIncoming((link) => {
      link.onTensor((t) => {
        sent.push(t.step);
        let step = t.step;
        let position = t.position + t.shape[0]! - 1;
        for (; position <= 6; step++, position++)
          link.sendControl({
            type: 'token',
            v: RING_PROTOCOL_VERSION,
            session: t.session,
            step,
            position,
            token: 200 + position,
            stageMs: [1],
            ...(position + 1 <= 6 ? { fed: true } : {}),
          });
      });
    });
    const link = await hub.transport('req').connect('head');
    const pipeline = createRemotePipeline({
      requesterId: 'req',
      epoch: 1,
      first: link,
      head: link,
      sampler: { temperature: 0, topP: 1, topK: 0, seed: 1 },
      loop: { until: 6, stop: [] },
    });
    const session = await pipeline.open();
    let r = await session.forward(Int32Array.from([1, 2, 3]), 0);
    expect(r.token).toBe(202);
    // Every answer up to position 6 is already here: the forwards resolve from the buffer.
    await vi.waitFor(() => expect(sent).toEqual([0]));
    for (let p = 3; p <= 5; p++) {
      r = await session.forward(Int32Array.from([r.token!]), p);
      expect(r.token).toBe(200 + p);
    }
    expect(sent).toEqual([0]);
    // The head fed position 6 with 205: another token there cannot be sent (typed, before anything goes).
    await expect(session.forward(Int32Array.from([7]), 6)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(
      session.forward(Int32Array.from([205, 1]), 6, { rewind: true, logitsRows: 2 }),
    ).rejects.toMatchObject({ code: 'SPECULATIVE_UNSUPPORTED' });
    expect(sent).toEqual([0]);
    await session.close();
  });
});
