import { afterEach, describe, expect, it, vi } from 'vitest';
import { RingworkError } from '../../shared/errors';
import { createLossDetector, DEFAULT_LOSS_DETECTION } from '../../shared/ring/loss-detector';
import { openRemoteSession } from '../../shared/ring/remote-pipeline';
import type { ControlMessage, PeerLink } from '../../shared/transport/types';

describe('loss detector: the step deadline follows the observed laps', () => {
  it('is the cold timeout until enough laps are known, then max(4 × p50, 1.5 s)', () => {
    const d = createLossDetector({ coldMs: 60_000 });
    expect(d.deadlineMs(1)).toBe(60_000);
    d.observe(100);
    d.observe(120);
    expect(d.deadlineMs(1)).toBe(60_000); // 2 laps < minSamples
    d.observe(110);
    // p50 of 100, 110, 120 is 110: 4 × 110 = 440 ms is under the floor.
    expect(d.p50()).toBe(110);
    expect(d.deadlineMs(1)).toBe(DEFAULT_LOSS_DETECTION.floorMs);
    for (let i = 0; i < 10; i++) d.observe(800);
    expect(d.deadlineMs(1)).toBe(3200);
  });

  it('one slow lap does not stretch the deadline (median, not mean), and old laps age out', () => {
    const d = createLossDetector({ window: 5, floorMs: 0 });
    for (const ms of [100, 100, 100, 100, 30_000]) d.observe(ms);
    expect(d.deadlineMs(1)).toBe(400);
    for (const ms of [500, 500, 500]) d.observe(ms);
    // The window holds 100, 30000, 500, 500, 500 now.
    expect(d.samples).toBe(5);
    expect(d.deadlineMs(1)).toBe(2000);
  });

  it('a prompt prefill gets the cold timeout; a failover replay one decode deadline per 16 positions, at least 8 s', () => {
    const d = createLossDetector({ coldMs: 60_000 });
    expect(d.deadlineMs(40)).toBe(60_000); // no laps yet: the prompt's prefill
    for (let i = 0; i < 5; i++) d.observe(50);
    d.observe(NaN);
    d.observe(-1);
    expect(d.samples).toBe(5); // bad laps are ignored
    expect(d.deadlineMs(1)).toBe(1500);
    expect(d.deadlineMs(17)).toBe(8000);
    for (let i = 0; i < 32; i++) d.observe(1000);
    // 4 s per decode step, 3 chunks of 16 for 40 positions.
    expect(d.deadlineMs(40)).toBe(12_000);
    expect(d.deadlineMs(1000)).toBe(60_000); // never beyond the cold timeout
  });
});

/** A link whose far side is scripted by the test (the ring's first stage and head in one). */
function fakeLink(remoteId: string) {
  const control = new Set<(m: ControlMessage) => void>();
  const close = new Set<() => void>();
  let open = true;
  const sentControl: ControlMessage[] = [];
  const sentTensors: { step: number; position: number; data: number[] }[] = [];
  const link: PeerLink = {
    remoteId,
    get isOpen() {
      return open;
    },
    async sendTensor(m) {
      sentTensors.push({ step: m.step, position: m.position, data: [...(m.data as Int32Array)] });
    },
    sendControl: (m) => void sentControl.push(m),
    setTensorLimit() {},
    onTensor: () => () => undefined,
    onControl: (h) => (control.add(h), () => control.delete(h)),
    onError: () => () => undefined,
    onClose: (h) => (close.add(h as () => void), () => close.delete(h as () => void)),
    close() {
      open = false;
      close.forEach((h) => h());
    },
  };
  return { link, sentControl, sentTensors, reply: (m: ControlMessage) => control.forEach((h) => h(m)) };
}

describe('remote session: deadline and replay on the wire (fake timers)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a step that misses its lap-derived deadline fails with RING_STEP_TIMEOUT naming the step', async () => {
    vi.useFakeTimers();
    const f = fakeLink('p_stage00000000000');
    const d = createLossDetector();
    for (let i = 0; i < 3; i++) d.observe(100);
    const s = await openRemoteSession({
      requesterId: 'p_req0000000000000',
      epoch: 1,
      first: f.link,
      head: f.link,
      sampler: { temperature: 0, topP: 1, topK: 0, seed: 1 },
      stepDeadlineMs: (n) => d.deadlineMs(n),
      newSessionId: () => 's1',
    });
    const step = s.forward(Int32Array.from([5]), 0);
    const caught = step.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1499);
    let settled = false;
    void caught.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    const e = await caught;
    expect(e).toBeInstanceOf(RingworkError);
    expect(e).toMatchObject({ code: 'RING_STEP_TIMEOUT', details: { step: 0, timeoutMs: 1500 } });
  });

  it('a resumed session opens with the draws and replayThrough, sends the history as step 0, and is answered on step 1', async () => {
    vi.useFakeTimers();
    const f = fakeLink('p_stage00000000000');
    const s = await openRemoteSession(
      {
        requesterId: 'p_req0000000000000',
        epoch: 3,
        first: f.link,
        head: f.link,
        sampler: { temperature: 0.8, topP: 0.9, topK: 0, seed: 42 },
        stepDeadlineMs: () => 5000,
        newSessionId: () => 's2',
      },
      { history: [1, 400, 30, 9], draws: 3 },
    );
    expect(f.sentControl[0]).toMatchObject({
      type: 'open',
      epoch: 3,
      replayThrough: 4,
      sampler: { seed: 42, draws: 3, temperature: 0.8 },
    });
    expect(f.sentTensors).toEqual([{ step: 0, position: 0, data: [1, 400, 30, 9] }]);
    const step = s.forward(Int32Array.from([77]), 4);
    await vi.advanceTimersByTimeAsync(10);
    expect(f.sentTensors[1]).toEqual({ step: 1, position: 4, data: [77] });
    f.reply({ type: 'token', v: 1, session: 's2', step: 1, position: 4, token: 12, stageMs: [1], draws: 4 });
    await expect(step).resolves.toMatchObject({ token: 12 });
    expect(s.draws).toBe(4);
  });
});
